// ops/kernels/gemm_blocks.hpp: the building blocks of the packed gemm (internal), shared by
// gemm.cpp and attention.cpp.
//
// Packed formats (GotoBLAS/BLIS style), for C (m,n) += A (m,k) B (k,n):
//   A panel: MR rows of A, k-major: Ap[p * MR + r] = A(r, p); rows past m are zero.
//   B panel: NR columns of B, k-major: Bp[p * NR + c] = B(p, c); columns past n are zero.
// The micro-kernel keeps an MR x NR tile of C in MR * 2 registers (MR = 6, NR = 2 SIMD widths:
// 12 accumulators + 2 B loads + 1 broadcast = 15 of the 16 AVX2 registers).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "ops/kernels/simd.hpp"

namespace ctgraph::kernels::blocks {

using idx = std::ptrdiff_t;

template <class T>
struct tile {
  static constexpr int W = simd::width<T>;
  static constexpr int MR = 6;
  static constexpr int NR = 2 * W;
};

/// B panels start on a cache line (64 bytes, or one panel row, NR elements, where that is less) and
/// lie a multiple of it apart: every packed buffer is laid out so. The micro-kernel's loads are
/// unaligned-safe, but a panel off a line costs a split load at every k. Checked, with a message naming
/// the caller, in builds with CTGRAPH_KERNEL_CHECKS (Debug and CTGRAPH_SANITIZE builds).
template <class T>
inline void check_panels([[maybe_unused]] const T* p, [[maybe_unused]] idx stride, [[maybe_unused]] const char* where) {
#if defined(CTGRAPH_KERNEL_CHECKS)
  constexpr idx line = std::min<idx>(64, tile<T>::NR * idx(sizeof(T)));
  if (reinterpret_cast<std::uintptr_t>(p) % line != 0 || stride * idx(sizeof(T)) % line != 0) {
    std::fprintf(stderr, "ctgraph kernels: %s: B panels at %p, %td bytes apart, are not %td-byte aligned\n", where,
                 static_cast<const void*>(p), stride * idx(sizeof(T)), line);
    std::abort();
  }
#endif
}

/// Calls f(ir, mr, t) for the row tiles of an mc-row block: tile t covers rows [ir, ir + mr). Tiles
/// have MR rows, except that a last tile of 1-3 rows is merged with the one before into two of 3-5
/// rows (4+3, 4+4, 5+4): R rows keep 2R FMA chains in flight, and FMA latency x throughput needs 8,
/// so a 2-row tile takes as long as a 4-row one (M = 32: 6+6+6+6+4+4, not 6+6+6+6+6+2). There are
/// ceil(mc / MR) tiles. The full ones come first with mr a constant MR (the call inlines to the 6-row
/// kernel); the edge ones are known to have fewer rows (no dead copy of the 6-row kernel).
template <class T, class F>
[[gnu::always_inline]] inline void for_row_tiles(int mc, F&& f) {
  constexpr int MR = tile<T>::MR;
  const int rest = mc % MR;
  const int full = mc < MR ? 0 : mc / MR - (rest > 0 && rest < 4 ? 1 : 0);
  for (int t = 0; t < full; ++t) f(t * MR, MR, t);
  auto edge = [&](int ir, int mr, int t) __attribute__((always_inline)) {
    if (mr < 1 || mr >= MR) __builtin_unreachable();
    f(ir, mr, t);
  };
  const int ir = full * MR, left = mc - ir;  // 0, 1-5, or 7-9
  if (left > MR) {
    edge(ir, (left + 1) / 2, full);
    edge(ir + (left + 1) / 2, left / 2, full + 1);
  } else if (left > 0) {
    edge(ir, left, full);
  }
}

/// Growable 64-byte-aligned scratch buffer (one per thread, reused across calls).
template <class T>
class scratch {
 public:
  T* get(std::size_t n) {
    if (n > cap_) {
      cap_ = std::max(n, cap_ * 2);
      const std::size_t bytes = (cap_ * sizeof(T) + 63) / 64 * 64;
      ptr_.reset(static_cast<T*>(std::aligned_alloc(64, bytes)));
      if (!ptr_) throw std::bad_alloc();
    }
    return ptr_.get();
  }

 private:
  struct freer {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, freer> ptr_;
  std::size_t cap_ = 0;
};

// ---- packing -------------------------------------------------------------------------------

/// Packs rows [i0, i0+mc) x cols [p0, p0+kc) of op(A) into ceil(mc/MR) A panels at Ap, one per row tile
/// (for_row_tiles). op(A)(i, p) = ta ? A[p*lda + i] : A[i*lda + p]. Each panel holds kc * MR elements.
template <class T>
void pack_a(bool ta, const T* A, idx lda, int i0, int mc, int p0, int kc, T* Ap) {
  constexpr int MR = tile<T>::MR;
  for_row_tiles<T>(
      mc, [&](int ir, int mr, int t) __attribute__((always_inline)) {
        T* const panel = Ap + idx(t) * kc * MR;
        if (!ta) {
          const T* rows[MR];
          for (int r = 0; r < MR; ++r) rows[r] = A + idx(i0 + ir + std::min(r, mr - 1)) * lda + p0;
          for (int p = 0; p < kc; ++p) {
            T* d = panel + idx(p) * MR;
#pragma GCC unroll 6
            for (int r = 0; r < MR; ++r) d[r] = rows[r][p];
          }
          if (mr < MR)
            for (int p = 0; p < kc; ++p)
              for (int r = mr; r < MR; ++r) panel[idx(p) * MR + r] = T(0);
        } else if (mr == MR) {
          const T* a = A + idx(p0) * lda + i0 + ir;
          for (int p = 0; p < kc; ++p, a += lda) std::memcpy(panel + idx(p) * MR, a, MR * sizeof(T));
        } else {
          for (int p = 0; p < kc; ++p) {
            const T* a = A + idx(p0 + p) * lda + i0 + ir;
            T* d = panel + idx(p) * MR;
            for (int r = 0; r < mr; ++r) d[r] = a[r];
            for (int r = mr; r < MR; ++r) d[r] = T(0);
          }
        }
      });
}

/// Packs rows [p0, p0+kc) x cols [j0, j0+nc) of op(B) into ceil(nc/NR) B panels at Bp.
/// op(B)(p, j) = tb ? B[j*ldb + p] : B[p*ldb + j]. Each panel holds kc * NR elements; consecutive panels
/// are `panel_stride` elements apart (default kc * NR), so a larger stride packs one slice of longer panels.
template <class T>
void pack_b(bool tb, const T* B, idx ldb, int p0, int kc, int j0, int nc, T* Bp, idx panel_stride = -1) {
  constexpr int NR = tile<T>::NR;
  if (panel_stride < 0) panel_stride = idx(kc) * NR;
  if (!tb) {  // full panels, 8 at a time: one pass over each row of B serves 8 panels (fewer TLB misses)
    constexpr int G = 8;
    const int full = nc / NR;
    for (int g0 = 0; g0 < full; g0 += G) {
      const int g1 = std::min(full, g0 + G);
      for (int p = 0; p < kc; ++p) {
        const T* b = B + idx(p0 + p) * ldb + j0;
        for (int jp = g0; jp < g1; ++jp) {
          T* d = Bp + jp * panel_stride + idx(p) * NR;
          simd::storeu(d, simd::loadu(b + jp * NR));
          simd::storeu(d + tile<T>::W, simd::loadu(b + jp * NR + tile<T>::W));
        }
      }
    }
    Bp += full * panel_stride;
    j0 += full * NR;
    nc -= full * NR;
  }
  for (int jr = 0; jr < nc; jr += NR, Bp += panel_stride) {
    const int nr = std::min(NR, nc - jr);
    if (!tb) {
      {
        for (int p = 0; p < kc; ++p) {
          const T* b = B + idx(p0 + p) * ldb + j0 + jr;
          T* d = Bp + idx(p) * NR;
          for (int c = 0; c < nr; ++c) d[c] = b[c];
          for (int c = nr; c < NR; ++c) d[c] = T(0);
        }
      }
    } else {
      for (int c = 0; c < nr; ++c) {
        const T* b = B + idx(j0 + jr + c) * ldb + p0;
        for (int p = 0; p < kc; ++p) Bp[idx(p) * NR + c] = b[p];
      }
      for (int c = nr; c < NR; ++c)
        for (int p = 0; p < kc; ++p) Bp[idx(p) * NR + c] = T(0);
    }
  }
}

// ---- micro-kernel ----------------------------------------------------------------------------

/// The tile with R rows (R <= MR), inlined where it is called: see micro_kernel.
template <class T, bool Packed, int R>
[[gnu::always_inline]] inline void micro_body(int kc, const T* __restrict A, idx rs, idx cs, const T* __restrict Bp,
                                              T* __restrict C, idx ldc, T alpha, T beta, int n) {
  using V = simd::vec<T>;
  constexpr int MR = tile<T>::MR, NR = tile<T>::NR, W = tile<T>::W;
  V c[R][2];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) c[r][0] = c[r][1] = V{};
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {  // C is needed only at the end: start fetching it now
    __builtin_prefetch(C + r * ldc, 1, 3);
    __builtin_prefetch(C + r * ldc + NR - 1, 1, 3);
  }
  if constexpr (Packed) {
// Unrolled by 2, not 4: at 4, GCC 12 spills an accumulator of the fp64 6-row tile and runs it at
// 9 cycles per k instead of 6.
#pragma GCC unroll 2
    for (int p = 0; p < kc; ++p) {
      const V b0 = simd::in_register<T>(simd::loadu(Bp));
      const V b1 = simd::in_register<T>(simd::loadu(Bp + W));
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r) {
        const V a = simd::splat(A[r]);
        c[r][0] += a * b0;
        c[r][1] += a * b1;
      }
      A += MR;
      Bp += NR;
    }
  } else {
    const T* a[R];
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) a[r] = A + r * rs;
    for (idx p = 0, pa = 0; p < kc; ++p, pa += cs) {
      const V b0 = simd::in_register<T>(simd::loadu(Bp));
      const V b1 = simd::in_register<T>(simd::loadu(Bp + W));
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r) {
        const V av = simd::splat(a[r][pa]);
        c[r][0] += av * b0;
        c[r][1] += av * b1;
      }
      Bp += NR;
    }
  }
  if (n == NR) {
    const V va = simd::splat(alpha);
    if (beta == T(0)) {
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r) {
        simd::storeu(C + r * ldc, va * c[r][0]);
        simd::storeu(C + r * ldc + W, va * c[r][1]);
      }
    } else if (beta == T(1)) {
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r) {
        simd::storeu(C + r * ldc, va * c[r][0] + simd::loadu(C + r * ldc));
        simd::storeu(C + r * ldc + W, va * c[r][1] + simd::loadu(C + r * ldc + W));
      }
    } else {
      const V vb = simd::splat(beta);
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r) {
        simd::storeu(C + r * ldc, va * c[r][0] + vb * simd::loadu(C + r * ldc));
        simd::storeu(C + r * ldc + W, va * c[r][1] + vb * simd::loadu(C + r * ldc + W));
      }
    }
    return;
  }
  alignas(64) T t[R * NR];
  for (int r = 0; r < R; ++r) {
    simd::storeu(t + r * NR, c[r][0]);
    simd::storeu(t + r * NR + W, c[r][1]);
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < n; ++j)
      C[r * ldc + j] = beta == T(0) ? alpha * t[r * NR + j] : alpha * t[r * NR + j] + beta * C[r * ldc + j];
}

/// Edge tiles (R < MR rows): one out-of-line copy each.
template <class T, bool Packed, int R>
[[gnu::hot, gnu::noinline]] void micro_rows(int kc, const T* A, idx rs, idx cs, const T* Bp, T* C, idx ldc, T alpha,
                                            T beta, int n) {
  micro_body<T, Packed, R>(kc, A, rs, cs, Bp, C, ldc, alpha, beta, n);
}

/// C (m,n) = alpha * A Bp + beta * C for one MR x NR tile (m <= MR, n <= NR); beta == 0 does not read C.
/// Bp: one B panel, kc deep. A: element (r, p) at A[r * rs + p * cs]; Packed means one A panel
/// (rs = 1, cs = MR). Rows past m are never read (row-major A: rs = lda, cs = 1; transposed: rs = 1, cs = lda).
/// Full tiles run the body inlined into the caller's loop and edge tiles call out-of-line copies
/// (against a call per tile, sgemm 32 x 256 x 1024 and 32 x 1024 x 256 run 3%-7% faster).
template <class T, bool Packed>
[[gnu::always_inline]] inline void micro_kernel(int kc, const T* A, idx rs, idx cs, const T* Bp, T* C, idx ldc, T alpha,
                                                T beta, int m, int n) {
  static_assert(tile<T>::MR == 6);
  switch (m) {
    case 6:
      return micro_body<T, Packed, 6>(kc, A, rs, cs, Bp, C, ldc, alpha, beta, n);
    case 5:
      return micro_rows<T, Packed, 5>(kc, A, rs, cs, Bp, C, ldc, alpha, beta, n);
    case 4:
      return micro_rows<T, Packed, 4>(kc, A, rs, cs, Bp, C, ldc, alpha, beta, n);
    case 3:
      return micro_rows<T, Packed, 3>(kc, A, rs, cs, Bp, C, ldc, alpha, beta, n);
    case 2:
      return micro_rows<T, Packed, 2>(kc, A, rs, cs, Bp, C, ldc, alpha, beta, n);
    case 1:
      return micro_rows<T, Packed, 1>(kc, A, rs, cs, Bp, C, ldc, alpha, beta, n);
    default:
      return;
  }
}

/// C (mc, nc) = alpha * op(A) (B panels) + beta * C with A unpacked: element (r, p) at A[r * rs + p * cs].
/// Bp: ceil(nc / NR) B panels, consecutive panels `panel_stride` elements apart (kc * NR when packed alone).
template <class T>
inline void macro_kernel_strided(int mc, int nc, int kc, const T* A, idx rs, idx cs, const T* Bp, idx panel_stride,
                                 T* C, idx ldc, T alpha, T beta) {
  constexpr int NR = tile<T>::NR;
  check_panels(Bp, panel_stride, "macro_kernel_strided");
  for (int jr = 0; jr < nc; jr += NR) {
    const T* b = Bp + idx(jr / NR) * panel_stride;
    const int nr = std::min(NR, nc - jr);
    for_row_tiles<T>(
        mc, [&](int ir, int mr, int) __attribute__((always_inline)) {
          micro_kernel<T, false>(kc, A + ir * rs, rs, cs, b, C + idx(ir) * ldc + jr, ldc, alpha, beta, mr, nr);
        });
  }
}

/// C (mc, nc) = alpha * (packed A panels) (packed B panels) + beta * C, serially over MR x NR tiles.
/// Consecutive B panels are `panel_stride` elements apart (default: packed alone, kc * NR).
template <class T>
inline void macro_kernel(int mc, int nc, int kc, const T* Ap, const T* Bp, T* C, idx ldc, T alpha, T beta,
                         idx panel_stride = -1) {
  constexpr int MR = tile<T>::MR, NR = tile<T>::NR;
  if (panel_stride < 0) panel_stride = idx(kc) * NR;
  check_panels(Bp, panel_stride, "macro_kernel");
  for (int jr = 0; jr < nc; jr += NR) {
    const T* b = Bp + idx(jr / NR) * panel_stride;
    const int nr = std::min(NR, nc - jr);
    for_row_tiles<T>(
        mc, [&](int ir, int mr, int t) __attribute__((always_inline)) {
          micro_kernel<T, true>(kc, Ap + idx(t) * kc * MR, 1, MR, b, C + idx(ir) * ldc + jr, ldc, alpha, beta, mr, nr);
        });
  }
}

}  // namespace ctgraph::kernels::blocks
