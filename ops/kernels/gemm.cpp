// ops/kernels/gemm.cpp: gemm for float and double (row-major, BLAS semantics).
//
// GotoBLAS/BLIS loop nest over one thread's block of C:
//   for jc (NC columns): for pc (KC deep): pack B (KC x NC) into NR panels   -> L3
//     for ic (MC rows): pack A (MC x KC) into MR panels                      -> L2
//       macro kernel: for jr (NR): for ir (MR): micro-kernel (MR x NR tile)  -> registers, B panel in L1
// Threads: C is cut into a grid of blocks, one per thread; each block runs the loop nest with its
// thread's own pack buffers: no barriers, and the redundant packing (each block packs the part of A or
// B it reads) costs O((m + n) k) against O(m n k) of arithmetic.
#include <omp.h>

#include <algorithm>
#include <cstddef>

#include "ctgraph/kernels.hpp"
#include "ops/kernels/gemm_blocks.hpp"

namespace ctgraph::kernels {
namespace {

using blocks::idx;
using blocks::tile;

template <class T>
struct block_sizes;
template <>
struct block_sizes<float> {
  static constexpr int MC = 144, KC = 256, NC = 3072;
};
template <>
struct block_sizes<double> {
  static constexpr int MC = 72, KC = 256, NC = 1536;
};

// C (M,N) *= beta; beta == 0 writes zeros without reading C.
template <class T>
void scale_c(int M, int N, T beta, T* C, int ldc) {
  if (beta == T(1)) return;
  for (int i = 0; i < M; ++i) {
    T* c = C + idx(i) * ldc;
    if (beta == T(0)) {
      std::fill(c, c + N, T(0));
    } else {
      for (int j = 0; j < N; ++j) c[j] *= beta;
    }
  }
}

struct gemm_args {
  bool ta, tb;
  int M, N, K;
};

// The loop nest on rows [m0, m1) and columns [n0, n1) of C.
template <class T>
void gemm_block(const gemm_args& g, int m0, int m1, int n0, int n1, T alpha, const T* A, int lda, const T* B, int ldb,
                T beta, T* C, int ldc) {
  using bs = block_sizes<T>;
  constexpr int MR = tile<T>::MR, NR = tile<T>::NR;
  static thread_local blocks::scratch<T> a_buf, b_buf;
  T* Ap = a_buf.get(std::size_t(bs::MC + MR) * bs::KC);
  T* Bp = b_buf.get(std::size_t(bs::NC + NR) * bs::KC);
  if (m1 - m0 <= bs::MC) {
    // Few rows (e.g. a batch of 32): B would be packed for a single pass over A, so pack it a few NR
    // panels at a time, right before the micro-kernels that use them, while they are hot in cache.
    const int mc = m1 - m0;
    for (int pc = 0; pc < g.K; pc += bs::KC) {
      const int kc = std::min(bs::KC, g.K - pc);
      const T b_eff = pc == 0 ? beta : T(1);
      // A row-major: the micro-kernel broadcasts from its rows in place (packing would cost as much as
      // it saves at this size); A transposed: packed.
      if (g.ta) blocks::pack_a(g.ta, A, lda, m0, mc, pc, kc, Ap);
      constexpr int group = 4;  // panels packed per pass over B's rows
      for (int jg = n0; jg < n1; jg += group * NR) {
        blocks::pack_b(g.tb, B, ldb, pc, kc, jg, std::min(group * NR, n1 - jg), Bp);
        blocks::check_panels(Bp, idx(kc) * NR, "gemm_block");
        for (int jr = jg; jr < std::min(n1, jg + group * NR); jr += NR) {
          const int nr = std::min(NR, n1 - jr);
          const T* bp = Bp + idx((jr - jg) / NR) * kc * NR;
          blocks::for_row_tiles<T>(
              mc, [&](int ir, int mr, int t) __attribute__((always_inline)) {
                T* c = C + idx(m0 + ir) * ldc + jr;
                if (g.ta)
                  blocks::micro_kernel<T, true>(kc, Ap + idx(t) * kc * MR, 1, MR, bp, c, ldc, alpha, b_eff, mr, nr);
                else
                  blocks::micro_kernel<T, false>(kc, A + idx(m0 + ir) * lda + pc, lda, 1, bp, c, ldc, alpha, b_eff, mr,
                                                 nr);
              });
        }
      }
    }
    return;
  }
  for (int jc = n0; jc < n1; jc += bs::NC) {
    const int nc = std::min(bs::NC, n1 - jc);
    for (int pc = 0; pc < g.K; pc += bs::KC) {
      const int kc = std::min(bs::KC, g.K - pc);
      const T b_eff = pc == 0 ? beta : T(1);
      blocks::pack_b(g.tb, B, ldb, pc, kc, jc, nc, Bp);
      for (int ic = m0; ic < m1; ic += bs::MC) {
        const int mc = std::min(bs::MC, m1 - ic);
        blocks::pack_a(g.ta, A, lda, ic, mc, pc, kc, Ap);
        blocks::macro_kernel(mc, nc, kc, Ap, Bp, C + idx(ic) * ldc + jc, ldc, alpha, b_eff);
      }
    }
  }
}

// C = alpha A B^T + beta C for few rows of A (M <= MC), columns [n0, n1) of C: x W^T of a layer,
// W [Out, In] row-major. Computed as C^T = B A^T, so that what is packed is A^T (M x K), not B^T
// (N x K, N x as large): packing B^T transposes it element by element, which for 32x256x1024 cost a
// third of the product. The rows of B are read in place; each MR x (M rounded up to NR) tile of C^T
// sums over all of K in a local buffer, then is written to C transposed, once.
template <class T>
void gemm_nt_few_rows(int M, int n0, int n1, int K, T alpha, const T* A, int lda, const T* B, int ldb, T beta, T* C,
                      int ldc, const T* D, int ldd) {
  using bs = block_sizes<T>;
  constexpr int MR = tile<T>::MR, NR = tile<T>::NR;
  const int panels = (M + NR - 1) / NR;
  static thread_local blocks::scratch<T> a_buf, c_buf;
  T* const At = a_buf.get(std::size_t(panels) * NR * K);  // A^T as B panels, K deep
  T* const tile_c = c_buf.get(std::size_t(MR) * panels * NR);
  blocks::pack_b(true, A, lda, 0, K, 0, M, At);
  blocks::check_panels(At, idx(K) * NR, "gemm_nt_few_rows");
  blocks::for_row_tiles<T>(
      n1 - n0, [&](int ir, int mr, int) __attribute__((always_inline)) {
        const T* rows = B + idx(n0 + ir) * ldb;  // mr rows of B: columns of C
        for (int pc = 0; pc < K; pc += bs::KC) {
          const int kc = std::min(bs::KC, K - pc);
          for (int jp = 0; jp < panels; ++jp)
            blocks::micro_kernel<T, false>(kc, rows + pc, ldb, 1, At + idx(jp) * K * NR + idx(pc) * NR,
                                           tile_c + jp * NR, panels * NR, T(1), pc == 0 ? T(0) : T(1), mr, NR);
        }
        for (int i = 0; i < M; ++i) {  // tile_c (r, i) is C (i, n0 + ir + r)
          T* c = C + idx(i) * ldc + n0 + ir;
          if (D) {  // the addend D, as the product is written
            const T* d = D + idx(i) * ldd + n0 + ir;
            for (int r = 0; r < mr; ++r) c[r] = alpha * tile_c[r * panels * NR + i] + d[r];
            continue;
          }
          for (int r = 0; r < mr; ++r) {
            const T v = alpha * tile_c[r * panels * NR + i];
            c[r] = beta == T(0) ? v : v + beta * c[r];
          }
        }
      });
}

// Splits `tiles` units into `parts` near-equal contiguous ranges; returns the start of range `i`.
inline int split(int tiles, int parts, int i) { return int(idx(tiles) * i / parts); }

}  // namespace

namespace detail {
template <class T>
void gemm_small(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
                T beta, T* C, int ldc) {
  for (int i = 0; i < M; ++i) {
    T* c = C + idx(i) * ldc;
    for (int j = 0; j < N; ++j) {
      T s = 0;
      for (int p = 0; p < K; ++p)
        s += (trans_a ? A[idx(p) * lda + i] : A[idx(i) * lda + p]) *
             (trans_b ? B[idx(j) * ldb + p] : B[idx(p) * ldb + j]);
      c[j] = beta == T(0) ? alpha * s : alpha * s + beta * c[j];
    }
  }
}
template void gemm_small<float>(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*,
                                int);
template void gemm_small<double>(bool, bool, int, int, int, double, const double*, int, const double*, int, double,
                                 double*, int);
}  // namespace detail

// C = alpha op(A) op(B) + (D ? D : beta C). The few-rows x W^T path adds D as it writes C; the others copy
// D into C first and accumulate onto it.
template <class T>
void gemm_any(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
              T beta, T* C, int ldc, const T* D, int ldd) {
  if (M <= 0 || N <= 0) return;
  auto copy_d = [&] {
    for (int i = 0; i < M; ++i) std::copy(D + idx(i) * ldd, D + idx(i) * ldd + N, C + idx(i) * ldc);
    beta = T(1);
    D = nullptr;
  };
  if (K <= 0 || alpha == T(0)) {
    if (D) return copy_d();
    scale_c(M, N, beta, C, ldc);
    return;
  }
  constexpr int MR = tile<T>::MR, NR = tile<T>::NR;
  const gemm_args g{trans_a, trans_b, M, N, K};
  const int mt = (M + MR - 1) / MR, nt = (N + NR - 1) / NR;
  // Threads: below ~2 MFLOP a second thread costs more than it saves; never more threads than tiles.
  int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (2.0 * M * N * K < 2e6) threads = 1;
  if (!trans_a && trans_b && M <= block_sizes<T>::MC && N >= 4 * M) {
    // x W^T with many more columns than rows: C^T = B A^T, threads on contiguous ranges of C's columns.
    const int ct = (N + MR - 1) / MR;  // column tiles (rows of C^T)
    threads = std::max(1, std::min(threads, ct));
    if (threads == 1) {  // no parallel region: libgomp allocates a team for each, even of one thread
      gemm_nt_few_rows(M, 0, N, K, alpha, A, lda, B, ldb, beta, C, ldc, D, ldd);
      return;
    }
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int part = 0; part < threads; ++part) {
      const int n0 = std::min(N, split(ct, threads, part) * MR), n1 = std::min(N, split(ct, threads, part + 1) * MR);
      if (n0 < n1) gemm_nt_few_rows(M, n0, n1, K, alpha, A, lda, B, ldb, beta, C, ldc, D, ldd);
    }
    return;
  }
  if (D) copy_d();
  threads = std::max(1, std::min(threads, mt * nt));
  if (threads == 1) {
    gemm_block(g, 0, M, 0, N, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // C is cut into a grid of tm x tn chunks, at most one per thread where the tiles allow it. The grid
  // minimises the work of a thread: its tiles plus its packing (a packed element costs about 4 FMA
  // lanes' time per tile element), times the rounds when there are more chunks than threads. More
  // chunks than threads, handed out dynamically, would absorb a core lost for a while, but every chunk
  // packs the A rows and B columns it reads: two per thread cost 7%-16% at 128^3-1024^3 on two cores.
  int tm = 1, tn = std::min(nt, threads);
  double best = 1e300;
  for (int a = 1; a <= std::min(mt, threads); ++a) {
    const int b = std::min(nt, (threads + a - 1) / a);
    const int rows = (mt + a - 1) / a, cols = (nt + b - 1) / b;
    const double rounds = double((a * b + threads - 1) / threads);
    const double cost = rounds * (double(rows) * cols * MR * NR + 4.0 * (rows * MR + cols * NR));
    if (cost < best) best = cost, tm = a, tn = b;
  }
  const int team = std::min(threads, tm * tn);
#pragma omp parallel for num_threads(team) schedule(static, 1)
  for (int chunk = 0; chunk < tm * tn; ++chunk) {
    const int im = chunk / tn, in = chunk % tn;
    const int m0 = std::min(M, split(mt, tm, im) * MR), m1 = std::min(M, split(mt, tm, im + 1) * MR);
    const int n0 = std::min(N, split(nt, tn, in) * NR), n1 = std::min(N, split(nt, tn, in + 1) * NR);
    if (m0 < m1 && n0 < n1) gemm_block(g, m0, m1, n0, n1, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}

template <class T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb, T beta,
          T* C, int ldc) {
  gemm_any<T>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nullptr, 0);
}
template <class T>
void gemm_add(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
              const T* D, int ldd, T* C, int ldc) {
  gemm_any<T>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, T(1), C, ldc, D, ldd);
}

template void gemm<float>(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*, int);
template void gemm_add<float>(bool, bool, int, int, int, float, const float*, int, const float*, int, const float*, int,
                              float*, int);
template void gemm_add<double>(bool, bool, int, int, int, double, const double*, int, const double*, int, const double*,
                               int, double*, int);
template void gemm<double>(bool, bool, int, int, int, double, const double*, int, const double*, int, double, double*,
                           int);

}  // namespace ctgraph::kernels
