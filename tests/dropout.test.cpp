// Dropout (ops/dropout.hpp, nn::dropout, transformer_options::dropout):
//   - a run is a function of its seed: the same seed gives the same mask, another seed another one;
//   - the mask's rate and scale: a fraction p of zeros, the rest 1 / (1 - p), mean 1;
//   - its gradient is the same mask (against central differences too, in double);
//   - two dropouts draw independent masks;
//   - an evaluation program (no gradient) applies none, with or without a seed, and plans no mask;
//   - transformer layers with dropout: training steps differ by seed, evaluation equals the layer without it.
#include <cmath>
#include <vector>

#include "gradcheck.hpp"
#include "testing.hpp"

namespace cg = ctgraph;
namespace nn = ctgraph::nn;

namespace {
constexpr int R = 200, C = 500;
constexpr auto x = cg::input<"x", float, R, C>;
constexpr auto y = nn::dropout<"drop", 0.25>(x);
constexpr auto loss = cg::sum(y * y);

std::vector<float> ones() { return std::vector<float>(R * C, 1.0f); }
}  // namespace

TEST_CASE("dropout: the same seed draws the same mask, another seed another", "[dropout]") {
  auto step = cg::compile(y, cg::grad(loss, x));
  auto params = cg::parameters_of(step);
  const auto xv = ones();
  auto a = step.run(params, cg::feed<"x">(xv), cg::seed(7));
  const std::vector<float> first(a[y].begin(), a[y].end());
  auto b = step.run(params, cg::feed<"x">(xv), cg::seed(7));
  CHECK(std::equal(first.begin(), first.end(), b[y].begin()));
  auto c = step.run(params, cg::feed<"x">(xv), cg::seed(8));
  long differ = 0;
  for (long i = 0; i < R * C; ++i) differ += first[i] != c[y].data()[i];
  // Two independent masks of rate 1/4 differ at 2 p (1 - p) = 3/8 of the elements.
  CHECK(std::abs(double(differ) / (R * C) - 0.375) < 0.01);
  // Seeds that differ in their high 32 bits only draw other masks too.
  auto d = step.run(params, cg::feed<"x">(xv), cg::seed(7 + (1ull << 32)));
  CHECK(!std::equal(first.begin(), first.end(), d[y].begin()));
}

TEST_CASE("dropout: a fraction p of zeros, the rest scaled by 1 / (1 - p); the gradient is the mask", "[dropout]") {
  auto step = cg::compile(y, cg::grad(loss, x));
  auto params = cg::parameters_of(step);
  std::vector<float> xv(R * C);
  for (long i = 0; i < R * C; ++i) xv[i] = 0.5f + float(i % 7);
  auto out = step.run(params, cg::feed<"x">(xv), cg::seed(123));
  long zeros = 0;
  double mean = 0;
  for (long i = 0; i < R * C; ++i) {
    const float m = out[y].data()[i] / xv[i];
    if (m == 0)
      ++zeros;
    else
      REQUIRE(m == Approx(1 / 0.75).epsilon(1e-6));
    mean += m;
    // d sum(y^2) / dx = 2 y m
    REQUIRE(out[cg::grad(loss, x)].data()[i] == Approx(2 * out[y].data()[i] * m).epsilon(1e-6));
  }
  // 100,000 draws: the fraction's standard deviation is 0.0014.
  CHECK(std::abs(double(zeros) / (R * C) - 0.25) < 0.006);
  CHECK(std::abs(mean / (R * C) - 1) < 0.01);
  // Rows are not all alike: the mask is drawn per element, not per row.
  CHECK(!std::equal(out[y].begin(), out[y].begin() + C, out[y].begin() + C));
}

TEST_CASE("dropout: p = 1 zeroes everything; p = 0 is the identity, with no mask", "[dropout]") {
  constexpr auto all = nn::dropout<"all", 1.0>(x);
  constexpr auto none = nn::dropout<"none", 0>(x);
  auto step = cg::compile(all, none, cg::grad(cg::sum(all + none), x));
  auto params = cg::parameters_of(step);
  const auto xv = ones();
  auto out = step.run(params, cg::feed<"x">(xv), cg::seed(1));
  CHECK(std::all_of(out[all].begin(), out[all].end(), [](float v) { return v == 0; }));
  CHECK(std::all_of(out[none].begin(), out[none].end(), [](float v) { return v == 1; }));
  STATIC_REQUIRE(std::is_same_v<decltype(none), decltype(x)>);
}

TEST_CASE("dropout: two dropouts of one graph draw independent masks", "[dropout]") {
  constexpr auto a = nn::dropout<"a", 0.5>(x);
  constexpr auto b = nn::dropout<"b", 0.5>(x);
  auto step = cg::compile(a, b, cg::grad(cg::sum(a * b), x));
  auto params = cg::parameters_of(step);
  const auto xv = ones();
  auto out = step.run(params, cg::feed<"x">(xv), cg::seed(5));
  long same = 0;
  for (long i = 0; i < R * C; ++i) same += out[a].data()[i] == out[b].data()[i];
  CHECK(std::abs(double(same) / (R * C) - 0.5) < 0.01);
}

TEST_CASE("dropout: an evaluation program applies none and plans no mask", "[dropout]") {
  auto eval = cg::compile(y);
  auto params = cg::parameters_of(eval);
  STATIC_REQUIRE(decltype(eval)::sizes.inputs == 1);  // x only: no seed input
  STATIC_REQUIRE(decltype(eval)::num_kernel_steps() == 0);
  std::vector<float> xv(R * C);
  for (long i = 0; i < R * C; ++i) xv[i] = float(i % 11) - 5;
  auto out = eval.run(params, cg::feed<"x">(xv));
  CHECK(std::equal(xv.begin(), xv.end(), out[y].begin()));
  auto seeded = eval.run(params, cg::feed<"x">(xv), cg::seed(3));  // a seed is ignored
  CHECK(std::equal(xv.begin(), xv.end(), seeded[y].begin()));
}

TEST_CASE("dropout: the gradient against central differences (double, fixed seed)", "[dropout]") {
  constexpr auto xd = cg::input<"x", double, 3, 4>;
  constexpr auto w = cg::param<"w", double, 4, 5>;
  constexpr auto h = nn::dropout<"drop", 0.3>(cg::tanh(cg::matmul(xd, w)));
  constexpr auto l = cg::sum(h * h);
  auto step = cg::compile(l, cg::grad(l, w));
  auto params = cg::parameters_of(step);
  cg::init(params, 1);
  std::vector<double> xv(12);
  for (int i = 0; i < 12; ++i) xv[i] = std::sin(0.7 * i);
  auto run = [&] { return double(step.run(params, cg::feed<"x">(xv), cg::seed(42))[l]); };
  const double base = run();
  auto out = step.run(params, cg::feed<"x">(xv), cg::seed(42));
  const std::vector<double> g(out[cg::grad(l, w)].begin(), out[cg::grad(l, w)].end());
  int zeros = 0;
  double* wv = params.template get<"w">().data();
  for (int i = 0; i < 20; ++i) {
    const double e = 1e-6, keep = wv[i];
    wv[i] = keep + e;
    const double up = run();
    wv[i] = keep - e;
    const double down = run();
    wv[i] = keep;
    CHECK(g[i] == Approx((up - down) / (2 * e)).margin(1e-7));
    zeros += g[i] == 0;
  }
  CHECK(run() == base);
  CHECK(zeros < 20);
}

TEST_CASE("dropout: transformer layers drop in training steps only", "[dropout]") {
  constexpr int L = 6, B = 2, E = 16;
  constexpr auto xs = cg::input<"x", float, L, B, E>;
  constexpr auto with =
      nn::transformer_encoder_layer<"layer", 2, 32, nn::transformer_options{.dropout = 0.2}>(xs, cg::causal);
  constexpr auto without = nn::transformer_encoder_layer<"layer", 2, 32>(xs, cg::causal);
  constexpr auto lw = cg::sum(with * with);
  auto train = cg::compile(with, cg::grad(lw));
  auto eval = cg::compile(with);
  auto plain = cg::compile(without);
  auto params = cg::parameters_of(train);
  cg::init(params, 3);
  std::vector<float> xv(L * B * E);
  for (std::size_t i = 0; i < xv.size(); ++i) xv[i] = std::sin(0.37f * float(i));
  const auto e = eval.run(params, cg::feed<"x">(xv));
  const std::vector<float> ev(e[with].begin(), e[with].end());
  const auto p = plain.run(params, cg::feed<"x">(xv));
  for (std::size_t i = 0; i < ev.size(); ++i) REQUIRE(ev[i] == Approx(p[without].data()[i]).margin(1e-6));
  const auto t1 = train.run(params, cg::feed<"x">(xv), cg::seed(1));
  const std::vector<float> tv(t1[with].begin(), t1[with].end());
  double diff = 0;
  for (std::size_t i = 0; i < tv.size(); ++i) diff += std::abs(tv[i] - ev[i]);
  CHECK(diff / double(tv.size()) > 1e-2);  // dropped: not the evaluation's output
  const auto t2 = train.run(params, cg::feed<"x">(xv), cg::seed(1));
  CHECK(std::equal(tv.begin(), tv.end(), t2[with].begin()));
}
