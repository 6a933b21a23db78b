// softmax and log_softmax (last axis, numerically stable), cross_entropy with int
// labels, embedding (gather; its gradient scatter-adds into the table).
#include <array>
#include <cmath>
#include <vector>

#include "gradcheck.hpp"
#include "testing.hpp"

namespace cg = ctgraph;
using namespace cg::literals;
using ctgraph_test::expect_values;
using ctgraph_test::gradcheck;
using ctgraph_test::probe;

namespace {
// softmax([0, 1, 2]) and log_softmax([0, 1, 2]); any constant shift gives the same.
constexpr double sm012[] = {0.09003057317038046, 0.24472847105479764, 0.6652409557748219};
constexpr double lsm012[] = {-2.4076059644443806, -1.4076059644443806, -0.4076059644443806};
}  // namespace

// ---------------------------------------------------------------- forward values

TEST_CASE("softmax forward: rows of a matrix", "[softmax][forward]") {
  constexpr auto x = cg::input<"x", double, 3, 3>;
  constexpr auto s = cg::softmax(x);
  constexpr auto l = cg::log_softmax(x);
  auto step = cg::compile(s, l);
  auto params = cg::parameters_of(step);
  const std::array<double, 9> xv{1, 2, 3, 0, 0, 0, 2, 1, 0};
  auto out = step.run(params, cg::feed<"x">(xv));
  const double third = 1.0 / 3, lthird = -std::log(3.0);
  expect_values(out[s], {sm012[0], sm012[1], sm012[2], third, third, third, sm012[2], sm012[1], sm012[0]});
  expect_values(out[l], {lsm012[0], lsm012[1], lsm012[2], lthird, lthird, lthird, lsm012[2], lsm012[1], lsm012[0]});
}

TEST_CASE("softmax forward: stable for inputs around 1e3 (double and float)", "[softmax][forward]") {
  constexpr auto x = cg::input<"x", double, 2, 3>;
  constexpr auto xf = cg::input<"xf", float, 2, 3>;
  constexpr auto y = cg::input<"y", int, 2>;
  constexpr auto s = cg::softmax(x);
  constexpr auto l = cg::log_softmax(x);
  constexpr auto ce = cg::cross_entropy(x, y);
  constexpr auto sf = cg::softmax(xf);
  constexpr auto lf = cg::log_softmax(xf);
  constexpr auto cef = cg::cross_entropy(xf, y);
  auto step = cg::compile(s, l, ce, sf, lf, cef);
  auto params = cg::parameters_of(step);
  const std::array<double, 6> xv{1000, 1001, 1002, -1002, -1001, -1000};
  const std::array<float, 6> xfv{1000, 1001, 1002, -1002, -1001, -1000};
  const std::array<int, 2> yv{0, 2};
  auto out = step.run(params, cg::feed<"x">(xv), cg::feed<"xf">(xfv), cg::feed<"y">(yv));
  expect_values(out[s], {sm012[0], sm012[1], sm012[2], sm012[0], sm012[1], sm012[2]});
  expect_values(out[l], {lsm012[0], lsm012[1], lsm012[2], lsm012[0], lsm012[1], lsm012[2]}, 1e-10);
  CHECK(static_cast<double>(out[ce]) == Approx((-lsm012[0] - lsm012[2]) / 2).epsilon(1e-10));
  expect_values(out[sf], {sm012[0], sm012[1], sm012[2], sm012[0], sm012[1], sm012[2]}, 1e-6);
  expect_values(out[lf], {lsm012[0], lsm012[1], lsm012[2], lsm012[0], lsm012[1], lsm012[2]}, 1e-4);
  CHECK(static_cast<float>(out[cef]) == Approx((-lsm012[0] - lsm012[2]) / 2).epsilon(1e-5));
  for (float v : out[sf]) CHECK(std::isfinite(v));
}

TEST_CASE("cross_entropy forward: mean over positions of -log softmax at the label", "[losses][forward]") {
  constexpr auto x = cg::input<"x", double, 2, 3>;
  constexpr auto y = cg::input<"y", int, 2>;
  constexpr auto x3 = cg::input<"x3", double, 2, 2, 3>;
  constexpr auto y3 = cg::input<"y3", int, 2, 2>;
  constexpr auto ce = cg::cross_entropy(x, y);
  constexpr auto ce3 = cg::cross_entropy(x3, y3);
  auto step = cg::compile(ce, ce3);
  auto params = cg::parameters_of(step);
  const std::array<double, 6> xv{1, 2, 3, 5, 4, 3};
  const std::array<int, 2> yv{2, 0};
  const std::array<double, 12> x3v{1, 2, 3, 5, 4, 3, 0, 0, 0, 7, 8, 9};
  const std::array<int, 4> y3v{0, 2, 1, 1};
  auto out = step.run(params, cg::feed<"x">(xv), cg::feed<"y">(yv), cg::feed<"x3">(x3v), cg::feed<"y3">(y3v));
  CHECK(static_cast<double>(out[ce]) == Approx((-lsm012[2] - lsm012[2]) / 2).epsilon(1e-12));
  CHECK(static_cast<double>(out[ce3]) ==
        Approx((-lsm012[0] - lsm012[0] + std::log(3.0) - lsm012[1]) / 4).epsilon(1e-12));
}

TEST_CASE("cross_entropy masked: ignore_index skips positions, weights weigh them", "[losses][forward][mask]") {
  constexpr auto x = cg::input<"x", double, 3, 3>;
  constexpr auto y = cg::input<"y", int, 3>;
  constexpr auto w = cg::input<"w", double, 3>;
  constexpr auto ign = cg::cross_entropy(x, y, cg::ignore_index<1>);
  constexpr auto wtd = cg::cross_entropy(x, y, w);
  auto step = cg::compile(ign, wtd);
  auto params = cg::parameters_of(step);
  // Rows [0, 1, 2] each: -log softmax at label l is -lsm012[l].
  const std::array<double, 9> xv{0, 1, 2, 5, 6, 7, 1, 2, 3};
  const std::array<int, 3> yv{2, 1, 0};
  const std::array<double, 3> wv{1, 0, 1};
  auto out = step.run(params, cg::feed<"x">(xv), cg::feed<"y">(yv), cg::feed<"w">(wv));
  const double expected = (-lsm012[2] - lsm012[0]) / 2;  // the middle row (label 1, weight 0) counts not
  CHECK(static_cast<double>(out[ign]) == Approx(expected).epsilon(1e-12));
  CHECK(static_cast<double>(out[wtd]) == Approx(expected).epsilon(1e-12));
  // Weights 2 and 1: a weighted mean.
  const std::array<double, 3> w21{2, 0, 1};
  out = step.run(params, cg::feed<"x">(xv), cg::feed<"y">(yv), cg::feed<"w">(w21));
  CHECK(static_cast<double>(out[wtd]) == Approx((-2 * lsm012[2] - lsm012[0]) / 3).epsilon(1e-12));
  // Nothing counts: 0, not NaN, and a zero gradient.
  const std::array<int, 3> all_ignored{1, 1, 1};
  const std::array<double, 3> zero{0, 0, 0};
  out = step.run(params, cg::feed<"x">(xv), cg::feed<"y">(all_ignored), cg::feed<"w">(zero));
  CHECK(static_cast<double>(out[ign]) == 0.0);
  CHECK(static_cast<double>(out[wtd]) == 0.0);
  constexpr auto logits = cg::param<"logits", double, 3, 3>;
  constexpr auto li = cg::cross_entropy(logits, y, cg::ignore_index<1>);
  constexpr auto lw = cg::cross_entropy(logits, y, w);
  auto g = cg::compile(li, lw, cg::grad(li, logits), cg::grad(lw, logits));
  auto gp = cg::parameters_of(g);
  cg::init(gp, 3);
  auto go = g.run(gp, cg::feed<"y">(all_ignored), cg::feed<"w">(zero));
  for (double v : go[cg::grad(li, logits)]) CHECK(v == 0.0);
  for (double v : go[cg::grad(lw, logits)]) CHECK(v == 0.0);
  // An ignored position's logits get no gradient; the others get those of the mean over them.
  go = g.run(gp, cg::feed<"y">(yv), cg::feed<"w">(wv));
  const auto gi = go[cg::grad(li, logits)];
  for (int j = 0; j < 3; ++j) CHECK(gi[3 + j] == 0.0);
  const auto gw = go[cg::grad(lw, logits)];
  for (int k = 0; k < 9; ++k) CHECK(gw[k] == Approx(gi[k]).epsilon(1e-12));
}

TEST_CASE("embedding forward: rows of the table picked by ids", "[embedding][forward]") {
  constexpr auto ids = cg::input<"ids", int, 3>;
  constexpr auto ids2 = cg::input<"ids2", int, 2, 2>;
  constexpr auto table = cg::param<"table", double, 4, 2>;
  constexpr auto e = cg::embedding(ids, table);
  constexpr auto e2 = cg::embedding(ids2, table);
  auto step = cg::compile(e, e2);
  auto params = cg::parameters_of(step);
  auto t = params.get<"table">();
  for (int v = 0; v < 4; ++v) t(v, 0) = 10 * v, t(v, 1) = 10 * v + 1;
  const std::array<int, 3> iv{2, 0, 2};
  const std::array<int, 4> i2v{3, 1, 0, 3};
  auto out = step.run(params, cg::feed<"ids">(iv), cg::feed<"ids2">(i2v));
  CHECK(out[e].dims() == std::array<int, 2>{3, 2});
  expect_values(out[e], {20, 21, 0, 1, 20, 21});
  CHECK(out[e2].dims() == std::array<int, 3>{2, 2, 2});
  expect_values(out[e2], {30, 31, 10, 11, 0, 1, 30, 31});
}

TEST_CASE("embedding gradient: the table's gradient scatter-adds (repeated ids)", "[embedding][forward]") {
  constexpr auto ids = cg::input<"ids", int, 4>;
  constexpr auto table = cg::param<"table", double, 3, 2>;
  constexpr auto w = cg::input<"w", double, 4, 2>;
  constexpr auto loss = cg::sum(cg::embedding(ids, table) * w);
  auto step = cg::compile(loss, cg::grad(loss, table));
  auto params = cg::parameters_of(step);
  const std::array<int, 4> iv{1, 0, 1, 1};
  const std::array<double, 8> wv{1, 2, 3, 4, 5, 6, 7, 8};
  auto out = step.run(params, cg::feed<"ids">(iv), cg::feed<"w">(wv));
  // row 0 <- w row 1; row 1 <- w rows 0, 2, 3; row 2 untouched
  expect_values(out[cg::grad(loss, table)], {3, 4, 1 + 5 + 7, 2 + 6 + 8, 0, 0});
}

// ---------------------------------------------------------------- gradients

TEST_CASE("softmax gradients", "[softmax][grad]") {
  constexpr auto x = cg::param<"x", double, 4, 5>;
  constexpr auto x3 = cg::param<"x3", double, 2, 3, 4>;
  constexpr auto v = cg::param<"v", double, 1>;
  gradcheck("softmax [4,5]", probe(cg::softmax(x)), x);
  gradcheck("softmax [2,3,4]", probe(cg::softmax(x3)), x3);
  gradcheck("softmax [1] (constant 1)", probe(cg::softmax(v) * v), v);
}

TEST_CASE("log_softmax gradients", "[softmax][grad]") {
  constexpr auto x = cg::param<"x", double, 4, 5>;
  constexpr auto x3 = cg::input<"x3", double, 2, 3, 4>;
  gradcheck("log_softmax [4,5]", probe(cg::log_softmax(x)), x);
  gradcheck("log_softmax [2,3,4]", probe(cg::log_softmax(x3)), x3);
  gradcheck("softmax(log_softmax)", probe(cg::softmax(cg::log_softmax(x) * 3_c)), x);
}

TEST_CASE("cross_entropy gradients (int labels)", "[losses][grad]") {
  constexpr auto logits = cg::param<"logits", double, 6, 5>;
  constexpr auto y = cg::input<"y", int, 6>;
  gradcheck("cross_entropy [6,5]", cg::cross_entropy(logits, y), logits);
  constexpr auto l3 = cg::param<"l3", double, 2, 3, 4>;
  constexpr auto y3 = cg::input<"y3", int, 2, 3>;
  gradcheck("cross_entropy [2,3,4] * 3", cg::cross_entropy(l3, y3) * 3_c, l3);
  constexpr auto x = cg::input<"x", double, 6, 3>;
  constexpr auto w = cg::param<"w", double, 3, 5>;
  constexpr auto b = cg::param<"b", double, 5>;
  gradcheck("cross_entropy(x w + b)", cg::cross_entropy(cg::matmul(x, w) + b, y), x, w, b);
  // Masked: labels drawn in [0, 5) hit the ignored class 2; weights drawn at random.
  gradcheck("cross_entropy [6,5], ignore_index<2>", cg::cross_entropy(logits, y, cg::ignore_index<2>), logits);
  constexpr auto pw = cg::input<"pw", double, 6>;
  gradcheck("cross_entropy [6,5], weights", cg::cross_entropy(logits, y, pw), logits);
  gradcheck("cross_entropy [2,3,4] * 3, ignore_index<0>", cg::cross_entropy(l3, y3, cg::ignore_index<0>) * 3_c, l3);
}

TEST_CASE("embedding gradients (table)", "[embedding][grad]") {
  constexpr auto ids = cg::input<"ids", int, 7>;  // 7 ids into 4 rows: repeats guaranteed
  constexpr auto table = cg::param<"table", double, 4, 3>;
  gradcheck("embedding [7] x [4,3]", probe(cg::embedding(ids, table)), table);
  constexpr auto ids2 = cg::input<"ids2", int, 2, 3>;
  constexpr auto t2 = cg::param<"t2", double, 5, 2>;
  gradcheck("tanh(embedding [2,3] x [5,2])", probe(cg::tanh(cg::embedding(ids2, t2))), t2);
  constexpr auto w = cg::param<"w", double, 3, 4>;
  gradcheck("cross_entropy(embedding(ids) w)", cg::cross_entropy(cg::matmul(cg::embedding(ids, table), w), ids), table,
            w);
}
