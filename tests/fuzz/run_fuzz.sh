#!/usr/bin/env bash
# tests/fuzz/run_fuzz.sh BUILD_DIR [SECONDS]: builds tests/fuzz/checkpoint_fuzz.cpp with
# src/checkpoint.cpp under libFuzzer, ASan and UBSan (clang), then fuzzes checkpoint loading
# for SECONDS (default 60; the environment's FUZZ_SECONDS wins) from a copy of the seed
# corpus. Exits nonzero on any finding (crash, sanitizer report, timeout, out of memory) and
# prints the input that caused it. Everything is written under BUILD_DIR/fuzz/, never into
# the source tree; the scratch corpus there is kept between runs, so runs build on each other.
#
# Environment: FUZZ_CXX (default clang++-14, else clang++), FUZZ_SECONDS, FUZZ_ARGS (more
# libFuzzer flags, e.g. "-max_len=65536" or "-jobs=2 -workers=2").
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 BUILD_DIR [SECONDS]" >&2
  exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
mkdir -p "$1"
build=$(cd "$1" && pwd)
seconds=${FUZZ_SECONDS:-${2:-60}}
cxx=${FUZZ_CXX:-$(command -v clang++-14 || command -v clang++ || true)}
if [ -z "$cxx" ]; then
  echo "run_fuzz.sh: no clang++-14 or clang++ found (install clang; libFuzzer is in libclang-rt-14-dev)" >&2
  exit 2
fi

out=$build/fuzz
bin=$out/checkpoint_fuzz
corpus=$out/corpus/checkpoint
artifacts=$build/fuzz-artifacts
mkdir -p "$out" "$corpus" "$artifacts"

# Rebuild when the binary is missing or older than a source it is built from.
sources=("$here/checkpoint_fuzz.cpp" "$root/src/checkpoint.cpp" "$root/include/ctgraph/checkpoint.hpp"
         "$root/include/ctgraph/format.hpp" "$root/graph/base.hpp" "$here/run_fuzz.sh")
stale=0
[ -x "$bin" ] || stale=1
for s in "${sources[@]}"; do
  [ "$s" -nt "$bin" ] && stale=1
done
if [ "$stale" = 1 ]; then
  echo "run_fuzz.sh: building $bin with $cxx"
  # The include paths of the ctgraph target (top-level CMakeLists.txt): include/ and the
  # root; nlohmann-json and fmt (shapes in messages print through include/ctgraph/format.hpp)
  # from the system.
  # _GLIBCXX_ASSERTIONS adds bounds checks to the standard containers.
  "$cxx" -std=c++20 -O1 -g -fno-omit-frame-pointer -Wall -Wextra \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -D_GLIBCXX_ASSERTIONS \
    -I "$root/include" -I "$root" \
    "$here/checkpoint_fuzz.cpp" "$root/src/checkpoint.cpp" -lfmt -o "$bin.tmp"
  mv "$bin.tmp" "$bin"
fi

cp "$here"/corpus/checkpoint/* "$corpus"/  # the seeds, over their older copies
before=$(ls -A "$artifacts" | wc -l)
echo "run_fuzz.sh: fuzzing checkpoint loading for $seconds s (corpus $corpus, findings to $artifacts/)"
rc=0
# -timeout: an input that takes 10 s is a hang; -rss_limit_mb: 2 GiB is an out-of-memory.
# shellcheck disable=SC2086
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
  "$bin" -max_total_time="$seconds" -dict="$here/safetensors.dict" -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$artifacts/" -print_final_stats=1 ${FUZZ_ARGS:-} "$corpus" || rc=$?

if [ "$rc" != 0 ]; then
  echo
  echo "run_fuzz.sh: FAILED: the fuzzer exited with $rc. New findings in $artifacts/:"
  # shellcheck disable=SC2012
  ls -t "$artifacts" | head -n $(($(ls -A "$artifacts" | wc -l) - before)) | sed "s|^|  $artifacts/|"
  cat <<EOF

To reproduce one:   $bin ARTIFACT
To make it a regression test: fix src/checkpoint.cpp at the cause (a checkpoint_error naming the
file and the problem, never a crash), copy the input into the seed corpus as
tests/fuzz/corpus/checkpoint/regression-NAME.safetensors, and add a test at the end of
tests/checkpoint.test.cpp that writes those bytes (xxd -i ARTIFACT prints them as a C array) and
checks that cg::load_tensors throws checkpoint_error with the message of the fix.
EOF
  exit 1
fi
echo "run_fuzz.sh: no finding in $seconds s"
