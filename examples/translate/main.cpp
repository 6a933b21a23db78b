// examples/translate: dates as people write them into ISO 8601, with an LSTM encoder-decoder and
// Bahdanau attention (model.hpp), trained with teacher forcing and Adam on generated dates.
//
//   translate [--steps N] [--lr X] [--seed S] [--out DIR] [--eval-every K] [--save-every K]
//             [--stop-after K] [--resume FILE]
//   translate --translate --checkpoint DIR/model.safetensors [--beam N] < dates.txt
//
// Training draws batches of 64 dates from 1900-01-01 .. 2099-12-31 in ten formats and three letter
// cases (dates.hpp); a tenth of the days never train, and --heldout of them are scored every
// --eval-every steps by greedy decoding, exact match. Writes DIR/loss.csv (step, train_loss: the
// mean since the row before, heldout_acc), DIR/loss.svg, DIR/attention.svg (the attention weights
// of a few held-out dates: output characters against input characters) and DIR/model.safetensors
// (params under PyTorch's names, Adam's state, the step and seed in its metadata). A run is a
// function of its flags, and --resume continues a saved run bit for bit. Exits 1 when the final
// held-out accuracy is below --min-accuracy, 3 when training diverges (the first NaN or infinity
// stops it, naming the step).
//
// --translate prints exactly one line per input line: the ISO date, or "error: ..." saying what is
// wrong with that line (empty, longer than the model reads, a character it does not know).
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <ctgraph/train.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "dates.hpp"
#include "flags.hpp"
#include "model.hpp"

namespace fs = std::filesystem;
using namespace translate;

namespace {
// The training step, the encoder and one decoder step: three programs, one set of params.
auto compile_training() { return cg::compile(training::loss, training::logits, cg::grad(training::loss)); }
auto compile_encoder() { return cg::compile(encoding::memory, encoding::h0, encoding::c0); }
auto compile_decoder() { return cg::compile(decoding::h1, decoding::c1, decoding::logits, decoding::weights); }
using training_step = decltype(compile_training());
using params_t = decltype(cg::parameters_of(std::declval<const training_step&>()));

// One translation: the ISO characters' ids, and, when asked for, the attention weights of each
// output step ([steps, S], the end token's step included).
struct translation {
  std::vector<int> ids;
  std::vector<float> weights;
};

// Translates up to `rows / width` inputs (source ids, each valid): the encoder runs once over them
// all, then the decoder step runs in a loop, greedy (width 1) or a beam search of `width`.
class translator {
 public:
  explicit translator(params_t& params) : params_(params) {}

  // with_weights: keep each step's attention weights (greedy only: a beam's rows move between
  // hypotheses, and its best one ended steps before the search did).
  std::vector<translation> run(const std::vector<std::vector<int>>& inputs, int width, bool with_weights = false) {
    const int groups = static_cast<int>(inputs.size()), used = groups * width;
    std::vector<int> src(S * rows, dates::pad), len(rows, 0);
    for (int g = 0; g < groups; ++g)
      for (int k = 0; k < width; ++k) {
        const int r = g * width + k;
        len[r] = static_cast<int>(inputs[g].size());
        for (int t = 0; t < len[r]; ++t) src[t * rows + r] = inputs[g][t];
      }
    auto e = encoder_.run(params_, cg::feed<"src">(src), cg::feed<"src_len">(len));
    const auto memory = e[encoding::memory].span();
    std::vector<float> h(e[encoding::h0].begin(), e[encoding::h0].end()),
        c(e[encoding::c0].begin(), e[encoding::c0].end());
    std::vector<float> h_in(h.size()), c_in(c.size());
    std::vector<int> y(rows, dates::pad);
    std::vector<std::vector<float>> seen(with_weights && width == 1 ? rows : 0);  // each row's weights so far
    auto step = [&](std::span<const int> tokens, std::span<const int> parents, std::span<float> scores) {
      for (int r = 0; r < used; ++r) {  // row r continues row parents[r]: its state first
        std::copy_n(h.begin() + parents[r] * H, H, h_in.begin() + r * H);
        std::copy_n(c.begin() + parents[r] * H, H, c_in.begin() + r * H);
        y[r] = tokens[r];
      }
      auto o = decoder_.run(params_, cg::feed<"y">(y), cg::feed<"h">(h_in), cg::feed<"c">(c_in),
                            cg::feed<"memory">(memory), cg::feed<"src_len">(len));
      std::copy_n(o[decoding::logits].begin(), used * Vt, scores.begin());
      std::copy(o[decoding::h1].begin(), o[decoding::h1].end(), h.begin());
      std::copy(o[decoding::c1].begin(), o[decoding::c1].end(), c.begin());
      const float* w = o[decoding::weights].data();
      for (int r = 0; r < static_cast<int>(seen.size()) && r < used; ++r)
        seen[r].insert(seen[r].end(), w + r * S, w + (r + 1) * S);
    };
    const cg::decode_options opts{.max_steps = T, .start = dates::bos, .end = dates::eos};
    std::vector<translation> out(groups);
    if (width == 1) {
      const auto ids = cg::greedy_decode(used, Vt, opts, step);
      for (int g = 0; g < groups; ++g) out[g] = {ids[g], seen.empty() ? std::vector<float>() : seen[g]};
    } else {
      const auto best = cg::beam_search(groups, width, Vt, opts, step);
      for (int g = 0; g < groups; ++g) out[g].ids = best[g].front().tokens;
    }
    return out;
  }

 private:
  params_t& params_;
  decltype(compile_encoder()) encoder_ = compile_encoder();
  decltype(compile_decoder()) decoder_ = compile_decoder();
};

// Exact match of greedy decoding on the first n held-out dates.
double heldout_accuracy(translator& tr, const std::vector<dates::example>& heldout) {
  int right = 0;
  for (std::size_t first = 0; first < heldout.size(); first += rows) {
    std::vector<std::vector<int>> inputs;
    for (std::size_t k = first; k < std::min(heldout.size(), first + rows); ++k)
      inputs.push_back(dates::encode_source(heldout[k].text).ids);
    const auto out = tr.run(inputs, 1);
    for (std::size_t k = 0; k < out.size(); ++k)
      right += dates::decode_target(out[k].ids.data(), static_cast<int>(out[k].ids.size())) == heldout[first + k].iso;
  }
  return static_cast<double>(right) / static_cast<double>(heldout.size());
}

// --translate: one output line per input line.
int translate_stdin(params_t& params, int beam) {
  translator tr(params);
  std::string line;
  while (std::getline(std::cin, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();  // a file written on Windows
    const dates::encoded e = dates::encode_source(line);
    if (!e.error.empty()) {
      fmt::print("error: {}\n", e.error);
    } else {
      const auto out = tr.run({e.ids}, beam);
      fmt::print("{}\n", dates::decode_target(out[0].ids.data(), static_cast<int>(out[0].ids.size())));
    }
    std::fflush(stdout);  // a line out for each line in, as it comes
  }
  return 0;
}

// attention.svg: a few held-out dates' attention weights, output characters against input characters.
void plot_attention(translator& tr, const std::vector<dates::example>& heldout, const fs::path& image) {
  std::vector<cg::heatmap> maps;
  std::vector<std::vector<int>> inputs;
  std::vector<int> shown;
  for (int f = 0; f < dates::formats && shown.size() < 4; f += 3)  // formats 0, 3, 6 and 9
    for (std::size_t k = 0; k < heldout.size(); ++k)
      if (heldout[k].format == f) {
        shown.push_back(static_cast<int>(k));
        inputs.push_back(dates::encode_source(heldout[k].text).ids);
        break;
      }
  const auto out = tr.run(inputs, 1, true);
  for (std::size_t i = 0; i < shown.size(); ++i) {
    const int n_in = static_cast<int>(inputs[i].size()), n_out = static_cast<int>(out[i].weights.size()) / S;
    cg::heatmap m;
    m.plot.rows = n_out, m.plot.cols = n_in;
    for (int t = 0; t < n_out; ++t) {
      m.values.insert(m.values.end(), out[i].weights.begin() + t * S, out[i].weights.begin() + t * S + n_in);
      m.plot.row_labels.push_back(t < static_cast<int>(out[i].ids.size()) ? dates::target_char(out[i].ids[t])
                                                                          : std::string("end"));
    }
    for (int id : inputs[i]) m.plot.col_labels.push_back(dates::source_char(id));
    m.plot.title = heldout[shown[i]].text;
    m.plot.range = cg::axis_range{0, 1};
    maps.push_back(std::move(m));
  }
  const cg::plot_result r =
      cg::plot_heatmaps(maps, {.columns = 2, .title = "attention: output (rows) over input (columns)"}, image);
  if (!r) fmt::print("note: {}\n", r.message);
}

// loss.csv without its rows after step `step`: what a resumed run continues from.
void keep_rows_until(const fs::path& csv, long step) {
  std::ifstream in(csv);
  if (!in) return;
  std::string kept, line;
  bool header = true;
  while (std::getline(in, line)) {
    if (header || std::stol(line.substr(0, line.find(','))) <= step) kept += line + '\n';
    header = false;
  }
  in.close();
  std::ofstream(csv, std::ios::trunc) << kept;
}
}  // namespace

int main(int argc, char** argv) {
  translate_flags flags;
  if (auto exit_code = parse_flags(argc, argv, flags, rows)) return *exit_code;

  auto step = compile_training();
  auto params = cg::parameters_of(step);

  if (flags.translate) {
    try {
      cg::load(params, flags.checkpoint);  // the params; Adam's state, if saved, is not needed
    } catch (const std::exception& e) {
      fmt::print(stderr, "translate: --checkpoint: {}\n", e.what());
      return 2;
    }
    return translate_stdin(params, flags.beam);
  }

  const std::uint64_t seed = flags.seed;
  cg::init(params, seed);
  cg::adam opt(params, {.lr = flags.lr});
  const cg::cosine_warmup_lr schedule{.lr = flags.lr,
                                      .warmup_steps = std::min(100, flags.steps / 10),
                                      .total_steps = flags.steps,
                                      .min_lr = flags.lr / 20};
  long done = 0;  // steps done before this run
  if (!flags.resume.empty()) {
    try {
      cg::load(params, opt, flags.resume);
      for (const auto& [key, value] : cg::load_metadata(flags.resume))
        if (key == "step") done = std::stol(value);
    } catch (const std::exception& e) {
      fmt::print(stderr, "translate: --resume: {}\n", e.what());
      return 2;
    }
    fmt::print("resumed from {} after step {}\n", flags.resume, done);
  }
  const long last = flags.stop_after > 0 ? std::min(flags.stop_after, flags.steps) : flags.steps;

  const fs::path out = flags.out;
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) {
    fmt::print(stderr, "translate: cannot create {}: {}\n", out.string(), ec.message());
    return 2;
  }
  const fs::path csv = out / "loss.csv", svg = out / "loss.svg", heat = out / "attention.svg",
                 checkpoint = out / "model.safetensors";
  if (!flags.resume.empty()) keep_rows_until(csv, done);
  std::optional<cg::metrics_log> metrics;
  try {
    metrics.emplace(csv, std::vector<std::string>{"step", "train_loss", "heldout_acc"},
                    cg::metrics_log_options{.append = !flags.resume.empty()});
  } catch (const std::exception& e) {
    fmt::print(stderr, "translate: {}\n", e.what());
    return 2;
  }

  std::vector<dates::example> heldout;
  for (int k = 0; k < flags.heldout; ++k) heldout.push_back(dates::draw(seed, 1, k, true));
  translator tr(params);

  fmt::print(
      "translate: dates into ISO 8601; bidirectional LSTM encoder ({0}+{0}), LSTM decoder ({1}) with "
      "Bahdanau attention ({2}); batches of {3}, Adam lr {4}, {5} steps\n",
      He, H, A, batch, flags.lr, flags.steps);
  cg::print_summary(step);

  auto save = [&](long at) {
    try {
      cg::save(params, opt, checkpoint, {{"step", std::to_string(at)}, {"seed", std::to_string(seed)}});
    } catch (const std::exception& e) {
      fmt::print(stderr, "\ntranslate: {}\n", e.what());
      std::exit(2);
    }
  };
  cg::progress bar(last, {.label = "step", .start = done, .examples_per_step = batch});
  double window = 0, train_loss = 0, acc = 0;
  int in_window = 0;
  long at = done;
  try {
    for (; at < last; ++at) {
      std::vector<dates::example> xs;
      for (int j = 0; j < batch; ++j)
        xs.push_back(dates::draw(seed, 0, static_cast<std::uint64_t>(at) * batch + j, false));
      const dates::batch b = dates::make_batch(xs);
      auto r = step.run(params, cg::feed<"src">(b.src), cg::feed<"src_len">(b.src_len), cg::feed<"tgt_in">(b.tgt_in),
                        cg::feed<"tgt_out">(b.tgt_out), cg::check_finite);
      window += static_cast<float>(r[training::loss]), ++in_window;
      opt.set_lr(schedule.lr_at(at));
      opt.step(params, r);
      const long n = at + 1;
      if (n % flags.eval_every == 0 || n == flags.steps) {
        train_loss = window / in_window, window = 0, in_window = 0;
        acc = heldout_accuracy(tr, heldout);
        metrics->write({static_cast<double>(n), train_loss, acc});
      }
      bar.update(n, {cg::metric("loss", in_window ? window / in_window : train_loss), cg::percent("held-out", acc)});
      if (flags.save_every > 0 && n % flags.save_every == 0) save(n);
    }
  } catch (const cg::non_finite_error& err) {
    metrics->close();
    bar.finish();
    fmt::print(stderr, "translate: step {}: training diverged (Adam lr {}): {}\n", at + 1, flags.lr, err.what());
    return 3;
  } catch (const std::exception& err) {
    bar.finish();
    fmt::print(stderr, "translate: step {}: {}\n", at + 1, err.what());
    return 2;
  }
  bar.finish();
  metrics->close();
  save(last);
  if (last < flags.steps) {
    fmt::print("stopped after step {} of {}: continue with --resume {}\n", last, flags.steps, checkpoint.string());
    return 0;
  }
  if (done == last) acc = heldout_accuracy(tr, heldout);  // else the loop's last step scored it
  const cg::plot_result plotted =
      cg::plot_curves(csv,
                      {.curves = {{"train_loss", "train loss"}, {"heldout_acc", "held-out exact match", true}},
                       .ylabel = "cross-entropy loss",
                       .y2label = "accuracy",
                       .log_y = true,
                       .y2_range = cg::axis_range{0, 1}},
                      svg);
  if (!plotted) fmt::print("note: {}\n", plotted.message);
  plot_attention(tr, heldout, heat);
  fmt::print("wrote {}, {}, {}, {}\n", csv.string(), svg.string(), heat.string(), checkpoint.string());
  for (int k = 0; k < 5; ++k) {
    const auto t = tr.run({dates::encode_source(heldout[k].text).ids}, 1);
    fmt::print("  {:>30} -> {}\n", heldout[k].text,
               dates::decode_target(t[0].ids.data(), static_cast<int>(t[0].ids.size())));
  }
  fmt::print("final: held-out exact match {:.1f}% ({} dates never trained on)\n", 100 * acc, heldout.size());
  return acc >= flags.min_accuracy ? 0 : 1;
}
