// optimizer step() allocates nothing: like no_alloc.test.cpp (counting replacements of
// operator new/delete and malloc & co from alloc_counting.hpp), after a warm-up, steps of
// sgd, adam and adamw (amsgrad, clipping) on the results of a training step count zero
// allocations of either kind.
#include <omp.h>

#include <catch2/catch.hpp>
#include <ctgraph/ctgraph.hpp>
#include <vector>

#include "alloc_counting.hpp"

namespace cg = ctgraph;
using namespace cg::literals;

TEST_CASE("optimizer steps allocate nothing", "[alloc][optim]") {
  constexpr int B = 16, In = 24, H = 32, C = 5;
  constexpr auto x = cg::input<"x", float, B, In>;
  constexpr auto y = cg::input<"y", int, B>;
  constexpr auto W1 = cg::param<"W1", float, H, In>;
  constexpr auto b1 = cg::param<"b1", float, H>;
  constexpr auto W2 = cg::param<"W2", float, C, H>;
  constexpr auto b2 = cg::param<"b2", float, C>;
  constexpr auto logits = cg::matmul(cg::tanh(cg::matmul(x, cg::transpose(W1)) + b1), cg::transpose(W2)) + b2;
  constexpr auto loss = cg::cross_entropy(logits, y);
  auto step = cg::compile(loss, cg::grad(loss, W1, b1, W2));  // b2 has no gradient: skipped
  auto params = cg::parameters_of(step);
  cg::init(params, 1);
  std::vector<float> xs(B * In);
  std::vector<int> ys(B);
  for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>((i * 37 % 101) / 101.0 - 0.5);
  for (int i = 0; i < B; ++i) ys[i] = i % C;
  omp_set_num_threads(2);
  cg::sgd sgd(params, {.lr = 0.1, .momentum = 0.9, .nesterov = true});
  cg::adam adam(params, {.amsgrad = true});
  cg::adamw adamw(params, {.lr = 1e-2});
  const cg::cosine_warmup_lr sched{.lr = 1e-2, .warmup_steps = 2, .total_steps = 10};
  auto train = [&](int t) {
    auto out = step.run(params, cg::feed<"x">(xs), cg::feed<"y">(ys));
    adamw.set_lr(sched.lr_at(t));
    sgd.step(params, out);
    adam.step(params, out, {.max_grad_norm = 0.5});
    return adamw.step(params, out, {.max_grad_norm = 1.0}) + cg::grad_norm(params, out);
  };
  long n, m;
  {  // the counters see the state an optimizer allocates at construction
    count_scope c;
    cg::adam other(params);
    m = mallocs;
  }
  CHECK(m == 2);  // first and second moments
  const float l0 = step.run(params, cg::feed<"x">(xs), cg::feed<"y">(ys))[loss];
  train(0);  // warm-up (thread pool, ...)
  double norms = 0;
  {
    count_scope c;
    for (int t = 1; t < 6; ++t) norms += train(t);
    n = news, m = mallocs;
  }
  CHECK(n == 0);
  CHECK(m == 0);
  CHECK(std::isfinite(norms));
  const float l1 = step.run(params, cg::feed<"x">(xs), cg::feed<"y">(ys))[loss];
  CHECK(l1 < l0);
}
