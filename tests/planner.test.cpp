// compile = plan: common subexpressions computed once (in the types, and in the graph
// across forward and backward), elementwise chains fused into one loop, arena reuse
// (smaller than the sum of intermediates, results still right), params shared between
// steps by name, init().
#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <vector>

#include "gradcheck.hpp"
#include "testing.hpp"

namespace cg = ctgraph;
using namespace cg::literals;
using ctgraph_test::expect_values;
using ctgraph_test::gradcheck;

namespace {
constexpr auto x = cg::input<"x", double, 4, 3>;
constexpr auto W = cg::param<"W", double, 3, 5>;
}  // namespace

TEST_CASE("a subexpression written twice is one node, computed once", "[planner][cse]") {
  constexpr auto t = cg::tanh(cg::matmul(x, W));
  constexpr auto once = cg::sum(t * t + t);
  constexpr auto twice = cg::sum(cg::tanh(cg::matmul(x, W)) * cg::tanh(cg::matmul(x, W)) + cg::tanh(cg::matmul(x, W)));
  static_assert(std::is_same_v<decltype(once), decltype(twice)>);
  auto s_once = cg::compile(once);
  auto s_twice = cg::compile(twice);
  CHECK(s_once.graph_nodes() == s_twice.graph_nodes());
  CHECK(s_once.num_steps() == s_twice.num_steps());
  // x, W, matmul, tanh, mul, add, sum: tanh and matmul exist once.
  CHECK(s_twice.graph_nodes() == 7);
  CHECK(s_twice.num_kernel_steps() == 2);  // one matmul, one sum
  CHECK(s_twice.num_fused_steps() == 2);   // tanh (two readers: its own loop), t * t + t

  // Three outputs sharing t: still one matmul.
  constexpr auto other = cg::tanh(cg::matmul(x, W)) * 2_c;
  auto s_multi = cg::compile(once, other, t);
  CHECK(s_multi.num_kernel_steps() == 2);

  auto params = cg::parameters_of(s_multi);
  cg::init(params, 5);
  std::vector<double> xv = ctgraph_test::iota_values(12, -0.5, 0.1);
  auto out = s_multi.run(params, cg::feed<"x">(xv));
  double ref = 0;
  auto tv = out[t];
  for (double e : tv) ref += e * e + e;
  CHECK(static_cast<double>(out[once]) == Approx(ref).epsilon(1e-13));
  for (std::size_t i = 0; i < tv.size(); ++i) CHECK(out[other][i] == 2 * tv[i]);
  auto o2 = s_twice.run(params, cg::feed<"x">(xv));
  CHECK(static_cast<double>(o2[twice]) == static_cast<double>(out[once]));
}

TEST_CASE("a node the backward pass rebuilds is the forward node (softmax in cross_entropy's rule)", "[planner][cse]") {
  constexpr auto y = cg::input<"y", int, 4>;
  constexpr auto logits = cg::matmul(x, W);
  constexpr auto loss = cg::cross_entropy(logits, y);
  auto without = cg::compile(loss, cg::grad(loss, W));
  auto with = cg::compile(loss, cg::grad(loss, W), cg::softmax(logits));
  // the softmax the gradient needs is the softmax asked for as an output: no new step
  CHECK(with.num_kernel_steps() == without.num_kernel_steps());
  CHECK(with.graph_nodes() == without.graph_nodes());
  auto params = cg::parameters_of(with);
  cg::init(params, 2);
  const std::vector<double> xv = ctgraph_test::iota_values(12, -1, 0.2);
  const std::array<int, 4> yv{0, 4, 2, 1};
  auto out = with.run(params, cg::feed<"x">(xv), cg::feed<"y">(yv));
  // d loss / d W = x^T (softmax - onehot) / 4
  auto p = out[cg::softmax(logits)];
  auto g = out[cg::grad(loss, W)];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 5; ++j) {
      double ref = 0;
      for (int r = 0; r < 4; ++r) ref += xv[r * 3 + i] * (p(r, j) - (yv[r] == j ? 1.0 : 0.0)) / 4;
      CHECK(g(i, j) == Approx(ref).margin(1e-14).epsilon(1e-12));
    }
}

TEST_CASE("a chain of elementwise ops with single consumers is one loop with no intermediate buffer", "[planner]") {
  constexpr auto v = cg::input<"v", double, 64>;
  constexpr auto chain = cg::exp(cg::tanh(v) * 2_c + 1_c) - cg::sigmoid(v) / 3_c;
  auto step = cg::compile(chain);
  CHECK(step.num_steps() == 1);
  CHECK(step.num_fused_steps() == 1);
  CHECK(step.intermediate_bytes() == 64 * 8);  // only the output
  CHECK(step.arena_bytes() == 64 * 8);
  auto params = cg::parameters_of(step);
  const std::vector<double> vv = ctgraph_test::iota_values(64, -3, 0.1);
  auto out = step.run(params, cg::feed<"v">(vv));
  std::vector<double> ref;
  for (double e : vv) ref.push_back(std::exp(std::tanh(e) * 2 + 1) - 1 / (1 + std::exp(-e)) / 3);
  expect_values(out[chain], ref, 1e-14);
}

// ---------------------------------------------------------------- arena reuse: a deep MLP

namespace {
constexpr int depth = 6, width = 8, batch = 5;
template <int I>
constexpr auto numbered(char c) {
  cg::fixed_string<3> s;
  s.data[0] = c;
  s.data[1] = static_cast<char>('0' + I);
  return s;
}
template <int I>
constexpr auto Wi = cg::param<numbered<I>('W'), double, width, width>;
template <int I>
constexpr auto bi = cg::param<numbered<I>('b'), double, width>;
constexpr auto hx = cg::input<"hx", double, batch, width>;
constexpr auto hy = cg::input<"hy", int, batch>;
template <int I, class H>
constexpr auto layers(H h) {
  if constexpr (I == depth)
    return h;
  else
    return layers<I + 1>(cg::tanh(cg::matmul(h, Wi<I>) + bi<I>));
}
constexpr auto deep_loss = cg::cross_entropy(layers<0>(hx), hy);
}  // namespace

TEST_CASE("arena reuse: a deep MLP's arena is smaller than its intermediates, results stay right", "[planner][arena]") {
  auto step = cg::compile(deep_loss, cg::grad(deep_loss));
  INFO("arena " << step.arena_bytes() << " B, intermediates " << step.intermediate_bytes() << " B");
  CHECK(step.arena_bytes() < step.intermediate_bytes());
  CHECK(step.arena_bytes() * 2 < step.intermediate_bytes());  // a deep chain reuses a lot
  auto params = cg::parameters_of(step);
  cg::init(params, 11);
  std::mt19937 gen(3);
  std::uniform_real_distribution<double> u(-0.5, 0.5);
  params.for_each([&](std::string_view, auto data, const cg::shape&) {
    for (auto& e : data) e += u(gen);  // biases not zero either
  });
  std::vector<double> xv(batch * width);
  for (auto& e : xv) e = 2 * u(gen);
  const std::array<int, batch> yv{1, 7, 0, 3, 3};

  // Reference forward pass in plain loops.
  std::vector<double> h = xv;
  auto layer = [&]<int I>(std::integral_constant<int, I>) {
    auto w = params.get<numbered<I>('W')>();
    auto b = params.get<numbered<I>('b')>();
    std::vector<double> n(batch * width);
    for (int r = 0; r < batch; ++r)
      for (int j = 0; j < width; ++j) {
        double s = b(j);
        for (int k = 0; k < width; ++k) s += h[r * width + k] * w(k, j);
        n[r * width + j] = std::tanh(s);
      }
    h = n;
  };
  [&]<int... I>(std::integer_sequence<int, I...>) { (layer(std::integral_constant<int, I>{}), ...); }
  (std::make_integer_sequence<int, depth>{});
  double ref = 0;
  for (int r = 0; r < batch; ++r) {
    double mx = *std::max_element(h.begin() + r * width, h.begin() + (r + 1) * width), s = 0;
    for (int j = 0; j < width; ++j) s += std::exp(h[r * width + j] - mx);
    ref += mx + std::log(s) - h[r * width + yv[r]];
  }
  ref /= batch;

  auto out = step.run(params, cg::feed<"hx">(xv), cg::feed<"hy">(yv));
  const double l1 = out[deep_loss];
  CHECK(l1 == Approx(ref).epsilon(1e-13));
  const auto g = out[cg::grad(deep_loss, Wi<0>)];
  const std::vector<double> g1(g.begin(), g.end());
  // A second run over the same arena gives the same numbers.
  auto out2 = step.run(params, cg::feed<"hx">(xv), cg::feed<"hy">(yv));
  CHECK(static_cast<double>(out2[deep_loss]) == l1);
  const auto g2 = out2[cg::grad(deep_loss, Wi<0>)];
  CHECK(std::equal(g1.begin(), g1.end(), g2.begin()));
}

TEST_CASE("arena reuse: the deep MLP's gradients against finite differences", "[planner][arena][grad]") {
  [&]<std::size_t... I>(std::index_sequence<I...>) { gradcheck("deep mlp", deep_loss, Wi<I>..., bi<I>...); }
  (std::make_index_sequence<depth>{});
}

// ---------------------------------------------------------------- params across steps, init

TEST_CASE("steps over one parameter set find their params by name", "[planner][params]") {
  constexpr auto b = cg::param<"b", double, 5>;
  constexpr auto loss = cg::sum(cg::tanh(cg::matmul(x, W) + b));
  auto train = cg::compile(loss, cg::grad(loss, W, b));
  auto eval = cg::compile(cg::matmul(x, W));  // uses only W
  auto params = cg::parameters_of(train);
  CHECK(decltype(params)::count == 2);
  cg::init(params, 4);
  params.get<"b">()(2) = 1.5;
  const std::vector<double> xv = ctgraph_test::iota_values(12, -0.3, 0.05);
  auto o1 = train.run(params, cg::feed<"x">(xv));
  auto o2 = eval.run(params, cg::feed<"x">(xv));
  double ref = 0;
  auto m = o2[cg::matmul(x, W)];
  for (int r = 0; r < 4; ++r)
    for (int j = 0; j < 5; ++j) ref += std::tanh(m(r, j) + (j == 2 ? 1.5 : 0.0));
  CHECK(static_cast<double>(o1[loss]) == Approx(ref).epsilon(1e-13));
  // A change through the view is what the next run sees (views of o2 are then stale).
  const double m10 = m(1, 0);
  params.get<"W">()(0, 0) += 1;
  auto o3 = eval.run(params, cg::feed<"x">(xv));
  CHECK(o3[cg::matmul(x, W)](1, 0) == Approx(m10 + xv[3]).epsilon(1e-13));
}

TEST_CASE("init: Glorot uniform for matrices, zeros for biases, seeded by (seed, name)", "[params][init]") {
  constexpr auto A = cg::param<"A", float, 64, 10>;
  constexpr auto c = cg::param<"c", float, 10>;
  constexpr auto B = cg::param<"B", float, 10, 20>;
  constexpr auto e = cg::matmul(cg::matmul(cg::input<"in", float, 2, 64>, A) + c, B);
  auto step = cg::compile(e);
  auto p1 = cg::parameters_of(step);
  auto p2 = cg::parameters_of(step);
  auto p3 = cg::parameters_of(step);
  cg::init(p1, 7);
  cg::init(p2, 7);
  cg::init(p3, 8);
  const double a = std::sqrt(6.0 / (64 + 10));
  auto av = p1.get<"A">();
  double sum = 0, mx = 0;
  for (float v : av) sum += v, mx = std::max(mx, std::abs(double(v)));
  CHECK(mx <= a);
  CHECK(mx > 0.9 * a);                   // spread over the range
  CHECK(std::abs(sum / 640) < 0.1 * a);  // centred
  for (float v : p1.get<"c">()) CHECK(v == 0);
  CHECK(std::equal(av.begin(), av.end(), p2.get<"A">().begin()));
  CHECK(!std::equal(av.begin(), av.end(), p3.get<"A">().begin()));
  // The same name draws the same values in another program.
  auto other = cg::compile(cg::matmul(cg::input<"z", float, 3, 64>, A));
  auto p4 = cg::parameters_of(other);
  cg::init(p4, 7);
  CHECK(std::equal(av.begin(), av.end(), p4.get<"A">().begin()));
  for (float v : p1.get<"B">()) CHECK(std::abs(v) <= std::sqrt(6.0 / 30));
}

TEST_CASE("one analysis: tables of guessed sizes, copied into exact ones; too small a guess is detected", "[planner]") {
  constexpr auto x = cg::input<"x", double, 4, 3>;
  constexpr auto W = cg::param<"W", double, 3, 3>;
  constexpr auto loss = cg::sum(cg::tanh(cg::matmul(cg::tanh(cg::matmul(x, W)), W)));
  using G = decltype(cg::grad(loss));
  using P = cg::program<decltype(loss), G>;
  // The guess held, and the plan's sizes are those of the analysis.
  STATIC_REQUIRE(P::first.fits);
  constexpr cg::plan_sizes z = cg::sizes_of(cg::detail::analyse<decltype(loss), G>());
  STATIC_REQUIRE(z.kernels == P::sizes.kernels);
  STATIC_REQUIRE(z.fused == P::sizes.fused);
  STATIC_REQUIRE(z.order == P::sizes.order);
  STATIC_REQUIRE(z.operands == P::sizes.operands);
  STATIC_REQUIRE(z.params == P::sizes.params);
  STATIC_REQUIRE(cg::fits_within(P::sizes, P::capacity));
  // Tables too small for the plan: not a truncated plan, a plan that says it does not fit.
  constexpr cg::plan_sizes tiny{1, 1, 1, 1, 1, 1, 1};
  constexpr auto small = cg::fix_within<tiny>(cg::detail::analyse<decltype(loss), G>());
  STATIC_REQUIRE(!small.fits);
  STATIC_REQUIRE(small.used.order == P::sizes.order);
  // The exact plan equals the plan copied from the guessed tables.
  constexpr auto exact = cg::fix_within<P::sizes>(cg::detail::analyse<decltype(loss), G>());
  STATIC_REQUIRE(exact.fits);
  for (std::size_t i = 0; i < P::sizes.order; ++i) {
    CHECK(exact.plan.order[i].fused == P::plan.order[i].fused);
    CHECK(exact.plan.order[i].index == P::plan.order[i].index);
  }
  STATIC_REQUIRE(exact.plan.arena_bytes == P::plan.arena_bytes);
}

namespace {
constexpr auto fb = cg::param<"fb", double, 5>;
constexpr auto fa = cg::input<"fa", double, 4, 5>;
constexpr auto W2 = cg::param<"W2", double, 3, 5>;
// Steps of a plan whose op is `name` and that add a buffer to their result (folded sums).
template <class Step>
int folding_steps(const char* name) {
  const auto& p = Step::plan;
  int n = 0;
  for (std::size_t i = 0; i < Step::sizes.kernels; ++i)
    n += std::string_view(p.kernels[i].op->name) == name && p.kernels[i].has_accs;
  return n;
}
}  // namespace

TEST_CASE("folds: acc + x W is one gemm that adds acc (a bias row or a whole matrix), values unchanged",
          "[planner][fold]") {
  constexpr auto bias = cg::matmul(x, W) + fb;    // a row added to every row
  constexpr auto whole = fa + cg::matmul(x, W2);  // a matrix, either side of the +
  constexpr auto shared = cg::matmul(x, W);       // read twice: not folded
  constexpr auto loss = cg::sum(cg::tanh(bias)) + cg::sum(whole * whole);
  auto step = cg::compile(bias, whole, loss, cg::grad(loss));
  CHECK(folding_steps<decltype(step)>("matmul") >= 2);
  auto kept = cg::compile(shared + fb, 2.0_c * shared);
  CHECK(folding_steps<decltype(kept)>("matmul") == 0);
  auto params = cg::parameters_of(step);
  cg::init(params, 5);
  for (double& e : params.get<"fb">()) e = 0.25;
  std::vector<double> xv(12), av(20);
  for (std::size_t i = 0; i < xv.size(); ++i) xv[i] = 0.1 * double(i) - 0.5;
  for (std::size_t i = 0; i < av.size(); ++i) av[i] = 0.05 * double(i);
  auto out = step.run(params, cg::feed<"x">(xv), cg::feed<"fa">(av));
  const auto w = params.get<"W">(), w2 = params.get<"W2">();
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 5; ++j) {
      double s = 0;
      for (int k = 0; k < 3; ++k) s += xv[i * 3 + k] * w[k * 5 + j];
      CHECK(out[bias][i * 5 + j] == Approx(s + 0.25).epsilon(1e-14));
      double s2 = 0;
      for (int k = 0; k < 3; ++k) s2 += xv[i * 3 + k] * w2[k * 5 + j];
      CHECK(out[whole][i * 5 + j] == Approx(s2 + av[i * 5 + j]).epsilon(1e-14));
    }
  gradcheck("folded sums", loss, W, W2, fb, x, fa);
}
