// examples/spiral: an MLP classifier on the 3-arm spiral, trained with plain SGD.
// The model, its gradients, the schedule and the memory plan are fixed at compile
// time; each training step is one call to step.run.
#include <cmath>
#include <cstdio>
#include <ctgraph/ctgraph.hpp>
#include <random>
#include <vector>

namespace cg = ctgraph;

constexpr int classes = 3, per_class = 100, n = classes * per_class, hidden = 64;

// A linear layer as in PyTorch: weight [Out, In], bias [Out]; the transpose is free.
template <cg::fixed_string Name, int In, int Out>
constexpr auto linear(cg::expression auto x) {
  return cg::matmul(x, cg::transpose(cg::param<Name + ".weight", float, Out, In>)) +
         cg::param<Name + ".bias", float, Out>;
}

constexpr auto x = cg::input<"x", float, n, 2>;
constexpr auto y = cg::input<"y", int, n>;
constexpr auto h1 = cg::tanh(linear<"fc1", 2, hidden>(x));
constexpr auto h2 = cg::tanh(linear<"fc2", hidden, hidden>(h1));
constexpr auto logits = linear<"out", hidden, classes>(h2);
constexpr auto loss = cg::cross_entropy(logits, y);

// Every param of the model, to differentiate and update.
constexpr auto W1 = cg::param<"fc1.weight", float, hidden, 2>;
constexpr auto b1 = cg::param<"fc1.bias", float, hidden>;
constexpr auto W2 = cg::param<"fc2.weight", float, hidden, hidden>;
constexpr auto b2 = cg::param<"fc2.bias", float, hidden>;
constexpr auto W3 = cg::param<"out.weight", float, classes, hidden>;
constexpr auto b3 = cg::param<"out.bias", float, classes>;

// The spiral: arm k holds points at radius r in [0, 1], angle 4k + 4r plus noise.
void make_spiral(std::vector<float>& xs, std::vector<int>& ys, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> noise(0.f, 0.2f);
  for (int k = 0; k < classes; ++k)
    for (int i = 0; i < per_class; ++i) {
      const float r = static_cast<float>(i) / (per_class - 1);
      const float t = 4.f * k + 4.f * r + noise(gen);
      xs.push_back(r * std::sin(t));
      xs.push_back(r * std::cos(t));
      ys.push_back(k);
    }
}

int main() {
  std::vector<float> xs;
  std::vector<int> ys;
  make_spiral(xs, ys, 42);

  auto step = cg::compile(loss, logits, cg::grad(loss, W1, b1, W2, b2, W3, b3));
  auto params = cg::parameters_of(step);
  cg::init(params, 0);
  std::printf("spiral: %d points, MLP 2-%d-%d-3, %zu steps per run (%zu fused loops), arena %ld bytes\n", n, hidden,
              hidden, step.num_steps(), step.num_fused_steps(), step.arena_bytes());

  const float lr = 1.0f;
  float accuracy = 0, l = 0;
  for (int epoch = 1; epoch <= 1000; ++epoch) {
    auto out = step.run(params, cg::feed<"x">(xs), cg::feed<"y">(ys));
    l = out[loss];
    auto sgd = [&](auto p) {
      auto w = params.get<decltype(p)::name>();
      auto g = out[cg::grad(loss, p)];
      for (std::size_t i = 0; i < w.size(); ++i) w[i] -= lr * g[i];
    };
    sgd(W1), sgd(b1), sgd(W2), sgd(b2), sgd(W3), sgd(b3);
    if (epoch % 100 == 0 || epoch == 1) {
      auto z = out[logits];
      int correct = 0;
      for (int i = 0; i < n; ++i) {
        int best = 0;
        for (int c = 1; c < classes; ++c)
          if (z(i, c) > z(i, best)) best = c;
        correct += best == ys[i];
      }
      accuracy = static_cast<float>(correct) / n;
      std::printf("epoch %4d  loss %.4f  accuracy %.1f%%\n", epoch, l, 100 * accuracy);
    }
  }
  std::printf("final: loss %.4f, training accuracy %.1f%%\n", l, 100 * accuracy);
  return accuracy >= 0.95f ? 0 : 1;
}
