// examples/translate/flags.cpp: the translate example's flags, parsed by CLI11.
#include "flags.hpp"

#include <CLI/CLI.hpp>

std::optional<int> parse_flags(int argc, char** argv, translate_flags& f, int max_beam) {
  CLI::App app{
      "Translates dates as people write them (\"Thu 5 Nov 2026\", \"05/11/2026\", ...) into ISO 8601 "
      "(2026-11-05): an LSTM encoder-decoder with Bahdanau attention, ctgraph's flagship example, or a transformer "
      "encoder-decoder (--model transformer). By default it trains on generated dates and writes OUT/loss.csv, "
      "loss.svg, attention.svg and model.safetensors; with --translate it reads dates from stdin instead."};
  app.add_option("--model", f.model,
                 "The model to train: lstm (the default) or transformer; --translate and --resume take it from the "
                 "checkpoint, and a --model that differs is an error")
      ->check(CLI::IsMember({"lstm", "transformer"}));
  app.add_option("--steps", f.steps,
                 "Training steps in all (batches of 64 dates); the learning rate decays until then (default: 2000 "
                 "with --model lstm, 600 with --model transformer)")
      ->check(CLI::Range(1, 100'000'000));
  app.add_option("--stop-after", f.stop_after,
                 "Stop after this step, saving OUT/model.safetensors, to continue with --resume (0: run to --steps)")
      ->check(CLI::Range(0, 100'000'000));
  app.add_option("--lr", f.lr, "Adam's peak learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seed", f.seed, "Seeds the training dates and the initial params")->capture_default_str();
  app.add_option("--out", f.out, "Folder for loss.csv, loss.svg, attention.svg and model.safetensors")
      ->capture_default_str();
  app.add_option("--eval-every", f.eval_every, "Score the held-out dates every K steps (one row of loss.csv each)")
      ->check(CLI::Range(1, 100'000'000))
      ->capture_default_str();
  app.add_option("--heldout", f.heldout, "Held-out dates to score (dates never trained on), greedy, exact match")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  app.add_option("--save-every", f.save_every,
                 "Also save OUT/model.safetensors every K steps, a multiple of --eval-every (0: at the end only)")
      ->check(CLI::Range(0, 100'000'000))
      ->capture_default_str();
  app.add_option("--resume", f.resume,
                 "Continue the run saved in this checkpoint (params, Adam's state, step), bit for bit: same --seed, "
                 "--lr and --steps as the run it continues")
      ->check(CLI::ExistingFile);
  app.add_option("--min-accuracy", f.min_accuracy, "Exit with code 1 when the final held-out accuracy is below this")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  auto* tr = app.add_flag("--translate", f.translate,
                          "Translate: read dates from stdin, one a line, and print one line for each: its ISO 8601 "
                          "form, or a line starting 'error:' saying what is wrong with it");
  auto* ck = app.add_option("--checkpoint", f.checkpoint, "With --translate: the model (a run's model.safetensors)")
                 ->check(CLI::ExistingFile);
  app.add_option("--beam", f.beam, "With --translate: beam search of this width (1: greedy decoding)")
      ->check(CLI::Range(1, max_beam))
      ->capture_default_str();
  tr->needs(ck);
  ck->needs(tr);
  try {
    app.parse(argc, argv);
    if (f.save_every % f.eval_every != 0)
      throw CLI::ValidationError("--save-every", "must be a multiple of --eval-every (" + std::to_string(f.eval_every) +
                                                     "), so that a resumed run's "
                                                     "loss.csv is the one of not stopping");
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return std::nullopt;
}
