// examples/addition/flags.cpp: the addition example's flags, parsed by CLI11.
#include "flags.hpp"

#include <CLI/CLI.hpp>

std::optional<int> parse_flags(int argc, char** argv, addition_flags& f) {
  CLI::App app{
      "A decoder-only transformer learns to add (437+589=1026). By default it trains on generated sums of "
      "operands up to --digits digits and writes OUT/loss.csv, loss.svg and model.safetensors; with --sample it "
      "reads sums from stdin instead and prints what the model writes."};
  app.add_option("--digits", f.digits, "Operands of at most this many digits")
      ->check(CLI::Range(2, 5))
      ->capture_default_str();
  app.add_option("--steps", f.steps,
                 "Training steps in all (batches of 64 sums); the learning rate decays until then (0: 500 per digit "
                 "of --digits, 4000 for --digits 5)")
      ->check(CLI::Range(0, 100'000'000))
      ->capture_default_str();
  app.add_option("--lr", f.lr, "Adam's peak learning rate (0: 1e-3, or 5e-4 for --digits 5)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option(
         "--seed", f.seed,
         "Seeds the training sums and the initial params; with --sample, the draws (line n draws with seed + n)")
      ->capture_default_str();
  app.add_option("--out", f.out, "Folder for loss.csv, loss.svg and model.safetensors")->capture_default_str();
  app.add_option("--eval-every", f.eval_every, "Score the held-out sums every K steps (one row of loss.csv each)")
      ->check(CLI::Range(1, 100'000'000))
      ->capture_default_str();
  app.add_option("--heldout", f.heldout, "Held-out sums to score (pairs never trained on), greedy, exact match")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  app.add_option("--min-accuracy", f.min_accuracy, "Exit with code 1 when the final held-out accuracy is below this")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  auto* sm = app.add_flag("--sample", f.sample,
                          "Sample: read sums from stdin, one a line (437+589 or 437+589=), and print one line for "
                          "each: the sum the model writes, or a line starting 'error:' saying what is wrong");
  auto* ck = app.add_option("--checkpoint", f.checkpoint, "With --sample: the model (a run's model.safetensors)")
                 ->check(CLI::ExistingFile);
  app.add_option("--temperature", f.temperature,
                 "With --sample: 0 writes the likeliest digit each time (greedy); above 0 draws each from "
                 "softmax(logits / temperature)")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  app.add_option("--top-k", f.top_k, "With --sample: draw among the k likeliest tokens only (0: all)")
      ->check(CLI::Range(0, 14))
      ->capture_default_str();
  app.add_option("--samples", f.samples, "With --sample: answers drawn for each line")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  sm->needs(ck);
  ck->needs(sm);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return std::nullopt;
}
