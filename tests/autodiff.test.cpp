// Reverse mode at compile time: grad of grad (a Hessian-vector product of an MLP against
// finite differences of its gradient, third derivatives by hand), fan-out and weight
// sharing, gradients of leaves the loss does not reach, several leaves in one sweep,
// grad(loss) for every param.
#include <array>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gradcheck.hpp"
#include "testing.hpp"

namespace cg = ctgraph;
using namespace cg::literals;
using ctgraph_test::expect_values;
using ctgraph_test::gradcheck;
using ctgraph_test::gradcheck_options;
using ctgraph_test::gradcheck_params;
using ctgraph_test::probe;

namespace {
constexpr auto x = cg::input<"x", double, 6, 4>;
constexpr auto y = cg::input<"y", int, 6>;
constexpr auto W1 = cg::param<"W1", double, 4, 5>;
constexpr auto b1 = cg::param<"b1", double, 5>;
constexpr auto W2 = cg::param<"W2", double, 3, 5>;
constexpr auto mlp_loss =
    cg::cross_entropy(cg::matmul(cg::tanh(cg::matmul(x, W1) + b1), cg::transpose(W2)), y) + 0.1_c * cg::sum(W1 * W1);
// v: the direction of the Hessian-vector product, W1's shape.
constexpr auto v = cg::input<"v", double, 4, 5>;
constexpr auto gW1 = cg::grad(mlp_loss, W1);
constexpr auto gv = cg::sum(gW1 * v);  // <grad, v>
constexpr auto hv = cg::grad(gv, W1);  // H v
constexpr auto hv_b1 = cg::grad(gv, b1);

std::vector<double> random_values(std::size_t n, unsigned seed, double lo = -1, double hi = 1) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> r(n);
  for (auto& e : r) e = u(gen);
  return r;
}
}  // namespace

TEST_CASE("grad of grad: Hessian-vector product of an MLP against differences of the gradient", "[autodiff][hvp]") {
  auto step = cg::compile(gW1, hv, hv_b1);
  auto params = cg::parameters_of(step);
  auto fill = [&](auto view, unsigned seed) {
    auto r = random_values(view.size(), seed);
    std::copy(r.begin(), r.end(), view.begin());
  };
  fill(params.get<"W1">(), 1);
  fill(params.get<"b1">(), 2);
  fill(params.get<"W2">(), 3);
  const auto xs = random_values(24, 4), vs = random_values(20, 5);
  const std::array<int, 6> ys{0, 1, 2, 2, 1, 0};
  auto run = [&] { return step.run(params, cg::feed<"x">(xs), cg::feed<"y">(ys), cg::feed<"v">(vs)); };
  auto out = run();
  const std::vector<double> hvv(out[hv].begin(), out[hv].end());
  const std::vector<double> hvb(out[hv_b1].begin(), out[hv_b1].end());
  // (grad(W1 + h v) - grad(W1 - h v)) / 2h along v, for d/dW1 and d/db1 of <grad_W1, v>...
  // H v for W1 is the directional derivative of grad_W1; for b1 it is that of grad_b1,
  // which grad(<grad_W1, v>, b1) equals by symmetry of the Hessian.
  auto gb_step = cg::compile(cg::grad(mlp_loss, b1));
  const double h = 1e-5;
  auto w = params.get<"W1">();
  std::vector<double> gp(20), gm(20), bp(5), bm(5);
  for (int s : {1, -1}) {
    for (std::size_t i = 0; i < 20; ++i) w.data()[i] += s * h * vs[i];
    auto o = run();
    std::copy(o[gW1].begin(), o[gW1].end(), (s > 0 ? gp : gm).begin());
    auto ob = gb_step.run(params, cg::feed<"x">(xs), cg::feed<"y">(ys));
    std::copy(ob[cg::grad(mlp_loss, b1)].begin(), ob[cg::grad(mlp_loss, b1)].end(), (s > 0 ? bp : bm).begin());
    for (std::size_t i = 0; i < 20; ++i) w.data()[i] -= s * h * vs[i];
  }
  double worst = 0;
  for (std::size_t i = 0; i < 20; ++i) {
    const double n = (gp[i] - gm[i]) / (2 * h);
    worst = std::max(worst, std::abs(hvv[i] - n) / std::max({std::abs(hvv[i]), std::abs(n), 1e-3}));
  }
  for (std::size_t i = 0; i < 5; ++i) {
    const double n = (bp[i] - bm[i]) / (2 * h);
    worst = std::max(worst, std::abs(hvb[i] - n) / std::max({std::abs(hvb[i]), std::abs(n), 1e-3}));
  }
  INFO("max relative error of H v against differences of the gradient (floor 1e-3)");
  CHECK(worst <= 1e-6);
  // Not trivially zero: the product is a real second derivative.
  double norm = 0;
  for (double e : hvv) norm += e * e;
  CHECK(norm > 1e-3);
}

TEST_CASE("grad of grad: <grad, v> checked by the gradient checker", "[autodiff][hvp]") {
  gradcheck("d<grad_W1(loss), v> / d(W1, b1, W2)", gv, W1, b1, W2);
}

TEST_CASE("grad of grad of grad: derivatives of sum(x^3) by hand", "[autodiff][forward]") {
  constexpr auto p = cg::input<"p", double, 4>;
  constexpr auto f = cg::sum(p * p * p);
  constexpr auto d1 = cg::grad(f, p);                          // 3 p^2
  constexpr auto d2 = cg::grad(cg::sum(d1), p);                // 6 p
  constexpr auto d3 = cg::grad(cg::sum(d2), p);                // 6
  constexpr auto d4 = cg::grad(cg::sum(d3), p);                // 0
  constexpr auto e1 = cg::grad(cg::sum(cg::exp(p * 2_c)), p);  // 2 exp(2p)
  constexpr auto e2 = cg::grad(cg::sum(e1), p);                // 4 exp(2p)
  auto step = cg::compile(f, d1, d2, d3, d4, e2);
  auto params = cg::parameters_of(step);
  const std::array<double, 4> pv{1, -2, 0.5, 3};
  auto out = step.run(params, cg::feed<"p">(pv));
  CHECK(static_cast<double>(out[f]) == 1 - 8 + 0.125 + 27);
  expect_values(out[d1], {3, 12, 0.75, 27});
  expect_values(out[d2], {6, -12, 3, 18});
  expect_values(out[d3], {6, 6, 6, 6});
  expect_values(out[d4], {0, 0, 0, 0});
  expect_values(out[e2], {4 * std::exp(2.0), 4 * std::exp(-4.0), 4 * std::exp(1.0), 4 * std::exp(6.0)}, 1e-12);
}

TEST_CASE("fan-out sums adjoints: weight sharing across residual layers", "[autodiff][grad]") {
  constexpr auto h0 = cg::input<"h0", double, 3, 4>;
  constexpr auto W = cg::param<"W", double, 4, 4>;
  constexpr auto b = cg::param<"b", double, 4>;
  constexpr auto h1 = cg::tanh(cg::matmul(h0, W) + b) + h0;
  constexpr auto h2 = cg::tanh(cg::matmul(h1, W) + b) + h1;
  constexpr auto h3 = cg::tanh(cg::matmul(h2, W) + b) + h2;
  gradcheck("three residual layers sharing W, b", probe(h3 * h1), h0, W, b);
}

TEST_CASE("gradients of leaves the loss does not reach are zero; unused branches cost nothing", "[autodiff]") {
  constexpr auto a = cg::input<"a", double, 2, 3>;
  constexpr auto W = cg::param<"W", double, 3, 2>;
  constexpr auto U = cg::param<"U", double, 3, 2>;  // not in the loss
  constexpr auto loss = cg::sum(cg::tanh(cg::matmul(a, W)));
  auto step_w = cg::compile(loss, cg::grad(loss, W));
  auto step_wa = cg::compile(loss, cg::grad(loss, W), cg::grad(loss, a));
  auto step_wu = cg::compile(loss, cg::grad(loss, W), cg::grad(loss, U));
  // The adjoint of input a is only computed when asked for.
  CHECK(step_wa.num_steps() > step_w.num_steps());
  // grad w.r.t. U: zeros, at the cost of one fill.
  CHECK(step_wu.num_steps() <= step_w.num_steps() + 1);
  auto params = cg::parameters_of(step_wu);
  cg::init(params, 3);
  const std::array<double, 6> av{1, 2, 3, 4, 5, 6};
  auto out = step_wu.run(params, cg::feed<"a">(av));
  expect_values(out[cg::grad(loss, U)], {0, 0, 0, 0, 0, 0});
  double n = 0;
  for (double e : out[cg::grad(loss, W)]) n += std::abs(e);
  CHECK(n > 0);
}

TEST_CASE("grad(y, a, b, c) in one compile equals separate gradients", "[autodiff]") {
  constexpr auto a = cg::input<"a", double, 2, 3>;
  constexpr auto W = cg::param<"W", double, 3, 2>;
  constexpr auto c = cg::param<"c", double, 2>;
  constexpr auto loss = cg::sum(cg::sigmoid(cg::matmul(a, W) + c) * cg::matmul(a, W));
  auto together = cg::compile(loss, cg::grad(loss, a, W, c));
  auto only_w = cg::compile(cg::grad(loss, W));
  auto params = cg::parameters_of(together);
  cg::init(params, 9);
  params.get<"c">()(1) = 0.25;
  const std::array<double, 6> av{0.1, -0.2, 0.3, 0.4, -0.5, 0.6};
  auto o1 = together.run(params, cg::feed<"a">(av));
  auto o2 = only_w.run(params, cg::feed<"a">(av));
  auto g1 = o1[cg::grad(loss, W)];
  auto g2 = o2[cg::grad(loss, W)];
  REQUIRE(g1.size() == 6);
  for (std::size_t i = 0; i < 6; ++i) CHECK(g1[i] == Approx(g2[i]).epsilon(1e-14));
  gradcheck("sum(sigmoid(aW + c) * aW)", loss, a, W, c);
}

// ---------------------------------------------------------------- grad(loss)

namespace {
// Two views hold the same bits.
template <class A, class B>
bool same_bits(const A& a, const B& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(a.data()[0])) == 0;
}
}  // namespace

TEST_CASE("grad(loss) holds every param's gradient, bit for bit the gradients asked for one by one",
          "[autodiff][grad_all]") {
  constexpr auto fx = cg::input<"x", float, 8, 4>;
  constexpr auto fy = cg::input<"y", int, 8>;
  constexpr auto fW1 = cg::param<"fc1.weight", float, 16, 4>;
  constexpr auto fb1 = cg::param<"fc1.bias", float, 16>;
  constexpr auto fW2 = cg::param<"fc2.weight", float, 3, 16>;
  constexpr auto fb2 = cg::param<"fc2.bias", float, 3>;
  constexpr auto h = cg::tanh(cg::matmul(fx, cg::transpose(fW1)) + fb1);
  constexpr auto loss = cg::cross_entropy(cg::matmul(h, cg::transpose(fW2)) + fb2, fy) + 0.01_c * cg::sum(fW1 * fW1);
  auto all = cg::compile(loss, cg::grad(loss));
  auto listed = cg::compile(loss, cg::grad(loss, fb2, fW2, fb1, fW1));  // another order
  auto only_w1 = cg::compile(cg::grad(loss, fW1));
  auto only_b1 = cg::compile(cg::grad(loss, fb1));
  auto only_w2 = cg::compile(cg::grad(loss, fW2));
  auto only_b2 = cg::compile(cg::grad(loss, fb2));
  STATIC_REQUIRE(decltype(all)::sizes.outputs == 5);  // the loss and four gradients
  STATIC_REQUIRE(decltype(all)::sizes.params == 4);
  STATIC_REQUIRE(decltype(all)::graph_nodes() == decltype(listed)::graph_nodes());
  auto params = cg::parameters_of(all);
  cg::init(params, 5);
  auto fb = params.get<"fc1.bias">();
  for (std::size_t i = 0; i < fb.size(); ++i) fb[i] = 0.05f * static_cast<float>(i) - 0.3f;
  std::vector<float> xs(32);
  for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = std::sin(0.37f * static_cast<float>(i));
  const std::array<int, 8> ys{0, 1, 2, 0, 1, 2, 2, 1};
  auto feeds = [&](auto& step) { return step.run(params, cg::feed<"x">(xs), cg::feed<"y">(ys)); };
  auto oa = feeds(all);
  auto ol = feeds(listed);
  CHECK(same_bits(oa[cg::grad(loss, fW1)], ol[cg::grad(loss, fW1)]));
  CHECK(same_bits(oa[cg::grad(loss, fb1)], ol[cg::grad(loss, fb1)]));
  CHECK(same_bits(oa[cg::grad(loss, fW2)], ol[cg::grad(loss, fW2)]));
  CHECK(same_bits(oa[cg::grad(loss, fb2)], ol[cg::grad(loss, fb2)]));
  CHECK(same_bits(oa[cg::grad(loss, fW1)], feeds(only_w1)[cg::grad(loss, fW1)]));
  CHECK(same_bits(oa[cg::grad(loss, fb1)], feeds(only_b1)[cg::grad(loss, fb1)]));
  CHECK(same_bits(oa[cg::grad(loss, fW2)], feeds(only_w2)[cg::grad(loss, fW2)]));
  CHECK(same_bits(oa[cg::grad(loss, fb2)], feeds(only_b2)[cg::grad(loss, fb2)]));
  // By name, as the optimizers find them: the same views.
  CHECK(oa.grad<"fc1.weight">().data() == oa[cg::grad(loss, fW1)].data());
  CHECK(oa.grad<"fc2.bias">().data() == oa[cg::grad(loss, fb2)].data());
  double n = 0;
  for (float e : oa[cg::grad(loss, fW1)]) n += std::abs(e);
  CHECK(n > 0);
}

TEST_CASE("grad(loss): a param the loss does not depend on gets no gradient", "[autodiff][grad_all]") {
  constexpr auto a = cg::input<"a", double, 2, 3>;
  constexpr auto W = cg::param<"W", double, 3, 2>;
  constexpr auto U = cg::param<"U", double, 3, 2>;  // read by another output, not by the loss
  constexpr auto loss = cg::sum(cg::tanh(cg::matmul(a, W)));
  constexpr auto other = cg::matmul(a, U);
  auto step = cg::compile(loss, other, cg::grad(loss));
  using step_t = decltype(step);
  STATIC_REQUIRE(step_t::sizes.params == 2);   // U is in the parameter set ...
  STATIC_REQUIRE(step_t::sizes.outputs == 3);  // ... but only W has a gradient
  using out_t =
      decltype(step.run(std::declval<cg::parameters<step_t::program>&>(), cg::feed<"a">(std::vector<double>())));
  STATIC_REQUIRE(out_t::has_grad<"W">);
  STATIC_REQUIRE(!out_t::has_grad<"U">);
  STATIC_REQUIRE(step_t::program::output_index<decltype(cg::grad(loss, W))>() == 2);
  STATIC_REQUIRE(step_t::program::output_index<decltype(cg::grad(loss, U))>() < 0);  // out[...] does not compile
  // No step computes zeros for U: the same steps as with W's gradient alone.
  STATIC_REQUIRE(step_t::num_steps() == decltype(cg::compile(loss, other, cg::grad(loss, W)))::num_steps());
  auto params = cg::parameters_of(step);
  cg::init(params, 3);
  const std::array<double, 6> av{1, 2, 3, 4, 5, 6};
  auto out = step.run(params, cg::feed<"a">(av));
  auto ref = cg::compile(loss, cg::grad(loss, W));
  CHECK(same_bits(out[cg::grad(loss, W)], ref.run(params, cg::feed<"a">(av))[cg::grad(loss, W)]));
  // A loss without params: grad(loss) holds nothing.
  constexpr auto no_params = cg::sum(a * a);
  STATIC_REQUIRE(decltype(cg::compile(no_params, cg::grad(no_params)))::sizes.outputs == 1);
}

TEST_CASE("grad(loss) of a loss holding a gradient: the params below the marker too", "[autodiff][grad_all][hvp]") {
  // gv = <grad_W1 mlp_loss, v> reads W1, b1 and W2: grad(gv) differentiates all three.
  auto all = cg::compile(cg::grad(gv));
  auto listed = cg::compile(hv, hv_b1);
  STATIC_REQUIRE(decltype(all)::sizes.outputs == 3);
  auto params = cg::parameters_of(all);
  cg::init(params, 2);
  const auto xs = random_values(24, 4), vs = random_values(20, 5);
  const std::array<int, 6> ys{0, 1, 2, 2, 1, 0};
  auto feeds = [&](auto& step) { return step.run(params, cg::feed<"x">(xs), cg::feed<"y">(ys), cg::feed<"v">(vs)); };
  auto oa = feeds(all);
  auto ol = feeds(listed);
  CHECK(same_bits(oa[cg::grad(gv, W1)], ol[hv]));  // H v
  CHECK(same_bits(oa[cg::grad(gv, b1)], ol[hv_b1]));
  CHECK(oa.grad<"W2">().size() == 15);
  gradcheck_params("grad(<grad_W1 loss, v>)", gv);
}

// ---------------------------------------------------------------- float path

namespace {
// One graph touching every op family, for element type T.
template <class T>
struct every_op {
  static constexpr auto ids = cg::input<"ids", int, 3, 2>;
  static constexpr auto labels = cg::input<"labels", int, 3, 2>;
  static constexpr auto x = cg::input<"fx", T, 3, 2, 4>;
  static constexpr auto table = cg::param<"table", T, 5, 4>;
  static constexpr auto W = cg::param<"fW", T, 6, 8>;
  static constexpr auto b = cg::param<"fb", T, 6>;
  static constexpr auto e = cg::concat<-1>(cg::embedding(ids, table), cg::tanh(x));  // [3,2,8]
  static constexpr auto h = cg::matmul(e, cg::transpose(W)) + b;                     // [3,2,6]
  static constexpr auto r = cg::reshape<3, 2, 6>(cg::permute<1, 0, 2>(h));           // [3,2,6]
  static constexpr auto s = cg::slice<2, 1, 5>(cg::softmax(h) * cg::sigmoid(r));     // [3,2,4]
  static constexpr auto logits = cg::slice<-1, 0, 4>(h) + s * 3_c;                   // [3,2,4]
  static constexpr auto loss =
      cg::cross_entropy(logits, labels) + cg::mean(cg::sqrt(cg::exp(cg::log_softmax(s)) + 1_c)) +
      cg::sum(cg::sum<0, 1>(cg::relu(r) / 4_c) * cg::mean<0>(cg::reshape<6, 6>(h))) * 0.01_c + 0.01_c * cg::sum(W * W);
};
}  // namespace

TEST_CASE("every op family together: double gradients against finite differences", "[autodiff][grad]") {
  using G = every_op<double>;
  gradcheck("every op (double)", G::loss, G::table, G::W, G::b, G::x);
}

TEST_CASE("every op family together: grad(loss) in double against finite differences", "[autodiff][grad_all]") {
  gradcheck_params("every op (double), grad(loss)", every_op<double>::loss);
}

TEST_CASE("every op family together: float gradients agree with double", "[autodiff][float]") {
  using D = every_op<double>;
  using F = every_op<float>;
  auto sd = cg::compile(D::loss, cg::grad(D::loss, D::table, D::W, D::b, D::x));
  auto sf = cg::compile(F::loss, cg::grad(F::loss, F::table, F::W, F::b, F::x));
  auto pd = cg::parameters_of(sd);
  auto pf = cg::parameters_of(sf);
  cg::init(pd, 21);
  auto bd = pd.get<"fb">();
  for (std::size_t i = 0; i < bd.size(); ++i) bd[i] = 0.1 * static_cast<double>(i) - 0.2;
  // the float set gets the double values, by name
  pd.for_each([&](std::string_view name, auto data, const cg::shape&) {
    pf.for_each([&](std::string_view n2, auto d2, const cg::shape&) {
      if (n2 == name)
        for (std::size_t i = 0; i < data.size(); ++i) d2[i] = static_cast<float>(data[i]);
    });
  });
  const auto xd = random_values(24, 17);
  const std::vector<float> xf(xd.begin(), xd.end());
  const std::array<int, 6> ids{4, 0, 2, 2, 1, 3}, labels{3, 0, 1, 2, 2, 0};
  auto od = sd.run(pd, cg::feed<"fx">(xd), cg::feed<"ids">(ids), cg::feed<"labels">(labels));
  auto of = sf.run(pf, cg::feed<"fx">(xf), cg::feed<"ids">(ids), cg::feed<"labels">(labels));
  CHECK(static_cast<float>(of[F::loss]) == Approx(static_cast<double>(od[D::loss])).epsilon(1e-5));
  auto compare = [](const char* what, auto f, auto d) {
    REQUIRE(f.size() == d.size());
    for (std::size_t i = 0; i < f.size(); ++i) {
      INFO(what << " element " << i);
      CHECK(static_cast<double>(f[i]) == Approx(d[i]).epsilon(1e-4).margin(1e-6));
    }
  };
  compare("d/d table", of[cg::grad(F::loss, F::table)], od[cg::grad(D::loss, D::table)]);
  compare("d/d W", of[cg::grad(F::loss, F::W)], od[cg::grad(D::loss, D::W)]);
  compare("d/d b", of[cg::grad(F::loss, F::b)], od[cg::grad(D::loss, D::b)]);
  compare("d/d x", of[cg::grad(F::loss, F::x)], od[cg::grad(D::loss, D::x)]);
}
