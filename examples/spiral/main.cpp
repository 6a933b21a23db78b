// examples/spiral: an MLP classifier on the 3-arm spiral, trained with Adam.
// The model, its gradients, the schedule and the memory plan are fixed at compile time;
// each training step is one call to step.run, then one optimizer step. 80% of the points
// train, 20% are held out and scored by a second, forward-only step that shares the params
// by name.
//
//   spiral [--epochs N] [--lr X] [--seed S] [--out DIR] [--save-every K] [--resume FILE]
//
// Writes DIR/loss.csv (epoch, train_loss, train_acc, heldout_acc), DIR/loss.svg when
// gnuplot is on the PATH, DIR/spiral.dot (the graph, forward and backward) and, every K
// epochs and at the end when K > 0, DIR/checkpoint.safetensors (the params under PyTorch's
// state_dict names, Adam's state under "optimizer.<param>.step/exp_avg/exp_avg_sq", the
// epoch and seed in its metadata). --resume starts from such a file: its params and Adam's
// state, then N more epochs numbered on from the saved one (the learning rate's schedule,
// if any, continues from there), appended to DIR/loss.csv if it exists. Exits non-zero when
// the held-out accuracy is below 95%. Every step runs with cg::check_finite: when training
// diverges (try --lr 1e38), the first NaN or infinity stops the run with exit code 3 and a
// line on stderr naming the epoch and the step that produced it; loss.csv keeps the epochs
// before, and no checkpoint is written with non-finite params. A run is a function of its
// flags: the same seed gives the same loss.csv, bit for bit, and stopping after K epochs then
// resuming with the same seed and lr gives the loss.csv of not stopping.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctgraph/ctgraph.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "flags.hpp"

namespace cg = ctgraph;
namespace fs = std::filesystem;

constexpr int classes = 3, per_class = 200, n = classes * per_class, hidden = 64;
constexpr int n_heldout = n / 5, n_train = n - n_heldout;  // 480 train, 120 held out

// A linear layer as in PyTorch: weight [Out, In], bias [Out]; the transpose is free.
template <cg::fixed_string Name, int In, int Out>
constexpr auto linear(cg::expression auto x) {
  return cg::matmul(x, cg::transpose(cg::param<Name + ".weight", float, Out, In>)) +
         cg::param<Name + ".bias", float, Out>;
}
// The model, for any batch: the training and the held-out step share its params by name.
constexpr auto mlp(cg::expression auto x) {
  const auto h1 = cg::tanh(linear<"fc1", 2, hidden>(x));
  const auto h2 = cg::tanh(linear<"fc2", hidden, hidden>(h1));
  return linear<"out", hidden, classes>(h2);
}

constexpr auto x = cg::input<"x", float, n_train, 2>;
constexpr auto y = cg::input<"y", int, n_train>;
constexpr auto logits = mlp(x);
constexpr auto loss = cg::cross_entropy(logits, y);
constexpr auto x_heldout = cg::input<"x_heldout", float, n_heldout, 2>;
constexpr auto logits_heldout = mlp(x_heldout);

// The gradient of every param of the model (fc1, fc2 and out, weight and bias).
constexpr auto grads = cg::grad(loss);

// The spiral: arm k holds points at radius r in [0, 1], angle 4k + 4r plus noise; then
// shuffled, so that the first n_train points train and the rest are held out.
struct dataset {
  std::vector<float> xs;  // [n, 2]
  std::vector<int> ys;    // [n]
};
dataset make_spiral(std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> noise(0.f, 0.2f);
  dataset d;
  for (int k = 0; k < classes; ++k)
    for (int i = 0; i < per_class; ++i) {
      const float r = static_cast<float>(i) / (per_class - 1);
      const float t = 4.f * k + 4.f * r + noise(gen);
      d.xs.push_back(r * std::sin(t));
      d.xs.push_back(r * std::cos(t));
      d.ys.push_back(k);
    }
  // Fisher-Yates with our own index draws: std::shuffle's algorithm is not specified.
  for (int i = n - 1; i > 0; --i) {
    const int j = static_cast<int>(gen() % static_cast<std::uint64_t>(i + 1));
    std::swap(d.ys[i], d.ys[j]);
    std::swap(d.xs[2 * i], d.xs[2 * j]);
    std::swap(d.xs[2 * i + 1], d.xs[2 * j + 1]);
  }
  return d;
}

// Fraction of rows of z ([rows, classes]) whose largest entry is at the label.
template <class View>
double accuracy(const View& z, const int* labels, int rows) {
  int correct = 0;
  for (int i = 0; i < rows; ++i) {
    int best = 0;
    for (int c = 1; c < classes; ++c)
      if (z(i, c) > z(i, best)) best = c;
    correct += best == labels[i];
  }
  return static_cast<double>(correct) / rows;
}

// 12345.6 -> "12.3k".
std::string human(double v) {
  return v >= 1e6   ? fmt::format("{:.2f}M", v / 1e6)
         : v >= 1e3 ? fmt::format("{:.1f}k", v / 1e3)
                    : fmt::format("{:.0f}", v);
}

// Whether an executable `program` is in a folder of $PATH.
bool on_path(const char* program) {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::string p = path;
  for (std::size_t start = 0; start <= p.size();) {
    std::size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    const fs::path f = fs::path(p.substr(start, end - start)) / program;
    if (end > start && ::access(f.c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

// Plots loss.csv's curves into loss.svg through gnuplot; false when gnuplot failed.
bool plot(const fs::path& csv, const fs::path& svg) {
  auto quoted = [](const fs::path& f) {  // a gnuplot single-quoted string
    std::string r = "'";
    for (char c : f.string()) r += c == '\'' ? std::string("''") : std::string(1, c);
    return r + "'";
  };
  FILE* gp = ::popen("gnuplot", "w");
  if (!gp) return false;
  std::fprintf(gp,
               "set terminal svg size 800,480 dynamic background rgb 'white'\n"
               "set output %s\n"
               "set datafile separator ','\n"
               "set key outside top center horizontal\n"
               "set xlabel 'epoch'\n"
               "set ylabel 'cross-entropy loss'\n"
               "set y2label 'accuracy'\n"
               "set logscale y\n"
               "set y2range [0:1]\n"
               "set ytics nomirror\n"
               "set y2tics 0.1\n"
               "set grid\n"
               "plot %s using 1:2 skip 1 with lines lw 2 title 'train loss', \\\n"
               "     '' using 1:3 skip 1 axes x1y2 with lines lw 2 title 'train accuracy', \\\n"
               "     '' using 1:4 skip 1 axes x1y2 with lines lw 2 title 'held-out accuracy'\n",
               quoted(svg).c_str(), quoted(csv).c_str());
  return ::pclose(gp) == 0;
}

int main(int argc, char** argv) {
  spiral_flags flags;
  if (auto exit_code = parse_flags(argc, argv, flags)) return *exit_code;
  const int epochs = flags.epochs, save_every = flags.save_every;
  const double lr = flags.lr;
  const std::uint64_t seed = flags.seed;
  const std::string &out_dir = flags.out, &resume = flags.resume;

  const dataset d = make_spiral(seed);
  const std::span<const float> train_x(d.xs.data(), 2 * n_train), heldout_x(d.xs.data() + 2 * n_train, 2 * n_heldout);
  const std::span<const int> train_y(d.ys.data(), n_train);
  const int* heldout_y = d.ys.data() + n_train;

  auto step = cg::compile(loss, logits, grads);
  auto eval = cg::compile(logits_heldout);
  auto params = cg::parameters_of(step);
  cg::init(params, seed);
  cg::adam opt(params, {.lr = lr});
  // The learning rate of each epoch, a function of the epoch's number: constant here; a
  // schedule whose shape depends on the run's length (cosine_warmup_lr's total_steps) needs
  // the same total on a resumed run as on the run it resumes.
  const cg::constant_lr schedule{.lr = lr};
  int first_epoch = 1;
  if (!resume.empty()) {
    try {
      cg::load(params, opt, resume);  // the params and Adam's moments and step counts
      for (const auto& [key, value] : cg::load_metadata(resume))
        if (key == "epoch") first_epoch = std::stoi(value) + 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "spiral: --resume: %s\n", e.what());
      return 2;
    }
    std::printf("resumed from %s at epoch %d\n", resume.c_str(), first_epoch);
  }
  const int last_epoch = first_epoch + epochs - 1;

  const fs::path out = out_dir;
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) {
    std::fprintf(stderr, "spiral: cannot create %s: %s\n", out.c_str(), ec.message().c_str());
    return 2;
  }
  const fs::path svg = out / "loss.svg";
  fs::remove(svg, ec);  // written again below, or not at all
  std::ofstream(out / "spiral.dot") << cg::to_dot(loss, grads);
  // A resumed run continues the curve of the folder it writes to, if there is one.
  const bool append = !resume.empty() && fs::exists(out / "loss.csv");
  std::ofstream csv(out / "loss.csv", append ? std::ios::app : std::ios::trunc);
  if (!append) csv << "epoch,train_loss,train_acc,heldout_acc\n";

  std::printf("spiral: %d points (%d train, %d held out), MLP 2-%d-%d-%d, Adam lr %g\n", n, n_train, n_heldout, hidden,
              hidden, classes, lr);
  cg::print_summary(step);  // params, memory, steps and FLOPs of one training step

  const bool tty = ::isatty(::fileno(stdout));
  const int every = std::max(1, epochs / 10);  // plain lines when stdout is not a terminal
  const fs::path checkpoint = out / "checkpoint.safetensors";
  auto save = [&](int epoch) {
    try {
      cg::save(params, opt, checkpoint, {{"epoch", std::to_string(epoch)}, {"seed", std::to_string(seed)}});
    } catch (const std::exception& e) {
      std::fprintf(stderr, "\nspiral: %s\n", e.what());
      std::exit(2);
    }
  };
  const auto t0 = std::chrono::steady_clock::now();
  auto last_draw = t0 - std::chrono::seconds(1);
  double train_loss = 0, train_acc = 0, heldout_acc = 0;
  int epoch = first_epoch;                // outside the loop: a diverged run names it,
  const char* running = "training step";  // and which run found the NaN or infinity
  try {
    for (; epoch <= last_epoch; ++epoch) {
      const int done_epochs = epoch - first_epoch + 1;
      // cg::check_finite: a NaN or an infinity in any step's output throws, naming the step.
      running = "training step";
      auto r = step.run(params, cg::feed<"x">(train_x), cg::feed<"y">(train_y), cg::check_finite);
      train_loss = static_cast<float>(r[loss]);
      train_acc = accuracy(r[logits], train_y.data(), n_train);  // before this epoch's update
      opt.set_lr(schedule.lr_at(epoch - 1));  // epochs count on across a resume, and so does the schedule
      opt.step(params, r);
      running = "held-out step, which checks the updated params first";
      auto e = eval.run(params, cg::feed<"x_heldout">(heldout_x), cg::check_finite);
      heldout_acc = accuracy(e[logits_heldout], heldout_y, n_heldout);
      csv << fmt::format("{},{:.9g},{:.9g},{:.9g}\n", epoch, train_loss, train_acc, heldout_acc);

      const auto now = std::chrono::steady_clock::now();
      const double secs = std::chrono::duration<double>(now - t0).count();
      const double rate = secs > 0 ? done_epochs * static_cast<double>(n_train) / secs : 0;
      if (tty && (now - last_draw > std::chrono::milliseconds(50) || epoch == last_epoch)) {
        last_draw = now;
        constexpr int width = 30;
        const int done = done_epochs * width / epochs;
        std::printf("\repoch %*d/%d [%s%s] loss %.4f  train %5.1f%%  held-out %5.1f%%  %s ex/s ",
                    static_cast<int>(std::to_string(last_epoch).size()), epoch, last_epoch,
                    std::string(done, '#').c_str(), std::string(width - done, '.').c_str(), train_loss, 100 * train_acc,
                    100 * heldout_acc, human(rate).c_str());
        std::fflush(stdout);
        if (epoch == last_epoch) std::printf("\n");
      } else if (!tty && (done_epochs % every == 0 || done_epochs == 1 || epoch == last_epoch)) {
        std::printf("epoch %4d/%d  loss %.4f  train %5.1f%%  held-out %5.1f%%  %s ex/s\n", epoch, last_epoch,
                    train_loss, 100 * train_acc, 100 * heldout_acc, human(rate).c_str());
      }
      if (save_every > 0 && (done_epochs % save_every == 0 || epoch == last_epoch)) save(epoch);
    }
  } catch (const cg::non_finite_error& err) {
    // A NaN or an infinity in the loss, a gradient or the updated params: stop before the
    // epoch's row and checkpoint, so loss.csv and the last checkpoint keep the epochs before.
    csv.close();
    if (tty) std::printf("\n");
    std::fflush(stdout);
    std::fprintf(stderr, "spiral: epoch %d: training diverged (Adam lr %g), stopped in the %s: %s\n", epoch, lr,
                 running, err.what());
    std::fprintf(stderr, "spiral: %s keeps the epochs before %d%s\n", (out / "loss.csv").c_str(), epoch,
                 save_every > 0 && fs::exists(checkpoint) ? (", and so does " + checkpoint.string()).c_str() : "");
    return 3;
  }
  csv.close();

  if (!on_path("gnuplot"))
    std::printf("note: gnuplot not found on PATH, %s not written (apt install gnuplot-nox)\n", svg.c_str());
  else if (!plot(out / "loss.csv", svg))
    std::printf("note: gnuplot failed, %s not written\n", svg.c_str());
  std::printf("wrote %s, %s%s%s\n", (out / "loss.csv").c_str(), (out / "spiral.dot").c_str(),
              fs::exists(svg) ? (", " + svg.string()).c_str() : "",
              save_every > 0 ? (", " + checkpoint.string()).c_str() : "");
  std::printf("final: train loss %.4f, train accuracy %.1f%%, held-out accuracy %.1f%% (%d points)\n", train_loss,
              100 * train_acc, 100 * heldout_acc, n_heldout);
  return heldout_acc >= 0.95 ? 0 : 1;
}
