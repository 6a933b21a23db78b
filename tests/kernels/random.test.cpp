// Randomized kernel tests: gemm and fused attention on random shapes, strides, scalars and thread
// counts, against plain double references. ctest runs a fixed seed; a long run sets
//   CTGRAPH_RANDOM_CASES=N   cases per test case (default 150 gemm, 60 attention)
//   CTGRAPH_RANDOM_SEED=S    the first case's seed (default 1); case i uses seed S + i
// and every failure prints the seed that reproduces it alone (CTGRAPH_RANDOM_CASES=1).
// Buffers end exactly where the kernel's last read or write may fall, so that AddressSanitizer
// catches a read past them; they start at a random offset of 0-3 elements, so that no alignment is
// assumed of the caller's pointers.
#include <omp.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "ctgraph/kernels.hpp"
#include "random_cases.hpp"
#include "rel_error.hpp"
#include "thread_count.hpp"

namespace {
namespace k = ctgraph::kernels;
using ctgraph_test::env_or;
using ctgraph_test::uniform;
using ctgraph_test::uniform_real;
using idx = std::ptrdiff_t;

// A buffer of n elements at a random offset 0-3 into its allocation, which ends with the n-th element.
template <class T>
struct offset_buffer {
  std::vector<T> storage;
  int offset;
  offset_buffer(std::size_t n, int off, T fill) : storage(n + off, fill), offset(off) {}
  T* data() { return storage.data() + offset; }
  T& operator[](std::size_t i) { return storage[offset + i]; }
};

// Dimension sizes biased to the edges that matter (1, tile and block boundaries) as well as uniform.
int random_dim(std::mt19937& rng, int max) {
  static const int edges[] = {1, 2, 5, 6, 7, 8, 15, 16, 17, 31, 32, 33, 48, 95, 96, 97, 144, 145, 256, 257};
  if (uniform(rng, 0, 3) == 0) {
    const int e = edges[uniform(rng, 0, int(std::size(edges)) - 1)];
    if (e <= max) return e;
  }
  return uniform(rng, 1, max);
}

// ---- gemm ----------------------------------------------------------------------------------------

template <class T>
void random_gemm_case(unsigned seed) {
  std::mt19937 rng(seed);
  const int M = random_dim(rng, 300), N = random_dim(rng, 300), K = random_dim(rng, 300);
  const bool ta = uniform(rng, 0, 1), tb = uniform(rng, 0, 1);
  const int arows = ta ? K : M, acols = ta ? M : K, brows = tb ? N : K, bcols = tb ? K : N;
  const int lda = acols + uniform(rng, 0, 1) * uniform(rng, 1, 9);
  const int ldb = bcols + uniform(rng, 0, 1) * uniform(rng, 1, 9);
  const int ldc = N + uniform(rng, 0, 1) * uniform(rng, 1, 9);
  const double alphas[] = {1.0, -1.0, 0.5, uniform_real(rng, -2, 2)};
  const double alpha = alphas[uniform(rng, 0, 3)];
  const int beta_kind = uniform(rng, 0, 3);  // 0: beta 0 with NaN in C; 1: 1; 2-3: random
  const double beta = beta_kind == 0 ? 0.0 : beta_kind == 1 ? 1.0 : uniform_real(rng, -1.5, 1.5);
  const int threads = uniform(rng, 1, 3);
  INFO("seed=" << seed << " T=" << (sizeof(T) == 4 ? "float" : "double") << " M=" << M << " N=" << N << " K=" << K
               << " ta=" << ta << " tb=" << tb << " lda=" << lda << " ldb=" << ldb << " ldc=" << ldc
               << " alpha=" << alpha << " beta=" << beta << " threads=" << threads);

  const T sentinel = T(-7.25);  // padding: must come back bit for bit
  const std::size_t na = std::size_t(arows - 1) * lda + acols, nb = std::size_t(brows - 1) * ldb + bcols;
  const std::size_t nc = std::size_t(M - 1) * ldc + N;
  offset_buffer<T> A(na, uniform(rng, 0, 3), sentinel), B(nb, uniform(rng, 0, 3), sentinel);
  offset_buffer<T> C(nc, uniform(rng, 0, 3), sentinel);
  for (int r = 0; r < arows; ++r)
    for (int c = 0; c < acols; ++c) A[std::size_t(r) * lda + c] = T(uniform_real(rng, -1, 1));
  for (int r = 0; r < brows; ++r)
    for (int c = 0; c < bcols; ++c) B[std::size_t(r) * ldb + c] = T(uniform_real(rng, -1, 1));
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j)
      C[std::size_t(i) * ldc + j] = beta == 0 ? std::numeric_limits<T>::quiet_NaN() : T(uniform_real(rng, -1, 1));
  const auto C0 = C.storage;

  {
    const thread_count saved;
    omp_set_num_threads(threads);
    k::gemm<T>(ta, tb, M, N, K, T(alpha), A.data(), lda, B.data(), ldb, T(beta), C.data(), ldc);
  }

  // Reference in double, and a bound on the rounding of T: (K + 2) eps (|alpha| sum |a b| + |beta c|).
  const double eps = std::numeric_limits<T>::epsilon();
  int bad = 0;
  double worst = 0;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double s = 0, mag = 0;
      for (int p = 0; p < K; ++p) {
        const double a = ta ? A[std::size_t(p) * lda + i] : A[std::size_t(i) * lda + p];
        const double b = tb ? B[std::size_t(j) * ldb + p] : B[std::size_t(p) * ldb + j];
        s += a * b;
        mag += std::abs(a * b);
      }
      const double c0 = C0[C.offset + std::size_t(i) * ldc + j];
      const double want = alpha * s + (beta == 0 ? 0.0 : beta * c0);
      const double bound =
          2 * (K + 2) * eps * (std::abs(alpha) * mag + (beta == 0 ? 0.0 : std::abs(beta * c0))) + 1e-300;
      const double err = std::abs(double(C[std::size_t(i) * ldc + j]) - want) / bound;
      if (!(err <= 1)) ++bad;  // NaN counts
      if (!(err <= worst)) worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
    }
  INFO("elements beyond the rounding bound: " << bad << ", worst error / bound " << worst);
  CHECK(bad == 0);
  // Neither the padding between C's rows nor the elements before C change.
  bool untouched = true;
  for (int e = 0; e < C.offset; ++e) untouched &= C.storage[e] == sentinel;
  for (int i = 0; i + 1 < M; ++i)
    for (int j = N; j < ldc; ++j) untouched &= C[std::size_t(i) * ldc + j] == sentinel;
  CHECK(untouched);
}

// ---- attention -----------------------------------------------------------------------------------

// The number of elements a tensor of `len` rows per head spans under layout l (dense when l is all zero).
std::size_t span_of(const k::attention_layout& l, int batch, int heads, int len, int d) {
  if (!l.batch && !l.head && !l.row) return std::size_t(batch) * heads * len * d;
  return std::size_t((batch - 1) * l.batch + (heads - 1) * l.head + (len - 1) * l.row + d);
}
// Row i of head h of sequence b, feature e: its element under layout l.
std::size_t at(const k::attention_layout& l, int heads, int len, int d, int b, int h, int i, int e) {
  if (!l.batch && !l.head && !l.row) return ((std::size_t(b) * heads + h) * len + i) * d + e;
  return std::size_t(b * l.batch + h * l.head + i * l.row + e);
}
// A random layout: dense, or sequence-first [len, batch, heads, d] with 0-5 elements of padding after each
// position's batch * heads * d.
k::attention_layout random_layout(std::mt19937& rng, int batch, int heads, int d) {
  if (uniform(rng, 0, 1) == 0) return {};
  const long hd = long(heads) * d;
  return {hd, d, batch * hd + uniform(rng, 0, 5)};
}

// Fused T against the double reference on the same (T-rounded) inputs, under the shape's layouts and an
// optional key mask (its rows random, one of them all zero when there are 2 or more sequences).
template <class T>
void attention_case(const k::attention_shape& s, int threads, unsigned seed, double tol, bool masked = false) {
  INFO("seed=" << seed << " T=" << (sizeof(T) == 4 ? "float" : "double") << " batch=" << s.batch << " heads=" << s.heads
               << " q_len=" << s.q_len << " kv_len=" << s.kv_len << " head_dim=" << s.head_dim << " causal=" << s.causal
               << " scale=" << s.scale << " threads=" << threads << " q row stride=" << s.q_layout.row
               << " kv row stride=" << s.kv_layout.row << " key mask=" << masked);
  std::mt19937 rng(seed ^ 0x9e3779b9u);
  const int B = s.batch, H = s.heads, L = s.q_len, N = s.kv_len, D = s.head_dim;
  const std::size_t nq = span_of(s.q_layout, B, H, L, D), nk = span_of(s.kv_layout, B, H, N, D);
  const std::size_t nl = std::size_t(B) * H * L;
  auto fill = [&](std::size_t n) {
    std::vector<double> x(n);
    for (auto& e : x) e = double(T(uniform_real(rng, -1, 1)));  // rounded to T: both sides see the same numbers
    return x;
  };
  const auto q = fill(nq), kk = fill(nk), v = fill(nk), dout = fill(nq);
  std::vector<double> mask;
  if (masked) {
    mask.resize(std::size_t(B) * N);
    for (auto& m : mask) m = uniform(rng, 0, 3) ? 1.0 : 0.0;
    if (B > 1) std::fill(mask.begin() + N, mask.begin() + 2 * N, 0.0);  // sequence 1 sees no key
  }
  const double* md = masked ? mask.data() : nullptr;
  std::vector<double> o_ref(nq), lse_ref(nl), dq_ref(nq), dk_ref(nk), dv_ref(nk);
  k::attention_forward_reference(s, q.data(), kk.data(), v.data(), o_ref.data(), lse_ref.data(), md);
  k::attention_backward_reference(s, q.data(), kk.data(), v.data(), o_ref.data(), lse_ref.data(), dout.data(),
                                  dq_ref.data(), dk_ref.data(), dv_ref.data(), md);

  // Inputs at random offsets (no alignment assumed); outputs start as NaN (written, not accumulated).
  auto copy = [&](const std::vector<double>& x) {
    offset_buffer<T> b(x.size(), uniform(rng, 0, 3), T(0));
    std::copy(x.begin(), x.end(), b.data());
    return b;
  };
  auto qt = copy(q), kt = copy(kk), vt = copy(v), dot = copy(dout), mt = copy(mask);
  const T* mp = masked ? mt.data() : nullptr;
  const T nan = std::numeric_limits<T>::quiet_NaN();
  std::vector<T> o(nq, nan), lse(nl, nan), dq(nq, nan), dk(nk, nan), dv(nk, nan);
  const thread_count saved;
  omp_set_num_threads(threads);
  k::attention_forward(s, qt.data(), kt.data(), vt.data(), o.data(), lse.data(), mp);
  k::attention_backward(s, qt.data(), kt.data(), vt.data(), o.data(), lse.data(), dot.data(), dq.data(), dk.data(),
                        dv.data(), mp);
  // The rows each layout holds, gathered dense; what lies between them must stay untouched (NaN).
  auto rows = [&](const auto& x, const k::attention_layout& l, int len, bool untouched) {
    std::vector<double> r;
    std::vector<char> in_row(x.size(), 0);
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h)
        for (int i = 0; i < len; ++i)
          for (int e = 0; e < D; ++e) {
            const std::size_t j = at(l, H, len, D, b, h, i, e);
            r.push_back(double(x[j]));
            in_row[j] = 1;
          }
    if (untouched) {
      std::size_t written = 0;
      for (std::size_t j = 0; j < x.size(); ++j) written += !in_row[j] && !std::isnan(double(x[j]));
      CHECK(written == 0);
    }
    return r;
  };
  CHECK(rel_error(rows(o, s.q_layout, L, true), rows(o_ref, s.q_layout, L, false)) <= tol);
  CHECK(rel_error(lse, lse_ref) <= tol);
  CHECK(rel_error(rows(dq, s.q_layout, L, true), rows(dq_ref, s.q_layout, L, false)) <= tol);
  CHECK(rel_error(rows(dk, s.kv_layout, N, true), rows(dk_ref, s.kv_layout, N, false)) <= tol);
  CHECK(rel_error(rows(dv, s.kv_layout, N, true), rows(dv_ref, s.kv_layout, N, false)) <= tol);
  if (masked && B > 1)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < L; ++i) CHECK(std::isinf(lse[std::size_t(H + h) * L + i]));  // sequence 1: no key seen
}

template <class T>
void random_attention_case(unsigned seed) {
  std::mt19937 rng(seed);
  k::attention_shape s{};
  s.batch = uniform(rng, 1, 3);
  s.heads = uniform(rng, 1, 5);
  s.q_len = random_dim(rng, 200);
  do s.kv_len = random_dim(rng, 200);
  while (s.kv_len == s.q_len);
  s.head_dim = 8 * uniform(rng, 1, 16);
  s.causal = uniform(rng, 0, 1);
  s.scale = uniform(rng, 0, 2) == 0 ? 0.f : float(uniform_real(rng, 0.05, 0.5));
  s.q_layout = random_layout(rng, s.batch, s.heads, s.head_dim);
  s.kv_layout = random_layout(rng, s.batch, s.heads, s.head_dim);
  const bool masked = uniform(rng, 0, 1);
  attention_case<T>(s, uniform(rng, 1, 3), seed, sizeof(T) == 4 ? 2e-4 : 1e-9, masked);
}

template <class F>
void for_random_cases(long default_cases, F&& run_case) {
  const long cases = env_or("CTGRAPH_RANDOM_CASES", default_cases);
  const unsigned first = unsigned(env_or("CTGRAPH_RANDOM_SEED", 1));
  for (long i = 0; i < cases; ++i) run_case(first + unsigned(i));
}

}  // namespace

TEST_CASE("random gemm float: shapes to 300, transposes, padded leading dimensions, alpha, beta, 1-3 threads",
          "[gemm][random]") {
  for_random_cases(150, [](unsigned seed) { random_gemm_case<float>(seed); });
}

TEST_CASE("random gemm double: shapes to 300, transposes, padded leading dimensions, alpha, beta, 1-3 threads",
          "[gemm][random]") {
  for_random_cases(150, [](unsigned seed) { random_gemm_case<double>(seed); });
}

TEST_CASE(
    "random attention float: heads 1-5, lengths 1-200, head_dim 8-128, causal, scale, layouts, key masks, "
    "1-3 threads",
    "[attention][random]") {
  for_random_cases(60, [](unsigned seed) { random_attention_case<float>(seed); });
}

TEST_CASE(
    "random attention double: heads 1-5, lengths 1-200, head_dim 8-128, causal, scale, layouts, key masks, "
    "1-3 threads",
    "[attention][random]") {
  for_random_cases(30, [](unsigned seed) { random_attention_case<double>(seed); });
}

// Issue 10's reproducer: at 2 threads the backward split its 3 heads, and the packs of the heads
// followed per-thread dq buffers of 3 x 77 x 40 floats, which end 32 bytes off a 64-byte line. The
// micro-kernel dereferenced B panels as vectors: with AVX-512, an aligned load that faulted.
TEST_CASE("attention backward at 2 threads, 3 split heads of 77 x 133 x 40 (issue 10)", "[attention]") {
  for (int threads : {1, 2, 3}) {
    attention_case<float>({1, 3, 77, 133, 40, false, 0.3f}, threads, 77, 2e-4);
    attention_case<double>({1, 3, 77, 133, 40, false, 0.3f}, threads, 77, 1e-9);
  }
}
