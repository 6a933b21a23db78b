#!/usr/bin/env bash
# Compile-time benchmark: generates graphs of growing size, compiles each model
# translation unit alone (g++ -O2, one job) under a memory cap, and records wall
# seconds and peak compiler memory (GNU time). Usage:
#   bench/compile_time/run.sh [build-dir] [kind:layers ...]
# Defaults: the budget cases (spiral, mlp:64, res:170) and a curve of residual graphs from
# about 100 to 2,000 forward nodes. With g++ the table also splits the CPU time into the
# two phases that grow fastest (from -ftime-report): constant evaluation (graph, gradient
# and plan) and callgraph construction (mangling every instantiation's name).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
shift || true
cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(spiral mlp:16 mlp:32 mlp:64 res:17 res:34 res:68 res:100 res:170 res:250 res:340)
CXX=${CXX:-g++}
CAP_KB=${CAP_KB:-8388608}  # 8 GiB address-space cap: a blow-up fails fast
TIMEOUT=${TIMEOUT:-900}
lib="$build/libctgraph.a"
[ -f "$lib" ] || cmake --build "$build" --target ctgraph -j 1 >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(-std=c++20 -O2 -fopenmp -march=native -I"$root/include" -I"$root")
# Which compiler it is, from its --version (the name may be a path, or c++ for either), then the
# options the ctgraph::ctgraph target passes to its users (CMakeLists.txt).
clang=0
case "$("$CXX" --version)" in *clang*) clang=1 ;; esac
[ $clang = 0 ] && flags+=(--param=ggc-min-expand=400 --param=ggc-min-heapsize=1048576 -fconstexpr-ops-limit=4294967295)
[ $clang = 1 ] && flags+=(-fconstexpr-steps=2147483647)
# PHASES=1 (g++ only) compiles each case a second time with -ftime-report for the phase columns:
# -ftime-report reads the clock at every phase change, which slows the compiler, so the
# seconds and memory come from the first compile, without it.
gnu=0
[ $clang = 0 ] && [ "${PHASES:-1}" = 1 ] && gnu=1
printf "| graph | layers | forward nodes | CPU s | wall s | peak MiB | const. eval s | callgraph s | result |\n"
printf "|---|---|---|---|---|---|---|---|---|\n"
for c in "${cases[@]}"; do
  kind=${c%%:*}
  layers=${c##*:}
  [ "$kind" = spiral ] && layers=0
  per_layer=5  # W, b, matmul, add, tanh; a residual layer adds one add
  [ "$kind" = res ] && per_layer=6
  [ "$kind" = lstm ] && per_layer=0  # "layers" is T: the graph is one scan, whatever T
  src="$work/$kind$layers.cpp"
  if [ "$kind" = spiral ]; then
    layers=3 nodes=-
    src="$root/examples/spiral/main.cpp"
  else
    nodes=$((per_layer * layers + 1))
    python3 "$here/gen.py" "$kind" "$layers" >"$src"
  fi
  if (ulimit -v "$CAP_KB"; timeout "$TIMEOUT" /usr/bin/time -f "%U %S %e %M" -o "$work/time" \
      "$CXX" "${flags[@]}" -c "$src" -o "$work/m.o") 2>"$work/err"; then
    read -r usr sys secs kb <"$work/time"
    cpu=$(awk -v u="$usr" -v s="$sys" 'BEGIN { printf "%.1f", u + s }')
    ce=- cg=-
    if [ $gnu = 1 ]; then
      (ulimit -v "$CAP_KB"; timeout "$TIMEOUT" "$CXX" "${flags[@]}" -ftime-report -c "$src" -o "$work/m2.o") \
        2>"$work/err" || true
      ce=$(awk -F: '/constant expression evaluation/ { split($2, a, " "); print a[1] }' "$work/err")
      cg=$(awk -F: '/callgraph construction/ { split($2, a, " "); print a[1] }' "$work/err")
    fi
    if [ "$kind" = spiral ]; then
      res="compiled (not run: needs the example's libraries)"
    else
      "$CXX" -fopenmp "$work/m.o" "$lib" -lfmt -o "$work/m" && res=$("$work/m") || res="run failed"
    fi
    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n" "$kind" "$layers" "$nodes" "$cpu" "$secs" \
      "$((kb / 1024))" "${ce:--}" "${cg:--}" "$res"
  else
    printf "| %s | %s | %s | - | - | - | - | - | failed (cap %s MiB / %s s): %s |\n" "$kind" "$layers" "$nodes" \
      "$((CAP_KB / 1024))" "$TIMEOUT" "$(grep -m1 -E 'error|Killed|memory' "$work/err" | cut -c1-120)"
  fi
done
