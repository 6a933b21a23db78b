// matmul: 2-D, batched (batch axes broadcast), transposes folded into the gemm flags.
// Forward values against hand-computed numbers and a naive loop; gradients against
// finite differences.
#include <array>
#include <random>
#include <vector>

#include "gradcheck.hpp"
#include "testing.hpp"

namespace cg = ctgraph;
using namespace cg::literals;
using ctgraph_test::expect_values;
using ctgraph_test::gradcheck;
using ctgraph_test::probe;

namespace {
std::vector<double> random_values(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> v(n);
  for (auto& x : v) x = u(gen);
  return v;
}
// C[b] = A[b] B[b] over row-major [M,K] x [K,N] blocks; aoff/boff give each batch's block.
std::vector<double> naive_matmul(const std::vector<double>& A, const std::vector<double>& B, int batches, int M, int N,
                                 int K, auto aoff, auto boff) {
  std::vector<double> C(static_cast<std::size_t>(batches) * M * N, 0.0);
  for (int b = 0; b < batches; ++b)
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) {
        double s = 0;
        for (int k = 0; k < K; ++k) s += A[aoff(b) + i * K + k] * B[boff(b) + k * N + j];
        C[(static_cast<std::size_t>(b) * M + i) * N + j] = s;
      }
  return C;
}
}  // namespace

// ---------------------------------------------------------------- forward values

TEST_CASE("matmul forward: [2,3] x [3,2] by hand", "[matmul][forward]") {
  constexpr auto a = cg::input<"a", double, 2, 3>;
  constexpr auto b = cg::param<"b", double, 3, 2>;
  constexpr auto c = cg::matmul(a, b);
  auto step = cg::compile(c);
  auto params = cg::parameters_of(step);
  const std::array<double, 6> bv{7, 8, 9, 10, 11, 12};
  std::copy(bv.begin(), bv.end(), params.get<"b">().begin());
  const std::array<double, 6> av{1, 2, 3, 4, 5, 6};
  auto out = step.run(params, cg::feed<"a">(av));
  CHECK(out[c].dims() == std::array<int, 2>{2, 2});
  expect_values(out[c], {58, 64, 139, 154});
}

TEST_CASE("matmul forward: transposes are folded into the product", "[matmul][forward]") {
  constexpr auto at = cg::input<"at", double, 3, 2>;  // a^T
  constexpr auto bt = cg::input<"bt", double, 2, 3>;  // b^T
  constexpr auto b = cg::input<"b", double, 3, 2>;
  constexpr auto c1 = cg::matmul(cg::transpose(at), b);
  constexpr auto c2 = cg::matmul(cg::transpose(at), cg::transpose(bt));
  auto step = cg::compile(c1, c2);
  CHECK(step.num_kernel_steps() == 2);  // two gemms, no transpose copies
  CHECK(step.num_steps() == 2);
  auto params = cg::parameters_of(step);
  const std::array<double, 6> atv{1, 4, 2, 5, 3, 6};  // a = [[1,2,3],[4,5,6]]
  const std::array<double, 6> bv{7, 8, 9, 10, 11, 12};
  const std::array<double, 6> btv{7, 9, 11, 8, 10, 12};
  auto out = step.run(params, cg::feed<"at">(atv), cg::feed<"b">(bv), cg::feed<"bt">(btv));
  expect_values(out[c1], {58, 64, 139, 154});
  expect_values(out[c2], {58, 64, 139, 154});
}

TEST_CASE("matmul forward: a transpose that is an output of its own is computed", "[matmul][forward]") {
  constexpr auto a = cg::input<"a", double, 2, 3>;
  constexpr auto t = cg::transpose(a);
  constexpr auto p = cg::permute<1, 0>(a);  // the same node as t
  constexpr auto g = cg::matmul(a, t);      // a a^T, folded
  auto step = cg::compile(t, p, g);
  auto params = cg::parameters_of(step);
  const std::array<double, 6> av{1, 2, 3, 4, 5, 6};
  auto out = step.run(params, cg::feed<"a">(av));
  CHECK(out[t].dims() == std::array<int, 2>{3, 2});
  expect_values(out[t], {1, 4, 2, 5, 3, 6});
  expect_values(out[p], {1, 4, 2, 5, 3, 6});
  expect_values(out[g], {14, 32, 32, 77});
}

TEST_CASE("matmul forward: batched, batch axes broadcast", "[matmul][forward]") {
  constexpr auto x = cg::input<"x", double, 2, 5, 3>;
  constexpr auto w = cg::input<"w", double, 3, 4>;
  constexpr auto wb = cg::input<"wb", double, 2, 3, 4>;
  constexpr auto y = cg::input<"y", double, 2, 1, 5, 3>;
  constexpr auto z = cg::input<"z", double, 3, 3, 4>;
  constexpr auto c1 = cg::matmul(x, w);   // [2,5,4]
  constexpr auto c2 = cg::matmul(x, wb);  // [2,5,4]
  constexpr auto c3 = cg::matmul(y, z);   // [2,3,5,4]
  auto step = cg::compile(c1, c2, c3);
  auto params = cg::parameters_of(step);
  auto xv = random_values(30, 1), wv = random_values(12, 2), wbv = random_values(24, 3);
  auto yv = random_values(30, 4), zv = random_values(36, 5);
  auto out =
      step.run(params, cg::feed<"x">(xv), cg::feed<"w">(wv), cg::feed<"wb">(wbv), cg::feed<"y">(yv), cg::feed<"z">(zv));
  CHECK(out[c3].dims() == std::array<int, 4>{2, 3, 5, 4});
  expect_values(out[c1],
                naive_matmul(
                    xv, wv, 2, 5, 4, 3, [](int b) { return b * 15; }, [](int) { return 0; }),
                1e-12);
  expect_values(out[c2],
                naive_matmul(
                    xv, wbv, 2, 5, 4, 3, [](int b) { return b * 15; }, [](int b) { return b * 12; }),
                1e-12);
  // batch index b = 3 i + j over [2, 3]: y's block i (broadcast over j), z's block j
  expect_values(out[c3],
                naive_matmul(
                    yv, zv, 6, 5, 4, 3, [](int b) { return (b / 3) * 15; }, [](int b) { return (b % 3) * 12; }),
                1e-12);
}

TEST_CASE("matmul forward: float, sizes that are not multiples of any block", "[matmul][forward]") {
  constexpr auto a = cg::input<"a", float, 37, 45>;
  constexpr auto b = cg::input<"b", float, 45, 19>;
  constexpr auto bt = cg::input<"bt", float, 19, 45>;
  constexpr auto c = cg::matmul(a, b);
  constexpr auto ct = cg::matmul(a, cg::transpose(bt));
  auto step = cg::compile(c, ct);
  auto params = cg::parameters_of(step);
  auto ad = random_values(37 * 45, 7), bd = random_values(45 * 19, 8);
  std::vector<float> af(ad.begin(), ad.end()), bf(bd.begin(), bd.end()), btf(45 * 19);
  for (int k = 0; k < 45; ++k)
    for (int j = 0; j < 19; ++j) btf[j * 45 + k] = bf[k * 19 + j];
  std::vector<double> a64(af.begin(), af.end()), b64(bf.begin(), bf.end());
  auto ref = naive_matmul(
      a64, b64, 1, 37, 19, 45, [](int) { return 0; }, [](int) { return 0; });
  auto out = step.run(params, cg::feed<"a">(af), cg::feed<"b">(bf), cg::feed<"bt">(btf));
  expect_values(out[c], ref, 1e-4);
  expect_values(out[ct], ref, 1e-4);
}

// ---------------------------------------------------------------- gradients

TEST_CASE("matmul gradients: 2-D [5,3] x [3,4]", "[matmul][grad]") {
  constexpr auto a = cg::param<"a", double, 5, 3>;
  constexpr auto b = cg::param<"b", double, 3, 4>;
  gradcheck("matmul [5,3]x[3,4]", probe(cg::matmul(a, b)), a, b);
  constexpr auto x = cg::input<"x", double, 1, 3>;
  gradcheck("matmul [1,3]x[3,4] (input)", probe(cg::matmul(x, b)), x, b);
}

TEST_CASE("matmul gradients: transposes folded into the product", "[matmul][grad]") {
  constexpr auto x = cg::input<"x", double, 5, 3>;
  constexpr auto w = cg::param<"w", double, 4, 3>;  // [Out, In], PyTorch layout
  constexpr auto at = cg::param<"at", double, 3, 5>;
  constexpr auto b = cg::param<"b", double, 3, 4>;
  gradcheck("matmul(x, w^T)", probe(cg::matmul(x, cg::transpose(w))), x, w);
  gradcheck("matmul(at^T, b)", probe(cg::matmul(cg::transpose(at), b)), at, b);
  gradcheck("matmul(at^T, w^T)", probe(cg::matmul(cg::transpose(at), cg::transpose(w))), at, w);
}

TEST_CASE("matmul gradients: one operand used twice", "[matmul][grad]") {
  constexpr auto s = cg::param<"s", double, 4, 4>;
  constexpr auto a = cg::param<"a", double, 3, 5>;
  gradcheck("matmul(s, s)", probe(cg::matmul(s, s)), s);
  gradcheck("matmul(a, a^T)", probe(cg::matmul(a, cg::transpose(a))), a);
}

TEST_CASE("matmul gradients: batched [2,5,3] x [3,4] and [2,5,3] x [2,3,4]", "[matmul][grad]") {
  constexpr auto x = cg::param<"x", double, 2, 5, 3>;
  constexpr auto w = cg::param<"w", double, 3, 4>;
  constexpr auto wb = cg::param<"wb", double, 2, 3, 4>;
  gradcheck("matmul [2,5,3]x[3,4]", probe(cg::matmul(x, w)), x, w);
  gradcheck("matmul [2,5,3]x[2,3,4]", probe(cg::matmul(x, wb)), x, wb);
  // A linear layer over a sequence: the rows of every batch are one matrix, one gemm each way.
  constexpr auto wt = cg::param<"wt", double, 4, 3>;
  gradcheck("matmul [2,5,3]x[4,3]^T", probe(cg::matmul(x, cg::transpose(wt))), x, wt);
}

TEST_CASE("matmul gradients: the weight gradient over a sequence differentiates again", "[matmul][grad]") {
  // grad(loss, w) of a [2,5,3] sequence is matmul_rows(x, g), x and g read as [10, 3] and [10, 4]: its own
  // VJP (a second derivative) against central differences, w plain and transposed.
  constexpr auto x = cg::param<"x", double, 2, 5, 3>;
  constexpr auto w = cg::param<"w", double, 3, 4>;
  constexpr auto wt = cg::param<"wt", double, 4, 3>;
  constexpr auto dir = cg::input<"dir", double, 3, 4>;
  constexpr auto dir_t = cg::input<"dir_t", double, 4, 3>;
  constexpr auto loss = probe(cg::tanh(cg::matmul(x, w)));
  constexpr auto loss_t = probe(cg::tanh(cg::matmul(x, cg::transpose(wt))));
  gradcheck("d/dx, d/dw of <grad(loss, w), dir>", cg::sum(cg::grad(loss, w) * dir), x, w);
  gradcheck("d/dx, d/dwt of <grad(loss, wt), rt>", cg::sum(cg::grad(loss_t, wt) * dir_t), x, wt);
}

TEST_CASE("matmul gradients: broadcast batch axes and batched transposes", "[matmul][grad]") {
  constexpr auto y = cg::param<"y", double, 2, 1, 3, 2>;
  constexpr auto z = cg::param<"z", double, 3, 2, 4>;
  gradcheck("matmul [2,1,3,2]x[3,2,4]", probe(cg::matmul(y, z)), y, z);
  constexpr auto q = cg::param<"q", double, 2, 4, 3>;
  constexpr auto k = cg::param<"k", double, 2, 5, 3>;
  gradcheck("matmul(q, k^T) batched", probe(cg::matmul(q, cg::transpose(k))), q, k);
  constexpr auto w = cg::param<"w", double, 4, 2>;
  gradcheck("matmul([3,4]... [2,4,3]^T x [4,2])", probe(cg::matmul(cg::transpose(q), w)), q, w);
}

TEST_CASE("matmul gradients: a two-layer perceptron", "[matmul][grad]") {
  constexpr auto x = cg::input<"x", double, 6, 4>;
  constexpr auto w1 = cg::param<"w1", double, 4, 5>;
  constexpr auto b1 = cg::param<"b1", double, 5>;
  constexpr auto w2 = cg::param<"w2", double, 3, 5>;
  constexpr auto h = cg::tanh(cg::matmul(x, w1) + b1);
  constexpr auto o = cg::matmul(h, cg::transpose(w2));
  gradcheck("mlp", probe(o), x, w1, b1, w2);
}
