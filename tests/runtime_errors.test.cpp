// Run-time errors: a wrong-sized feed (std::invalid_argument naming the input), labels
// and ids outside their range (std::out_of_range naming the input and the value). After
// an error the step still runs.
#include <array>
#include <stdexcept>
#include <string>
#include <vector>

#include "gradcheck.hpp"

namespace cg = ctgraph;
using namespace cg::literals;
using Catch::Matchers::Contains;

namespace {
constexpr auto x = cg::input<"x", float, 4, 3>;
constexpr auto y = cg::input<"y", int, 4>;
constexpr auto W = cg::param<"W", float, 3, 5>;
constexpr auto loss = cg::cross_entropy(cg::matmul(x, W), y);

constexpr auto ids = cg::input<"ids", int, 2, 3>;
constexpr auto table = cg::param<"table", float, 6, 2>;
constexpr auto emb = cg::sum(cg::embedding(ids, table));

template <class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}
}  // namespace

TEST_CASE("a feed of the wrong size is std::invalid_argument naming the input", "[errors]") {
  auto step = cg::compile(loss, cg::grad(loss, W));
  auto params = cg::parameters_of(step);
  cg::init(params, 0);
  std::vector<float> x11(11), x12(12, 0.5f), x13(13);
  std::vector<int> y4{0, 1, 2, 3}, y3{0, 1, 2};
  CHECK_THROWS_AS(step.run(params, cg::feed<"x">(x11), cg::feed<"y">(y4)), std::invalid_argument);
  const std::string m = message_of([&] { step.run(params, cg::feed<"x">(x13), cg::feed<"y">(y4)); });
  CHECK_THAT(m, Contains("\"x\"") && Contains("13") && Contains("12"));
  CHECK_THROWS_WITH(step.run(params, cg::feed<"y">(y3), cg::feed<"x">(x12)), Contains("\"y\"") && Contains("3"));
  // The step still works afterwards.
  auto out = step.run(params, cg::feed<"x">(x12), cg::feed<"y">(y4));
  const float l = out[loss];
  CHECK(std::isfinite(l));
  CHECK(l > 0);
}

TEST_CASE("a label outside [0, C) is std::out_of_range naming the input and the value", "[errors]") {
  auto step = cg::compile(loss);
  auto params = cg::parameters_of(step);
  std::vector<float> xs(12, 0.25f);
  std::vector<int> bad_hi{0, 1, 7, 3}, bad_neg{0, -3, 1, 2}, edge{0, 5, 1, 2}, ok{4, 0, 1, 2};
  CHECK_THROWS_AS(step.run(params, cg::feed<"x">(xs), cg::feed<"y">(bad_hi)), std::out_of_range);
  CHECK_THROWS_WITH(step.run(params, cg::feed<"x">(xs), cg::feed<"y">(bad_hi)), Contains("\"y\"") && Contains("7"));
  CHECK_THROWS_WITH(step.run(params, cg::feed<"x">(xs), cg::feed<"y">(bad_neg)), Contains("\"y\"") && Contains("-3"));
  CHECK_THROWS_AS(step.run(params, cg::feed<"x">(xs), cg::feed<"y">(edge)), std::out_of_range);  // C = 5 itself
  // All-zero weights: every class has probability 1/5.
  auto out = step.run(params, cg::feed<"x">(xs), cg::feed<"y">(ok));
  CHECK(static_cast<float>(out[loss]) == Approx(std::log(5.0)).epsilon(1e-6));
}

TEST_CASE("an embedding id outside [0, V) is std::out_of_range naming the input and the value", "[errors]") {
  auto step = cg::compile(emb, cg::grad(emb, table));
  auto params = cg::parameters_of(step);
  const std::array<int, 6> bad{0, 1, 2, 9, 4, 5}, neg{0, 1, -1, 3, 4, 5}, six{0, 6, 2, 3, 4, 5}, ok{0, 1, 2, 3, 4, 5};
  CHECK_THROWS_AS(step.run(params, cg::feed<"ids">(bad)), std::out_of_range);
  CHECK_THROWS_WITH(step.run(params, cg::feed<"ids">(bad)), Contains("\"ids\"") && Contains("9"));
  CHECK_THROWS_WITH(step.run(params, cg::feed<"ids">(neg)), Contains("\"ids\"") && Contains("-1"));
  CHECK_THROWS_WITH(step.run(params, cg::feed<"ids">(six)), Contains("\"ids\"") && Contains("6"));
  params.get<"table">()(5, 1) = 2;
  auto out = step.run(params, cg::feed<"ids">(ok));
  CHECK(static_cast<float>(out[emb]) == 2);
}

TEST_CASE("ids read by two ops are held to the tighter bound", "[errors]") {
  constexpr auto t = cg::input<"t", int, 3>;
  constexpr auto tab = cg::param<"tab", double, 10, 4>;            // ids < 10 for the embedding ...
  constexpr auto l = cg::cross_entropy(cg::embedding(t, tab), t);  // ... but < 4 as labels
  auto step = cg::compile(l);
  auto params = cg::parameters_of(step);
  const std::array<int, 3> five{0, 5, 1}, fine{0, 3, 1};
  CHECK_THROWS_WITH(step.run(params, cg::feed<"t">(five)), Contains("\"t\"") && Contains("5"));
  CHECK_NOTHROW(step.run(params, cg::feed<"t">(fine)));
}
