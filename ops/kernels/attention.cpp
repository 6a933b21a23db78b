// ops/kernels/attention.cpp: fused attention forward/backward and the unfused reference.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "ctgraph/kernels.hpp"
#include "ops/kernels/gemm_blocks.hpp"
#include "ops/kernels/simd.hpp"

namespace ctgraph::kernels {
namespace {

using blocks::idx;

template <class T>
T scale_of(const attention_shape& s) {
  return s.scale != 0 ? T(s.scale) : T(1) / std::sqrt(T(s.head_dim));
}

// Number of keys query row i may see: all, or j <= i + (kv_len - q_len) when causal.
inline int visible_keys(const attention_shape& s, int i) {
  if (!s.causal) return s.kv_len;
  return std::clamp(i + 1 + (s.kv_len - s.q_len), 0, s.kv_len);
}

// Where row i of head bh starts in q, o, dq, dout (the query layout) or k, v, dk, dv (the key layout).
struct layout {
  idx batch, head, row;
  int heads;
  layout(const attention_layout& l, int heads, int len, int d)
      : batch(l.batch), head(l.head), row(l.row), heads(heads) {
    if (!l.batch && !l.head && !l.row) batch = idx(heads) * len * d, head = idx(len) * d, row = d;  // dense
  }
  idx operator()(int bh, int i) const { return idx(bh / heads) * batch + idx(bh % heads) * head + idx(i) * row; }
};
inline layout query_layout(const attention_shape& s) { return {s.q_layout, s.heads, s.q_len, s.head_dim}; }
inline layout key_layout(const attention_shape& s) { return {s.kv_layout, s.heads, s.kv_len, s.head_dim}; }

// Sets n rows of d elements from base + at(bh, 0) of every head to x.
template <class T>
void fill_heads(T* base, const layout& at, int BH, int n, int d, T x) {
  for (int bh = 0; bh < BH; ++bh)
    for (int i = 0; i < n; ++i) std::fill(base + at(bh, i), base + at(bh, i) + d, x);
}

// The key mask of one sequence as scores' addends: 0 at a visible key, -inf at a hidden one (mask 0), 0 past
// kv_len up to `len` (lanes the kernels mask by length anyway).
template <class T>
void key_bias(const T* mask, int kv_len, int len, T* bias) {
  for (int j = 0; j < kv_len; ++j) bias[j] = mask[j] != T(0) ? T(0) : -std::numeric_limits<T>::infinity();
  std::fill(bias + kv_len, bias + len, T(0));
}

// ---------------------------------------------------------------------------------------------
// Unfused reference: S = scale q k^T (gemm), masked row softmax, o = P v (gemm).

// Row softmax of S (R, C) in place over the keys row r sees (the first n[r] columns, those of them the key
// mask keeps); the rest is set to 0. Writes lse[r] = log sum exp over them (-inf for a row that sees none).
template <class T>
void softmax_rows_masked(const attention_shape& s, T* S, T* lse, const T* mask) {
  const int R = s.q_len, C = s.kv_len;
  auto seen = [&](int j) { return !mask || mask[j] != T(0); };
  for (int r = 0; r < R; ++r) {
    T* row = S + idx(r) * C;
    const int n = visible_keys(s, r);
    T m = -std::numeric_limits<T>::infinity();
    for (int j = 0; j < n; ++j)
      if (seen(j)) m = std::max(m, row[j]);
    if (m == -std::numeric_limits<T>::infinity()) {
      std::fill(row, row + C, T(0));
      lse[r] = m;
      continue;
    }
    T sum = 0;
    for (int j = 0; j < n; ++j) sum += (row[j] = seen(j) ? std::exp(row[j] - m) : T(0));
    const T inv = T(1) / sum;
    for (int j = 0; j < n; ++j) row[j] *= inv;
    std::fill(row + n, row + C, T(0));
    lse[r] = m + std::log(sum);
  }
}

template <class T>
void reference_forward(const attention_shape& s, const T* q, const T* k, const T* v, T* o, T* lse, const T* mask) {
  const int L = s.q_len, N = s.kv_len, D = s.head_dim;
  const layout qa = query_layout(s), ka = key_layout(s);
  const T scale = scale_of<T>(s);
  std::vector<T> S(idx(L) * N);
  for (int bh = 0; bh < s.batch * s.heads; ++bh) {
    gemm<T>(false, true, L, N, D, scale, q + qa(bh, 0), int(qa.row), k + ka(bh, 0), int(ka.row), T(0), S.data(), N);
    softmax_rows_masked(s, S.data(), lse + idx(bh) * L, mask ? mask + idx(bh / s.heads) * N : nullptr);
    gemm<T>(false, false, L, D, N, T(1), S.data(), N, v + ka(bh, 0), int(ka.row), T(0), o + qa(bh, 0), int(qa.row));
  }
}

template <class T>
void reference_backward(const attention_shape& s, const T* q, const T* k, const T* v, const T* dout, T* dq, T* dk,
                        T* dv, const T* mask) {
  const int L = s.q_len, N = s.kv_len, D = s.head_dim;
  const layout qa = query_layout(s), ka = key_layout(s);
  const int lq = int(qa.row), lk = int(ka.row);
  const T scale = scale_of<T>(s);
  std::vector<T> P(idx(L) * N), dP(idx(L) * N), lse(L);
  for (int bh = 0; bh < s.batch * s.heads; ++bh) {
    const T* qh = q + qa(bh, 0);
    const T* kh = k + ka(bh, 0);
    const T* vh = v + ka(bh, 0);
    const T* doh = dout + qa(bh, 0);
    gemm<T>(false, true, L, N, D, scale, qh, lq, kh, lk, T(0), P.data(), N);
    softmax_rows_masked(s, P.data(), lse.data(), mask ? mask + idx(bh / s.heads) * N : nullptr);
    gemm<T>(true, false, N, D, L, T(1), P.data(), N, doh, lq, T(0), dv + ka(bh, 0), lk);  // dV = P^T dO
    gemm<T>(false, true, L, N, D, T(1), doh, lq, vh, lk, T(0), dP.data(), N);             // dP = dO V^T
    for (int r = 0; r < L; ++r) {  // dS = P * (dP - rowsum(P * dP))
      T* p = P.data() + idx(r) * N;
      T* dp = dP.data() + idx(r) * N;
      T rs = 0;
      for (int j = 0; j < N; ++j) rs += p[j] * dp[j];
      for (int j = 0; j < N; ++j) dp[j] = p[j] * (dp[j] - rs);
    }
    gemm<T>(false, false, L, D, N, scale, dP.data(), N, kh, lk, T(0), dq + qa(bh, 0), lq);  // dQ = s dS K
    gemm<T>(true, false, N, D, L, scale, dP.data(), N, qh, lq, T(0), dk + ka(bh, 0), lk);   // dK = s dS^T Q
  }
}

// ---------------------------------------------------------------------------------------------
// Fused path (FlashAttention-2). Per call, K and V are packed once into gemm B panels (O(N d));
// every tile product is the gemm micro-kernel with A read in place (row-major or transposed).

template <class T>
struct attn_tiles {
  static constexpr int BQ = 96;  // query rows per tile (multiple of MR = 6)
  static constexpr int BK = 96;  // keys per tile (multiple of NR and of MR)
  static_assert(BQ % blocks::tile<T>::MR == 0 && BK % blocks::tile<T>::NR == 0 && BK % blocks::tile<T>::MR == 0);
};

template <class I>
I round_up(I x, I m) {
  return (x + m - 1) / m * m;
}

// The work units of a fused kernel over `heads` heads of `tiles` tiles each: the first heads whole
// (one thread packs a head's operands once and uses them while they are hot), then the last `split`
// heads one tile at a time, so that the threads finish together. With fewer than 4 heads per thread,
// every head is split.
struct head_units {
  int tiles, split, whole;
  idx count;
  head_units(int heads, int tiles, int threads)
      : tiles(tiles),
        split(heads >= 4 * threads ? threads : heads),
        whole(heads - split),
        count(whole + idx(split) * tiles) {}
  struct unit {
    int head, first, end;  // tiles [first, end) of the head
    bool whole;
  };
  unit operator[](idx u) const {
    if (u < whole) return {int(u), 0, tiles, true};
    const int t = int((u - whole) % tiles);
    return {whole + int((u - whole) / tiles), t, t + 1, false};
  }
};

template <class T>
simd::vec<T> iota() {
  simd::vec<T> v;
  for (int i = 0; i < simd::width<T>; ++i) v[i] = T(i);
  return v;
}

template <class T>
void fused_forward(const attention_shape& s, const T* q, const T* k, const T* v, T* o, T* lse, const T* mask) {
  using V = simd::vec<T>;
  constexpr int W = simd::width<T>, NR = blocks::tile<T>::NR;
  constexpr int BQ = attn_tiles<T>::BQ, BK = attn_tiles<T>::BK;
  constexpr T ninf = -std::numeric_limits<T>::infinity();
  const int L = s.q_len, N = s.kv_len, D = s.head_dim, BH = s.batch * s.heads;
  const layout qa = query_layout(s), ka = key_layout(s);
  if (BH <= 0 || L <= 0) return;
  if (N <= 0 || D <= 0) {
    fill_heads(o, qa, BH, L, std::max(D, 0), T(0));
    std::fill(lse, lse + idx(BH) * L, N <= 0 ? ninf : T(0));
    return;
  }
  const T scale = scale_of<T>(s);
  const T scale2 = scale * T(1.4426950408889634074);  // scores kept in log2 units: exp(x) = 2^(x log2 e)
  const int Dp = round_up(D, NR);
  constexpr idx line = 64 / sizeof(T);                           // packed parts start on a cache line
  const idx kt_head = round_up(idx(round_up(N, NR)) * D, line);  // K^T panels of a head: ceil(N/NR) x (D x NR)
  const idx vb_head = idx(Dp) * N;                               // V panels of one head: Dp/NR x (N x NR)
  const int nqb = (L + BQ - 1) / BQ;
  // Units of query tiles; a thread packs K and V of its head into its own buffer.
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const head_units units(BH, nqb, threads);

#pragma omp parallel num_threads(threads)
  {
    static thread_local blocks::scratch<T> head;
    T* Kt = head.get(std::size_t(kt_head + vb_head));  // K^T and V panels of the head at hand
    T* Vb = Kt + kt_head;
    int packed = -1, biased = -1;
    static thread_local blocks::scratch<T> local;
    T* S = local.get(std::size_t(BQ) * BK + std::size_t(BQ) * Dp + std::size_t(BQ) * D + std::size_t(BQ) * (W + 1) +
                     (mask ? round_up(N, W) : 0));
    T* Oacc = S + BQ * BK;
    T* Qp = Oacc + idx(BQ) * Dp;  // the query tile, scaled by scale log2(e), as A panels
    T* m = Qp + idx(BQ) * D;      // running row max (log2 units)
    T* l = m + BQ;                // running row sums, W lanes per row
    T* kbias = l + idx(BQ) * W;   // the key mask of the head's sequence as score addends (key_bias)
    std::fill(S, S + BQ * BK, T(0));
    const V lane = iota<T>();
    auto add_bias = [&](T* row, int j0, int bc) {
      for (int j = 0; j < bc; j += W) simd::storeu(row + j, simd::loadu(row + j) + simd::loadu(kbias + j0 + j));
    };

#pragma omp for schedule(dynamic, 1)
    for (idx u = 0; u < units.count; ++u) {
      const auto w = units[u];
      const int bh = w.head;
      if (bh != packed) {
        blocks::pack_b(true, k + ka(bh, 0), ka.row, 0, D, 0, N, Kt);
        blocks::pack_b(false, v + ka(bh, 0), ka.row, 0, N, 0, D, Vb);
        packed = bh;
      }
      if (mask && bh / s.heads != biased) {
        biased = bh / s.heads;
        key_bias(mask + idx(biased) * N, N, round_up(N, W), kbias);
      }
      for (int t = w.first; t < w.end; ++t) {
        const int qb = nqb - 1 - t;  // longest (causal) tiles first
        const int i0 = qb * BQ, br = std::min(BQ, L - i0);
        const T* Q = q + qa(bh, i0);
        const int kend = s.causal ? visible_keys(s, i0 + br - 1) : N;  // no row sees a key past this
        const int kfull = s.causal ? visible_keys(s, i0) : N;          // every row sees the keys before this
        std::fill(m, m + br, ninf);
        std::fill(l, l + idx(br) * W, T(0));
        std::fill(Oacc, Oacc + idx(br) * Dp, T(0));
        blocks::pack_a<T>(false, Q, qa.row, 0, br, 0, D, Qp);
        for (idx e = 0, ne = idx(round_up(br, blocks::tile<T>::MR)) * D; e < ne; ++e) Qp[e] *= scale2;
        for (int j0 = 0; j0 < kend; j0 += BK) {
          const int bc = std::min(BK, kend - j0);
          // S = scale log2(e) Q K^T (br x bc)
          const T* Kt_j = Kt + idx(j0) * D;
          blocks::macro_kernel<T>(br, bc, D, Qp, Kt_j, S, BK, T(1), T(0));
          if (mask)
            for (int r = 0; r < br; ++r) add_bias(S + r * BK, j0, bc);
          const bool masked = j0 + bc > kfull;
          for (int r = 0; r < br; ++r) {
            T* row = S + r * BK;
            const int n = masked ? std::clamp(visible_keys(s, i0 + r) - j0, 0, bc) : bc;
            if (n == 0) {
              std::fill(row, row + round_up(bc, W), T(0));
              continue;
            }
            // One pass: p = 2^(s - m) against the running max m of the earlier tiles, which needs no
            // rescaling of Oacc and l. It stays exact while no score exceeds m by more than 64 (p <= 2^64),
            // the usual case; the first tile of a row, or a tile that breaks the bound (its scores are
            // recomputed), takes the two-pass path that moves m to the new max.
            if (m[r] != ninf) {
              const V vm = simd::splat(m[r]);
              V vsum{}, vmax = simd::splat(ninf);
              for (int j = 0; j < bc; j += W) {
                V x = simd::loadu(row + j) - vm;
                if (j + W > n) x = lane + T(j) < T(n) ? x : simd::splat(ninf);
                vmax = simd::max<T>(vmax, x);
                const V p = simd::exp2_softmax(x);
                simd::storeu(row + j, p);
                vsum += p;
              }
              if (!simd::any_greater<T>(vmax, T(64))) {
                simd::storeu(l + idx(r) * W, simd::loadu(l + idx(r) * W) + vsum);
                continue;
              }
              blocks::macro_kernel_strided<T>(1, bc, D, Q + idx(r) * qa.row, qa.row, 1, Kt_j, idx(D) * NR, row, BK,
                                              scale2, T(0));
              if (mask) add_bias(row, j0, bc);
            }
            V vmax = simd::splat(ninf);
            for (int j = 0; j < n; j += W) {
              V x = simd::loadu(row + j);
              if (j + W > n) x = lane + T(j) < T(n) ? x : simd::splat(ninf);
              vmax = simd::max<T>(vmax, x);
            }
            const T m_new = std::max(m[r], simd::hmax<T>(vmax));
            if (m_new == ninf) {  // every key this row has seen so far is masked out
              std::fill(row, row + round_up(bc, W), T(0));
              continue;
            }
            const T c = std::exp2(m[r] - m_new);
            const V vm = simd::splat(m_new);
            V vsum{};
            for (int j = 0; j < bc; j += W) {
              V p = simd::exp2_softmax(simd::loadu(row + j) - vm);
              if (j + W > n) p = lane + T(j) < T(n) ? p : V{};
              simd::storeu(row + j, p);
              vsum += p;
            }
            simd::storeu(l + idx(r) * W, simd::loadu(l + idx(r) * W) * simd::splat(c) + vsum);
            m[r] = m_new;
            if (c != T(1)) {
              const V vc = simd::splat(c);
              T* orow = Oacc + idx(r) * Dp;
              for (int d = 0; d < Dp; d += W) simd::storeu(orow + d, simd::loadu(orow + d) * vc);
            }
          }
          // Oacc += P V (br x Dp)
          blocks::macro_kernel_strided<T>(br, Dp, bc, S, BK, 1, Vb + idx(j0) * NR, idx(N) * NR, Oacc, Dp, T(1), T(1));
        }
        T* O = o + qa(bh, i0);
        T* LSE = lse + idx(bh) * L + i0;
        for (int r = 0; r < br; ++r) {
          const T sum = simd::hsum<T>(simd::loadu(l + idx(r) * W));
          const T inv = sum > T(0) ? T(1) / sum : T(0);
          for (int d = 0; d < D; ++d) O[idx(r) * qa.row + d] = Oacc[idx(r) * Dp + d] * inv;
          LSE[r] = sum > T(0) ? (m[r] + std::log2(sum)) * T(0.69314718055994530942) : ninf;
        }
      }
    }
  }
}

template <class T>
void fused_backward(const attention_shape& s, const T* q, const T* k, const T* v, const T* o, const T* lse,
                    const T* dout, T* dq, T* dk, T* dv, const T* mask) {
  using V = simd::vec<T>;
  constexpr int W = simd::width<T>, NR = blocks::tile<T>::NR;
  constexpr int BQ = attn_tiles<T>::BQ, BK = attn_tiles<T>::BK;
  const int L = s.q_len, N = s.kv_len, D = s.head_dim, BH = s.batch * s.heads;
  const layout qa = query_layout(s), ka = key_layout(s);
  if (BH <= 0 || D <= 0) return;
  if (L <= 0 || N <= 0) {
    fill_heads(dq, qa, BH, std::max(L, 0), D, T(0));
    fill_heads(dk, ka, BH, std::max(N, 0), D, T(0));
    fill_heads(dv, ka, BH, std::max(N, 0), D, T(0));
    return;
  }
  const T scale = scale_of<T>(s);
  const T scale2 = scale * T(1.4426950408889634074);  // scores in log2 units
  const int Dp = round_up(D, NR);
  constexpr idx line = 64 / sizeof(T);                           // packed parts start on a cache line
  const idx kt_head = round_up(idx(round_up(N, NR)) * D, line);  // K^T or V^T panels: ceil(N/NR) x (D x NR)
  const idx kb_head = round_up(idx(Dp) * N, line);               // K panels: Dp/NR x (N x NR)
  const idx qb_head = round_up(idx(Dp) * L, line);               // Q or dO panels: Dp/NR x (L x NR)
  const idx head_q = idx(L) * D;                                 // dq elements per head (dense, extra buffers)
  const int nkb = (N + BK - 1) / BK;
  const int off = N - L;
  // Units of key tiles. A whole head has one writer of its dq, and its thread packs the head's
  // operands into its own buffer when it starts it. The key tiles of a split head are shared out:
  // each thread but the first accumulates their dq in its own buffer, summed at the end. When every
  // head is split, the operands of every head are packed once, up front.
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const head_units units(BH, nkb, threads);
  const bool by_head = units.whole > 0;
  const int whole = units.whole;
  // Every part of the shared buffer starts on 64 bytes, as packed panels must (blocks::check_panels):
  // the packs of all heads follow the dq buffers of threads 1.., whose size (split heads x L x D) is
  // rounded up to it, and each head's packs (K^T, V^T, K, Q, dO panels, then dO.O per row) too.
  const idx split_q = idx(units.split) * head_q;     // dq elements of the split heads
  const idx split_stride = round_up(split_q, line);  // their extra buffers, thread after thread
  const idx head_size = round_up(2 * kt_head + kb_head + 2 * qb_head + L, line);
  static thread_local blocks::scratch<T> shared;
  T* const dq_extra = shared.get(std::size_t((threads - 1) * split_stride + (by_head ? 0 : BH * head_size)));
  T* const packs = dq_extra + (threads - 1) * split_stride;
  auto pack_head = [&](int bh, T* dst) {
    const T* K = k + ka(bh, 0);
    const T* Vh = v + ka(bh, 0);
    const T* Q = q + qa(bh, 0);
    const T* dO = dout + qa(bh, 0);
    const T* O = o + qa(bh, 0);
    blocks::pack_b(true, K, ka.row, 0, D, 0, N, dst);
    blocks::pack_b(true, Vh, ka.row, 0, D, 0, N, dst + kt_head);
    blocks::pack_b(false, K, ka.row, 0, N, 0, D, dst + 2 * kt_head);
    blocks::pack_b(false, Q, qa.row, 0, L, 0, D, dst + 2 * kt_head + kb_head);
    blocks::pack_b(false, dO, qa.row, 0, L, 0, D, dst + 2 * kt_head + kb_head + qb_head);
    T* Dv = dst + 2 * kt_head + kb_head + 2 * qb_head;
    for (int i = 0; i < L; ++i) {
      T acc = 0;
      for (int d = 0; d < D; ++d) acc += dO[idx(i) * qa.row + d] * O[idx(i) * qa.row + d];
      Dv[i] = acc;
    }
  };

#pragma omp parallel num_threads(threads)
  {
    const int tid = omp_get_thread_num();
    T* const extra = tid == 0 ? nullptr : dq_extra + (tid - 1) * split_stride;
    if (extra) std::fill(extra, extra + split_q, T(0));
    static thread_local blocks::scratch<T> head;  // by head: the packed operands of the head at hand
    T* const own = by_head ? head.get(std::size_t(head_size)) : nullptr;
    if (!by_head) {
#pragma omp for schedule(static) nowait
      for (int bh = 0; bh < BH; ++bh) pack_head(bh, packs + bh * head_size);
    }
#pragma omp for schedule(static)
    for (idx e = 0; e < idx(units.split) * L; ++e) {  // the split heads' dq rows, summed into by every thread
      T* row = dq + qa(whole + int(e / L), int(e % L));
      std::fill(row, row + D, T(0));
    }
    int packed = -1, biased = -1;
    static thread_local blocks::scratch<T> local;
    T* S = local.get(3 * std::size_t(BQ) * BK + (mask ? round_up(N, W) : 0));
    T* dS = S + BQ * BK;
    T* At = dS + BQ * BK;     // P^T or dS^T as A panels
    T* kbias = At + BQ * BK;  // the key mask of the head's sequence as score addends (key_bias)
    std::fill(S, S + 3 * BQ * BK, T(0));
    const V lane = iota<T>();

#pragma omp for schedule(dynamic, 1)
    for (idx u = 0; u < units.count; ++u) {
      const auto w = units[u];
      const int bh = w.head;
      if (by_head && bh != packed) {
        pack_head(bh, own);
        if (w.whole) fill_heads(dq + qa(bh, 0), qa, 1, L, D, T(0));
        packed = bh;
      }
      if (mask && bh / s.heads != biased) {
        biased = bh / s.heads;
        key_bias(mask + idx(biased) * N, N, round_up(N, W), kbias);
      }
      const bool own_dq = w.whole || !extra;  // dq itself, or this thread's dense buffer of the split heads
      T* const dq_head = own_dq ? dq + qa(bh, 0) : extra + (bh - whole) * head_q;
      const idx dq_row = own_dq ? qa.row : D;
      const T* Kt = by_head ? own : packs + bh * head_size;
      const T* Vt = Kt + kt_head;
      const T* Kb = Vt + kt_head;
      const T* Qb = Kb + kb_head;
      const T* dOb = Qb + qb_head;
      const T* Dv = dOb + qb_head;  // Dv[i] = dO_i . O_i
      for (int kb = w.first; kb < w.end; ++kb) {
        const int j0 = kb * BK, bc = std::min(BK, N - j0);
        T* dK = dk + ka(bh, j0);
        T* dV = dv + ka(bh, j0);
        for (int j = 0; j < bc; ++j) {
          std::fill(dK + idx(j) * ka.row, dK + idx(j) * ka.row + D, T(0));
          std::fill(dV + idx(j) * ka.row, dV + idx(j) * ka.row + D, T(0));
        }
        const T* Kt_j = Kt + idx(j0) * D;
        const T* Vt_j = Vt + idx(j0) * D;
        const T* Kb_j = Kb + idx(j0) * NR;
        const int q_first = s.causal ? std::max(0, j0 - off) : 0;  // first query that sees key j0
        for (int i0 = q_first / BQ * BQ; i0 < L; i0 += BQ) {
          const int br = std::min(BQ, L - i0);
          const T* Q = q + qa(bh, i0);
          const T* dO = dout + qa(bh, i0);
          const T* LSE = lse + idx(bh) * L + i0;
          const T* Di = Dv + i0;
          // S = scale log2(e) Q K^T, dP = dO V^T (br x bc)
          blocks::macro_kernel_strided<T>(br, bc, D, Q, qa.row, 1, Kt_j, idx(D) * NR, S, BK, scale2, T(0));
          blocks::macro_kernel_strided<T>(br, bc, D, dO, qa.row, 1, Vt_j, idx(D) * NR, dS, BK, T(1), T(0));
          const bool masked = s.causal && j0 + bc > visible_keys(s, i0);
          for (int r = 0; r < br; ++r) {  // P = exp(S - lse) (masked), dS = P (dP - D_i)
            T* prow = S + r * BK;
            T* drow = dS + r * BK;
            const int n = masked ? std::clamp(visible_keys(s, i0 + r) - j0, 0, bc) : bc;
            if (n == 0 || std::isinf(LSE[r])) {
              std::fill(prow, prow + round_up(bc, W), T(0));
              std::fill(drow, drow + round_up(bc, W), T(0));
              continue;
            }
            const V vl = simd::splat(LSE[r] * T(1.4426950408889634074)), vd = simd::splat(Di[r]);
            for (int j = 0; j < bc; j += W) {
              V x = simd::loadu(prow + j) - vl;
              if (mask) x += simd::loadu(kbias + j0 + j);
              V p = simd::exp2_softmax(x);
              if (j + W > n) p = lane + T(j) < T(n) ? p : V{};
              simd::storeu(prow + j, p);
              simd::storeu(drow + j, p * (simd::loadu(drow + j) - vd));
            }
          }
          // dV += P^T dO, dK += scale dS^T Q (bc x D): P^T and dS^T packed as A panels first (contiguous
          // reads in the micro-kernel); dQ += scale dS K (br x D) reads dS in place.
          blocks::pack_a<T>(true, S, BK, 0, bc, 0, br, At);
          blocks::macro_kernel<T>(bc, D, br, At, dOb + idx(i0) * NR, dV, ka.row, T(1), T(1), idx(L) * NR);
          blocks::pack_a<T>(true, dS, BK, 0, bc, 0, br, At);
          blocks::macro_kernel<T>(bc, D, br, At, Qb + idx(i0) * NR, dK, ka.row, scale, T(1), idx(L) * NR);
          blocks::macro_kernel_strided<T>(br, D, bc, dS, BK, 1, Kb_j, idx(N) * NR, dq_head + idx(i0) * dq_row, dq_row,
                                          scale, T(1));
        }
      }
    }
    const int team = omp_get_num_threads();  // may be fewer than asked for (OMP_DYNAMIC)
    if (team > 1) {
#pragma omp for schedule(static)
      for (idx e = 0; e < split_q; ++e) {
        T& to = dq[qa(whole + int(e / head_q), int(e % head_q / D)) + e % D];
        T acc = to;
        for (int t = 1; t < team; ++t) acc += dq_extra[(t - 1) * split_stride + e];
        to = acc;
      }
    }
  }
}

}  // namespace

void attention_forward(const attention_shape& s, const float* q, const float* k, const float* v, float* o, float* lse,
                       const float* key_mask) {
  fused_forward(s, q, k, v, o, lse, key_mask);
}
void attention_forward(const attention_shape& s, const double* q, const double* k, const double* v, double* o,
                       double* lse, const double* key_mask) {
  fused_forward(s, q, k, v, o, lse, key_mask);
}
void attention_backward(const attention_shape& s, const float* q, const float* k, const float* v, const float* o,
                        const float* lse, const float* dout, float* dq, float* dk, float* dv, const float* key_mask) {
  fused_backward(s, q, k, v, o, lse, dout, dq, dk, dv, key_mask);
}
void attention_backward(const attention_shape& s, const double* q, const double* k, const double* v, const double* o,
                        const double* lse, const double* dout, double* dq, double* dk, double* dv,
                        const double* key_mask) {
  fused_backward(s, q, k, v, o, lse, dout, dq, dk, dv, key_mask);
}

void attention_forward_reference(const attention_shape& s, const float* q, const float* k, const float* v, float* o,
                                 float* lse, const float* key_mask) {
  reference_forward(s, q, k, v, o, lse, key_mask);
}
void attention_forward_reference(const attention_shape& s, const double* q, const double* k, const double* v, double* o,
                                 double* lse, const double* key_mask) {
  reference_forward(s, q, k, v, o, lse, key_mask);
}
void attention_backward_reference(const attention_shape& s, const float* q, const float* k, const float* v,
                                  const float*, const float*, const float* dout, float* dq, float* dk, float* dv,
                                  const float* key_mask) {
  reference_backward(s, q, k, v, dout, dq, dk, dv, key_mask);
}
void attention_backward_reference(const attention_shape& s, const double* q, const double* k, const double* v,
                                  const double*, const double*, const double* dout, double* dq, double* dk, double* dv,
                                  const double* key_mask) {
  reference_backward(s, q, k, v, dout, dq, dk, dv, key_mask);
}

}  // namespace ctgraph::kernels
