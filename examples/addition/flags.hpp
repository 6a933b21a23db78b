// examples/addition/flags.hpp: the addition example's command line, parsed by CLI11 in flags.cpp
// (a translation unit of its own: CLI11 compiles slowly, and needs no optimisation).
#pragma once
#include <cstdint>
#include <optional>
#include <string>

struct addition_flags {
  // Training.
  int digits = 3;          // operands of at most this many digits (2 to 5)
  int steps = 0;           // training steps in all (0: the default of --digits)
  double lr = 0;           // Adam's peak learning rate, cosine schedule after a warm-up (0: the default of --digits)
  std::uint64_t seed = 1;  // seeds the problems and the initial params (with --sample: the draws)
  std::string out = "addition-out";  // folder for loss.csv, loss.svg, model.safetensors
  int eval_every = 250;              // score the held-out problems every K steps (a row of loss.csv)
  int heldout = 2000;                // held-out problems scored (exact match, greedy)
  double min_accuracy = 0.99;        // exit code 1 when the final held-out accuracy is below it
  // Sampling.
  bool sample = false;     // read sums from stdin, one a line, and print what the model writes
  std::string checkpoint;  // the model to sample from (a model.safetensors of a run)
  double temperature = 0;  // 0: greedy; above: sampled from softmax(logits / temperature)
  int top_k = 0;           // sample among the k likeliest tokens (0: all)
  int samples = 1;         // answers drawn per line
};

// Parses argv into `f`. Returns the code to exit with after --help or a bad flag (CLI11 has
// printed why), or nothing to go on.
std::optional<int> parse_flags(int argc, char** argv, addition_flags& f);
