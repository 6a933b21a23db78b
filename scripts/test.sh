#!/usr/bin/env bash
# One command: install what is missing, build everything (warnings as errors in CI) and run ctest;
# then the whole suite again in a build with sanitizers, and the kernel tests once more for each
# other instruction set (CTGRAPH_ISA) that this CPU runs (an ISA it cannot run is only built).
#   SANITIZE=address,undefined (default) | 0   sanitizers of the second pass (0: skip it)
#   ISAS="avx2 avx512 generic" (default) | 0   instruction sets of the kernel passes (0: skip them)
set -euo pipefail
cd "$(dirname "$0")/.."
extra="-DCTGRAPH_BENCH=OFF"
[ -n "${CI:-}" ] && extra="$extra -DCTGRAPH_WERROR=ON"
EXTRA_PACKAGES="python3-torch clang libomp-dev libclang-rt-14-dev ${EXTRA_PACKAGES:-}" CMAKE_ARGS="$extra ${CMAKE_ARGS:-}" ./scripts/setup.sh
build=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
# The Doxygen docs must build with zero warnings (the target fails on any).
command -v doxygen >/dev/null && cmake --build "$build" --target docs
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}  # no spinning threads on a shared CI machine
ctest --test-dir "$build" --output-on-failure -j "$jobs"

# The suite under sanitizers. The compile-time guards and compile-fail tests run the compiler, not
# ctgraph code, and the fuzzer is sanitized already (tests/fuzz): they are left out. So are the
# distributed tests (mpirun), not yet tried under sanitizers (Open MPI's own allocations).
san=${SANITIZE-address,undefined}
[ "$san" = 0 ] && san=""
if [ -n "$san" ]; then
  echo "test: the suite again with -fsanitize=$san ($build-sanitize)"
  cmake -S . -B "$build-sanitize" -DCMAKE_BUILD_TYPE=Release $extra ${CMAKE_ARGS:-} -DCTGRAPH_SANITIZE="$san" >/dev/null
  cmake --build "$build-sanitize" -j "$jobs"
  ctest --test-dir "$build-sanitize" --output-on-failure -j "$jobs" -LE 'compile_time|compile_fail|fuzz|distributed'
fi

# The kernel tests for the instruction sets the main build (native) did not use, under the same
# sanitizers. x86-64-v4 (avx512) needs AVX-512 F, BW, CD, DQ and VL; x86-64-v3 (avx2) AVX2, FMA, BMI2.
has() { for f in "$@"; do grep -qw "$f" /proc/cpuinfo || return 1; done; }
runs() {
  case $1 in
    avx512) has avx512f avx512bw avx512cd avx512dq avx512vl ;;
    avx2) has avx2 fma bmi2 ;;
    *) true ;;
  esac
}
native=generic
runs avx2 && native=avx2
runs avx512 && native=avx512
isas=${ISAS-avx2 avx512 generic}
[ "$isas" = 0 ] && isas=""
for isa in $isas; do
  [ "$isa" = "$native" ] && continue  # the main build's -march=native is this one
  dir="$build-$isa"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release $extra ${CMAKE_ARGS:-} -DCTGRAPH_ISA="$isa" \
    -DCTGRAPH_SANITIZE="$san" >/dev/null
  cmake --build "$dir" -j "$jobs" --target ctgraph_kernel_tests
  if runs "$isa"; then
    echo "test: kernel tests built for CTGRAPH_ISA=$isa ($dir)"
    ctest --test-dir "$dir" --output-on-failure -j "$jobs" -L kernels
  else
    echo "test: CTGRAPH_ISA=$isa builds; its kernel tests are not run (this CPU lacks it)"
  fi
done
