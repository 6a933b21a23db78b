// Data-parallel equivalence (ctgraph/distributed.hpp), run by mpirun on 2 ranks (ctest -L distributed):
// 20 steps of an MLP classifier on 2 ranks, each taking its half of a global batch of 64
// (cg::batches::shard), give the losses, accuracies and final params of 20 steps of one process on
// the whole batch, to 1e-5 relative; with SGD (momentum), whose steps scale with the gradient, so
// that a sum over ranks where a mean is due fails, and with Adam (nearly blind to that scale). Every rank also runs
// that one-process reference itself (on the full batches, without MPI calls) and checks against it; the exit code is
// non-zero on any rank whose run differs, and mpirun then fails. The ranks start from different params (each inits with
// its own seed): broadcast must make them rank 0's, or the first loss differs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ctgraph/ctgraph.hpp>
#include <ctgraph/distributed.hpp>
#include <ctgraph/train.hpp>
#include <random>
#include <vector>

namespace cg = ctgraph;

constexpr int classes = 3, features = 4, hidden = 16, examples = 256, global_batch = 64, ranks = 2, steps = 20;
constexpr int local_batch = global_batch / ranks;

template <cg::fixed_string Name, int In, int Out>
constexpr auto linear(cg::expression auto x) {
  return cg::matmul(x, cg::transpose(cg::param<Name + ".weight", float, Out, In>)) +
         cg::param<Name + ".bias", float, Out>;
}
constexpr auto mlp(cg::expression auto x) {
  return linear<"out", hidden, classes>(cg::tanh(linear<"fc1", features, hidden>(x)));
}

// The same model at two batch sizes: one rank's share, and the whole batch (the reference).
template <int B>
struct model {
  static constexpr auto x = cg::input<"x", float, B, features>;
  static constexpr auto y = cg::input<"y", int, B>;
  static constexpr auto logits = mlp(x);
  static constexpr auto loss = cg::cross_entropy(logits, y);
  static constexpr auto grads = cg::grad(loss);
};

template <class View>
double accuracy(const View& z, const std::vector<int>& labels) {
  int correct = 0;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    int best = 0;
    for (int c = 1; c < classes; ++c)
      if (z(static_cast<int>(i), c) > z(static_cast<int>(i), best)) best = c;
    correct += best == labels[i];
  }
  return static_cast<double>(correct) / static_cast<double>(labels.size());
}

struct run_record {
  std::vector<double> losses, accuracies;
  std::vector<std::vector<double>> params;  // every param, in the set's order
};

template <int B, class P, class Opt>
run_record train_with(const cg::communicator* comm, Opt& opt, cg::parameters<P>& params, const std::vector<float>& xs,
                      const std::vector<int>& ys) {
  using M = model<B>;
  auto step = cg::compile(M::loss, M::logits, M::grads);
  cg::batches order(examples, global_batch, {.seed = 11});
  std::vector<float> xb(static_cast<std::size_t>(B) * features);
  std::vector<int> yb(B);
  run_record rec;
  for (std::uint64_t s = 0; s < steps; ++s) {
    const auto idx = comm ? order.shard_at(s, comm->rank(), comm->size()) : order.at(s);
    cg::gather_rows(xs, features, idx, xb);
    cg::gather_rows(ys, 1, idx, yb);
    auto r = step.run(params, cg::feed<"x">(xb), cg::feed<"y">(yb));
    double loss = static_cast<float>(r[M::loss]), acc = accuracy(r[M::logits], yb);
    if (comm) {
      cg::average_grads(*comm, params, r);
      loss = cg::average(*comm, loss);
      acc = cg::average(*comm, acc);
    }
    opt.step(params, r);
    rec.losses.push_back(loss);
    rec.accuracies.push_back(acc);
  }
  params.for_each([&](auto, auto span, auto) { rec.params.emplace_back(span.begin(), span.end()); });
  return rec;
}

enum class optimizer { sgd, adam };

// `steps` steps of SGD or Adam; on `comm` (the rank's shard, averaged), or alone on the full batch
// (comm null).
template <int B, class P>
run_record train(const cg::communicator* comm, optimizer which, cg::parameters<P>& params, const std::vector<float>& xs,
                 const std::vector<int>& ys) {
  if (which == optimizer::sgd) {
    cg::sgd opt(params, {.lr = 0.2, .momentum = 0.9});
    return train_with<B>(comm, opt, params, xs, ys);
  }
  cg::adam opt(params, {.lr = 0.05});
  return train_with<B>(comm, opt, params, xs, ys);
}

bool close(double got, double want, double rel) { return std::abs(got - want) <= rel * std::max(std::abs(want), 1e-3); }

int main(int argc, char** argv) {
  cg::communicator comm(argc, argv);
  return cg::run_or_abort(comm, [&] {
    if (comm.size() != ranks) {
      std::fprintf(stderr, "rank %d: this test runs on %d ranks, not %d\n", comm.rank(), ranks, comm.size());
      return 2;
    }
    // Three Gaussian blobs in 4 dimensions, the same on every rank (a fixed seed).
    std::mt19937_64 gen(5);
    std::normal_distribution<float> noise(0.f, 0.7f);
    std::vector<float> xs;
    std::vector<int> ys;
    for (int i = 0; i < examples; ++i) {
      const int c = i % classes;
      for (int f = 0; f < features; ++f) xs.push_back((f == c ? 1.5f : 0.f) + noise(gen));
      ys.push_back(c);
    }

    auto probe = cg::compile(model<global_batch>::loss);
    constexpr double rel = 1e-5;
    int bad = 0;
    for (const optimizer which : {optimizer::sgd, optimizer::adam}) {
      const char* name = which == optimizer::sgd ? "sgd" : "adam";
      auto reference_params = cg::parameters_of(probe);
      cg::init(reference_params, 1);
      const run_record reference = train<global_batch>(nullptr, which, reference_params, xs, ys);

      auto params = cg::parameters_of(probe);
      cg::init(params, 1 + static_cast<std::uint64_t>(comm.rank()));  // rank 0's are the reference's
      cg::broadcast(comm, params);
      const run_record got = train<local_batch>(&comm, which, params, xs, ys);

      int bad_steps = 0;
      for (int s = 0; s < steps; ++s) {
        const bool ok =
            close(got.losses[s], reference.losses[s], rel) && close(got.accuracies[s], reference.accuracies[s], rel);
        if (!ok || comm.is_root())
          std::printf("%s rank %d step %2d: loss %.7f (1 rank: %.7f), accuracy %.4f (1 rank: %.4f)%s\n", name,
                      comm.rank(), s, got.losses[s], reference.losses[s], got.accuracies[s], reference.accuracies[s],
                      ok ? "" : "  MISMATCH");
        bad_steps += !ok;
      }
      // The losses must also move: a run that learned nothing would agree trivially.
      bool learned = reference.losses.back() < 0.8 * reference.losses.front();
      if (!learned)
        std::fprintf(stderr, "%s rank %d: the reference's loss fell from %g to %g only\n", name, comm.rank(),
                     reference.losses.front(), reference.losses.back());
      // Each param tensor's error relative to its size (the L2 norms of a - b and of b): a param
      // near 0 whose gradient is too has no relative error of its own worth measuring.
      double worst = 0;
      for (std::size_t k = 0; k < got.params.size() && k < reference.params.size(); ++k) {
        double diff = 0, size = 0;
        for (std::size_t i = 0; i < reference.params[k].size(); ++i) {
          diff += (got.params[k][i] - reference.params[k][i]) * (got.params[k][i] - reference.params[k][i]);
          size += reference.params[k][i] * reference.params[k][i];
        }
        worst = std::max(worst, std::sqrt(diff) / std::max(std::sqrt(size), 1e-30));
      }
      const bool params_ok = got.params.size() == reference.params.size() && worst <= rel;
      std::printf("%s rank %d: %d of %d steps differ, final params within %.2g relative%s: %s\n", name, comm.rank(),
                  bad_steps, steps, worst, learned ? "" : ", the loss did not fall",
                  bad_steps == 0 && params_ok && learned ? "equivalent" : "FAILED");
      bad += bad_steps + !params_ok + !learned;
    }
    // Every rank's verdict, so that rank 0's exit code alone would tell too.
    const double failed = cg::average(comm, bad ? 1.0 : 0.0);
    return failed > 0 ? 1 : 0;
  });
}
