// examples/translate/flags.hpp: the translate example's command line, parsed by CLI11 in flags.cpp
// (a translation unit of its own: CLI11 compiles slowly, and needs no optimisation).
#pragma once
#include <cstdint>
#include <optional>
#include <string>

struct translate_flags {
  std::string model;  // lstm or transformer; empty: the checkpoint's with --translate or --resume, else lstm
  // Training.
  int steps = 0;                      // training steps in all, the schedule's end (0: the model's, 2000 or 600)
  int stop_after = 0;                 // stop after this step, with a checkpoint, to --resume later (0: at --steps)
  double lr = 3e-3;                   // Adam's peak learning rate (cosine schedule after a warm-up)
  std::uint64_t seed = 1;             // seeds the data and the initial params
  std::string out = "translate-out";  // folder for loss.csv, loss.svg, attention.svg, model.safetensors
  int eval_every = 100;               // score the held-out dates every K steps (a row of loss.csv)
  int heldout = 1000;                 // held-out dates scored (exact match, greedy)
  int save_every = 0;                 // also save OUT/model.safetensors every K steps (0: at the end only)
  std::string resume;                 // continue the run of this checkpoint, bit for bit
  double min_accuracy = 0.99;         // exit code 1 when the final held-out accuracy is below it
  // Translating.
  bool translate = false;  // read dates from stdin, one a line, and print their ISO 8601 form
  std::string checkpoint;  // the model to translate with (a model.safetensors of a run)
  int beam = 1;            // beam width (1: greedy decoding)
};

// Parses argv into `f`. Returns the code to exit with after --help or a bad flag (CLI11 has
// printed why), or nothing to go on.
std::optional<int> parse_flags(int argc, char** argv, translate_flags& f, int max_beam);
