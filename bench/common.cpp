// bench/common.cpp: peak FMA loop, case registry, markdown summary.
#include "common.hpp"

#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>

#include "ops/kernels/simd.hpp"

namespace ctgraph::bench {
namespace {

using V = kernels::simd::vfloat;
constexpr int lanes = kernels::simd::width<float>;

// 12 independent FMA chains: enough to cover latency (4-5 cycles) x 2 FMA pipes.
[[gnu::noinline]] float fma_loop(long iters, float seed) {
  V acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = kernels::simd::splat(seed + 0.001f * i);
  const V m = kernels::simd::splat(0.999999f), a = kernels::simd::splat(1e-7f);
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = acc[i] * m + a;
  }
  float s = 0;
  for (int i = 0; i < 12; ++i) s += kernels::simd::hsum<float>(acc[i]);
  return s;
}

struct entry {
  std::string table, row, column;
  int threads;
  double flops;
  double seconds = -1;  // per iteration
};
std::vector<entry>& entries() {
  static std::vector<entry> e;
  return e;
}
std::function<void(int)>& hook() {
  static std::function<void(int)> h;
  return h;
}

bool cpu_clock() {
  static const bool cpu = [] {
    const char* c = std::getenv("CTGRAPH_BENCH_CLOCK");
    return c && std::string(c) == "cpu";
  }();
  return cpu;
}

class collecting_reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& r : runs) {
      if (r.error_occurred || r.run_type != Run::RT_Iteration) continue;
      const std::string name = r.benchmark_name();
      for (auto& e : entries()) {
        const std::string key = e.table + "/" + e.row + "/" + e.column;
        if (name.rfind(key, 0) == 0) {
          // 1-thread rows may be timed by the thread's CPU clock (CTGRAPH_BENCH_CLOCK=cpu): on a shared
          // machine it leaves out the time the thread waited for a core. Multi-thread rows: wall clock.
          const bool cpu = e.threads == 1 && cpu_clock();
          const double s = (cpu ? r.cpu_accumulated_time : r.real_accumulated_time) / double(r.iterations);
          e.seconds = e.seconds < 0 ? s : std::min(e.seconds, s);
        }
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }
};

}  // namespace

double peak_fma_gflops(int threads) {
  const long iters = 20'000'000;
  double best = 0;
  for (int rep = 0; rep < 10; ++rep) {  // best of 10 runs of ~40 ms: robust to a briefly busy core
    const auto t0 = std::chrono::steady_clock::now();
    float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += fma_loop(iters, 1.0f + omp_get_thread_num());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    benchmark::DoNotOptimize(sink);
    best = std::max(best, 2.0 * 12 * lanes * double(iters) * threads / s / 1e9);
  }
  return best;
}

void set_threads_hook(std::function<void(int)> h) { hook() = std::move(h); }
void set_threads(int threads) {
  omp_set_num_threads(threads);
  if (hook()) hook()(threads);
}

void add(const std::string& table, const std::string& row, const std::string& column, int threads, double flops,
         std::function<std::function<void()>()> setup) {
  entries().push_back({table, row, column, threads, flops});
  const std::string name = table + "/" + row + "/" + column;
  benchmark::RegisterBenchmark(name.c_str(),
                               [setup, threads, flops](benchmark::State& state) {
                                 set_threads(threads);
                                 auto body = setup();
                                 body();  // warm-up (pack buffers, pages)
                                 for (auto _ : state) body();
                                 state.counters["GFLOPS"] = benchmark::Counter(
                                     flops, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
                               })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime()
      ->MinTime(0.3);
}

int run(int argc, char** argv, const std::string& title) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::map<int, double> peak;
  for (const auto& e : entries()) peak[e.threads] = 0;
  for (auto& [t, p] : peak) p = peak_fma_gflops(t);
  for (const auto& [t, p] : peak)
    std::printf("peak FMA (fp32, %d-lane vectors), %d thread(s): %.1f GFLOP/s\n", lanes, t, p);
  collecting_reporter rep;
  benchmark::RunSpecifiedBenchmarks(&rep);
  for (auto& [t, p] : peak) p = std::max(p, peak_fma_gflops(t));  // and again after the run: keep the best

  // Markdown summary: one table per `table`, rows in registration order, columns per implementation.
  std::printf("\n## %s\n", title.c_str());
  for (const auto& [t, p] : peak) std::printf("\npeak FMA, %d thread(s): %.1f GFLOP/s", t, p);
  std::printf("\n");
  if (cpu_clock()) std::printf("\n1-thread rows: thread CPU time (CTGRAPH_BENCH_CLOCK=cpu); other rows: wall time.\n");
  if (peak.count(1) && peak.count(2) && peak[2] < 1.6 * peak[1])
    std::printf("\n**warning: the 2-thread FMA peak is not twice the 1-thread one: the machine was busy.**\n");
  std::vector<std::string> tables;
  for (const auto& e : entries())
    if (std::find(tables.begin(), tables.end(), e.table) == tables.end()) tables.push_back(e.table);
  for (const auto& tb : tables) {
    std::vector<std::string> cols, rows;
    std::vector<std::pair<std::string, int>> row_keys;
    for (const auto& e : entries()) {
      if (e.table != tb || e.seconds <= 0) continue;  // not run (filtered out)
      if (std::find(cols.begin(), cols.end(), e.column) == cols.end()) cols.push_back(e.column);
      const std::pair<std::string, int> rk{e.row, e.threads};
      if (std::find(row_keys.begin(), row_keys.end(), rk) == row_keys.end()) row_keys.push_back(rk);
    }
    if (cols.empty()) continue;
    auto find = [&](const std::string& row, const std::string& col) -> const entry* {
      for (const auto& e : entries())
        if (e.table == tb && e.row == row && e.column == col && e.seconds > 0) return &e;
      return nullptr;
    };
    std::printf("\n### %s\n\n| case |", tb.c_str());
    for (const auto& c : cols) std::printf(" %s ms | %s GFLOP/s |", c.c_str(), c.c_str());
    for (std::size_t i = 1; i < cols.size(); ++i) std::printf(" %s / %s |", cols[0].c_str(), cols[i].c_str());
    std::printf(" %s %% of peak FMA |\n|---|", cols[0].c_str());
    for (std::size_t i = 0; i < 2 * cols.size() + cols.size(); ++i) std::printf("---:|");
    std::printf("\n");
    for (const auto& [row, threads] : row_keys) {
      std::printf("| %s |", row.c_str());
      for (const auto& c : cols) {
        if (const entry* e = find(row, c))
          std::printf(" %.3f | %.1f |", e->seconds * 1e3, e->flops / e->seconds / 1e9);
        else
          std::printf(" - | - |");
      }
      const entry* first = find(row, cols[0]);
      for (std::size_t i = 1; i < cols.size(); ++i) {
        const entry* e = find(row, cols[i]);
        if (first && e)
          std::printf(" %.2fx |", e->seconds / first->seconds);
        else
          std::printf(" - |");
      }
      if (first)
        std::printf(" %.0f%% |\n", 100 * first->flops / first->seconds / 1e9 / peak[threads]);
      else
        std::printf(" - |\n");
    }
  }
  if (const char* csv = std::getenv("CTGRAPH_BENCH_CSV")) {  // raw figures for plots
    if (std::FILE* f = std::fopen(csv, "w")) {
      std::fprintf(f, "table;case;implementation;threads;ms;gflops;peak_gflops\n");
      for (const auto& e : entries())
        if (e.seconds > 0)
          std::fprintf(f, "%s;%s;%s;%d;%.4f;%.2f;%.1f\n", e.table.c_str(), e.row.c_str(), e.column.c_str(), e.threads,
                       e.seconds * 1e3, e.flops / e.seconds / 1e9, peak[e.threads]);
      std::fclose(f);
    }
  }
  std::fflush(stdout);
  benchmark::Shutdown();
  return 0;
}

}  // namespace ctgraph::bench
