// ctgraph/train.hpp: training utilities: mini-batches, a progress bar, a CSV metrics log, plots.
//
//   #include <ctgraph/train.hpp>
//   cg::batches order(n, 32, {.seed = 1});             // fixed-size batches, shuffled by seed
//   cg::progress bar(epochs, {.examples_per_step = n});
//   cg::metrics_log log("loss.csv", {"epoch", "loss"});
//   cg::plot_curves("loss.csv", {.curves = {{"loss"}}}, "loss.svg");
#pragma once
#include "train/batches.hpp"
#include "train/metrics_log.hpp"
#include "train/plot.hpp"
#include "train/progress.hpp"
