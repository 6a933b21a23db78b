// examples/translate: dates as people write them into ISO 8601, with an LSTM encoder-decoder and
// Bahdanau attention (model.hpp, --model lstm, the default) or a transformer encoder-decoder
// (transformer_model.hpp, --model transformer), trained with teacher forcing and Adam on generated dates.
//
//   translate [--model lstm|transformer] [--steps N] [--lr X] [--seed S] [--out DIR] [--eval-every K]
//             [--save-every K] [--stop-after K] [--resume FILE]
//   translate --translate --checkpoint DIR/model.safetensors [--beam N] < dates.txt
//
// Training runs --steps steps (by default 2000 for the LSTM, 600 for the transformer: each reaches 99%
// held-out and more) and draws batches of 64 dates from 1900-01-01 .. 2099-12-31 in ten formats and
// three letter cases (dates.hpp); a tenth of the days never train, and --heldout of them are scored
// every --eval-every steps by greedy decoding, exact match. Writes DIR/loss.csv (step, train_loss: the
// mean since the row before, heldout_acc), DIR/loss.svg, DIR/attention.svg (the attention weights of a
// few held-out dates: output characters against input characters; the transformer's are its last
// decoder layer's cross-attention, averaged over the heads) and DIR/model.safetensors (params under
// PyTorch's names, Adam's state, the step, the seed and the model in its metadata). A run is a function
// of its flags, and --resume continues a saved run bit for bit. Exits 1 when the final held-out
// accuracy is below --min-accuracy, 3 when training diverges (the first NaN or infinity stops it,
// naming the step), 2 when a file cannot be read or written or a checkpoint's model does not fit.
//
// --translate prints exactly one line per input line: the ISO date, or "error: ..." saying what is
// wrong with that line (empty, longer than the model reads, a character it does not know).
// --translate and --resume take the model from the checkpoint's metadata (a checkpoint without one
// is an LSTM's, written before there was a choice); a --model that differs is an error.
//
// run.hpp holds what is done with either model (the training loop, scoring, plots, translation).
#include <fmt/format.h>

#include <ctgraph/checkpoint.hpp>
#include <string>

#include "flags.hpp"
#include "model.hpp"
#include "run.hpp"
#include "transformer_model.hpp"

namespace {
// Trains or translates with Model, --steps defaulting to the model's.
template <class Model>
int run(translate_flags flags) {
  if (flags.steps == 0) flags.steps = Model::default_steps;
  return translate::run<Model>(flags);
}
}  // namespace

int main(int argc, char** argv) {
  translate_flags flags;
  if (auto exit_code = parse_flags(argc, argv, flags, translate::rows)) return *exit_code;

  // The model: the checkpoint's with --translate or --resume, else --model (lstm by default).
  std::string model = flags.model.empty() ? "lstm" : flags.model;
  const bool reads = flags.translate || !flags.resume.empty();
  if (reads) {
    const char* flag = flags.translate ? "--checkpoint" : "--resume";
    const std::string& file = flags.translate ? flags.checkpoint : flags.resume;
    std::string saved = "lstm";  // a checkpoint from before the "model" key
    try {
      for (const auto& [key, value] : ctgraph::load_metadata(file))
        if (key == "model") saved = value;
    } catch (const std::exception& e) {
      fmt::print(stderr, "translate: {}: {}\n", flag, e.what());
      return 2;
    }
    if (saved != translate::lstm_model::name && saved != translate::transformer_model::name) {
      fmt::print(stderr, "translate: {}: {}: unknown model \"{}\" in its metadata (lstm or transformer)\n", flag, file,
                 saved);
      return 2;
    }
    if (!flags.model.empty() && flags.model != saved) {
      fmt::print(stderr, "translate: --model {}, but {} {} holds a {} model\n", flags.model, flag, file, saved);
      return 2;
    }
    model = saved;
  }
  if (model == translate::transformer_model::name) return run<translate::transformer_model>(flags);
  return run<translate::lstm_model>(flags);
}
