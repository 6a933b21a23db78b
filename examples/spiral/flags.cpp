// examples/spiral/flags.cpp: the spiral example's flags, parsed by CLI11.
#include "flags.hpp"

#include <CLI/CLI.hpp>

std::optional<int> parse_flags(int argc, char** argv, spiral_flags& f) {
  CLI::App app{"Trains an MLP (2-64-64-3, tanh) on a 3-arm spiral with Adam: ctgraph's example."};
  app.add_option("--epochs", f.epochs, "Passes over the training set (each one full-batch step)")
      ->check(CLI::Range(1, 100'000'000))
      ->capture_default_str();
  app.add_option("--lr", f.lr, "Adam's learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seed", f.seed, "Seeds the data, its shuffle and the initial params")->capture_default_str();
  app.add_option("--out", f.out, "Folder for loss.csv, loss.svg, spiral.dot and checkpoints")->capture_default_str();
  app.add_option("--save-every", f.save_every,
                 "Save OUT/checkpoint.safetensors every K epochs and at the end (0: never)")
      ->check(CLI::Range(0, 100'000'000))
      ->capture_default_str();
  app.add_option("--resume", f.resume,
                 "Start from this checkpoint (written by --save-every: params and Adam's state), "
                 "then run --epochs more epochs")
      ->check(CLI::ExistingFile);
  app.add_flag("--distributed", f.distributed,
               "Run as one rank of an MPI job (mpirun -np N spiral --distributed, N = 1, 2 or 4): each rank "
               "trains on its share of the training set, gradients averaged over ranks; rank 0 prints and writes");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return std::nullopt;
}
