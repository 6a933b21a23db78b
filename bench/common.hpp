// bench/common.hpp: shared machinery of the kernel benchmarks.
//   - peak_fma_gflops(threads): the machine's fp32 FMA peak, measured in this run by a small FMA loop;
//   - add(...): registers a Google Benchmark case and files it in a summary table (rows x implementations);
//   - run(argc, argv): runs the benchmarks, then prints the summary as markdown, with GFLOP/s, ms,
//     the ratio of the first implementation of each table to every other, and the share of peak FMA.
#pragma once

#include <functional>
#include <string>

namespace ctgraph::bench {

/// fp32 FMA peak in GFLOP/s with `threads` OpenMP threads (best of a few short runs).
double peak_fma_gflops(int threads);

/// One benchmark case: `setup` builds the case and returns the closure timed per iteration.
/// `flops` is the useful work of one iteration (for GFLOP/s). `column` is the implementation;
/// the first column added to a table is the one ratios are taken of.
void add(const std::string& table, const std::string& row, const std::string& column, int threads, double flops,
         std::function<std::function<void()>()> setup);

/// Runs the registered cases (Google Benchmark flags apply) and prints the summary tables.
int run(int argc, char** argv, const std::string& title);

/// Sets the thread count for ctgraph (OpenMP) and peers that were registered with set_threads_hook.
void set_threads(int threads);
void set_threads_hook(std::function<void(int)> hook);

}  // namespace ctgraph::bench
