#!/bin/sh
# Runs bench_train (libtorch's LSTM training step, ctgraph's LSTM/GRU gate kernels) at 1 and 2 threads.
#   bench/run_train_bench.sh [build-dir] [out-dir] [Google Benchmark flags...]
# Writes <out-dir>/train-t1.txt and train-t2.txt (console output, and .json beside them).
# libtorch runs under tcmalloc (libtcmalloc_minimal.so.4, Debian package libtcmalloc-minimal4), preloaded
# for the whole process: libtorch allocates and frees every tensor of a step at every step, and with glibc's
# malloc that costs it (lstm/libtorch at 1 thread: 16-19 ms per step under tcmalloc, 19.8 ms without, on a
# shared AMD EPYC). Without tcmalloc the script stops, unless ALLOW_GLIBC_MALLOC=1.
# Run it on an otherwise idle machine: the 2-thread rows need both cores. On a shared machine export
# OMP_WAIT_POLICY=passive: libgomp's spinning workers then lose a scheduler slice at every parallel region
# (lstm/libtorch at 2 threads, load average 3: 500 ms per step by default, 18.6 ms passive).
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build-bench}
out=${2:-$build/train-results}
[ $# -ge 2 ] && shift 2 || shift $#
tcmalloc=$( (ldconfig -p 2>/dev/null || true) | sed -n 's/.*libtcmalloc_minimal\.so\.4 .*=> //p' | head -1)
if [ -z "$tcmalloc" ]; then
  if [ "${ALLOW_GLIBC_MALLOC:-0}" != 1 ]; then
    echo "run_train_bench.sh: libtcmalloc_minimal.so.4 not found (apt-get install libtcmalloc-minimal4)," \
      "or set ALLOW_GLIBC_MALLOC=1" >&2
    exit 1
  fi
  echo "run_train_bench.sh: no tcmalloc: libtorch runs with glibc's malloc" >&2
fi
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCTGRAPH_BENCH=ON >/dev/null
cmake --build "$build" -j2 --target bench_train
mkdir -p "$out"
preload=${tcmalloc:+$tcmalloc${LD_PRELOAD:+:$LD_PRELOAD}}
preload=${preload:-${LD_PRELOAD:-}}
echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; allocator: ${tcmalloc:-glibc malloc};" \
  "OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-default}; load average: $(cut -d' ' -f1-3 /proc/loadavg)."
for t in 1 2; do
  OMP_NUM_THREADS=$t LD_PRELOAD=$preload \
    "$build/bench/bench_train" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
    --benchmark_out="$out/train-t$t.json" --benchmark_out_format=json "$@" 2>&1 | tee "$out/train-t$t.txt"
done
echo "wrote $out/train-t1.txt, $out/train-t2.txt"
