// cg::attention, the fused attention node:
//   - values against softmax(scale q k^T) v written as loops in double: heads-major and sequence-first
//     (cg::heads<H>), causal, an explicit scale, a key mask (a sequence with no key attended gets 0);
//   - gradients of q, k and v against central differences (double), masked and causal;
//   - float: the node equals the unfused graph softmax(matmul(q, transpose(k)) * s + mask) v, values and
//     gradients;
//   - the plan holds no Lq x Lk buffer, forward or backward, and summary counts the node's FLOPs.
#include <cmath>
#include <limits>
#include <vector>

#include "gradcheck.hpp"
#include "testing.hpp"

namespace cg = ctgraph;
using ctgraph_test::gradcheck;
using ctgraph_test::probe;

namespace {
constexpr int B = 2, H = 3, Lq = 5, Lk = 7, D = 4, E = H * D;

std::vector<double> values(std::size_t n, unsigned seed) {
  std::vector<double> v(n);
  std::uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<double>(s >> 11) / static_cast<double>(1ull << 53) * 2 - 1;
  }
  return v;
}

// o[b, h, i, :] = sum_j p_ij v[b, h, j, :], p = softmax over the keys query i sees (causal: j <= i + Lk - Lq;
// mask[b, j] != 0) of scale q_i . k_j; 0 where it sees none. at(x, b, h, i, e) reads a tensor in its layout.
template <class At>
std::vector<double> attend(const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v,
                           bool causal, const std::vector<double>* mask, double scale, At at, int q_size) {
  std::vector<double> o(q_size, 0.0);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < Lq; ++i) {
        std::vector<double> s(Lk, -std::numeric_limits<double>::infinity());
        double mx = -std::numeric_limits<double>::infinity();
        for (int j = 0; j < Lk; ++j) {
          if ((causal && j > i + Lk - Lq) || (mask && (*mask)[b * Lk + j] == 0)) continue;
          double dot = 0;
          for (int e = 0; e < D; ++e) dot += q[at(b, h, i, e, Lq)] * k[at(b, h, j, e, Lk)];
          s[j] = scale * dot;
          mx = std::max(mx, s[j]);
        }
        if (mx == -std::numeric_limits<double>::infinity()) continue;
        double z = 0;
        for (int j = 0; j < Lk; ++j) z += s[j] = std::exp(s[j] - mx);
        for (int j = 0; j < Lk; ++j)
          for (int e = 0; e < D; ++e) o[at(b, h, i, e, Lq)] += s[j] / z * v[at(b, h, j, e, Lk)];
      }
  return o;
}
auto heads_major = [](int b, int h, int i, int e, int len) { return ((b * H + h) * len + i) * D + e; };
auto seq_first = [](int b, int h, int i, int e, int) { return (i * B + b) * E + h * D + e; };

// A key mask [B, Lk] from int lengths [B] (1 at j < length): what gradcheck can feed (it fills double
// inputs with random values, int ones with values in [0, Lk]).
constexpr auto lengths = cg::input<"lengths", int, B>;
constexpr auto key_mask = cg::permute<1, 0>(cg::reshape<Lk, B>(cg::sequence_mask<Lk, double>(lengths)));
}  // namespace

TEST_CASE("cg::attention: values against the formula, heads-major and sequence-first", "[attention]") {
  constexpr auto q = cg::input<"q", double, B, H, Lq, D>;
  constexpr auto k = cg::input<"k", double, B, H, Lk, D>;
  constexpr auto v = cg::input<"v", double, B, H, Lk, D>;
  constexpr auto mask = cg::input<"mask", double, B, Lk>;
  constexpr auto qs = cg::input<"qs", double, Lq, B, E>;
  constexpr auto ks = cg::input<"ks", double, Lk, B, E>;
  constexpr auto vs = cg::input<"vs", double, Lk, B, E>;
  using namespace cg::literals;
  constexpr auto plain = cg::attention(q, k, v);
  constexpr auto causal = cg::attention(q, k, v, cg::causal);
  constexpr auto masked = cg::attention(q, k, v, mask, cg::attention_scale<0.3>);
  constexpr auto seq = cg::attention(qs, ks, vs, cg::heads<H>, cg::causal, mask);
  STATIC_REQUIRE(cg::shape_of<decltype(plain)> == cg::make_shape<B, H, Lq, D>());
  STATIC_REQUIRE(cg::shape_of<decltype(seq)> == cg::make_shape<Lq, B, E>());
  auto step = cg::compile(plain, causal, masked, seq);
  auto params = cg::parameters_of(step);
  const auto qv = values(B * H * Lq * D, 1), kv = values(B * H * Lk * D, 2), vv = values(B * H * Lk * D, 3);
  std::vector<double> mv(B * Lk, 1.0);
  for (int j = 0; j < Lk; ++j) mv[j] = 0;  // sequence 0 attends to no key: its outputs are 0
  mv[Lk + 1] = mv[Lk + 4] = 0;
  auto out = step.run(params, cg::feed<"q">(qv), cg::feed<"k">(kv), cg::feed<"v">(vv), cg::feed<"mask">(mv),
                      cg::feed<"qs">(qv), cg::feed<"ks">(kv), cg::feed<"vs">(vv));
  const double s0 = 1 / std::sqrt(double(D)), n = double(qv.size());
  const int nq = static_cast<int>(n);
  ctgraph_test::expect_values(out[plain], attend(qv, kv, vv, false, nullptr, s0, heads_major, nq), 1e-12);
  ctgraph_test::expect_values(out[causal], attend(qv, kv, vv, true, nullptr, s0, heads_major, nq), 1e-12);
  const auto want_masked = attend(qv, kv, vv, false, &mv, 0.3, heads_major, nq);
  ctgraph_test::expect_values(out[masked], want_masked, 1e-12);
  for (int e = 0; e < H * Lq * D; ++e) CHECK(out[masked].data()[e] == 0.0);  // exactly 0, not small
  ctgraph_test::expect_values(out[seq], attend(qv, kv, vv, true, &mv, s0, seq_first, nq), 1e-12);
}

TEST_CASE("cg::attention: gradients of q, k and v against central differences", "[attention][gradcheck]") {
  constexpr auto q = cg::input<"q", double, B, H, Lq, D>;
  constexpr auto k = cg::input<"k", double, B, H, Lk, D>;
  constexpr auto v = cg::input<"v", double, B, H, Lk, D>;
  gradcheck("attention", probe(cg::attention(q, k, v)), q, k, v);
  gradcheck("attention, causal, scale 0.7", probe(cg::attention(q, k, v, cg::causal, cg::attention_scale<0.7>)), q, k,
            v);
  gradcheck("attention, key mask", probe(cg::attention(q, k, v, key_mask)), q, k, v);
  constexpr auto qs = cg::input<"q", double, Lq, B, E>;
  constexpr auto ks = cg::input<"k", double, Lk, B, E>;
  constexpr auto vs = cg::input<"v", double, Lk, B, E>;
  gradcheck("attention, sequence-first, causal, key mask",
            probe(cg::attention(qs, ks, vs, cg::heads<H>, cg::causal, key_mask)), qs, ks, vs);
  // Self-attention: one input read as q, k and v; the three adjoints add up.
  constexpr auto x = cg::input<"x", double, Lk, B, E>;
  gradcheck("self-attention", probe(cg::attention(x, x, x, cg::heads<H>, cg::causal)), x);
}

TEST_CASE("cg::attention (float) equals the unfused graph, values and gradients", "[attention]") {
  constexpr int L = 40, N = 56, d = 16;
  constexpr auto q = cg::input<"q", float, B, H, L, d>;
  constexpr auto k = cg::input<"k", float, B, H, N, d>;
  constexpr auto v = cg::input<"v", float, B, H, N, d>;
  constexpr auto bias = cg::input<"bias", float, L, N>;  // 0 / -inf: the causal mask as a user writes it
  constexpr auto w = cg::input<"w", float, B, H, L, d>;
  using namespace cg::literals;
  constexpr auto fused = cg::attention(q, k, v, cg::causal, cg::attention_scale<0.25>);
  constexpr auto unfused = cg::matmul(cg::softmax(cg::matmul(q, cg::transpose(k)) * 0.25_c + bias), v);
  constexpr auto lf = cg::sum(fused * w);
  constexpr auto lu = cg::sum(unfused * w);
  auto sf = cg::compile(fused, cg::grad(lf, q), cg::grad(lf, k), cg::grad(lf, v));
  auto su = cg::compile(unfused, cg::grad(lu, q), cg::grad(lu, k), cg::grad(lu, v));
  auto pf = cg::parameters_of(sf);
  auto pu = cg::parameters_of(su);
  auto as_float = [](const std::vector<double>& x) { return std::vector<float>(x.begin(), x.end()); };
  const auto qv = as_float(values(B * H * L * d, 4)), kv = as_float(values(B * H * N * d, 5));
  const auto vv = as_float(values(B * H * N * d, 6)), wv = as_float(values(B * H * L * d, 7));
  std::vector<float> bv(L * N, 0.f);
  for (int i = 0; i < L; ++i)
    for (int j = i + N - L + 1; j < N; ++j) bv[i * N + j] = -std::numeric_limits<float>::infinity();
  auto of = sf.run(pf, cg::feed<"q">(qv), cg::feed<"k">(kv), cg::feed<"v">(vv), cg::feed<"w">(wv));
  auto ou =
      su.run(pu, cg::feed<"q">(qv), cg::feed<"k">(kv), cg::feed<"v">(vv), cg::feed<"w">(wv), cg::feed<"bias">(bv));
  auto same = [](auto a, auto b) {
    REQUIRE(a.size() == b.size());
    double worst = 0;
    for (std::size_t i = 0; i < static_cast<std::size_t>(a.size()); ++i)
      worst = std::max(worst, std::abs(double(a.data()[i]) - double(b.data()[i])));
    CHECK(worst <= 1e-5);
  };
  same(of[fused], ou[unfused]);
  same(of[cg::grad(lf, q)], ou[cg::grad(lu, q)]);
  same(of[cg::grad(lf, k)], ou[cg::grad(lu, k)]);
  same(of[cg::grad(lf, v)], ou[cg::grad(lu, v)]);
}

TEST_CASE("cg::attention: no Lq x Lk buffer in the plan; summary counts its FLOPs", "[attention][planner]") {
  constexpr int L = 512, d = 16;
  constexpr auto x = cg::input<"x", float, L, 1, 2 * d>;
  constexpr auto w = cg::input<"w", float, L, 1, 2 * d>;
  constexpr auto o = cg::attention(x, x, x, cg::heads<2>, cg::causal);
  constexpr auto loss = cg::sum(o * w);
  auto step = cg::compile(loss, cg::grad(loss, x));
  // x, w, o, lse, the adjoints: tens of KB; one score matrix of a head would be 1 MB.
  CHECK(step.arena_bytes() < long(L) * L * 4);
  const cg::step_summary r = cg::summary(step);
  // forward 4 and backward 8 FLOPs per visible pair and feature: 2 heads x L (L + 1) / 2 pairs x d.
  const double pairs = 2.0 * L * (L + 1) / 2;
  CHECK(r.other_flops >= 12 * pairs * d);
  CHECK(r.other_flops < 12 * pairs * d + 40.0 * L * 2 * d);  // plus the elementwise steps
  CHECK(cg::to_dot(loss).find("attention") != std::string::npos);
}

TEST_CASE("compile rewrites softmax(q k^T * s [+ causal_mask]) v into cg::attention", "[attention][rewrite]") {
  constexpr int L = 40, N = 56, d = 16;
  using namespace cg::literals;
  constexpr auto q = cg::input<"q", double, B, H, L, d>;
  constexpr auto k = cg::input<"k", double, B, H, N, d>;
  constexpr auto v = cg::input<"v", double, B, H, N, d>;
  constexpr auto bias = cg::input<"bias", double, L, N>;  // the same mask, fed: not a pattern compile knows
  constexpr auto w = cg::input<"w", double, B, H, L, d>;
  constexpr auto scores = cg::matmul(q, cg::transpose(k));
  constexpr auto rewritten = cg::matmul(cg::softmax(scores * 0.25_c + cg::causal_mask<L, N, double>()), v);
  constexpr auto unscaled = cg::matmul(cg::softmax(scores), v);  // scale 1
  constexpr auto written = cg::matmul(cg::softmax(0.25_c * scores + bias), v);
  CHECK(cg::to_dot(rewritten).find("attention") != std::string::npos);
  CHECK(cg::to_dot(unscaled).find("attention") != std::string::npos);
  CHECK(cg::to_dot(written).find("attention") == std::string::npos);
  // Near misses stay as written: a scale that is a tensor, softmax over the queries' axis.
  constexpr auto s_in = cg::input<"s", double, 1>;
  constexpr auto by_tensor = cg::matmul(cg::softmax(scores * s_in), v);
  constexpr auto other_axis =
      cg::matmul(cg::permute<0, 1, 3, 2>(cg::softmax(cg::permute<0, 1, 3, 2>(scores * 0.25_c))), v);
  CHECK(cg::to_dot(by_tensor).find("attention") == std::string::npos);
  CHECK(cg::to_dot(other_axis).find("attention") == std::string::npos);

  // The rewritten graph equals the written one, values and gradients.
  constexpr auto lr = cg::sum(rewritten * w);
  constexpr auto lw = cg::sum(written * w);
  auto sr = cg::compile(rewritten, cg::grad(lr, q), cg::grad(lr, k), cg::grad(lr, v));
  auto sw = cg::compile(written, cg::grad(lw, q), cg::grad(lw, k), cg::grad(lw, v));
  auto pr = cg::parameters_of(sr);
  auto pw = cg::parameters_of(sw);
  const auto qv = values(B * H * L * d, 8), kv = values(B * H * N * d, 9), vv = values(B * H * N * d, 10);
  const auto wv = values(B * H * L * d, 11);
  std::vector<double> bv(L * N, 0.0);
  for (int i = 0; i < L; ++i)
    for (int j = i + N - L + 1; j < N; ++j) bv[i * N + j] = -std::numeric_limits<double>::infinity();
  auto orw = sr.run(pr, cg::feed<"q">(qv), cg::feed<"k">(kv), cg::feed<"v">(vv), cg::feed<"w">(wv));
  auto ow =
      sw.run(pw, cg::feed<"q">(qv), cg::feed<"k">(kv), cg::feed<"v">(vv), cg::feed<"w">(wv), cg::feed<"bias">(bv));
  auto same = [](auto a, auto b) {
    REQUIRE(a.size() == b.size());
    ctgraph_test::expect_values(a, std::vector<double>(b.begin(), b.end()), 1e-12);
  };
  same(orw[rewritten], ow[written]);
  same(orw[cg::grad(lr, q)], ow[cg::grad(lw, q)]);
  same(orw[cg::grad(lr, k)], ow[cg::grad(lw, k)]);
  same(orw[cg::grad(lr, v)], ow[cg::grad(lw, v)]);
}

TEST_CASE("the rewritten pattern plans no Lq x Lk buffer, forward or backward", "[attention][rewrite][planner]") {
  constexpr int L = 512, d = 16;
  using namespace cg::literals;
  constexpr auto q = cg::input<"q", float, 2, L, d>;
  constexpr auto k = cg::input<"k", float, 2, L, d>;
  constexpr auto v = cg::input<"v", float, 2, L, d>;
  constexpr auto w = cg::input<"w", float, 2, L, d>;
  constexpr auto o = cg::matmul(cg::softmax(cg::matmul(q, cg::transpose(k)) * 0.25_c + cg::causal_mask<L, L>()), v);
  constexpr auto loss = cg::sum(o * w);
  auto step = cg::compile(loss, cg::grad(loss, q), cg::grad(loss, k), cg::grad(loss, v));
  CHECK(step.arena_bytes() < long(L) * L * 4);
}
