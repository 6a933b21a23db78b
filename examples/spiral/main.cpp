// examples/spiral: an MLP classifier on the 3-arm spiral, trained with Adam.
// The model, its gradients, the schedule and the memory plan are fixed at compile time;
// each training step is one call to step.run, then one optimizer step. 80% of the points
// train, 20% are held out and scored by a second, forward-only step that shares the params
// by name.
//
//   spiral [--epochs N] [--lr X] [--seed S] [--out DIR] [--save-every K] [--resume FILE]
//   mpirun -np N spiral --distributed ...      (N = 1, 2 or 4; built with MPI)
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
// resuming with the same seed and lr gives the loss.csv of not stopping. The progress bar, the
// metrics log (loss.csv) and the plot are the library's (ctgraph/train.hpp). Training is full
// batch, one step over the 480 training points per epoch (cg::batches is for mini-batches).
//
// --distributed (ctgraph/distributed.hpp): each of the job's N ranks builds the same data set and
// trains on its 480 / N points (cg::batches::shard of the one full batch), with gradients, loss
// and accuracy averaged over the ranks, so that the run is that of one process to float
// rounding. Rank 0 alone prints, writes loss.csv, the plot, the graph and the checkpoints; a
// resumed run loads the checkpoint on every rank and takes rank 0's params. A rank that fails
// ends the job (an exception: "rank R: ..."; a NaN or infinity: exit code 3 from that rank).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctgraph/ctgraph.hpp>
#include <ctgraph/train.hpp>
#ifdef CTGRAPH_HAS_MPI
#include <ctgraph/distributed.hpp>
#endif
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <utility>
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

// The training step's graph for a batch of B points: all 480 in one process, 480 / N on each of
// N ranks. The held-out step scores all 120 points on every rank.
template <int B>
struct train_graph {
  static constexpr auto x = cg::input<"x", float, B, 2>;
  static constexpr auto y = cg::input<"y", int, B>;
  static constexpr auto logits = mlp(x);
  static constexpr auto loss = cg::cross_entropy(logits, y);
  // The gradient of every param of the model (fc1, fc2 and out, weight and bias).
  static constexpr auto grads = cg::grad(loss);
};
constexpr auto x_heldout = cg::input<"x_heldout", float, n_heldout, 2>;
constexpr auto logits_heldout = mlp(x_heldout);

// The processes that train together: this one alone, or the ranks of an MPI job (--distributed).
struct ranks {
#ifdef CTGRAPH_HAS_MPI
  const cg::communicator* comm = nullptr;  // null: alone
  int rank() const { return comm ? comm->rank() : 0; }
  int size() const { return comm ? comm->size() : 1; }
  double average(double v) const { return comm ? cg::average(*comm, v) : v; }
  template <class P, class R>
  void average_grads(P& params, const R& r) const {
    if (comm) cg::average_grads(*comm, params, r);
  }
  template <class P>
  void broadcast(P& params) const {
    if (comm) cg::broadcast(*comm, params);
  }
  void barrier() const {
    if (comm) comm->barrier();
  }
  [[noreturn]] void abort(int code) const {
    if (comm) comm->abort(code);
    std::exit(code);
  }
#else
  int rank() const { return 0; }
  int size() const { return 1; }
  double average(double v) const { return v; }
  template <class P, class R>
  void average_grads(P&, const R&) const {}
  template <class P>
  void broadcast(P&) const {}
  void barrier() const {}
  [[noreturn]] void abort(int code) const { std::exit(code); }
#endif
  bool root() const { return rank() == 0; }
};

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

template <int B>
int train(const spiral_flags& flags, const ranks& world) {
  using G = train_graph<B>;
  constexpr auto logits = G::logits;
  constexpr auto loss = G::loss;
  constexpr auto grads = G::grads;
  const bool root = world.root();
  const int epochs = flags.epochs, save_every = flags.save_every;
  const double lr = flags.lr;
  const std::uint64_t seed = flags.seed;
  const std::string &out_dir = flags.out, &resume = flags.resume;

  const dataset d = make_spiral(seed);
  const std::span<const float> heldout_x(d.xs.data() + 2 * n_train, 2 * n_heldout);
  const int* heldout_y = d.ys.data() + n_train;
  // This process's share of the one full batch of the training set (all of it when alone).
  cg::batches full(n_train, n_train, {.shuffle = false});
  const auto mine = full.shard(0, 0, world.rank(), world.size());
  std::vector<float> train_x(2 * B);
  std::vector<int> train_y(B);
  cg::gather_rows(std::span<const float>(d.xs.data(), 2 * n_train), 2, mine, train_x);
  cg::gather_rows(std::span<const int>(d.ys.data(), n_train), 1, mine, train_y);

  auto step = cg::compile(loss, logits, grads);
  auto eval = cg::compile(logits_heldout);
  auto params = cg::parameters_of(step);
  cg::init(params, seed);
  world.broadcast(params);  // the same on every rank already (the same seed); rank 0's exactly
  cg::adam opt(params, {.lr = lr});
  // The learning rate of each epoch, a function of the epoch's number: constant here; a
  // schedule whose shape depends on the run's length (cosine_warmup_lr's total_steps) needs
  // the same total on a resumed run as on the run it resumes.
  const cg::constant_lr schedule{.lr = lr};
  int first_epoch = 1;
  if (!resume.empty()) {
    try {
      cg::load(params, opt, resume);  // the params and Adam's moments and step counts
      world.broadcast(params);        // rank 0's params on every rank
      for (const auto& [key, value] : cg::load_metadata(resume))
        if (key == "epoch") first_epoch = std::stoi(value) + 1;
    } catch (const std::exception& e) {
      fmt::print(stderr, "{}spiral: --resume: {}\n", world.size() > 1 ? fmt::format("rank {}: ", world.rank()) : "",
                 e.what());
      world.abort(2);  // the other ranks may wait in the broadcast
    }
    if (root) fmt::print("resumed from {} at epoch {}\n", resume, first_epoch);
  }
  const int last_epoch = first_epoch + epochs - 1;

  const fs::path out = out_dir;
  const fs::path csv = out / "loss.csv", svg = out / "loss.svg", checkpoint = out / "checkpoint.safetensors";
  // One row per epoch, flushed as written; a resumed run continues the curve of the folder it
  // writes to, if there is one. Rank 0 alone writes files.
  std::optional<cg::metrics_log> metrics;
  if (root) {
    std::error_code ec;
    fs::create_directories(out, ec);
    if (ec) {
      fmt::print(stderr, "spiral: cannot create {}: {}\n", out.string(), ec.message());
      world.abort(2);
    }
    fs::remove(svg, ec);  // written again below, or not at all
    std::ofstream(out / "spiral.dot") << cg::to_dot(loss, grads);
    try {
      metrics.emplace(csv, std::vector<std::string>{"epoch", "train_loss", "train_acc", "heldout_acc"},
                      cg::metrics_log_options{.append = !resume.empty()});
    } catch (const std::exception& e) {
      fmt::print(stderr, "spiral: {}\n", e.what());
      world.abort(2);
    }

    fmt::print("spiral: {} points ({} train, {} held out), MLP 2-{}-{}-{}, Adam lr {}\n", n, n_train, n_heldout, hidden,
               hidden, classes, lr);
    if (world.size() > 1) fmt::print("distributed: {} ranks, {} training points each\n", world.size(), B);
    cg::print_summary(step);  // params, memory, steps and FLOPs of one training step
  }

  // Rank 0 writes; the others wait until the file is complete (the params and Adam's state are
  // the same on every rank).
  auto save = [&](int epoch) {
    if (root) {
      try {
        cg::save(params, opt, checkpoint, {{"epoch", std::to_string(epoch)}, {"seed", std::to_string(seed)}});
      } catch (const std::exception& e) {
        fmt::print(stderr, "\nspiral: {}\n", e.what());
        world.abort(2);
      }
    }
    world.barrier();
  };
  // A bar on a terminal, plain lines elsewhere; its rates count this run's epochs only. Rank 0's.
  std::optional<cg::progress> bar;
  if (root)
    bar.emplace(last_epoch,
                cg::progress_options{.label = "epoch", .start = first_epoch - 1, .examples_per_step = n_train});
  double train_loss = 0, train_acc = 0, heldout_acc = 0;
  int epoch = first_epoch;                // outside the loop: a diverged run names it,
  const char* running = "training step";  // and which run found the NaN or infinity
  try {
    for (; epoch <= last_epoch; ++epoch) {
      const int done_epochs = epoch - first_epoch + 1;
      // cg::check_finite: a NaN or an infinity in any step's output throws, naming the step.
      running = "training step";
      auto r = step.run(params, cg::feed<"x">(train_x), cg::feed<"y">(train_y), cg::check_finite);
      // The means over the ranks' equal shares: the full batch's loss and accuracy.
      train_loss = world.average(static_cast<float>(r[loss]));
      train_acc = world.average(accuracy(r[logits], train_y.data(), B));  // before this epoch's update
      // The full batch's gradients, on every rank, before the update.
      world.average_grads(params, r);
      opt.set_lr(schedule.lr_at(epoch - 1));  // epochs count on across a resume, and so does the schedule
      opt.step(params, r);
      running = "held-out step, which checks the updated params first";
      auto e = eval.run(params, cg::feed<"x_heldout">(heldout_x), cg::check_finite);
      heldout_acc = accuracy(e[logits_heldout], heldout_y, n_heldout);
      if (root) {
        metrics->write({epoch, train_loss, train_acc, heldout_acc});
        bar->update(epoch, {cg::metric("loss", train_loss), cg::percent("train", train_acc),
                            cg::percent("held-out", heldout_acc)});
      }
      if (save_every > 0 && (done_epochs % save_every == 0 || epoch == last_epoch)) save(epoch);
    }
  } catch (const cg::non_finite_error& err) {
    // A NaN or an infinity in the loss, a gradient or the updated params: stop before the
    // epoch's row and checkpoint, so loss.csv and the last checkpoint keep the epochs before.
    // On N ranks, the rank that found it ends the job: the others may wait in an allreduce.
    if (root) {
      metrics->close();
      bar->finish();
    }
    const std::string who = world.size() > 1 ? fmt::format("rank {}: ", world.rank()) : "";
    fmt::print(stderr, "{}spiral: epoch {}: training diverged (Adam lr {}), stopped in the {}: {}\n", who, epoch, lr,
               running, err.what());
    fmt::print(stderr, "{}spiral: {} keeps the epochs before {}{}\n", who, csv.string(), epoch,
               save_every > 0 && fs::exists(checkpoint) ? ", and so does " + checkpoint.string() : "");
    if (world.size() > 1) world.abort(3);
    return 3;
  } catch (const std::exception& err) {  // loss.csv could not be written
    if (root) bar->finish();
    fmt::print(stderr, "{}spiral: epoch {}: {}\n", world.size() > 1 ? fmt::format("rank {}: ", world.rank()) : "",
               epoch, err.what());
    if (world.size() > 1) world.abort(2);
    return 2;
  }
  if (!root) return heldout_acc >= 0.95 ? 0 : 1;  // the same on every rank: the same params
  bar->finish();
  metrics->close();

  const cg::plot_result plotted = cg::plot_curves(csv,
                                                  {.curves = {{"train_loss", "train loss"},
                                                              {"train_acc", "train accuracy", true},
                                                              {"heldout_acc", "held-out accuracy", true}},
                                                   .ylabel = "cross-entropy loss",
                                                   .y2label = "accuracy",
                                                   .log_y = true,
                                                   .y2_range = cg::axis_range{0, 1}},
                                                  svg);
  if (!plotted) fmt::print("note: {}\n", plotted.message);
  fmt::print("wrote {}, {}{}{}\n", csv.string(), (out / "spiral.dot").string(), plotted ? ", " + svg.string() : "",
             save_every > 0 ? ", " + checkpoint.string() : "");
  fmt::print("final: train loss {:.4f}, train accuracy {:.1f}%, held-out accuracy {:.1f}% ({} points)\n", train_loss,
             100 * train_acc, 100 * heldout_acc, n_heldout);
  return heldout_acc >= 0.95 ? 0 : 1;
}

int main(int argc, char** argv) {
  spiral_flags flags;
  if (auto exit_code = parse_flags(argc, argv, flags)) return *exit_code;
  if (!flags.distributed) return train<n_train>(flags, ranks{});
#ifdef CTGRAPH_HAS_MPI
  cg::communicator comm(argc, argv);
  // An exception on one rank prints "rank R: ..." and ends the job (MPI_Abort): never a hang.
  return cg::run_or_abort(comm, [&] {
    const ranks world{&comm};
    // The compiled step has a fixed batch: one per supported number of ranks.
    switch (comm.size()) {
      case 1:
        return train<n_train>(flags, world);
      case 2:
        return train<n_train / 2>(flags, world);
      case 4:
        return train<n_train / 4>(flags, world);
      default:
        throw std::invalid_argument(fmt::format(
            "spiral: --distributed runs on 1, 2 or 4 ranks (480 points split evenly), not {}", comm.size()));
    }
  });
#else
  fmt::print(stderr, "spiral: --distributed: this build has no MPI (configure with -DCTGRAPH_MPI=ON)\n");
  return 2;
#endif
}
