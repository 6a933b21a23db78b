// examples/addition: a decoder-only transformer learns multi-digit addition (model.hpp), trained with
// teacher forcing and Adam on generated sums, and decodes with a KV cache.
//
//   addition [--digits D] [--steps N] [--lr X] [--seed S] [--out DIR] [--eval-every K] [--heldout N]
//   addition --sample --checkpoint DIR/model.safetensors [--temperature T] [--top-k K] [--samples N] < sums.txt
//
// Training draws batches of 64 sums of operands up to D digits (sums.hpp); one pair of operands in
// 50 never trains, and --heldout of those are scored every --eval-every steps by greedy decoding,
// exact match. Writes DIR/loss.csv (step, train_loss: the mean since the row before, heldout_acc,
// seconds), DIR/loss.svg and DIR/model.safetensors (params under PyTorch's names, Adam's state, the
// step, seed and digits in its metadata). Exits 1 when the final held-out accuracy is below
// --min-accuracy, 3 when training diverges (the first NaN or infinity stops it, naming the step).
//
// --sample prints one line per input line: the sum as the model writes it (--samples of them, drawn
// at --temperature), or "error: ..." saying what is wrong with the line.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <ctgraph/train.hpp>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "flags.hpp"
#include "model.hpp"
#include "sums.hpp"

namespace fs = std::filesystem;
using namespace addition;

namespace {
template <int D>
auto compile_training() {
  using m = training<D>;
  return cg::compile(m::loss, cg::grad(m::loss));
}
template <int D>
auto compile_decoding() {
  using m = decoding<D>;
  return cg::compile(m::logits, m::s0.k, m::s0.v, m::s1.k, m::s1.v);
}
template <int D>
using params_t = decltype(cg::parameters_of(std::declval<const decltype(compile_training<D>())&>()));

// Writes the sums of up to `rows` problems at once: the decoding step in a loop over a KV cache, each
// row's prompt fed in lockstep, then its own draws.
template <int D>
class adder {
 public:
  using t = task<D>;
  explicit adder(params_t<D>& params) : params_(params) {}

  // What the model writes after each prompt (sums::prompt), end token left out.
  std::vector<std::vector<int>> run(const std::vector<std::vector<int>>& prompts, const cg::sampling& how) {
    using m = decoding<D>;
    cache_.clear();
    auto step = [&](std::span<const int> tokens, std::span<const int>, std::span<float> scores) {
      std::fill(tok_.begin(), tok_.end(), 0);
      std::copy(tokens.begin(), tokens.end(), tok_.begin());
      std::fill(at_.begin(), at_.end(), cache_.position());
      auto o = step_.run(params_, cg::feed<"tok">(tok_), cg::feed<"at">(at_), cg::feed<"mask">(cache_.mask()),
                         cg::feed<"k0">(cache_.keys(0)), cg::feed<"v0">(cache_.values(0)),
                         cg::feed<"k1">(cache_.keys(1)), cg::feed<"v1">(cache_.values(1)));
      std::copy_n(o[m::logits].begin(), tokens.size() * V, scores.begin());
      cache_.append(0, o[m::s0.k].span(), o[m::s0.v].span());
      cache_.append(1, o[m::s1.k].span(), o[m::s1.v].span());
      cache_.advance();
    };
    return cg::generate(prompts, V, {.max_steps = t::answer, .end = sums::end}, how, step);
  }

  // Exact match of greedy decoding on the problems.
  double accuracy(const std::vector<sums::problem>& problems) {
    int right = 0;
    for (std::size_t first = 0; first < problems.size(); first += rows) {
      std::vector<std::vector<int>> prompts;
      for (std::size_t k = first; k < std::min(problems.size(), first + rows); ++k)
        prompts.push_back(sums::prompt(problems[k], D));
      const auto written = run(prompts, {.temperature = 0});
      for (std::size_t k = 0; k < written.size(); ++k) {
        const auto& p = problems[first + k];
        right += sums::read_sum(written[k], D) == std::to_string(p.a + p.b);
      }
    }
    return static_cast<double>(right) / static_cast<double>(problems.size());
  }

 private:
  params_t<D>& params_;
  decltype(compile_decoding<D>()) step_ = compile_decoding<D>();
  cg::kv_cache cache_{layers, t::S, rows, E};
  std::vector<int> tok_ = std::vector<int>(rows), at_ = std::vector<int>(rows);
};

// --sample: one output line per input line.
template <int D>
int sample(const addition_flags& flags) {
  auto params = cg::parameters_of(compile_training<D>());
  try {
    cg::load(params, flags.checkpoint);  // the params; Adam's state, if saved, is not needed
  } catch (const std::exception& e) {
    fmt::print(stderr, "addition: --checkpoint: {}\n", e.what());
    return 2;
  }
  adder<D> model(params);
  std::string line;
  for (std::uint64_t n = 0; std::getline(std::cin, line); ++n) {
    const sums::parsed in = sums::parse(line, D);
    if (!in.error.empty()) {
      fmt::print("error: {}\n", in.error);
    } else {
      const std::vector<std::vector<int>> prompts(flags.samples, sums::prompt(in.p, D));
      const auto written = model.run(prompts, {flags.temperature, flags.top_k, flags.seed + n});
      std::string out = fmt::format("{}+{}=", in.p.a, in.p.b);
      for (std::size_t k = 0; k < written.size(); ++k) {
        const std::string s = sums::read_sum(written[k], D);  // else what it wrote, backwards as written
        if (k) out += ' ';
        out += s.empty() ? fmt::format("?{}", sums::show(written[k])) : s;
      }
      fmt::print("{}\n", out);
    }
    std::fflush(stdout);  // a line out for each line in, as it comes
  }
  return 0;
}

template <int D>
int train(const addition_flags& flags) {
  using m = training<D>;
  using t = task<D>;
  // Defaults that reach 99% with margin: at 5 digits, 1e-3 can stall for thousands of steps on a plateau.
  const int steps = flags.steps > 0 ? flags.steps : D <= 4 ? 500 * D : 4000;
  const double lr = flags.lr > 0 ? flags.lr : D <= 4 ? 1e-3 : 5e-4;
  auto step = compile_training<D>();
  auto params = cg::parameters_of(step);
  const std::uint64_t seed = flags.seed;
  cg::init(params, seed);
  cg::adam opt(params, {.lr = lr});
  const cg::cosine_warmup_lr schedule{
      .lr = lr, .warmup_steps = std::min(200, steps / 10), .total_steps = steps, .min_lr = lr / 20};

  const fs::path out = flags.out;
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) {
    fmt::print(stderr, "addition: cannot create {}: {}\n", out.string(), ec.message());
    return 2;
  }
  const fs::path csv = out / "loss.csv", svg = out / "loss.svg", checkpoint = out / "model.safetensors";
  std::optional<cg::metrics_log> metrics;
  try {
    metrics.emplace(csv, std::vector<std::string>{"step", "train_loss", "heldout_acc", "seconds"});
  } catch (const std::exception& e) {
    fmt::print(stderr, "addition: {}\n", e.what());
    return 2;
  }
  std::vector<sums::problem> heldout;
  for (int k = 0; k < flags.heldout; ++k) heldout.push_back(sums::draw(seed, 1, k, D));
  adder<D> model(params);

  fmt::print(
      "addition: operands up to {} digits; decoder-only transformer, {} pre-norm layers of width {} ({} heads, "
      "feed-forward {}); batches of {}, Adam lr {}, {} steps\n",
      D, layers, E, heads, FF, batch, lr, steps);
  cg::print_summary(step);

  std::vector<int> ids(t::S * batch), targets(t::S * batch);
  cg::progress bar(steps, {.label = "step", .examples_per_step = batch});
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  double window = 0, train_loss = 0, acc = 0, first_acc = -1, reached_at = -1;
  long reached_step = -1;
  int in_window = 0;
  long at = 0;
  try {
    for (; at < steps; ++at) {
      for (int j = 0; j < batch; ++j) {  // whole problems; the targets are the next tokens of the sum
        const sums::problem p = sums::draw(seed, 0, static_cast<std::uint64_t>(at) * batch + j, D);
        std::vector<int> seq = sums::prompt(p, D);
        const std::vector<int> a = sums::answer(p, D);
        seq.insert(seq.end(), a.begin(), a.end());
        for (int s = 0; s < t::S; ++s) {
          ids[s * batch + j] = seq[s];
          targets[s * batch + j] = s + 1 >= t::prompt ? seq[s + 1] : sums::ignore;
        }
      }
      auto r = step.run(params, cg::feed<"ids">(ids), cg::feed<"targets">(targets), cg::check_finite);
      window += static_cast<float>(r[m::loss]), ++in_window;
      opt.set_lr(schedule.lr_at(at));
      opt.step(params, r);
      const long n = at + 1;
      if (n % flags.eval_every == 0 || n == steps) {
        train_loss = window / in_window, window = 0, in_window = 0;
        acc = model.accuracy(heldout);
        if (first_acc < 0) first_acc = acc;
        if (reached_step < 0 && acc >= flags.min_accuracy) reached_step = n, reached_at = seconds();
        metrics->write({static_cast<double>(n), train_loss, acc, seconds()});
      }
      bar.update(n, {cg::metric("loss", in_window ? window / in_window : train_loss), cg::percent("held-out", acc)});
    }
  } catch (const cg::non_finite_error& err) {
    metrics->close();
    bar.finish();
    fmt::print(stderr, "addition: step {}: training diverged (Adam lr {}): {}\n", at + 1, lr, err.what());
    return 3;
  }
  bar.finish();
  metrics->close();
  const double trained = seconds();
  try {
    cg::save(params, opt, checkpoint,
             {{"step", std::to_string(steps)}, {"seed", std::to_string(seed)}, {"digits", std::to_string(D)}});
  } catch (const std::exception& e) {
    fmt::print(stderr, "addition: {}\n", e.what());
    return 2;
  }
  const cg::plot_result plotted =
      cg::plot_curves(csv,
                      {.curves = {{"train_loss", "train loss"}, {"heldout_acc", "held-out exact match", true}},
                       .ylabel = "cross-entropy loss",
                       .y2label = "accuracy",
                       .log_y = true,
                       .y2_range = cg::axis_range{0, 1}},
                      svg);
  if (!plotted) fmt::print("note: {}\n", plotted.message);
  fmt::print("wrote {}, {}, {}\n", csv.string(), svg.string(), checkpoint.string());
  for (std::size_t k = 0; k < std::min<std::size_t>(5, heldout.size()); ++k) {
    const auto w = model.run({sums::prompt(heldout[k], D)}, {.temperature = 0});
    const std::string s = sums::read_sum(w[0], D);
    fmt::print("  {:>{}}+{:<{}} = {:>{}}{}\n", heldout[k].a, D, heldout[k].b, D, s.empty() ? "?" : s, D + 1,
               s == std::to_string(heldout[k].a + heldout[k].b) ? "" : "  (wrong)");
  }
  fmt::print("final: held-out exact match {:.1f}% ({} sums never trained on), first scored {:.1f}%, {:.0f} s\n",
             100 * acc, heldout.size(), 100 * first_acc, trained);
  if (reached_step > 0)
    fmt::print("reached {:.0f}% at step {} after {:.0f} s\n", 100 * flags.min_accuracy, reached_step, reached_at);
  return acc >= flags.min_accuracy ? 0 : 1;
}

template <int D>
int run(const addition_flags& flags) {
  return flags.sample ? sample<D>(flags) : train<D>(flags);
}
}  // namespace

int main(int argc, char** argv) {
  addition_flags flags;
  if (auto exit_code = parse_flags(argc, argv, flags)) return *exit_code;
  if (flags.sample) {  // the checkpoint says how many digits its model adds
    try {
      for (const auto& [key, value] : cg::load_metadata(flags.checkpoint))
        if (key == "digits") flags.digits = std::stoi(value);
    } catch (const std::exception& e) {
      fmt::print(stderr, "addition: --checkpoint: {}\n", e.what());
      return 2;
    }
  }
  switch (flags.digits) {
    case 2:
      return run<2>(flags);
    case 3:
      return run<3>(flags);
    case 4:
      return run<4>(flags);
    case 5:
      return run<5>(flags);
    default:
      fmt::print(stderr, "addition: --checkpoint: a model of {} digits (this build adds 2 to 5)\n", flags.digits);
      return 2;
  }
}
