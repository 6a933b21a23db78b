// gemm against a naive triple loop: shapes, transposes, strides, alpha/beta, odd edges, NaN in C.
#include <omp.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <vector>

#include "ctgraph/kernels.hpp"
#include "ops/kernels/gemm_blocks.hpp"
#include "thread_count.hpp"

namespace {
namespace k = ctgraph::kernels;
namespace blocks = ctgraph::kernels::blocks;
using idx = std::ptrdiff_t;

struct gemm_case {
  int M, N, K;
  bool ta, tb;
  int pad;  // extra elements per row of A, B, C (leading dimension > dense)
  double alpha, beta;
};

std::vector<double> random_vec(std::size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// Naive C = alpha op(A) op(B) + beta C (beta == 0: C not read), in long double.
void naive(const gemm_case& c, const double* A, int lda, const double* B, int ldb, double* C, int ldc) {
  for (int i = 0; i < c.M; ++i)
    for (int j = 0; j < c.N; ++j) {
      long double s = 0;
      for (int p = 0; p < c.K; ++p) {
        const double a = c.ta ? A[idx(p) * lda + i] : A[idx(i) * lda + p];
        const double b = c.tb ? B[idx(j) * ldb + p] : B[idx(p) * ldb + j];
        s += static_cast<long double>(a) * b;
      }
      double& out = C[idx(i) * ldc + j];
      out = static_cast<double>(c.alpha * s + (c.beta == 0 ? 0.0L : static_cast<long double>(c.beta) * out));
    }
}

template <class T>
void check(const gemm_case& c, double tol) {
  INFO("M=" << c.M << " N=" << c.N << " K=" << c.K << " ta=" << c.ta << " tb=" << c.tb << " pad=" << c.pad
            << " alpha=" << c.alpha << " beta=" << c.beta << " T=" << (sizeof(T) == 4 ? "float" : "double"));
  std::mt19937 rng(c.M * 131 + c.N * 17 + c.K + c.ta * 7 + c.tb * 3);
  const int arows = c.ta ? c.K : c.M, acols = c.ta ? c.M : c.K;
  const int brows = c.tb ? c.N : c.K, bcols = c.tb ? c.K : c.N;
  const int lda = acols + c.pad, ldb = bcols + c.pad, ldc = c.N + c.pad;
  auto A = random_vec(std::size_t(arows) * lda + 1, rng);
  auto B = random_vec(std::size_t(brows) * ldb + 1, rng);
  auto C = random_vec(std::size_t(c.M) * ldc + 1, rng);
  if (c.beta == 0)  // BLAS semantics: C is not read, so NaN must not propagate
    for (int i = 0; i < c.M; ++i)
      for (int j = 0; j < c.N; ++j) C[idx(i) * ldc + j] = std::numeric_limits<double>::quiet_NaN();
  std::vector<T> At(A.begin(), A.end()), Bt(B.begin(), B.end()), Ct(C.begin(), C.end());
  // Round inputs to T so the oracle sees the same numbers.
  for (std::size_t i = 0; i < A.size(); ++i) A[i] = At[i];
  for (std::size_t i = 0; i < B.size(); ++i) B[i] = Bt[i];
  for (std::size_t i = 0; i < C.size(); ++i) C[i] = Ct[i];
  auto expect = C;
  naive(c, A.data(), lda, B.data(), ldb, expect.data(), ldc);
  k::gemm<T>(c.ta, c.tb, c.M, c.N, c.K, T(c.alpha), At.data(), lda, Bt.data(), ldb, T(c.beta), Ct.data(), ldc);
  double worst = 0;
  int bad_i = -1, bad_j = -1;
  for (int i = 0; i < c.M; ++i)
    for (int j = 0; j < c.N; ++j) {
      const double e = expect[idx(i) * ldc + j], g = Ct[idx(i) * ldc + j];
      const double err = std::abs(e - g) / (1 + std::sqrt(double(c.K)));
      if (!(err <= worst)) {  // also catches NaN
        worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
        bad_i = i;
        bad_j = j;
      }
    }
  INFO("worst error " << worst << " at (" << bad_i << "," << bad_j << ")");
  CHECK(worst <= tol);
  // Padding between rows of C is never written.
  bool pad_intact = true;
  for (int i = 0; i < c.M; ++i)
    for (int j = c.N; j < ldc; ++j) pad_intact &= (T(C[idx(i) * ldc + j]) == Ct[idx(i) * ldc + j]);
  CHECK(pad_intact);
}

const int small_sizes[] = {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33};

}  // namespace

TEST_CASE("gemm double: small shapes, every transpose, odd edges", "[gemm]") {
  for (int M : small_sizes)
    for (int N : {1, 3, 4, 8, 13, 16, 17, 24, 33})
      for (int K : {1, 2, 7, 16, 31})
        for (int t = 0; t < 4; ++t) check<double>({M, N, K, bool(t & 1), bool(t & 2), 0, 1.0, 0.0}, 1e-14);
}

TEST_CASE("gemm double: alpha, beta, strides", "[gemm]") {
  for (int t = 0; t < 4; ++t)
    for (double beta : {0.0, 1.0, -0.5})
      for (double alpha : {1.0, 0.75, -2.0})
        for (int pad : {0, 3}) check<double>({37, 29, 45, bool(t & 1), bool(t & 2), pad, alpha, beta}, 1e-14);
}

TEST_CASE("gemm double: shapes larger than the cache blocks", "[gemm]") {
  const gemm_case cases[] = {
      {300, 257, 270, false, false, 1, 1.0, 0.0}, {129, 517, 300, true, false, 0, 1.0, 1.0},
      {260, 131, 513, false, true, 2, 0.5, 0.0},  {97, 1100, 65, true, true, 0, 1.0, -1.0},
      {32, 1024, 128, false, false, 0, 1.0, 0.0}, {1, 700, 600, false, true, 0, 1.0, 0.0},
      {700, 1, 600, true, false, 0, 1.0, 0.0},    {513, 40, 1025, false, false, 0, 1.0, 0.0},
      {12, 16, 6000, false, false, 0, 1.0, 0.0},  // 2 x 2 tiles: fewer chunks than 3-4 threads
  };
  // 1-4 threads: C is cut into a grid of chunks (1x2, 2x1, 1x3, 4x1, ...: which one depends on the
  // shape and the SIMD width); products under 2 MFLOP run on one thread.
  const thread_count saved;
  for (int threads = 1; threads <= 4; ++threads) {
    INFO("threads=" << threads);
    omp_set_num_threads(threads);
    for (const auto& c : cases) check<double>(c, 1e-14);
  }
}

TEST_CASE("gemm float: against the double oracle", "[gemm]") {
  for (int t = 0; t < 4; ++t) {
    check<float>({67, 45, 300, bool(t & 1), bool(t & 2), 1, 1.0, 0.0}, 2e-6);
    check<float>({256, 300, 64, bool(t & 1), bool(t & 2), 0, -1.5, 0.5}, 2e-6);
    check<float>({7, 9, 5, bool(t & 1), bool(t & 2), 2, 1.0, 1.0}, 2e-6);
  }
  check<float>({300, 257, 520, false, false, 0, 1.0, 0.0}, 2e-6);
  check<float>({151, 70, 300, false, false, 0, 1.0, 0.0}, 2e-6);  // 144 + 7 rows: a merged edge tile (4+3)
  check<float>({152, 70, 300, true, false, 0, 1.0, 0.0}, 2e-6);   // 144 + 8: 4+4, A packed
}

TEST_CASE("gemm: row tiles cover the block in order, 6 rows each but a merged 3-5-row edge", "[gemm]") {
  constexpr int MR = blocks::tile<float>::MR;
  for (int mc = 0; mc <= 200; ++mc) {
    INFO("mc=" << mc);
    std::vector<int> heights;
    int next = 0;
    blocks::for_row_tiles<float>(mc, [&](int ir, int mr, int t) {
      CHECK(ir == next);
      CHECK(t == int(heights.size()));
      heights.push_back(mr);
      next += mr;
    });
    CHECK(next == mc);
    CHECK(int(heights.size()) == (mc + MR - 1) / MR);  // the A panels pack_a writes
    for (std::size_t t = 0; t < heights.size(); ++t) {
      const bool edge = t + 2 >= heights.size() && heights[t] != MR;
      CHECK((heights[t] == MR || edge));
      if (mc >= MR) CHECK(heights[t] >= 3);  // never 1-2 rows once a full tile exists
    }
  }
}

TEST_CASE("gemm: degenerate sizes", "[gemm]") {
  // K == 0: C = beta C; beta == 0 clears NaN.
  std::vector<double> C(6, std::numeric_limits<double>::quiet_NaN());
  k::gemm<double>(false, false, 2, 3, 0, 1.0, nullptr, 1, nullptr, 3, 0.0, C.data(), 3);
  for (double c : C) CHECK(c == 0.0);
  std::vector<float> Cf(6, 2.f);
  k::gemm<float>(true, true, 2, 3, 0, 1.f, nullptr, 2, nullptr, 1, 0.5f, Cf.data(), 3);
  for (float c : Cf) CHECK(c == 1.f);
  // M == 0 or N == 0: nothing happens.
  k::gemm<float>(false, false, 0, 3, 4, 1.f, nullptr, 4, nullptr, 3, 0.f, nullptr, 3);
  k::gemm<float>(false, false, 3, 0, 4, 1.f, nullptr, 4, nullptr, 1, 0.f, nullptr, 1);
}

TEST_CASE("gemm_fixed: compile-time sizes, both dispatch paths", "[gemm]") {
  std::mt19937 rng(3);
  auto A = random_vec(64 * 48, rng), B = random_vec(48 * 40, rng);
  std::vector<double> C1(64 * 40), C2(64 * 40, std::numeric_limits<double>::quiet_NaN());
  gemm_case c{64, 40, 48, false, true, 0, 1.0, 0.0};
  naive(c, A.data(), 48, B.data(), 48, C1.data(), 40);
  k::gemm_fixed<64, 40, 48, false, true>(1.0, A.data(), B.data(), 0.0, C2.data());
  for (std::size_t i = 0; i < C1.size(); ++i) REQUIRE(std::abs(C1[i] - C2[i]) < 1e-13);
  gemm_case s{4, 5, 6, true, false, 0, 2.0, 0.0};
  std::vector<double> S1(20), S2(20, std::numeric_limits<double>::quiet_NaN());
  naive(s, A.data(), 4, B.data(), 5, S1.data(), 5);
  k::gemm_fixed<4, 5, 6, true, false>(2.0, A.data(), B.data(), 0.0, S2.data());
  for (std::size_t i = 0; i < S1.size(); ++i) REQUIRE(std::abs(S1[i] - S2[i]) < 1e-13);
}

// x W^T with few rows (M <= MC) and N >= 4 M runs as C^T = B A^T (gemm_nt_few_rows): A^T packed, the
// rows of B read in place, each tile summed over all of K and written to C transposed.
TEST_CASE("gemm: A B^T with few rows of A, as C^T = B A^T, at 1-3 threads", "[gemm]") {
  const gemm_case cases[] = {
      {32, 256, 1024, false, true, 0, 1.0, 0.0}, {32, 1024, 256, false, true, 3, 0.5, 1.0},
      {1, 97, 300, false, true, 1, -1.0, 0.0},   {17, 600, 257, false, true, 2, 1.0, -0.5},
      {144, 577, 40, false, true, 0, 1.0, 1.0},  {5, 20, 1, false, true, 0, 2.0, 0.0},
  };
  const thread_count saved;
  for (int threads = 1; threads <= 3; ++threads) {
    INFO("threads=" << threads);
    omp_set_num_threads(threads);
    for (const auto& c : cases) {
      check<double>(c, 1e-14);
      check<float>(c, 2e-6);
    }
  }
}

// gemm_add: C = alpha op(A) op(B) + D, D dense (ldd N) or one row added to every row (ldd 0), on random shapes
// that take every path (few rows x W^T, blocked, K = 0) at 1 or 2 threads; C starts as NaN (never read), and D
// is an exact-size buffer (AddressSanitizer sees a read past it).
TEMPLATE_TEST_CASE("gemm_add: the addend D, dense or a broadcast row, on random shapes", "[gemm]", float, double) {
  using T = TestType;
  const thread_count saved;
  std::mt19937 rng(7);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int t = 0; t < 60; ++t) {
    gemm_case c{pick(1, 3) == 1 ? pick(100, 300) : pick(1, 40),
                pick(1, 600),
                pick(0, 3) == 0 ? 0 : pick(1, 200),
                pick(0, 1) == 1,
                pick(0, 2) != 0,
                0,
                pick(0, 1) ? 1.0 : -0.5,
                1.0};
    const bool row = pick(0, 1);
    const int threads = pick(1, 2);
    omp_set_num_threads(threads);
    INFO("M=" << c.M << " N=" << c.N << " K=" << c.K << " ta=" << c.ta << " tb=" << c.tb << " row=" << row
              << " threads=" << threads);
    const int lda = c.ta ? c.M : c.K, ldb = c.tb ? c.K : c.N;
    std::vector<T> A(std::size_t(c.ta ? c.K : c.M) * lda), B(std::size_t(c.tb ? c.N : c.K) * ldb);
    std::vector<T> D(std::size_t(row ? 1 : c.M) * c.N), C(std::size_t(c.M) * c.N, std::numeric_limits<T>::quiet_NaN());
    for (auto* v : {&A, &B, &D})
      for (T& x : *v) x = T(std::uniform_real_distribution<double>(-1, 1)(rng));
    k::gemm_add<T>(c.ta, c.tb, c.M, c.N, c.K, T(c.alpha), A.data(), lda, B.data(), ldb, D.data(), row ? 0 : c.N,
                   C.data(), c.N);
    std::vector<double> Ad(A.begin(), A.end()), Bd(B.begin(), B.end()), want(C.size());
    for (int i = 0; i < c.M; ++i)
      for (int j = 0; j < c.N; ++j) want[idx(i) * c.N + j] = D[(row ? 0 : idx(i) * c.N) + j];
    naive(c, Ad.data(), lda, Bd.data(), ldb, want.data(), c.N);
    double worst = 0;
    for (std::size_t i = 0; i < C.size(); ++i) {
      const double err = std::abs(want[i] - double(C[i])) / (1 + std::sqrt(double(c.K)));
      worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : std::max(worst, err);
    }
    CHECK(worst <= (sizeof(T) == 4 ? 2e-6 : 1e-14));
  }
}
