// Elementwise ops (+ - * / unary minus, exp log tanh sigmoid relu sqrt, scalar
// constants, broadcast_to): forward values against hand-computed numbers, gradients
// against finite differences (broadcasting included).
#include <array>
#include <cmath>
#include <vector>

#include "gradcheck.hpp"
#include "testing.hpp"

namespace cg = ctgraph;
using namespace cg::literals;
using ctgraph_test::expect_values;
using ctgraph_test::gradcheck;
using ctgraph_test::gradcheck_options;
using ctgraph_test::probe;

// ---------------------------------------------------------------- forward values

TEST_CASE("elementwise forward: binary ops broadcast like NumPy", "[elementwise][forward]") {
  constexpr auto a = cg::input<"a", double, 2, 3>;
  constexpr auto b = cg::input<"b", double, 3>;
  constexpr auto c = cg::input<"c", double, 2, 1>;
  constexpr auto add = a + b;
  constexpr auto sub = c - b;  // [2,1] - [3] -> [2,3]
  constexpr auto mul = a * c;
  constexpr auto div = a / b;
  auto step = cg::compile(add, sub, mul, div);
  auto params = cg::parameters_of(step);
  const std::array<double, 6> av{1, 2, 3, 4, 5, 6};
  const std::array<double, 3> bv{10, 20, 40};
  const std::array<double, 2> cv{2, -1};
  auto out = step.run(params, cg::feed<"a">(av), cg::feed<"b">(bv), cg::feed<"c">(cv));
  expect_values(out[add], {11, 22, 43, 14, 25, 46});
  expect_values(out[sub], {-8, -18, -38, -11, -21, -41});
  expect_values(out[mul], {2, 4, 6, -4, -5, -6});
  expect_values(out[div], {0.1, 0.1, 0.075, 0.4, 0.25, 0.15});
  CHECK(out[add].dims() == std::array<int, 2>{2, 3});
  CHECK(out[sub].dims() == std::array<int, 2>{2, 3});
  CHECK(out[add](1, 2) == 46);
}

TEST_CASE("elementwise forward: outer broadcast [4,1] * [1,5] and rank-3 [2,3,4] / [3,1]", "[elementwise][forward]") {
  constexpr auto a = cg::input<"a", double, 4, 1>;
  constexpr auto b = cg::input<"b", double, 1, 5>;
  constexpr auto x = cg::input<"x", double, 2, 3, 4>;
  constexpr auto d = cg::input<"d", double, 3, 1>;
  constexpr auto outer = a * b;
  constexpr auto q = x / d;
  auto step = cg::compile(outer, q);
  auto params = cg::parameters_of(step);
  std::vector<double> av{1, 2, 3, 4}, bv{1, 10, 100, 1000, 10000};
  std::vector<double> xv = ctgraph_test::iota_values(24), dv{1, 2, 4};
  auto out = step.run(params, cg::feed<"a">(av), cg::feed<"b">(bv), cg::feed<"x">(xv), cg::feed<"d">(dv));
  auto o = out[outer];
  REQUIRE(o.dims() == std::array<int, 2>{4, 5});
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 5; ++j) CHECK(o(i, j) == av[i] * bv[j]);
  auto qv = out[q];
  REQUIRE(qv.dims() == std::array<int, 3>{2, 3, 4});
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) CHECK(qv(i, j, k) == (12 * i + 4 * j + k) / dv[j]);
}

TEST_CASE("elementwise forward: unary functions", "[elementwise][forward]") {
  constexpr auto x = cg::input<"x", double, 5>;
  constexpr auto p = cg::input<"p", double, 4>;
  constexpr auto e_neg = -x;
  constexpr auto e_exp = cg::exp(x);
  constexpr auto e_tanh = cg::tanh(x);
  constexpr auto e_sig = cg::sigmoid(x);
  constexpr auto e_relu = cg::relu(x);
  constexpr auto e_log = cg::log(p);
  constexpr auto e_sqrt = cg::sqrt(p);
  auto step = cg::compile(e_neg, e_exp, e_tanh, e_sig, e_relu, e_log, e_sqrt);
  auto params = cg::parameters_of(step);
  const std::array<double, 5> xv{-2, -0.5, 0, 0.5, 2};
  const std::array<double, 4> pv{1, 4, 0.25, 2.718281828459045};
  auto out = step.run(params, cg::feed<"x">(xv), cg::feed<"p">(pv));
  expect_values(out[e_neg], {2, 0.5, 0, -0.5, -2});
  expect_values(out[e_exp], {0.1353352832366127, 0.6065306597126334, 1, 1.6487212707001282, 7.38905609893065});
  expect_values(out[e_tanh], {-0.9640275800758169, -0.46211715726000974, 0, 0.46211715726000974, 0.9640275800758169});
  expect_values(out[e_sig], {0.11920292202211755, 0.3775406687981454, 0.5, 0.6224593312018546, 0.8807970779778823});
  expect_values(out[e_relu], {0, 0, 0, 0.5, 2});
  expect_values(out[e_log], {0, 1.3862943611198906, -1.3862943611198906, 1});
  expect_values(out[e_sqrt], {1, 2, 0.5, 1.6487212707001282});
}

TEST_CASE("elementwise forward: scalar constants on either side", "[elementwise][forward]") {
  constexpr auto x = cg::input<"x", double, 4>;
  constexpr auto e1 = 2.0_c * x + 1_c;
  constexpr auto e2 = x / 4_c - 0.5_c;
  constexpr auto e3 = 1_c - x;
  constexpr auto e4 = 3_c / x;
  constexpr auto e5 = x * cg::constant<-1.5>;
  constexpr auto e6 = -2.5_c * x;
  auto step = cg::compile(e1, e2, e3, e4, e5, e6);
  auto params = cg::parameters_of(step);
  const std::array<double, 4> xv{1, 2, -4, 0.5};
  auto out = step.run(params, cg::feed<"x">(xv));
  expect_values(out[e1], {3, 5, -7, 2});
  expect_values(out[e2], {-0.25, 0, -1.5, -0.375});
  expect_values(out[e3], {0, -1, 5, 0.5});
  expect_values(out[e4], {3, 1.5, -0.75, 6});
  expect_values(out[e5], {-1.5, -3, 6, -0.75});
  expect_values(out[e6], {-2.5, -5, 10, -1.25});
}

TEST_CASE("elementwise forward: fused chains, params, broadcast_to, float", "[elementwise][forward]") {
  constexpr auto x = cg::input<"x", float, 2, 3>;
  constexpr auto w = cg::param<"w", float, 3>;
  constexpr auto s = cg::param<"s", float>;  // rank 0
  constexpr auto chain = cg::relu(x * w + s) * 2.0_c - x;
  constexpr auto bw = cg::broadcast_to<2, 3>(w);
  auto step = cg::compile(chain, bw);
  CHECK(step.num_fused_steps() == 2);  // the chain is one loop; broadcast_to another
  auto params = cg::parameters_of(step);
  auto wv = params.get<"w">();
  wv(0) = 1, wv(1) = -1, wv(2) = 0.5f;
  float& sv = *params.get<"s">().data();
  sv = 0.25f;
  std::vector<float> xv{1, 2, 3, -1, -2, -3};
  auto out = step.run(params, cg::feed<"x">(xv));
  // relu(x*w + s) * 2 - x, row by row
  expect_values(out[chain], {2.5 - 1, 0 - 2, 3.5 - 3, 0 + 1, 4.5 + 2, 0 + 3}, 1e-6);
  expect_values(out[bw], {1, -1, 0.5, 1, -1, 0.5});
  CHECK(static_cast<float>(out[chain](1, 1)) == 6.5f);
}

// ---------------------------------------------------------------- gradients

TEST_CASE("elementwise gradients: add, broadcasting", "[elementwise][grad]") {
  constexpr auto a = cg::param<"a", double, 4, 3>;
  constexpr auto b = cg::param<"b", double, 3>;
  gradcheck("add [4,3]+[3]", probe(a + b), a, b);
  constexpr auto c = cg::input<"c", double, 4, 1>;
  constexpr auto s = cg::param<"s", double>;
  gradcheck("add [4,1]+[4,3]+[]", probe(c + a + s), c, a, s);
}

TEST_CASE("elementwise gradients: sub, broadcasting", "[elementwise][grad]") {
  constexpr auto a = cg::param<"a", double, 4, 1>;
  constexpr auto b = cg::input<"b", double, 1, 5>;
  gradcheck("sub [4,1]-[1,5]", probe(a - b), a, b);
  gradcheck("sub [1,5]-[4,1]", probe(b - a), a, b);
}

TEST_CASE("elementwise gradients: mul, broadcasting", "[elementwise][grad]") {
  constexpr auto a = cg::param<"a", double, 4, 1>;
  constexpr auto b = cg::param<"b", double, 1, 5>;
  gradcheck("mul [4,1]*[1,5]", probe(a * b), a, b);
  constexpr auto x = cg::input<"x", double, 2, 3, 4>;
  constexpr auto v = cg::param<"v", double, 4>;
  gradcheck("mul [2,3,4]*[4]", probe(x * v), x, v);
  gradcheck("mul a*a (one operand twice)", probe(x * x), x);
}

TEST_CASE("elementwise gradients: div, broadcasting", "[elementwise][grad]") {
  gradcheck_options o;
  o.lo = 0.5, o.hi = 2.0;  // denominators away from 0
  constexpr auto x = cg::param<"x", double, 2, 3, 4>;
  constexpr auto d = cg::param<"d", double, 3, 1>;
  gradcheck("div [2,3,4]/[3,1]", o, probe(x / d), x, d);
  gradcheck("div [3,1]/[2,3,4]", o, probe(d / x), x, d);
}

TEST_CASE("elementwise gradients: unary minus and scalar constants", "[elementwise][grad]") {
  constexpr auto x = cg::param<"x", double, 3, 4>;
  gradcheck("neg", probe(-x), x);
  gradcheck("2*x - x/3 + 1", probe(2.0_c * x - x / 3_c + 1_c), x);
  gradcheck("1 / x", gradcheck_options{.lo = 0.5, .hi = 2}, probe(1_c / x), x);
}

TEST_CASE("elementwise gradients: exp, tanh, sigmoid", "[elementwise][grad]") {
  constexpr auto x = cg::param<"x", double, 3, 5>;
  gradcheck("exp", probe(cg::exp(x)), x);
  gradcheck("tanh", probe(cg::tanh(x)), x);
  gradcheck("sigmoid", probe(cg::sigmoid(x)), x);
}

TEST_CASE("elementwise gradients: log and sqrt on positive inputs", "[elementwise][grad]") {
  gradcheck_options o;
  o.lo = 0.5, o.hi = 3.0;
  constexpr auto p = cg::param<"p", double, 2, 6>;
  gradcheck("log", o, probe(cg::log(p)), p);
  gradcheck("sqrt", o, probe(cg::sqrt(p)), p);
}

TEST_CASE("elementwise gradients: relu away from 0", "[elementwise][grad]") {
  gradcheck_options o;
  o.min_abs = 0.05;  // |x| >= 0.05 >> h: no kink inside a difference
  constexpr auto x = cg::input<"x", double, 4, 6>;
  gradcheck("relu", o, probe(cg::relu(x)), x);
}

TEST_CASE("elementwise gradients: a fused chain with fan-out and broadcast_to", "[elementwise][grad]") {
  constexpr auto x = cg::param<"x", double, 3, 4>;
  constexpr auto b = cg::param<"b", double, 4>;
  constexpr auto t = cg::tanh(x * b + b);
  gradcheck("tanh(x*b+b) * sigmoid(x) + t*t", probe(t * cg::sigmoid(x) + t * t), x, b);
  gradcheck("broadcast_to<3,4>([4])", probe(cg::broadcast_to<3, 4>(b)), b);
  gradcheck("broadcast_to<2,3,4>([3,4])", probe(cg::broadcast_to<2, 3, 4>(x)), x);
}

// The checker itself: a step far too large for central differences of exp must fail.
TEST_CASE("gradcheck reports a wrong derivative", "[gradcheck][!shouldfail]") {
  constexpr auto x = cg::param<"x", double, 2, 2>;
  gradcheck("exp with h = 0.5", gradcheck_options{.lo = 1, .hi = 2, .h = 0.5}, probe(cg::exp(x)), x);
}

TEST_CASE("elementwise gradients: unary ops on rank 3 and rank 0, after a broadcast", "[elementwise][grad]") {
  gradcheck_options o;
  o.lo = 0.25, o.hi = 2.0;  // positive: log and sqrt are defined, relu away from its kink
  constexpr auto x = cg::param<"x", double, 2, 3, 2>;
  constexpr auto b = cg::param<"b", double, 2>;
  constexpr auto s = cg::param<"s", double>;
  constexpr auto xb = x + b;
  gradcheck("unary ops of x + b, rank 3", o,
            probe(cg::exp(xb) + cg::log(xb) + cg::tanh(xb) + cg::sigmoid(xb) + cg::relu(xb) + cg::sqrt(xb) - xb), x, b);
  gradcheck("unary ops of a scalar", o, cg::exp(s) * cg::log(s) + cg::sqrt(s) * cg::tanh(s) - cg::sigmoid(-s), s);
}

TEST_CASE("elementwise gradients: one operand on both sides", "[elementwise][grad]") {
  constexpr auto x = cg::param<"x", double, 3, 4>;
  gradcheck("x - x + x * x", probe(x - x + x * x), x);
  gradcheck("x / x * tanh(x)", gradcheck_options{.lo = 0.5, .hi = 2}, probe(x / x * cg::tanh(x)), x);
}
