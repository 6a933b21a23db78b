// examples/translate/run.hpp: what the translate example does with a model, whichever it is: train it
// (the loop, held-out scoring, loss.csv, the plots, checkpoints, --resume) or translate stdin with a
// checkpoint of it. `Model` is lstm_model (model.hpp) or transformer_model (transformer_model.hpp):
// its name (the checkpoint's "model" metadata), loss, compile_training(), description(),
// attention_title (attention.svg's) and make_translator(params), whose run(inputs, width,
// with_weights) translates up to `rows` inputs.
#pragma once
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctgraph/train.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "dates.hpp"
#include "flags.hpp"
#include "task.hpp"

namespace translate {
namespace fs = std::filesystem;

// Exact match of greedy decoding on the held-out dates.
template <class Translator>
double heldout_accuracy(Translator& tr, const std::vector<dates::example>& heldout) {
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
template <class Translator>
int translate_stdin(Translator& tr, int beam) {
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
template <class Translator>
void plot_attention(Translator& tr, const std::vector<dates::example>& heldout, const fs::path& image,
                    const std::string& title) {
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
  if (inputs.empty()) {  // --heldout too small to hold one of those formats
    fmt::print("note: no attention plot: none of the {} held-out dates is in format 0, 3, 6 or 9\n", heldout.size());
    return;
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
  const cg::plot_result r = cg::plot_heatmaps(maps, {.columns = 2, .title = title}, image);
  if (!r) fmt::print("note: {}\n", r.message);
}

// loss.csv without its rows after step `step`: what a resumed run continues from.
inline void keep_rows_until(const fs::path& csv, long step) {
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

// Trains `Model` as the flags say, or, with --translate, translates stdin with its checkpoint. Returns
// the exit code.
template <class Model>
int run(const translate_flags& flags) {
  auto step = Model::compile_training();
  auto params = cg::parameters_of(step);

  if (flags.translate) {
    try {
      cg::load(params, flags.checkpoint);  // the params; Adam's state, if saved, is not needed
    } catch (const std::exception& e) {
      fmt::print(stderr, "translate: --checkpoint: {}\n", e.what());
      return 2;
    }
    auto tr = Model::make_translator(params);
    return translate_stdin(tr, flags.beam);
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
  auto tr = Model::make_translator(params);

  fmt::print("translate: dates into ISO 8601; {}; batches of {}, Adam lr {}, {} steps\n", Model::description(), batch,
             flags.lr, flags.steps);
  cg::print_summary(step);

  auto save = [&](long at) {
    try {
      cg::save(params, opt, checkpoint,
               {{"step", std::to_string(at)}, {"seed", std::to_string(seed)}, {"model", Model::name}});
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
      window += static_cast<float>(r[Model::loss]), ++in_window;
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
  plot_attention(tr, heldout, heat, Model::attention_title);
  fmt::print("wrote {}, {}, {}, {}\n", csv.string(), svg.string(), heat.string(), checkpoint.string());
  for (std::size_t k = 0; k < std::min<std::size_t>(5, heldout.size()); ++k) {
    const auto t = tr.run({dates::encode_source(heldout[k].text).ids}, 1);
    fmt::print("  {:>30} -> {}\n", heldout[k].text,
               dates::decode_target(t[0].ids.data(), static_cast<int>(t[0].ids.size())));
  }
  fmt::print("final: held-out exact match {:.1f}% ({} dates never trained on)\n", 100 * acc, heldout.size());
  return acc >= flags.min_accuracy ? 0 : 1;
}

}  // namespace translate
