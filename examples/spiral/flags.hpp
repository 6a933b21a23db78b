// examples/spiral/flags.hpp: the spiral example's command line. CLI11 parses it in
// flags.cpp, a translation unit of its own: the header-only CLI11 takes longer to compile
// than the model, its gradient and its plan together.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

struct spiral_flags {
  int epochs = 300;                // passes over the training set, one full-batch step each
  double lr = 1e-2;                // Adam's learning rate
  std::uint64_t seed = 1;          // seeds the data, its shuffle and the initial params
  std::string out = "spiral-out";  // folder for loss.csv, loss.svg, spiral.dot, checkpoints
  int save_every = 0;              // save a checkpoint every K epochs and at the end (0: never)
  std::string resume;              // start from this checkpoint's params and Adam state (empty: from init)
  bool distributed = false;        // one rank of an MPI job (mpirun -np N): the training set split over N ranks
};

// Parses argv into `f`. Returns the code to exit with after --help or a bad flag (CLI11 has
// printed why), or nothing to go on.
std::optional<int> parse_flags(int argc, char** argv, spiral_flags& f);
