// ops/kernels/attention.cpp: fused attention forward/backward and the unfused reference.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "ctgraph/kernels.hpp"

namespace ctgraph::kernels {
namespace {

using idx = std::ptrdiff_t;

template <class T>
T scale_of(const attention_shape& s) {
  return s.scale != 0 ? T(s.scale) : T(1) / std::sqrt(T(s.head_dim));
}

// Number of keys query row i may see: all, or j <= i + (kv_len - q_len) when causal.
inline int visible_keys(const attention_shape& s, int i) {
  if (!s.causal) return s.kv_len;
  return std::clamp(i + 1 + (s.kv_len - s.q_len), 0, s.kv_len);
}

// ---------------------------------------------------------------------------------------------
// Unfused reference: S = scale q k^T (gemm), masked row softmax, o = P v (gemm).

// Row softmax of S (R, C) in place over the first n[r] columns; the rest is set to 0.
// Writes lse[r] = log sum exp(S[r, :n[r]]) (-inf for an empty row).
template <class T>
void softmax_rows_masked(const attention_shape& s, T* S, T* lse) {
  const int R = s.q_len, C = s.kv_len;
  for (int r = 0; r < R; ++r) {
    T* row = S + idx(r) * C;
    const int n = visible_keys(s, r);
    if (n == 0) {
      std::fill(row, row + C, T(0));
      lse[r] = -std::numeric_limits<T>::infinity();
      continue;
    }
    T m = row[0];
    for (int j = 1; j < n; ++j) m = std::max(m, row[j]);
    T sum = 0;
    for (int j = 0; j < n; ++j) sum += (row[j] = std::exp(row[j] - m));
    const T inv = T(1) / sum;
    for (int j = 0; j < n; ++j) row[j] *= inv;
    std::fill(row + n, row + C, T(0));
    lse[r] = m + std::log(sum);
  }
}

template <class T>
void reference_forward(const attention_shape& s, const T* q, const T* k, const T* v, T* o, T* lse) {
  const int L = s.q_len, N = s.kv_len, D = s.head_dim;
  const T scale = scale_of<T>(s);
  std::vector<T> S(idx(L) * N);
  for (int bh = 0; bh < s.batch * s.heads; ++bh) {
    const T* qh = q + idx(bh) * L * D;
    const T* kh = k + idx(bh) * N * D;
    const T* vh = v + idx(bh) * N * D;
    gemm<T>(false, true, L, N, D, scale, qh, D, kh, D, T(0), S.data(), N);
    softmax_rows_masked(s, S.data(), lse + idx(bh) * L);
    gemm<T>(false, false, L, D, N, T(1), S.data(), N, vh, D, T(0), o + idx(bh) * L * D, D);
  }
}

template <class T>
void reference_backward(const attention_shape& s, const T* q, const T* k, const T* v, const T* dout, T* dq, T* dk,
                        T* dv) {
  const int L = s.q_len, N = s.kv_len, D = s.head_dim;
  const T scale = scale_of<T>(s);
  std::vector<T> P(idx(L) * N), dP(idx(L) * N), lse(L);
  for (int bh = 0; bh < s.batch * s.heads; ++bh) {
    const T* qh = q + idx(bh) * L * D;
    const T* kh = k + idx(bh) * N * D;
    const T* vh = v + idx(bh) * N * D;
    const T* doh = dout + idx(bh) * L * D;
    gemm<T>(false, true, L, N, D, scale, qh, D, kh, D, T(0), P.data(), N);
    softmax_rows_masked(s, P.data(), lse.data());
    gemm<T>(true, false, N, D, L, T(1), P.data(), N, doh, D, T(0), dv + idx(bh) * N * D, D);  // dV = P^T dO
    gemm<T>(false, true, L, N, D, T(1), doh, D, vh, D, T(0), dP.data(), N);                   // dP = dO V^T
    for (int r = 0; r < L; ++r) {  // dS = P * (dP - rowsum(P * dP))
      T* p = P.data() + idx(r) * N;
      T* dp = dP.data() + idx(r) * N;
      T rs = 0;
      for (int j = 0; j < N; ++j) rs += p[j] * dp[j];
      for (int j = 0; j < N; ++j) dp[j] = p[j] * (dp[j] - rs);
    }
    gemm<T>(false, false, L, D, N, scale, dP.data(), N, kh, D, T(0), dq + idx(bh) * L * D, D);  // dQ = s dS K
    gemm<T>(true, false, N, D, L, scale, dP.data(), N, qh, D, T(0), dk + idx(bh) * N * D, D);   // dK = s dS^T Q
  }
}

// ---------------------------------------------------------------------------------------------
// Fused path (scalar version): one query row at a time, online softmax.

template <class T>
void fused_forward(const attention_shape& s, const T* q, const T* k, const T* v, T* o, T* lse) {
  const int L = s.q_len, N = s.kv_len, D = s.head_dim;
  const T scale = scale_of<T>(s);
  const idx rows = idx(s.batch) * s.heads * L;
#pragma omp parallel
  {
    std::vector<T> acc(D);
#pragma omp for schedule(static)
    for (idx r = 0; r < rows; ++r) {
      const idx bh = r / L;
      const int i = int(r % L);
      const T* qi = q + r * D;
      const T* kh = k + bh * N * D;
      const T* vh = v + bh * N * D;
      const int n = visible_keys(s, i);
      T m = -std::numeric_limits<T>::infinity(), l = 0;
      std::fill(acc.begin(), acc.end(), T(0));
      for (int j = 0; j < n; ++j) {
        T sc = 0;
        for (int d = 0; d < D; ++d) sc += qi[d] * kh[idx(j) * D + d];
        sc *= scale;
        const T mn = std::max(m, sc);
        const T c = std::exp(m - mn), p = std::exp(sc - mn);
        for (int d = 0; d < D; ++d) acc[d] = acc[d] * c + p * vh[idx(j) * D + d];
        l = l * c + p;
        m = mn;
      }
      T* oi = o + r * D;
      const T inv = n > 0 ? T(1) / l : T(0);
      for (int d = 0; d < D; ++d) oi[d] = acc[d] * inv;
      lse[r] = n > 0 ? m + std::log(l) : -std::numeric_limits<T>::infinity();
    }
  }
}

template <class T>
void fused_backward(const attention_shape& s, const T* q, const T* k, const T* v, const T* o, const T* lse,
                    const T* dout, T* dq, T* dk, T* dv) {
  const int L = s.q_len, N = s.kv_len, D = s.head_dim;
  const T scale = scale_of<T>(s);
  const int BH = s.batch * s.heads;
  // Parallel over heads; inside a head, one query row at a time (O(N d) memory).
#pragma omp parallel for schedule(dynamic)
  for (int bh = 0; bh < BH; ++bh) {
    const T* qh = q + idx(bh) * L * D;
    const T* kh = k + idx(bh) * N * D;
    const T* vh = v + idx(bh) * N * D;
    const T* oh = o + idx(bh) * L * D;
    const T* doh = dout + idx(bh) * L * D;
    T* dqh = dq + idx(bh) * L * D;
    T* dkh = dk + idx(bh) * N * D;
    T* dvh = dv + idx(bh) * N * D;
    std::fill(dkh, dkh + idx(N) * D, T(0));
    std::fill(dvh, dvh + idx(N) * D, T(0));
    for (int i = 0; i < L; ++i) {
      const T* qi = qh + idx(i) * D;
      const T* doi = doh + idx(i) * D;
      T* dqi = dqh + idx(i) * D;
      std::fill(dqi, dqi + D, T(0));
      const int n = visible_keys(s, i);
      if (n == 0) continue;
      T Di = 0;
      for (int d = 0; d < D; ++d) Di += doi[d] * oh[idx(i) * D + d];
      const T li = lse[idx(bh) * L + i];
      for (int j = 0; j < n; ++j) {
        const T* kj = kh + idx(j) * D;
        const T* vj = vh + idx(j) * D;
        T sc = 0, dp = 0;
        for (int d = 0; d < D; ++d) {
          sc += qi[d] * kj[d];
          dp += doi[d] * vj[d];
        }
        const T p = std::exp(sc * scale - li);
        const T ds = p * (dp - Di) * scale;
        for (int d = 0; d < D; ++d) {
          dvh[idx(j) * D + d] += p * doi[d];
          dqi[d] += ds * kj[d];
          dkh[idx(j) * D + d] += ds * qi[d];
        }
      }
    }
  }
}

}  // namespace

void attention_forward(const attention_shape& s, const float* q, const float* k, const float* v, float* o, float* lse) {
  fused_forward(s, q, k, v, o, lse);
}
void attention_forward(const attention_shape& s, const double* q, const double* k, const double* v, double* o,
                       double* lse) {
  fused_forward(s, q, k, v, o, lse);
}
void attention_backward(const attention_shape& s, const float* q, const float* k, const float* v, const float* o,
                        const float* lse, const float* dout, float* dq, float* dk, float* dv) {
  fused_backward(s, q, k, v, o, lse, dout, dq, dk, dv);
}
void attention_backward(const attention_shape& s, const double* q, const double* k, const double* v, const double* o,
                        const double* lse, const double* dout, double* dq, double* dk, double* dv) {
  fused_backward(s, q, k, v, o, lse, dout, dq, dk, dv);
}

void attention_forward_reference(const attention_shape& s, const float* q, const float* k, const float* v, float* o,
                                 float* lse) {
  reference_forward(s, q, k, v, o, lse);
}
void attention_forward_reference(const attention_shape& s, const double* q, const double* k, const double* v, double* o,
                                 double* lse) {
  reference_forward(s, q, k, v, o, lse);
}
void attention_backward_reference(const attention_shape& s, const float* q, const float* k, const float* v,
                                  const float*, const float*, const float* dout, float* dq, float* dk, float* dv) {
  reference_backward(s, q, k, v, dout, dq, dk, dv);
}
void attention_backward_reference(const attention_shape& s, const double* q, const double* k, const double* v,
                                  const double*, const double*, const double* dout, double* dq, double* dk,
                                  double* dv) {
  reference_backward(s, q, k, v, dout, dq, dk, dv);
}

}  // namespace ctgraph::kernels
