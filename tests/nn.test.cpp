// ctgraph::nn layers: linear, embedding, lstm_cell, gru_cell, and the fused gate ops under the cells.
//   - values: linear against a hand computation (rank 3 input: one gemm), init by PyTorch's rules;
//   - gradients against central differences (double): every param and input, with losses reading h' only,
//     c' only, both, with fan-out, over two chained steps, from a zero state; grad of grad;
//   - float against double on the same values;
//   - PyTorch parity (hidden cases [torch_parity], run by CTest with CTGRAPH_NN_REFERENCE naming the directory
//     where tests/torch/rnn_reference.py wrote its cases): outputs and gradients to 1e-9 in double, 1e-5 in float.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "gradcheck.hpp"
#include "testing.hpp"
#include "torch_reference.hpp"

namespace cg = ctgraph;
namespace nn = ctgraph::nn;
using ctgraph_test::gradcheck;
using ctgraph_test::gradcheck_params;
using ctgraph_test::probe;

namespace {

// Steps of `Step` that call the op named `op`.
template <class Step>
int kernel_steps_of(const char* op) {
  int n = 0;
  for (std::size_t k = 0; k < Step::sizes.kernels; ++k) n += std::string(Step::plan.kernels[k].op->name) == op;
  return n;
}

}  // namespace

TEST_CASE("nn::linear: values over leading axes, one gemm, no bias", "[nn][linear]") {
  constexpr auto x = cg::input<"x", double, 2, 3, 4>;
  constexpr auto y = nn::linear<"fc", 5>(x);
  STATIC_REQUIRE(cg::shape_of<decltype(y)> == cg::make_shape<2, 3, 5>());
  auto step = cg::compile(y);
  STATIC_REQUIRE(decltype(step)::sizes.params == 2);
  CHECK(kernel_steps_of<decltype(step)>("matmul") == 1);
  CHECK(kernel_steps_of<decltype(step)>("permute") == 0);  // the transpose is the gemm's flag
  CHECK(kernel_steps_of<decltype(step)>("reshape") == 0);  // the leading axes are the gemm's rows
  auto params = cg::parameters_of(step);
  auto W = params.get<"fc.weight">();
  auto b = params.get<"fc.bias">();
  REQUIRE(W.size() == 20);
  for (int o = 0; o < 5; ++o) {
    b(o) = 0.5 * o;
    for (int i = 0; i < 4; ++i) W(o, i) = 0.1 * (o + 1) - 0.03 * i;
  }
  const auto xs = ctgraph_test::iota_values(24, -1.0, 0.1);
  auto out = step.run(params, cg::feed<"x">(xs));
  for (int t = 0; t < 2; ++t)
    for (int r = 0; r < 3; ++r)
      for (int o = 0; o < 5; ++o) {
        double want = b(o);
        for (int i = 0; i < 4; ++i) want += xs[(t * 3 + r) * 4 + i] * W(o, i);
        CHECK(out[y](t, r, o) == Approx(want).epsilon(1e-14).margin(1e-14));
      }

  gradcheck("linear over [2, 3, 4]", probe(y), x);
  gradcheck_params("linear over [2, 3, 4]", probe(y));

  constexpr auto z = nn::linear<"proj", 3, nn::linear_options{.bias = false, .in = 4}>(cg::input<"v", float, 7, 4>);
  auto nb = cg::compile(z);
  STATIC_REQUIRE(decltype(nb)::sizes.params == 1);
  STATIC_REQUIRE(cg::shape_of<decltype(z)> == cg::make_shape<7, 3>());
  STATIC_REQUIRE(std::is_same_v<cg::value_of<decltype(z)>, float>);
  STATIC_REQUIRE(cg::shape_of<decltype(nn::linear<"v1", 3>(cg::input<"u", float, 4>))> == cg::make_shape<3>());
}

TEST_CASE("nn: params initialised by PyTorch's rules", "[nn][init]") {
  constexpr int In = 64, Out = 32, H = 16, G = 9;
  constexpr auto x = cg::input<"x", float, 8, In>;
  constexpr auto ids = cg::input<"ids", int, 8>;
  constexpr auto W = cg::param<"W", float, Out, 10>;  // a plain param: Glorot, as before
  constexpr auto bw = cg::param<"bw", float, 10>;     // and a plain bias: zeros
  constexpr auto h9 = cg::input<"h9", float, 8, G>;
  constexpr auto s = nn::lstm_cell<"lstm", H>(nn::linear<"fc", Out>(x));
  constexpr auto loss = cg::sum(s.h) + cg::sum(nn::gru_cell<"gru", G>(x, h9)) +
                        cg::sum(nn::embedding<"emb", 50, 40>(ids)) + cg::sum(nn::linear<"out", Out>(s.c)) +
                        cg::sum(cg::matmul(nn::linear<"w", Out>(x), W) + bw);
  auto step = cg::compile(loss);
  auto params = cg::parameters_of(step);
  cg::init(params, 7);
  auto bound = [](auto v) {
    double m = 0;
    for (float e : v) m = std::max(m, std::abs(static_cast<double>(e)));
    return m;
  };
  // Each within its bound, and close to it (uniform over the whole range).
  auto uniform = [&](auto v, double a) {
    INFO("bound " << a);
    CHECK(bound(v) <= a * (1 + 1e-7));
    CHECK(bound(v) >= 0.8 * a);
  };
  uniform(params.get<"fc.weight">(), 1 / std::sqrt(64.0));
  uniform(params.get<"fc.bias">(), 1 / std::sqrt(64.0));
  uniform(params.get<"out.weight">(), 1 / std::sqrt(16.0));
  uniform(params.get<"lstm.weight_ih">(), 1 / std::sqrt(16.0));
  uniform(params.get<"lstm.bias_hh">(), 1 / std::sqrt(16.0));
  uniform(params.get<"gru.weight_hh">(), 1 / std::sqrt(9.0));
  uniform(params.get<"gru.bias_ih">(), 1 / std::sqrt(9.0));
  uniform(params.get<"W">(), std::sqrt(6.0 / (Out + 10)));
  CHECK(bound(params.get<"bw">()) == 0);
  double m = 0, v = 0;
  auto e = params.get<"emb.weight">();
  for (float z : e) m += z;
  m /= static_cast<double>(e.size());
  for (float z : e) v += (z - m) * (z - m);
  v /= static_cast<double>(e.size());
  CHECK(std::abs(m) < 0.1);  // 2000 draws: the mean's sd is 0.022
  CHECK(std::abs(std::sqrt(v) - 1) < 0.1);
  // The same seed gives the same values; another seed others.
  auto again = cg::parameters_of(step);
  cg::init(again, 7);
  CHECK(again.get<"emb.weight">()(3, 5) == e(3, 5));
  CHECK(again.get<"lstm.weight_ih">()(1, 2) == params.get<"lstm.weight_ih">()(1, 2));
  cg::init(again, 8);
  CHECK(again.get<"lstm.weight_ih">()(1, 2) != params.get<"lstm.weight_ih">()(1, 2));
}

namespace {
constexpr int B = 2, In = 3, H = 4;
constexpr auto x = cg::input<"x", double, B, In>;
constexpr auto h = cg::input<"h", double, B, H>;
constexpr auto c = cg::input<"c", double, B, H>;
constexpr auto x2 = cg::input<"x2", double, B, In>;
constexpr auto s = nn::lstm_cell<"dec", H>(x, h, c);
}  // namespace

TEST_CASE("nn::lstm_cell: gradients against finite differences", "[nn][lstm][grad]") {
  constexpr auto h_only = probe(s.h);
  gradcheck("lstm_cell, loss on h' only", h_only, x, h, c);
  gradcheck_params("lstm_cell, loss on h' only", h_only);
  constexpr auto c_only = probe(s.c);
  gradcheck("lstm_cell, loss on c' only", c_only, x, h, c);
  gradcheck_params("lstm_cell, loss on c' only", c_only);
  constexpr auto both = probe(s.h) + cg::sum(s.c * s.c);
  gradcheck("lstm_cell, loss on h' and c'", both, x, h, c);
  constexpr auto fan_out = probe(s.h * s.c + s.h);
  gradcheck("lstm_cell, fan-out of h' and c'", fan_out, x, h, c);
  // Two steps of one cell: params and h read twice.
  constexpr auto s2 = nn::lstm_cell<"dec", H>(x2, s.h, s.c);
  constexpr auto two = probe(s2.h) + cg::sum(s2.c * s.h);
  gradcheck("lstm_cell, two chained steps", two, x, x2, h, c);
  gradcheck_params("lstm_cell, two chained steps", two);
  constexpr auto zero = nn::lstm_cell<"dec", H>(x);
  gradcheck_params("lstm_cell from zero state", probe(zero.h) + cg::sum(zero.c * zero.c));
}

TEST_CASE("nn::gru_cell: gradients against finite differences", "[nn][gru][grad]") {
  constexpr auto g = nn::gru_cell<"g", H>(x, h);
  constexpr auto loss = probe(g);
  gradcheck("gru_cell", loss, x, h);
  gradcheck_params("gru_cell", loss);
  constexpr auto g2 = nn::gru_cell<"g", H>(x2, g);
  constexpr auto two = probe(g2 * g + g2);
  gradcheck("gru_cell, two chained steps with fan-out", two, x, x2, h);
  gradcheck_params("gru_cell, two chained steps with fan-out", two);
  gradcheck_params("gru_cell from zero state", probe(nn::gru_cell<"g", H>(x)));
}

TEST_CASE("gate ops: gradients against finite differences", "[nn][gates][grad]") {
  constexpr auto pre = cg::input<"pre", double, B, 4 * H>;
  constexpr auto t = cg::lstm_gates(pre, c);
  gradcheck("lstm_gates", probe(t.h) + cg::sum(t.c * t.c * t.c), pre, c);
  constexpr auto t0 = cg::lstm_gates(pre);
  gradcheck("lstm_gates, zero c", probe(t0.c) + cg::sum(t0.h * t0.h), pre);
  constexpr auto gx = cg::input<"gx", double, B, 3 * H>;
  constexpr auto gh = cg::input<"gh", double, B, 3 * H>;
  gradcheck("gru_gates", probe(cg::gru_gates(gx, gh, h)), gx, gh, h);
  gradcheck("gru_gates, zero h", probe(cg::gru_gates(gx, gh)), gx, gh);
}

TEST_CASE("nn cells: grad of grad against finite differences", "[nn][grad][hvp]") {
  constexpr auto vx = cg::input<"vx", double, B, In>;
  constexpr auto vh = cg::input<"vh", double, B, H>;
  // <d loss / d (x, h), v>: its gradient runs the grad ops' own rules and act's adjoint.
  constexpr auto lstm_loss = probe(s.h) + cg::sum(s.c * s.c);
  constexpr auto lstm_hvp = cg::sum(cg::grad(lstm_loss, x) * vx) + cg::sum(cg::grad(lstm_loss, h) * vh);
  gradcheck("lstm_cell, grad of grad", lstm_hvp, x, h, c);
  gradcheck_params("lstm_cell, grad of grad", lstm_hvp);
  constexpr auto g = nn::gru_cell<"g", H>(x, h);
  constexpr auto gru_loss = probe(g * g);
  constexpr auto gru_hvp = cg::sum(cg::grad(gru_loss, x) * vx) + cg::sum(cg::grad(gru_loss, h) * vh);
  gradcheck("gru_cell, grad of grad", gru_hvp, x, h);
  gradcheck_params("gru_cell, grad of grad", gru_hvp);
}

namespace {
using torch_reference::worst;

// One LSTM step and the gradients of a loss on h' and c', in element type T, from the same values.
template <class T>
struct lstm_run {
  static constexpr auto x = cg::input<"x", T, 3, 5>;
  static constexpr auto h = cg::input<"h", T, 3, 6>;
  static constexpr auto c = cg::input<"c", T, 3, 6>;
  static constexpr auto s = nn::lstm_cell<"cell", 6>(x, h, c);
  static constexpr auto loss = cg::sum(s.h * s.h) + cg::sum(s.c * s.h);
  std::vector<std::vector<double>> results;  // h', c', then the gradients of weight_ih, bias_hh and x
  lstm_run(const std::vector<double>& w_ih, const std::vector<double>& w_hh, const std::vector<double>& b_ih,
           const std::vector<double>& b_hh, const std::vector<double>& xs, const std::vector<double>& hs,
           const std::vector<double>& cs) {
    auto step = cg::compile(loss, s.h, s.c, cg::grad(loss), cg::grad(loss, x));
    auto params = cg::parameters_of(step);
    auto put = [](auto v, const std::vector<double>& from) {
      REQUIRE(v.size() == from.size());
      for (std::size_t i = 0; i < from.size(); ++i) v.data()[i] = static_cast<T>(from[i]);
    };
    put(params.template get<"cell.weight_ih">(), w_ih);
    put(params.template get<"cell.weight_hh">(), w_hh);
    put(params.template get<"cell.bias_ih">(), b_ih);
    put(params.template get<"cell.bias_hh">(), b_hh);
    auto cast = [](const std::vector<double>& v) { return std::vector<T>(v.begin(), v.end()); };
    const auto xt = cast(xs), ht = cast(hs), ct = cast(cs);
    auto out = step.run(params, cg::feed<"x">(xt), cg::feed<"h">(ht), cg::feed<"c">(ct));
    auto keep = [&](auto v) { results.emplace_back(v.begin(), v.end()); };
    keep(out[s.h]);
    keep(out[s.c]);
    keep(out.template grad<"cell.weight_ih">());
    keep(out.template grad<"cell.bias_hh">());
    keep(out[cg::grad(loss, x)]);
  }
};
std::vector<double> randoms(std::size_t n, std::uint64_t seed, double scale = 1) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> u(-scale, scale);
  std::vector<double> v(n);
  for (double& e : v) e = u(gen);
  return v;
}
}  // namespace

TEST_CASE("nn::lstm_cell: float agrees with double", "[nn][lstm][float]") {
  const auto w_ih = randoms(24 * 5, 1, 0.4), w_hh = randoms(24 * 6, 2, 0.4), b_ih = randoms(24, 3, 0.4),
             b_hh = randoms(24, 4, 0.4), xs = randoms(15, 5), hs = randoms(18, 6), cs = randoms(18, 7);
  lstm_run<double> d(w_ih, w_hh, b_ih, b_hh, xs, hs, cs);
  lstm_run<float> f(w_ih, w_hh, b_ih, b_hh, xs, hs, cs);
  const char* what[] = {"h'", "c'", "grad weight_ih", "grad bias_hh", "grad x"};
  for (std::size_t k = 0; k < d.results.size(); ++k) {
    INFO(what[k]);
    CHECK(worst(f.results[k], d.results[k], 1e-3) < 1e-5);
  }
}

// ---- PyTorch parity -------------------------------------------------------------------------------------

namespace {
// The case `name` that tests/torch/rnn_reference.py wrote, or an empty path (the test then skips, saying why).
using torch_reference::as;
using torch_reference::load_into;
using torch_reference::reference_case;
using torch_reference::tensor;

constexpr int tB = 3, tIn = 4, tH = 6;  // rnn_reference.py's sizes

// torch.nn.LSTMCell's case: params under torch's own (unprefixed) names, loss = sum(h_1 w_h) + sum(c_1 w_c).
template <class T>
void lstm_parity(const std::filesystem::path& f, double tol, double floor) {
  constexpr auto x = cg::input<"x", T, tB, tIn>;
  constexpr auto h0 = cg::input<"h0", T, tB, tH>;
  constexpr auto c0 = cg::input<"c0", T, tB, tH>;
  constexpr auto w_h = cg::input<"w_h", T, tB, tH>;
  constexpr auto w_c = cg::input<"w_c", T, tB, tH>;
  constexpr auto s = nn::lstm_cell<"", tH>(x, h0, c0);
  constexpr auto loss = cg::sum(s.h * w_h) + cg::sum(s.c * w_c);
  auto step = cg::compile(loss, s.h, s.c, cg::grad(loss), cg::grad(loss, x, h0, c0));
  auto params = cg::parameters_of(step);
  load_into(params.template get<"weight_ih">(), tensor(f, "weight_ih", {4 * tH, tIn}));
  load_into(params.template get<"weight_hh">(), tensor(f, "weight_hh", {4 * tH, tH}));
  load_into(params.template get<"bias_ih">(), tensor(f, "bias_ih", {4 * tH}));
  load_into(params.template get<"bias_hh">(), tensor(f, "bias_hh", {4 * tH}));
  const auto xs = as<T>(tensor(f, "x", {tB, tIn})), hs = as<T>(tensor(f, "h0", {tB, tH})),
             cs = as<T>(tensor(f, "c0", {tB, tH})), wh = as<T>(tensor(f, "w_h", {tB, tH})),
             wc = as<T>(tensor(f, "w_c", {tB, tH}));
  auto out = step.run(params, cg::feed<"x">(xs), cg::feed<"h0">(hs), cg::feed<"c0">(cs), cg::feed<"w_h">(wh),
                      cg::feed<"w_c">(wc));
  auto check = [&](const char* what, auto got, std::vector<int> dims) {
    INFO(what << " (" << (std::is_same_v<T, float> ? "float" : "double") << ")");
    CHECK(worst(got, tensor(f, what, dims), floor) <= tol);
  };
  check("h_1", out[s.h], {tB, tH});
  check("c_1", out[s.c], {tB, tH});
  check("grad.weight_ih", out.template grad<"weight_ih">(), {4 * tH, tIn});
  check("grad.weight_hh", out.template grad<"weight_hh">(), {4 * tH, tH});
  check("grad.bias_ih", out.template grad<"bias_ih">(), {4 * tH});
  check("grad.bias_hh", out.template grad<"bias_hh">(), {4 * tH});
  check("grad.x", out[cg::grad(loss, x)], {tB, tIn});
  check("grad.h0", out[cg::grad(loss, h0)], {tB, tH});
  check("grad.c0", out[cg::grad(loss, c0)], {tB, tH});
}

// torch.nn.GRUCell's case: loss = sum(h_1 w_h).
template <class T>
void gru_parity(const std::filesystem::path& f, double tol, double floor) {
  constexpr auto x = cg::input<"x", T, tB, tIn>;
  constexpr auto h0 = cg::input<"h0", T, tB, tH>;
  constexpr auto w_h = cg::input<"w_h", T, tB, tH>;
  constexpr auto h1 = nn::gru_cell<"", tH>(x, h0);
  constexpr auto loss = cg::sum(h1 * w_h);
  auto step = cg::compile(loss, h1, cg::grad(loss), cg::grad(loss, x, h0));
  auto params = cg::parameters_of(step);
  load_into(params.template get<"weight_ih">(), tensor(f, "weight_ih", {3 * tH, tIn}));
  load_into(params.template get<"weight_hh">(), tensor(f, "weight_hh", {3 * tH, tH}));
  load_into(params.template get<"bias_ih">(), tensor(f, "bias_ih", {3 * tH}));
  load_into(params.template get<"bias_hh">(), tensor(f, "bias_hh", {3 * tH}));
  const auto xs = as<T>(tensor(f, "x", {tB, tIn})), hs = as<T>(tensor(f, "h0", {tB, tH})),
             wh = as<T>(tensor(f, "w_h", {tB, tH}));
  auto out = step.run(params, cg::feed<"x">(xs), cg::feed<"h0">(hs), cg::feed<"w_h">(wh));
  auto check = [&](const char* what, auto got, std::vector<int> dims) {
    INFO(what << " (" << (std::is_same_v<T, float> ? "float" : "double") << ")");
    CHECK(worst(got, tensor(f, what, dims), floor) <= tol);
  };
  check("h_1", out[h1], {tB, tH});
  check("grad.weight_ih", out.template grad<"weight_ih">(), {3 * tH, tIn});
  check("grad.weight_hh", out.template grad<"weight_hh">(), {3 * tH, tH});
  check("grad.bias_ih", out.template grad<"bias_ih">(), {3 * tH});
  check("grad.bias_hh", out.template grad<"bias_hh">(), {3 * tH});
  check("grad.x", out[cg::grad(loss, x)], {tB, tIn});
  check("grad.h0", out[cg::grad(loss, h0)], {tB, tH});
}

// torch.nn.Linear(4, 6) on x [T=5, B=3, 4]: loss = sum(output w_out).
template <class T>
void linear_parity(const std::filesystem::path& f, double tol, double floor) {
  constexpr auto x = cg::input<"x", T, 5, tB, tIn>;
  constexpr auto w = cg::input<"w_out", T, 5, tB, tH>;
  constexpr auto y = nn::linear<"", tH>(x);
  constexpr auto loss = cg::sum(y * w);
  auto step = cg::compile(loss, y, cg::grad(loss), cg::grad(loss, x));
  auto params = cg::parameters_of(step);
  load_into(params.template get<"weight">(), tensor(f, "weight", {tH, tIn}));
  load_into(params.template get<"bias">(), tensor(f, "bias", {tH}));
  const auto xs = as<T>(tensor(f, "x", {5, tB, tIn})), ws = as<T>(tensor(f, "w_out", {5, tB, tH}));
  auto out = step.run(params, cg::feed<"x">(xs), cg::feed<"w_out">(ws));
  auto check = [&](const char* what, auto got, std::vector<int> dims) {
    INFO(what << " (" << (std::is_same_v<T, float> ? "float" : "double") << ")");
    CHECK(worst(got, tensor(f, what, dims), floor) <= tol);
  };
  check("output", out[y], {5, tB, tH});
  check("grad.weight", out.template grad<"weight">(), {tH, tIn});
  check("grad.bias", out.template grad<"bias">(), {tH});
  check("grad.x", out[cg::grad(loss, x)], {5, tB, tIn});
}
}  // namespace

// Hidden: CTest runs them with the reference data (tests/CMakeLists.txt, "nn layers: PyTorch parity"). Errors
// are relative with a floor, |a - b| / max(|b|, floor): double 1e-9 (floor 1e-3), float 1e-5 (floor 1e-2, values
// and gradients here are O(1); the float graph starts from inputs rounded to float).
TEST_CASE("nn::lstm_cell matches torch.nn.LSTMCell", "[.][torch_parity]") {
  const auto f = reference_case("lstm_cell");
  if (f.empty()) return;
  lstm_parity<double>(f, 1e-9, 1e-3);
  lstm_parity<float>(f, 1e-5, 1e-2);
}
TEST_CASE("nn::gru_cell matches torch.nn.GRUCell", "[.][torch_parity]") {
  const auto f = reference_case("gru_cell");
  if (f.empty()) return;
  gru_parity<double>(f, 1e-9, 1e-3);
  gru_parity<float>(f, 1e-5, 1e-2);
}
TEST_CASE("nn::linear matches torch.nn.Linear", "[.][torch_parity]") {
  const auto f = reference_case("linear");
  if (f.empty()) return;
  linear_parity<double>(f, 1e-9, 1e-3);
  linear_parity<float>(f, 1e-5, 1e-2);
}
