// run(..., cg::check_finite): the first NaN or infinity throws cg::non_finite_error naming
// where it is: an input or param before any step, or the step that produced it (its number,
// forward or gradient, its op, its shape, and the inputs and params it is computed from).
// A clean checked run gives the values of an unchecked one, bit for bit.
#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <ctgraph/ctgraph.hpp>
#include <limits>
#include <string>
#include <vector>

namespace cg = ctgraph;
using namespace cg::literals;
using Catch::Matchers::Contains;

namespace {
template <class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const cg::non_finite_error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("(another exception) ") + e.what();
  }
  return "(no exception)";
}
template <class F>
cg::non_finite_error error_of(F&& f) {
  try {
    f();
  } catch (const cg::non_finite_error& e) {
    return e;
  }
  return cg::non_finite_error("(no exception)", -2, -2, 0);
}
}  // namespace

TEMPLATE_TEST_CASE("log of a negative input: the error names log, its shape and the input", "[finite]", float, double) {
  using T = TestType;
  constexpr auto x = cg::input<"x", T, 4, 3>;
  constexpr auto y = cg::sum(cg::log(x));
  auto step = cg::compile(y);
  static_assert(decltype(step)::num_steps() == 2);  // the log loop, then the sum
  auto params = cg::parameters_of(step);
  std::vector<T> xs(12, T(2));
  xs[5] = T(-1);
  // Unchecked: the NaN goes through, silently.
  CHECK(std::isnan(static_cast<T>(step.run(params, cg::feed<"x">(xs))[y])));
  const std::string m = message_of([&] { step.run(params, cg::feed<"x">(xs), cg::check_finite); });
  CHECK_THAT(m, Contains("non-finite value (nan) at element 5 of step 0 of 2 (forward): log [4, 3] (from input x)"));
  const cg::non_finite_error e = error_of([&] { step.run(params, cg::feed<"x">(xs), cg::check_finite); });
  CHECK(e.step() == 0);
  CHECK(e.element() == 5);
  CHECK(std::isnan(e.value()));
  CHECK_THROWS_AS(step.run(params, cg::feed<"x">(xs), cg::check_finite), std::runtime_error);
  // Zero: -inf. The step still runs afterwards, and a clean checked run returns its value.
  xs[5] = T(0);
  CHECK_THAT(message_of([&] { step.run(params, cg::check_finite, cg::feed<"x">(xs)); }),
             Contains("(-inf) at element 5 of step 0 of 2 (forward): log [4, 3]"));
  xs[5] = T(1);
  const T v = step.run(params, cg::check_finite, cg::feed<"x">(xs))[y];
  CHECK(v == Approx(11 * std::log(2.0)));
}

TEMPLATE_TEST_CASE("a non-finite param or input is named before any step runs", "[finite]", float, double) {
  using T = TestType;
  constexpr auto x = cg::input<"x", T, 4, 3>;
  constexpr auto W = cg::param<"W", T, 3, 5>;
  constexpr auto l = cg::sum(cg::matmul(x, W));
  auto step = cg::compile(l, cg::grad(l, W));
  auto params = cg::parameters_of(step);
  cg::init(params, 1);
  std::vector<T> xs(12, T(0.5));
  params.template get<"W">()(1, 2) = std::numeric_limits<T>::infinity();
  const cg::non_finite_error e = error_of([&] { step.run(params, cg::feed<"x">(xs), cg::check_finite); });
  CHECK_THAT(e.what(), Contains("non-finite value (+inf) at element 7 of param \"W\" [3, 5], before any step"));
  CHECK(e.step() == -1);
  CHECK(e.element() == 7);
  params.template get<"W">()(1, 2) = T(0.25);
  xs[3] = std::numeric_limits<T>::quiet_NaN();
  CHECK_THAT(message_of([&] { step.run(params, cg::feed<"x">(xs), cg::check_finite); }),
             Contains("non-finite value (nan) at element 3 of input \"x\" [4, 3], before any step"));
  xs[3] = -std::numeric_limits<T>::infinity();
  CHECK_THAT(message_of([&] { step.run(params, cg::feed<"x">(xs), cg::check_finite); }),
             Contains("(-inf) at element 3 of input \"x\""));
  xs[3] = T(0.5);
  CHECK_NOTHROW(step.run(params, cg::feed<"x">(xs), cg::check_finite));
}

TEST_CASE("a fused elementwise chain is named by its ops", "[finite]") {
  constexpr auto x = cg::input<"x", float, 2, 8>;
  constexpr auto b = cg::param<"b", float, 8>;
  constexpr auto y = cg::sum(cg::sqrt(x + b) * 3.0_c - x);
  auto step = cg::compile(y);
  static_assert(decltype(step)::num_fused_steps() == 1);  // add, sqrt, mul, sub: one loop
  auto params = cg::parameters_of(step);
  std::vector<float> xs(16, 1.f);
  params.get<"b">()[6] = -4.f;  // x + b = -3 in column 6 of both rows: the first is element 6
  const cg::non_finite_error e = error_of([&] { step.run(params, cg::feed<"x">(xs), cg::check_finite); });
  CHECK_THAT(e.what(), Contains("(nan) at element 6 of step 0 of 2 (forward): sub [2, 8] (fused loop: add, sqrt, "
                                "mul, sub) (from input x; param b)"));
  CHECK(e.step() == 0);
}

TEST_CASE("the error names every input and param a step depends on, and no other", "[finite]") {
  constexpr auto x = cg::input<"x", float, 4, 3>;
  constexpr auto u = cg::input<"u", float, 4, 2>;
  constexpr auto W1 = cg::param<"W1", float, 3, 5>;
  constexpr auto b1 = cg::param<"b1", float, 5>;
  constexpr auto W2 = cg::param<"W2", float, 5, 2>;
  constexpr auto V = cg::param<"V", float, 2, 2>;
  constexpr auto h = cg::tanh(cg::matmul(x, W1) + b1);
  constexpr auto z = cg::log(cg::matmul(h, W2));  // NaN when h W2 < 0
  constexpr auto loss = cg::sum(z) + cg::sum(cg::matmul(u, V));
  auto step = cg::compile(loss);
  auto params = cg::parameters_of(step);
  for (auto w = params.get<"W1">(); float& v : w) v = 0.5f;
  for (auto w = params.get<"W2">(); float& v : w) v = -1.f;
  std::vector<float> xs(12, 1.f), us(8, 1.f);
  const std::string m = message_of([&] { step.run(params, cg::feed<"u">(us), cg::feed<"x">(xs), cg::check_finite); });
  CHECK_THAT(m, Contains("(nan) at element 0 of step ") &&
                    Contains("(forward): log [4, 2] (from input x; params W1, b1, W2)"));
  CHECK_THAT(m, !Contains(" u") && !Contains("V"));
}

TEMPLATE_TEST_CASE("a gradient step producing inf is named as a gradient step", "[finite]", float, double) {
  using T = TestType;
  constexpr auto p = cg::param<"p", T, 6>;
  constexpr auto y = cg::sum(cg::sqrt(p));  // d/dp sqrt(p) = 1 / (2 sqrt(p)): +inf at p = 0
  constexpr auto dy = cg::grad(y, p);
  auto step = cg::compile(y, dy);
  auto params = cg::parameters_of(step);
  for (auto w = params.template get<"p">(); T & v : w) v = T(4);
  params.template get<"p">()[4] = T(0);
  const cg::non_finite_error e = error_of([&] { step.run(params, cg::check_finite); });
  CHECK_THAT(e.what(), Contains("non-finite value (+inf) at element 4 of step ") && Contains(" (gradient): ") &&
                           Contains("[6]") && Contains("(from param p)"));
  CHECK(e.step() == static_cast<int>(decltype(step)::num_steps()) - 1);  // the last step: the gradient
  // Unchecked, the same run returns the inf.
  auto out = step.run(params);
  CHECK(std::isinf(out[dy][4]));
  CHECK(out[dy][0] == Approx(0.25));
}

TEMPLATE_TEST_CASE("a clean run with check_finite gives the values of a run without", "[finite]", float, double) {
  using T = TestType;
  constexpr int B = 16, In = 6, H = 32, C = 4;
  constexpr auto x = cg::input<"x", T, B, In>;
  constexpr auto y = cg::input<"y", int, B>;
  constexpr auto W1 = cg::param<"W1", T, H, In>;
  constexpr auto b1 = cg::param<"b1", T, H>;
  constexpr auto W2 = cg::param<"W2", T, C, H>;
  constexpr auto b2 = cg::param<"b2", T, C>;
  constexpr auto logits = cg::matmul(cg::tanh(cg::matmul(x, cg::transpose(W1)) + b1), cg::transpose(W2)) + b2;
  constexpr auto loss = cg::cross_entropy(logits, y) + 1e-3_c * cg::sum(W1 * W1);
  constexpr auto grads = cg::grad(loss);
  auto step = cg::compile(loss, logits, grads);
  auto params = cg::parameters_of(step);
  cg::init(params, 3);
  std::vector<T> xs(B * In);
  std::vector<int> ys(B);
  for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<T>((i * 37 % 101) / 101.0 - 0.5);
  for (int i = 0; i < B; ++i) ys[i] = i % C;
  auto copy = [](auto v) { return std::vector<T>(v.data(), v.data() + v.size()); };
  auto plain = step.run(params, cg::feed<"x">(xs), cg::feed<"y">(ys));
  const T l0 = plain[loss];
  const auto z0 = copy(plain[logits]), g0 = copy(plain.template grad<"W1">()), g1 = copy(plain.template grad<"b2">());
  // cg::check_finite anywhere among the feeds.
  auto first = step.run(params, cg::check_finite, cg::feed<"x">(xs), cg::feed<"y">(ys));
  auto same = [&](auto& r) {
    const T l = r[loss];
    CHECK(std::memcmp(&l, &l0, sizeof l) == 0);
    CHECK(copy(r[logits]) == z0);
    CHECK(copy(r.template grad<"W1">()) == g0);
    CHECK(copy(r.template grad<"b2">()) == g1);
  };
  same(first);
  auto middle = step.run(params, cg::feed<"y">(ys), cg::check_finite, cg::feed<"x">(xs));
  same(middle);
  auto last = step.run(params, cg::feed<"x">(xs), cg::feed<"y">(ys), cg::check_finite);
  same(last);
}

TEST_CASE("an int input is not checked, and labels still are", "[finite]") {
  constexpr auto x = cg::input<"x", double, 3, 4>;
  constexpr auto y = cg::input<"y", int, 3>;
  constexpr auto loss = cg::cross_entropy(x, y);
  auto step = cg::compile(loss, cg::grad(loss, x));
  auto params = cg::parameters_of(step);
  std::vector<double> xs(12, 0.0);
  std::array<int, 3> ys{0, 3, 1};
  CHECK_NOTHROW(step.run(params, cg::feed<"x">(xs), cg::feed<"y">(ys), cg::check_finite));
  std::array<int, 3> bad{0, 4, 1};
  CHECK_THROWS_AS(step.run(params, cg::feed<"x">(xs), cg::feed<"y">(bad), cg::check_finite), std::out_of_range);
  xs[1] = std::numeric_limits<double>::infinity();
  CHECK_THAT(message_of([&] { step.run(params, cg::feed<"x">(xs), cg::feed<"y">(ys), cg::check_finite); }),
             Contains("(+inf) at element 1 of input \"x\" [3, 4]"));
}
