// Transformer layers and their ops:
//   - cg::layer_norm and cg::gelu (both forms): values against their formulas, gradients against central
//     differences (double), and layer_norm's second derivative (its rule is graph ops);
//   - nn::layer_norm, nn::multihead_attention, nn::transformer_encoder_layer and nn::transformer_decoder_layer
//     against torch (hidden cases [torch_parity], run by CTest with CTGRAPH_NN_REFERENCE naming where
//     tests/torch/transformer_reference.py wrote them): outputs and the gradients of every param and input,
//     1e-9 in double and 1e-4 in float (the float graph runs the fused attention kernels);
//   - the layers' params under torch's names and shapes;
//   - nn::multihead_attention_weights (torch's head-averaged weights) against a hand computation.
#include <cmath>
#include <vector>

#include "gradcheck.hpp"
#include "testing.hpp"
#include "transformer_parity.hpp"

namespace cg = ctgraph;
namespace nn = ctgraph::nn;
using ctgraph_test::gradcheck;
using ctgraph_test::gradcheck_params;
using ctgraph_test::probe;
using transformer_parity::parity;
using transformer_parity::reads;

TEST_CASE("cg::layer_norm and cg::gelu: values against their formulas", "[transformer]") {
  constexpr int R = 3, C = 8;
  constexpr auto x = cg::input<"x", double, R, C>;
  constexpr auto n = cg::layer_norm(x);
  constexpr auto n2 = cg::layer_norm<0.5>(x);
  constexpr auto g = cg::gelu(x);
  constexpr auto gt = cg::gelu<cg::gelu_form::tanh>(x);
  auto step = cg::compile(n, n2, g, gt);
  auto params = cg::parameters_of(step);
  std::vector<double> xv(R * C);
  for (int i = 0; i < R * C; ++i) xv[i] = std::sin(1.3 * i) * (1 + i % 5);
  auto out = step.run(params, cg::feed<"x">(xv));
  std::vector<double> wn(R * C), wn2(R * C), wg(R * C), wgt(R * C);
  for (int r = 0; r < R; ++r) {
    double mean = 0, var = 0;
    for (int j = 0; j < C; ++j) mean += xv[r * C + j] / C;
    for (int j = 0; j < C; ++j) var += (xv[r * C + j] - mean) * (xv[r * C + j] - mean) / C;
    for (int j = 0; j < C; ++j) {
      wn[r * C + j] = (xv[r * C + j] - mean) / std::sqrt(var + 1e-5);
      wn2[r * C + j] = (xv[r * C + j] - mean) / std::sqrt(var + 0.5);
    }
  }
  for (int i = 0; i < R * C; ++i) {
    const double v = xv[i];
    wg[i] = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
    wgt[i] = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
  }
  ctgraph_test::expect_values(out[n], wn, 1e-12);
  ctgraph_test::expect_values(out[n2], wn2, 1e-12);
  ctgraph_test::expect_values(out[g], wg, 1e-12);
  ctgraph_test::expect_values(out[gt], wgt, 1e-12);
}

TEST_CASE("cg::layer_norm, cg::gelu, nn::layer_norm: gradients against central differences",
          "[transformer][gradcheck]") {
  constexpr auto x = cg::input<"x", double, 2, 3, 6>;
  gradcheck("layer_norm", probe(cg::layer_norm(x)), x);
  gradcheck("layer_norm, eps 0.1", probe(cg::layer_norm<0.1>(x)), x);
  gradcheck("gelu", probe(cg::gelu(x)), x);
  gradcheck("gelu, tanh form", probe(cg::gelu<cg::gelu_form::tanh>(x)), x);
  gradcheck_params("nn::layer_norm", probe(nn::layer_norm<"norm">(x)));
  // A second derivative through layer_norm: the gradient of sum(grad(loss, x) * r2) by x.
  constexpr auto loss = probe(cg::layer_norm(x));
  constexpr auto r2 = cg::input<"r2", double, 2, 3, 6>;
  gradcheck("layer_norm, second derivative", cg::sum(cg::grad(loss, x) * r2), x);
}

TEST_CASE("transformer layers: params under torch's names and shapes", "[transformer]") {
  constexpr int L = 4, B = 2, E = 8;
  constexpr auto x = cg::input<"x", float, L, B, E>;
  constexpr auto y = nn::transformer_encoder_layer<"layers.0", 2, 16>(x, cg::causal);
  STATIC_REQUIRE(cg::shape_of<decltype(y)> == cg::make_shape<L, B, E>());
  auto step = cg::compile(y);
  auto params = cg::parameters_of(step);
  CHECK(params.get<"layers.0.self_attn.in_proj_weight">().size() == 3 * E * E);
  CHECK(params.get<"layers.0.self_attn.in_proj_bias">().size() == 3 * E);
  CHECK(params.get<"layers.0.self_attn.out_proj.weight">().size() == E * E);
  CHECK(params.get<"layers.0.self_attn.out_proj.bias">().size() == E);
  CHECK(params.get<"layers.0.linear1.weight">().size() == 16 * E);
  CHECK(params.get<"layers.0.linear2.weight">().size() == E * 16);
  CHECK(params.get<"layers.0.norm2.bias">().size() == E);
  cg::init(params, 1);
  for (float w : params.get<"layers.0.norm1.weight">()) CHECK(w == 1.0f);  // torch's LayerNorm init
  for (float b : params.get<"layers.0.self_attn.in_proj_bias">()) CHECK(b == 0.0f);
  STATIC_REQUIRE(decltype(params)::count == 12);
}

namespace {
template <class T>
void all_cases() {
  using I = transformer_parity::in<T>;
  constexpr auto x = I::x;
  parity<T, reads{}>("layer_norm", nn::layer_norm<"">(x));
  parity<T, reads{.x_lengths = true}>("mha_self_causal_padded",
                                      nn::multihead_attention<"", 3>(x, x, x, cg::causal, I::x_mask));
  parity<T, reads{.mem = true, .mem_lengths = true}>("mha_cross_padded",
                                                     nn::multihead_attention<"", 3>(x, I::mem, I::mem, I::mem_mask));
  parity<T, reads{}>("encoder_post_relu", nn::transformer_encoder_layer<"", 3, 16>(x));
  parity<T, reads{}>("encoder_post_relu_causal", nn::transformer_encoder_layer<"", 3, 16>(x, cg::causal));
  constexpr nn::transformer_options pre_gelu{.norm_first = true, .act = nn::activation::gelu};
  parity<T, reads{.x_lengths = true}>("encoder_pre_gelu_padded",
                                      nn::transformer_encoder_layer<"", 3, 16, pre_gelu>(x, I::x_mask));
  parity<T, reads{.mem = true, .mem_lengths = true}>(
      "decoder_post_relu_causal_padded",
      nn::transformer_decoder_layer<"", 3, 16>(x, I::mem, cg::causal, nn::memory_key_mask(I::mem_mask)));
  parity<T, reads{.mem = true}>("decoder_pre_gelu", nn::transformer_decoder_layer<"", 3, 16, pre_gelu>(x, I::mem));
}
}  // namespace

TEST_CASE("transformer layers match torch in double", "[.][torch_parity]") { all_cases<double>(); }
TEST_CASE("transformer layers match torch in float", "[.][torch_parity]") { all_cases<float>(); }

TEST_CASE("nn::multihead_attention_weights: torch's head-averaged weights, by hand", "[transformer]") {
  constexpr int L = 3, B = 2, S = 5, E = 8, H = 2, d = E / H;
  constexpr auto q = cg::input<"q", double, L, B, E>;
  constexpr auto k = cg::input<"k", double, S, B, E>;
  constexpr auto len = cg::input<"len", int, B>;
  constexpr auto mask = cg::permute<1, 0>(cg::reshape<S, B>(cg::sequence_mask<S, double>(len)));  // [B, S]
  constexpr auto w = nn::multihead_attention_weights<"attn", H>(q, k);
  constexpr auto wm = nn::multihead_attention_weights<"attn", H>(q, k, mask);
  STATIC_REQUIRE(cg::shape_of<decltype(wm)> == cg::make_shape<B, L, S>());
  auto step = cg::compile(w, wm);
  auto params = cg::parameters_of(step);
  STATIC_REQUIRE(decltype(params)::count == 2);  // attn.in_proj_weight and in_proj_bias only
  double* W = params.get<"attn.in_proj_weight">().data();
  double* bias = params.get<"attn.in_proj_bias">().data();
  for (int i = 0; i < 3 * E * E; ++i) W[i] = 0.4 * std::sin(0.7 * i + 0.3);
  for (int i = 0; i < 3 * E; ++i) bias[i] = 0.2 * std::cos(1.1 * i);
  std::vector<double> qv(L * B * E), kv(S * B * E);
  for (int i = 0; i < L * B * E; ++i) qv[i] = std::sin(0.9 * i) + 0.1 * (i % 3);
  for (int i = 0; i < S * B * E; ++i) kv[i] = std::cos(0.5 * i) - 0.2 * (i % 4);
  const std::vector<int> lens = {S, 2};
  auto out = step.run(params, cg::feed<"q">(qv), cg::feed<"k">(kv), cg::feed<"len">(lens));
  // By hand: project (rows [0, E) of W and b for q, [E, 2E) for k), score each head, softmax, average.
  auto project = [&](const std::vector<double>& x, int pos, int b, int block, int j) {
    double s = bias[block * E + j];
    for (int i = 0; i < E; ++i) s += x[(pos * B + b) * E + i] * W[(block * E + j) * E + i];
    return s;
  };
  for (int masked = 0; masked < 2; ++masked)
    for (int b = 0; b < B; ++b)
      for (int l = 0; l < L; ++l) {
        const int keys = masked ? lens[b] : S;
        std::vector<double> avg(S, 0.0);
        for (int h = 0; h < H; ++h) {
          std::vector<double> sc(keys);
          double top = -1e300, total = 0;
          for (int j = 0; j < keys; ++j) {
            sc[j] = 0;
            for (int f = h * d; f < (h + 1) * d; ++f) sc[j] += project(qv, l, b, 0, f) * project(kv, j, b, 1, f);
            sc[j] /= std::sqrt(double(d));
            top = std::max(top, sc[j]);
          }
          for (int j = 0; j < keys; ++j) total += std::exp(sc[j] - top);
          for (int j = 0; j < keys; ++j) avg[j] += std::exp(sc[j] - top) / total / H;
        }
        const auto got = masked ? out[wm] : out[w];
        for (int j = 0; j < S; ++j) {
          INFO("masked " << masked << ", b " << b << ", l " << l << ", key " << j);
          if (j >= keys)
            CHECK(got(b, l, j) == 0.0);  // a padded key: exactly 0
          else
            CHECK(got(b, l, j) == Approx(avg[j]).margin(1e-12));
        }
      }
}

TEST_CASE("position tables and weight tying", "[transformer]") {
  constexpr int S = 6, E = 8, V = 5, Bt = 2;
  constexpr auto pe = cg::sinusoidal_positions<S, E, double>();
  constexpr auto ids = cg::input<"ids", int, S, Bt>;
  constexpr auto emb =
      nn::embedding<"tok", V, E, double>(ids) + cg::reshape<S, 1, E>(nn::learned_positions<"pos", S, E, double>());
  constexpr auto logits = nn::tied_linear<"tok", V>(emb);
  STATIC_REQUIRE(cg::shape_of<decltype(logits)> == cg::make_shape<S, Bt, V>());
  auto step = cg::compile(pe, logits);
  auto params = cg::parameters_of(step);
  STATIC_REQUIRE(decltype(params)::count == 2);  // tok.weight once, pos.weight
  cg::init(params, 2);
  const std::vector<int> iv = {0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1};
  auto out = step.run(params, cg::feed<"ids">(iv));
  for (int p = 0; p < S; ++p)
    for (int j = 0; j < E; ++j) {
      const double angle = p / std::pow(10000.0, double(j - j % 2) / E);
      CHECK(out[pe](p, j) == Approx(j % 2 ? std::cos(angle) : std::sin(angle)).margin(1e-15));
    }
  // The tied table's gradient sums both uses: finite differences of every param.
  gradcheck_params("tied head", probe(logits));
}

// A decoder-only model, whole-sequence (causal) and one position at a time over a cg::kv_cache.
namespace kv {
constexpr int S = 7, B = 3, E = 16, Hh = 4, FF = 24, V = 11, layers = 2;
constexpr auto ids = cg::input<"ids", int, S, B>;
template <class X>
constexpr auto embed_all(X x) {
  return nn::embedding<"tok", V, E>(x) + cg::reshape<S, 1, E>(nn::learned_positions<"pos", S, E>());
}
constexpr auto h0 = embed_all(ids);
constexpr auto h1 = nn::transformer_encoder_layer<"layers.0", Hh, FF>(h0, cg::causal);
constexpr auto h2 =
    nn::transformer_encoder_layer<"layers.1", Hh, FF, nn::transformer_options{.norm_first = true}>(h1, cg::causal);
constexpr auto logits = nn::linear<"head", V>(h2);  // [S, B, V]

constexpr auto tok = cg::input<"tok", int, B>;
constexpr auto at = cg::input<"at", int, B>;  // the position, per row
constexpr auto mask = cg::input<"mask", float, B, S + 1>;
constexpr auto k0 = cg::input<"k0", float, S, B, E>;
constexpr auto v0 = cg::input<"v0", float, S, B, E>;
constexpr auto k1 = cg::input<"k1", float, S, B, E>;
constexpr auto v1 = cg::input<"v1", float, S, B, E>;
constexpr auto x0 = nn::embedding<"tok", V, E>(tok) + cg::embedding(at, nn::learned_positions<"pos", S, E>());
constexpr auto s0 = nn::transformer_encoder_layer_step<"layers.0", Hh, FF>(x0, k0, v0, mask);
constexpr auto s1 = nn::transformer_encoder_layer_step<"layers.1", Hh, FF, nn::transformer_options{.norm_first = true}>(
    s0.y, k1, v1, mask);
constexpr auto step_logits = nn::linear<"head", V>(s1.y);  // [B, V]
}  // namespace kv

TEST_CASE("nn::transformer_encoder_layer_step over a cg::kv_cache equals the causal layers", "[transformer]") {
  using namespace kv;
  auto full = cg::compile(logits);
  auto step = cg::compile(step_logits, s0.k, s0.v, s1.k, s1.v);
  auto params = cg::parameters_of(full);
  cg::init(params, 11);
  std::vector<int> idv(S * B);
  for (int i = 0; i < S * B; ++i) idv[i] = (7 * i + 3) % V;
  const auto f = full.run(params, cg::feed<"ids">(idv));
  cg::kv_cache cache(layers, S, B, E);
  std::vector<int> tv(B), pv(B);
  for (int p = 0; p < S; ++p) {
    for (int b = 0; b < B; ++b) tv[b] = idv[p * B + b], pv[b] = p;
    auto o = step.run(params, cg::feed<"tok">(tv), cg::feed<"at">(pv), cg::feed<"mask">(cache.mask()),
                      cg::feed<"k0">(cache.keys(0)), cg::feed<"v0">(cache.values(0)), cg::feed<"k1">(cache.keys(1)),
                      cg::feed<"v1">(cache.values(1)));
    for (int i = 0; i < B * V; ++i) {
      INFO("position " << p << ", element " << i);
      REQUIRE(o[step_logits].data()[i] == Approx(f[logits].data()[p * B * V + i]).margin(2e-5));
    }
    cache.append(0, o[s0.k].span(), o[s0.v].span());
    cache.append(1, o[s1.k].span(), o[s1.v].span());
    cache.advance();
  }
  // The step plans nothing of the whole sequence's size per head beyond the cache itself.
  STATIC_REQUIRE(decltype(step)::arena_bytes() < 4 * 4L * (S + 1) * B * E * layers + 64 * 1024);
}
