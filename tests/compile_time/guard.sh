#!/usr/bin/env bash
# Compile-time guard: compiles (-O0 -c, no link) a generated residual net of LAYERS layers with CXX under
# a 4 GiB address-space cap and a time limit, and fails if either is hit. Fan-out blow-ups that were
# fixed (g++: a deep type matched structurally; clang 14: argument-dependent lookup walking operand
# types as a tree) made 24-28 layers take minutes; healthy, 60 layers take seconds.
#   guard.sh CXX LAYERS SECONDS ROOT
set -euo pipefail
cxx=$1 layers=$2 limit=$3 root=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$root/bench/compile_time/gen.py" res "$layers" >"$work/res.cpp"
flags=(-std=c++20 -O0 -fopenmp -I"$root/include" -I"$root")
case "${cxx##*/}" in
  *clang*) flags+=(-fconstexpr-steps=2147483647) ;;
  *) flags+=(-fconstexpr-ops-limit=4294967295) ;;
esac
start=$(date +%s)
if ! (ulimit -v 4194304; timeout "$limit" "$cxx" "${flags[@]}" -c "$work/res.cpp" -o "$work/res.o") 2>"$work/err"; then
  echo "FAIL: $cxx did not compile the $layers-layer residual net within ${limit} s and 4 GiB" \
    "(after $(($(date +%s) - start)) s):"
  head -c 2000 "$work/err"
  exit 1
fi
echo "$cxx compiled the $layers-layer residual net in $(($(date +%s) - start)) s"
