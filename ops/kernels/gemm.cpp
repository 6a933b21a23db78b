// ops/kernels/gemm.cpp: gemm for float and double (row-major, BLAS semantics).
#include <omp.h>

#include <algorithm>
#include <cstddef>

#include "ctgraph/kernels.hpp"

namespace ctgraph::kernels {
namespace {

using idx = std::ptrdiff_t;

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

// One row of C += alpha * op(A)(i,:) * op(B).
template <class T>
void row_update(bool ta, bool tb, int i, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb, T* c) {
  for (int k = 0; k < K; ++k) {
    const T a = alpha * (ta ? A[idx(k) * lda + i] : A[idx(i) * lda + k]);
    if (!tb) {
      const T* b = B + idx(k) * ldb;
      for (int j = 0; j < N; ++j) c[j] += a * b[j];
    } else {
      for (int j = 0; j < N; ++j) c[j] += a * B[idx(j) * ldb + k];
    }
  }
}

}  // namespace

namespace detail {
template <class T>
void gemm_small(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
                T beta, T* C, int ldc) {
  scale_c(M, N, beta, C, ldc);
  if (K == 0 || alpha == T(0)) return;
  for (int i = 0; i < M; ++i) row_update(trans_a, trans_b, i, N, K, alpha, A, lda, B, ldb, C + idx(i) * ldc);
}
template void gemm_small<float>(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*,
                                int);
template void gemm_small<double>(bool, bool, int, int, int, double, const double*, int, const double*, int, double,
                                 double*, int);
}  // namespace detail

template <class T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb, T beta,
          T* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  scale_c(M, N, beta, C, ldc);
  if (K == 0 || alpha == T(0)) return;
#pragma omp parallel for schedule(static) if (idx(M) * N * K > 32 * 32 * 32)
  for (int i = 0; i < M; ++i) row_update(trans_a, trans_b, i, N, K, alpha, A, lda, B, ldb, C + idx(i) * ldc);
}

template void gemm<float>(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*, int);
template void gemm<double>(bool, bool, int, int, int, double, const double*, int, const double*, int, double, double*,
                           int);

}  // namespace ctgraph::kernels
