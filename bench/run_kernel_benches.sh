#!/bin/sh
# Regenerates the kernel tables and plots of docs/performance.md (GEMM, attention, attention memory).
#   [CTGRAPH_ISA=native|avx2|avx512|generic] bench/run_kernel_benches.sh [build-dir] [out-dir]
# CTGRAPH_ISA picks the kernels' instruction set (default native); one build dir per ISA.
# Writes <out-dir>/kernels.md (markdown tables), *.csv (raw figures) and, if gnuplot is installed,
# gemm.svg and attention.svg. Run it on an otherwise idle machine: the 2-thread rows need both cores.
# On a shared machine, CTGRAPH_BENCH_CLOCK=cpu times the 1-thread rows by the thread's CPU clock.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build-bench}
out=${2:-$build/kernel-results}
md="$out/kernels.md"
if [ "${CTGRAPH_ISA:-native}" = avx512 ] && ! grep -qw avx512f /proc/cpuinfo; then
  echo "run_kernel_benches.sh: CTGRAPH_ISA=avx512, but this CPU has no AVX-512" >&2
  exit 1
fi
if [ -z "${PLOTS_ONLY:-}" ]; then  # PLOTS_ONLY=1: redraw the plots from an earlier run's CSV files
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCTGRAPH_BENCH=ON -DCTGRAPH_ISA="${CTGRAPH_ISA:-native}" >/dev/null
cmake --build "$build" -j1 --target bench_gemm bench_attention bench_attention_memory
mkdir -p "$out"
# OpenMP runs with libgomp's default wait policy (spin, then sleep), which is what a user's program
# gets; OpenBLAS keeps its own threads spinning too. On a machine where another process holds a
# core, export OMP_WAIT_POLICY=passive: a spinning worker whose core is taken wakes a scheduler
# slice late (~8 ms) at every parallel region. libtorch uses the same libgomp.
{
  echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores;" \
    "SIMD: $(grep -q avx512f /proc/cpuinfo && echo AVX-512 || (grep -q avx2 /proc/cpuinfo && echo AVX2+FMA, 256-bit || echo SSE));" \
    "kernels built for CTGRAPH_ISA=${CTGRAPH_ISA:-native}."
  echo "Compiler: $(${CXX:-c++} --version | head -1). OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-default}," \
    "CTGRAPH_BENCH_CLOCK=${CTGRAPH_BENCH_CLOCK:-real}. Date: $(date -u +%Y-%m-%d)."
} >"$md"

# Each case keeps its best repetition (GEMM_ARGS / ATTENTION_ARGS override, e.g. a --benchmark_filter).
CTGRAPH_BENCH_CSV="$out/gemm.csv" "$build/bench/bench_gemm" ${GEMM_ARGS:---benchmark_repetitions=5} >"$out/gemm.txt" 2>&1
sed -n '/^## gemm/,$p' "$out/gemm.txt" >>"$md"
CTGRAPH_BENCH_CSV="$out/attention.csv" "$build/bench/bench_attention" ${ATTENTION_ARGS:---benchmark_repetitions=2} \
  >"$out/attention.txt" 2>&1
sed -n '/^## attention/,$p' "$out/attention.txt" >>"$md"

{
  echo
  echo "### attention memory (forward+backward, B=1 H=1 d=64, added peak RSS beyond inputs and outputs)"
  echo
  echo '```'
  for n in 2048 16384; do
    for impl in ctgraph unfused torch-naive torch-sdpa; do
      "$build/bench/bench_attention_memory" "$impl" "$n" 2>&1 || true
    done
  done
  echo '```'
} >>"$md"
fi

if command -v gnuplot >/dev/null; then
  # gemm: square fp32, 1 thread; attention: forward, non-causal, 1 thread.
  awk -F';' '$1=="sgemm square" && $4==1 {split($2,a,"x"); print a[1], $6 > "'"$out"'/gemm_" ($3=="ctgraph" ? "ctgraph" : "openblas") ".dat"}' "$out/gemm.csv"
  awk -F';' '$1 ~ /^attention forward \(/ && $4==1 {split($2,a,"[= ]"); f=$3; gsub(/ /,"_",f); print a[2], $6 > "'"$out"'/attn_" f ".dat"}' "$out/attention.csv"
  peak1=$(awk -F';' '$4==1 {print $7; exit}' "$out/attention.csv")
  gnuplot <<GP
set terminal svg size 720,420 font "sans,11" noenhanced
set grid
set key outside right
set output "$out/gemm.svg"
set title "sgemm, square, 1 thread"
set xlabel "M = N = K"; set ylabel "GFLOP/s"
set yrange [0:*]
plot "$out/gemm_ctgraph.dat" w lp lw 2 t "ctgraph", "$out/gemm_openblas.dat" w lp lw 2 t "OpenBLAS", $(awk -F';' '$4==1 {print $7; exit}' "$out/gemm.csv") w l lw 1.5 lc rgb "black" t "peak FMA"
set output "$out/attention.svg"
set title "attention forward, B=4 H=8 d=64, non-causal, 1 thread"
set xlabel "N = q_len = kv_len"; set logscale x 2
plot for [f in "ctgraph_fused ctgraph_unfused torch_naive torch_sdpa"] "$out/attn_".f.".dat" w lp lw 2 t f, $peak1 w l lw 1.5 lc rgb "black" t "peak FMA"
GP
fi
echo "wrote $md"
