// Attention for recurrent models: nn::additive_attention (Bahdanau) and nn::dot_attention (Luong dot and
// general).
//   - values against the formulas written out as loops in double, with and without a source mask (a padded
//     position's weight exactly 0, its key not read into the context);
//   - gradients of the query, the keys and every param against central differences (double), and the
//     gradient of a gradient (the fused grad op's own rule);
//   - inside a decoder's scan, W_h h_j runs once, before the loop;
//   - PyTorch parity of the additive attention, masked and not (hidden cases [torch_parity], run by CTest with
//     CTGRAPH_NN_REFERENCE naming where tests/torch/attention_reference.py wrote them): 1e-9 in double, 1e-5
//     in float.
#include <cmath>
#include <string>
#include <vector>

#include "gradcheck.hpp"
#include "testing.hpp"
#include "torch_reference.hpp"

namespace cg = ctgraph;
namespace nn = ctgraph::nn;
using ctgraph_test::gradcheck;
using ctgraph_test::gradcheck_params;

namespace {
constexpr int S = 5, B = 3, Hq = 4, Hk = 6, A = 7;
constexpr auto q = cg::input<"q", double, B, Hq>;
constexpr auto keys = cg::input<"keys", double, S, B, Hk>;
constexpr auto mask = cg::input<"mask", double, S, B, 1>;

std::vector<double> values(std::size_t n, unsigned seed) {
  std::vector<double> v(n);
  std::uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<double>(s >> 11) / static_cast<double>(1ull << 53) * 2 - 1;
  }
  return v;
}

// softmax over the positions of scores e[j][b], then the context, as loops; m[j][b] 0 drops position j.
struct reference {
  std::vector<double> weights, context;  // [B, S], [B, Hk]
};
reference attend(const std::vector<double>& e, const std::vector<double>& k, const std::vector<double>* m) {
  reference r{std::vector<double>(B * S), std::vector<double>(B * Hk, 0.0)};
  for (int b = 0; b < B; ++b) {
    double mx = -1e300, z = 0;
    bool any = false;
    for (int j = 0; j < S; ++j)
      if (!m || (*m)[j * B + b] != 0) mx = std::max(mx, e[j * B + b]), any = true;
    for (int j = 0; j < S; ++j) {
      const bool real = !m || (*m)[j * B + b] != 0;
      r.weights[b * S + j] = !any ? 1.0 : real ? std::exp(e[j * B + b] - mx) : 0.0;  // none real: uniform
      z += r.weights[b * S + j];
    }
    for (int j = 0; j < S; ++j) {
      r.weights[b * S + j] /= z;
      for (int d = 0; d < Hk; ++d) r.context[b * Hk + d] += r.weights[b * S + j] * k[(j * B + b) * Hk + d];
    }
  }
  return r;
}
}  // namespace

TEST_CASE("nn::additive_attention: values against Bahdanau's formula, masked and not", "[nn][attention]") {
  constexpr auto a = nn::additive_attention<"attn", A>(q, keys);
  constexpr auto am = nn::additive_attention<"attn", A>(q, keys, mask);
  STATIC_REQUIRE(cg::shape_of<decltype(a.context)> == cg::make_shape<B, Hk>());
  STATIC_REQUIRE(cg::shape_of<decltype(a.weights)> == cg::make_shape<B, S>());
  auto step = cg::compile(a.context, a.weights, am.context, am.weights);
  STATIC_REQUIRE(decltype(step)::sizes.params == 4);
  auto params = cg::parameters_of(step);
  cg::init(params, 7);
  const auto qv = values(B * Hq, 1), kv = values(S * B * Hk, 2);
  std::vector<double> mv(S * B, 1.0);
  for (int j = 2; j < S; ++j) mv[j * B + 1] = 0;  // sequence 1 has length 2
  mv[(S - 1) * B + 2] = 0;                        // sequence 2 has length S - 1
  for (int j = 0; j < S; ++j) mv[j * B] = 0;      // sequence 0 has length 0: uniform weights
  auto out = step.run(params, cg::feed<"q">(qv), cg::feed<"keys">(kv), cg::feed<"mask">(mv));
  auto Wh = params.get<"attn.Wh.weight">();
  auto Ws = params.get<"attn.Ws.weight">();
  auto bs = params.get<"attn.Ws.bias">();
  auto v = params.get<"attn.v.weight">();
  REQUIRE(Wh.size() == A * Hk);
  REQUIRE(v.size() == A);
  std::vector<double> e(S * B);
  for (int j = 0; j < S; ++j)
    for (int b = 0; b < B; ++b) {
      double s = 0;
      for (int i = 0; i < A; ++i) {
        double pre = bs(i);
        for (int d = 0; d < Hq; ++d) pre += Ws(i, d) * qv[b * Hq + d];
        for (int d = 0; d < Hk; ++d) pre += Wh(i, d) * kv[(j * B + b) * Hk + d];
        s += v(0, i) * std::tanh(pre);
      }
      e[j * B + b] = s;
    }
  const reference r = attend(e, kv, nullptr), rm = attend(e, kv, &mv);
  ctgraph_test::expect_values(out[a.weights], r.weights, 1e-12);
  ctgraph_test::expect_values(out[a.context], r.context, 1e-12);
  ctgraph_test::expect_values(out[am.weights], rm.weights, 1e-12);
  ctgraph_test::expect_values(out[am.context], rm.context, 1e-12);
  for (int j = 2; j < S; ++j) CHECK(out[am.weights](1, j) == 0.0);  // exactly 0, not small
  for (int j = 0; j < S; ++j) CHECK(out[am.weights](0, j) == Approx(1.0 / S).epsilon(1e-15));
  CHECK(out[am.weights](2, S - 1) == 0.0);
  // A padded position's key is not read: changing it changes nothing.
  auto kv2 = kv;
  for (int d = 0; d < Hk; ++d) kv2[((S - 1) * B + 1) * Hk + d] = 1e3;
  auto out2 = step.run(params, cg::feed<"q">(qv), cg::feed<"keys">(kv2), cg::feed<"mask">(mv));
  ctgraph_test::expect_values(out2[am.context], rm.context, 1e-12);
}

TEST_CASE("nn::dot_attention: Luong dot and general against their formulas", "[nn][attention]") {
  constexpr auto qh = cg::input<"qh", double, B, Hk>;
  constexpr auto dot = nn::dot_attention<"dot">(qh, keys, mask);
  constexpr auto gen = nn::dot_attention<"gen", nn::luong::general>(q, keys);
  auto step = cg::compile(dot.context, dot.weights, gen.context, gen.weights);
  STATIC_REQUIRE(decltype(step)::sizes.params == 1);  // gen.weight
  auto params = cg::parameters_of(step);
  cg::init(params, 3);
  const auto qv = values(B * Hq, 4), qhv = values(B * Hk, 5), kv = values(S * B * Hk, 6);
  std::vector<double> mv(S * B, 1.0);
  mv[(S - 1) * B + 0] = mv[(S - 2) * B + 0] = 0;
  auto out = step.run(params, cg::feed<"q">(qv), cg::feed<"qh">(qhv), cg::feed<"keys">(kv), cg::feed<"mask">(mv));
  auto W = params.get<"gen.weight">();
  REQUIRE(W.size() == Hq * Hk);
  std::vector<double> ed(S * B), eg(S * B);
  for (int j = 0; j < S; ++j)
    for (int b = 0; b < B; ++b) {
      double d0 = 0, g0 = 0;
      for (int d = 0; d < Hk; ++d) d0 += qhv[b * Hk + d] * kv[(j * B + b) * Hk + d];
      for (int i = 0; i < Hq; ++i)
        for (int d = 0; d < Hk; ++d) g0 += qv[b * Hq + i] * W(i, d) * kv[(j * B + b) * Hk + d];
      ed[j * B + b] = d0, eg[j * B + b] = g0;
    }
  const reference rd = attend(ed, kv, &mv), rg = attend(eg, kv, nullptr);
  ctgraph_test::expect_values(out[dot.weights], rd.weights, 1e-12);
  ctgraph_test::expect_values(out[dot.context], rd.context, 1e-12);
  ctgraph_test::expect_values(out[gen.weights], rg.weights, 1e-12);
  ctgraph_test::expect_values(out[gen.context], rg.context, 1e-12);
  CHECK(out[dot.weights](0, S - 1) == 0.0);
}

TEST_CASE("attention gradients against finite differences: query, keys and params", "[nn][attention][grad]") {
  constexpr auto wc = cg::input<"wc", double, B, Hk>;
  constexpr auto ww = cg::input<"ww", double, B, S>;
  constexpr auto a = nn::additive_attention<"attn", A>(q, keys);
  gradcheck("additive", cg::sum(a.context * wc) + cg::sum(a.weights * ww), q, keys);
  gradcheck_params("additive, params", cg::sum(a.context * wc) + cg::sum(a.weights * ww));
  // Masked: the mask of random lengths in [0, S] (a length 0 masks every position: weights uniform again).
  constexpr auto len = cg::input<"len", int, B>;
  constexpr auto am = nn::additive_attention<"attn", A>(q, keys, cg::sequence_mask<S, double>(len));
  gradcheck("additive, masked", cg::sum(am.context * wc) + cg::sum(am.weights * ww), q, keys);
  gradcheck_params("additive, masked, params", cg::sum(am.context * wc) + cg::sum(am.weights * ww));
  constexpr auto qh = cg::input<"qh", double, B, Hk>;
  constexpr auto d = nn::dot_attention<"dot">(qh, keys);
  gradcheck("dot", cg::sum(d.context * wc) + cg::sum(d.weights * ww), qh, keys);
  constexpr auto g = nn::dot_attention<"gen", nn::luong::general>(q, keys);
  gradcheck("general", cg::sum(g.context * wc) + cg::sum(g.weights * ww), q, keys);
  gradcheck_params("general, params", cg::sum(g.context * wc));
}

TEST_CASE("additive attention: grad of grad against finite differences, masked and not", "[nn][attention][hvp]") {
  constexpr auto wc = cg::input<"wc", double, B, Hk>;
  constexpr auto ww = cg::input<"ww", double, B, S>;
  constexpr auto vq = cg::input<"vq", double, B, Hq>;
  constexpr auto vk = cg::input<"vk", double, S, B, Hk>;
  // <d loss / d (q, keys), v>: its gradient runs the fused grad op's own rule (its reference formulas).
  constexpr auto a = nn::additive_attention<"attn", A>(q, keys);
  constexpr auto loss = cg::sum(a.context * wc) + cg::sum(a.weights * a.weights * ww);
  constexpr auto hvp = cg::sum(cg::grad(loss, q) * vq) + cg::sum(cg::grad(loss, keys) * vk);
  gradcheck("additive, grad of grad", hvp, q, keys);
  gradcheck_params("additive, grad of grad, params", hvp);
  constexpr auto len = cg::input<"len", int, B>;
  constexpr auto am = nn::additive_attention<"attn", A>(q, keys, cg::sequence_mask<S, double>(len));
  constexpr auto mloss = cg::sum(am.context * wc) + cg::sum(am.weights * am.weights * ww);
  constexpr auto mhvp = cg::sum(cg::grad(mloss, q) * vq) + cg::sum(cg::grad(mloss, keys) * vk);
  gradcheck("additive, masked, grad of grad", mhvp, q, keys);
}

TEST_CASE("additive attention in a decoder's scan: W_h h_j runs once, before the loop", "[nn][attention][scan]") {
  constexpr int T = 4;
  constexpr auto ys = cg::input<"ys", double, T, B, Hq>;
  constexpr auto h0 = cg::input<"h0", double, B, Hq>;
  constexpr auto dec = cg::scan(
      [](auto h, auto y) {
        auto at = nn::additive_attention<"attn", A>(h, keys);
        auto n = cg::tanh(nn::linear<"mix", Hq>(cg::concat<1>(y, at.context)) + h);
        return std::tuple{n, at.weights};
      },
      h0, ys);
  constexpr auto loss = cg::sum(dec.carry) + cg::sum(dec.outputs * dec.outputs);
  auto step = cg::compile(loss, cg::grad(loss));
  const auto& p = decltype(step)::plan;
  // The keys' projection, keys [S, B, Hk] times W_h^T: one matmul in the outer order, none in any cell.
  int outer = 0, in_cells = 0;
  auto projects_keys = [&](const cg::order_entry& e) {
    if (e.fused) return false;
    const cg::kernel_step& k = p.kernels[e.index];
    return std::string(k.op->name) == "matmul" && k.out_shape == cg::make_shape<S, B, A>() &&
           p.in_shapes[k.first_in] == cg::make_shape<S, B, Hk>();
  };
  for (std::size_t i = 0; i < decltype(step)::sizes.order; ++i) outer += projects_keys(p.order[i]);
  for (std::size_t i = 0; i < decltype(step)::sizes.body_order; ++i) in_cells += projects_keys(p.body_order[i]);
  CHECK(outer == 1);
  CHECK(in_cells == 0);
  // The backward loop's running sum of dL/d(W_h h_j) over the steps is added by the attention's grad kernel
  // itself: it has accumulators, and no cell adds an [S, B, A] buffer.
  int accumulating = 0, sum_steps = 0;
  for (std::size_t i = 0; i < decltype(step)::sizes.body_order; ++i) {
    const cg::order_entry& e = p.body_order[i];
    if (e.fused) {
      sum_steps += p.fused[e.index].out_shape == cg::make_shape<S, B, A>();
    } else {
      const cg::kernel_step& k = p.kernels[e.index];
      accumulating += std::string(k.op->name) == "additive_attention_grad" && k.has_accs;
    }
  }
  CHECK(accumulating == 1);
  CHECK(sum_steps == 0);
  gradcheck_params("decoder scan with attention", loss);
}

namespace {
template <class T, bool Masked>
void additive_parity(const std::filesystem::path& f, double tol, double floor) {
  using namespace torch_reference;
  constexpr auto tq = cg::input<"q", T, B, Hq>;
  constexpr auto tk = cg::input<"keys", T, S, B, Hk>;
  [[maybe_unused]] constexpr auto len = cg::input<"lengths", int, B>;
  constexpr auto wc = cg::input<"w_context", T, B, Hk>;
  constexpr auto ww = cg::input<"w_weights", T, B, S>;
  constexpr auto a = [] {
    if constexpr (Masked)
      return nn::additive_attention<"", A>(tq, tk, cg::sequence_mask<S, T>(len));
    else
      return nn::additive_attention<"", A>(tq, tk);
  }();
  constexpr auto loss = cg::sum(a.context * wc) + cg::sum(a.weights * ww);
  auto step = cg::compile(a.context, a.weights, cg::grad(loss), cg::grad(loss, tq, tk));
  auto params = cg::parameters_of(step);
  load_into(params.template get<"Wh.weight">(), tensor(f, "Wh.weight", {A, Hk}));
  load_into(params.template get<"Ws.weight">(), tensor(f, "Ws.weight", {A, Hq}));
  load_into(params.template get<"Ws.bias">(), tensor(f, "Ws.bias", {A}));
  load_into(params.template get<"v.weight">(), tensor(f, "v.weight", {1, A}));
  const auto qv = as<T>(tensor(f, "q", {B, Hq})), kv = as<T>(tensor(f, "keys", {S, B, Hk}));
  const auto wcv = as<T>(tensor(f, "w_context", {B, Hk})), wwv = as<T>(tensor(f, "w_weights", {B, S}));
  auto out = [&] {
    if constexpr (Masked)
      return step.run(params, cg::feed<"q">(qv), cg::feed<"keys">(kv), cg::feed<"lengths">(int_tensor(f, "lengths", B)),
                      cg::feed<"w_context">(wcv), cg::feed<"w_weights">(wwv));
    else
      return step.run(params, cg::feed<"q">(qv), cg::feed<"keys">(kv), cg::feed<"w_context">(wcv),
                      cg::feed<"w_weights">(wwv));
  }();
  auto check = [&](const char* what, auto got, std::vector<int> dims) {
    INFO(what << (Masked ? " (masked, " : " (") << (std::is_same_v<T, float> ? "float)" : "double)"));
    CHECK(worst(got, tensor(f, what, dims), floor, std::is_same_v<T, float>) <= tol);
  };
  check("context", out[a.context], {B, Hk});
  check("weights", out[a.weights], {B, S});
  check("grad.Wh.weight", out.template grad<"Wh.weight">(), {A, Hk});
  check("grad.Ws.weight", out.template grad<"Ws.weight">(), {A, Hq});
  check("grad.Ws.bias", out.template grad<"Ws.bias">(), {A});
  check("grad.v.weight", out.template grad<"v.weight">(), {1, A});
  check("grad.q", out[cg::grad(loss, tq)], {B, Hq});
  check("grad.keys", out[cg::grad(loss, tk)], {S, B, Hk});
}
}  // namespace

// Hidden: CTest runs it with the reference data (tests/CMakeLists.txt). Errors relative with a floor (1e-3);
// float normwise, against the tensor's largest magnitude.
TEST_CASE("nn::additive_attention matches the same formula in torch", "[.][torch_parity]") {
  for (const char* c : {"additive", "additive_masked"}) {
    const auto f = torch_reference::reference_case(c);
    if (f.empty()) return;
    if (std::string(c) == "additive") {
      additive_parity<double, false>(f, 1e-9, 1e-3);
      additive_parity<float, false>(f, 1e-5, 1e-3);
    } else {
      additive_parity<double, true>(f, 1e-9, 1e-3);
      additive_parity<float, true>(f, 1e-5, 1e-3);
    }
  }
}
