// <ctgraph/kernels.hpp>: the compiled kernels (gemm, fused attention) as plain functions.
//
// Kernels know nothing of graphs: they take pointers, leading dimensions and sizes, all
// row-major, and thread through OpenMP (honouring omp_set_num_threads). The SIMD code lives
// in ops/kernels/*.cpp; this header is deliberately light (no intrinsics, no heavy includes)
// because graph code includes it.
#pragma once
#include <cstddef>

namespace ctgraph::kernels {

/// C = alpha * op(A) * op(B) + beta * C, row-major (BLAS semantics).
///   op(A): (M,K), stored as A (M,K) with leading dimension lda, or as A (K,M) if trans_a.
///   op(B): (K,N), stored as B (K,N) with leading dimension ldb, or as B (N,K) if trans_b.
///   C: (M,N) with leading dimension ldc.
/// @pre  M, N, K >= 0; lda >= (trans_a ? M : K); ldb >= (trans_b ? K : N); ldc >= N
/// @post with beta == 0, C is written without being read (NaN in C on entry does not propagate)
/// Instantiated for float and double. Packed, cache-blocked, register-tiled SIMD micro-kernel.
template <class T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb, T beta,
          T* C, int ldc);

extern template void gemm<float>(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*,
                                 int);
extern template void gemm<double>(bool, bool, int, int, int, double, const double*, int, const double*, int, double,
                                  double*, int);

/// C = alpha * op(A) * op(B) + D: gemm whose addend is D (leading dimension ldd; 0 adds row 0 of D to every
/// row of C, a bias) instead of beta * C. The product of few rows by a transposed B (x W^T) adds D as it
/// writes C; other shapes copy D into C first. @pre D does not overlap C
template <class T>
void gemm_add(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
              const T* D, int ldd, T* C, int ldc);
extern template void gemm_add<float>(bool, bool, int, int, int, float, const float*, int, const float*, int,
                                     const float*, int, float*, int);
extern template void gemm_add<double>(bool, bool, int, int, int, double, const double*, int, const double*, int,
                                      const double*, int, double*, int);

namespace detail {
/// Small unpacked gemm for tiny compile-time shapes (no packing, no threads). Same contract as gemm.
template <class T>
void gemm_small(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
                T beta, T* C, int ldc);
extern template void gemm_small<float>(bool, bool, int, int, int, float, const float*, int, const float*, int, float,
                                       float*, int);
extern template void gemm_small<double>(bool, bool, int, int, int, double, const double*, int, const double*, int,
                                        double, double*, int);
}  // namespace detail

/// gemm with compile-time sizes and transposes, for the fixed shapes of a compiled graph.
/// Dispatch:
///   [1] M*N*K <= 32^3: a single-threaded unpacked register loop (packing and threads cost more than they save);
///   [2] otherwise: the packed, threaded kernel.
/// Leading dimensions default to the dense ones.
template <int M, int N, int K, bool TA, bool TB, class T>
inline void gemm_fixed(T alpha, const T* A, const T* B, T beta, T* C, int lda = TA ? M : K, int ldb = TB ? K : N,
                       int ldc = N) {
  static_assert(M >= 0 && N >= 0 && K >= 0, "gemm_fixed: sizes must be non-negative");
  if constexpr (static_cast<long long>(M) * N * K <= 32 * 32 * 32) {
    detail::gemm_small<T>(TA, TB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);  // Dispatch [1]
  } else {
    gemm<T>(TA, TB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);  // Dispatch [2]
  }
}

/// Where the rows of q, k, v (and o, dq, dk, dv, dout) lie: row i of head h of sequence b starts at element
/// b * batch + h * head + i * row, and its head_dim features are contiguous. All zero (the default): dense
/// (batch, heads, len, head_dim). A sequence-first projection [len, batch, heads * head_dim], as
/// torch.nn.MultiheadAttention lays it out, is {heads * head_dim, head_dim, batch * heads * head_dim}: the
/// heads are read where the projection wrote them, with no permute.
struct attention_layout {
  long batch = 0;  ///< elements from one sequence to the next
  long head = 0;   ///< elements from one head to the next
  long row = 0;    ///< elements from one position to the next
};

/// Shape of one attention call. Tensors are row-major, by default dense:
///   q, o: (batch, heads, q_len, head_dim); k, v: (batch, heads, kv_len, head_dim); lse: (batch, heads, q_len),
///   always dense; key_mask (optional): (batch, kv_len).
struct attention_shape {
  int batch, heads, q_len, kv_len, head_dim;
  bool causal = false;           ///< If set, query i sees keys j <= i + (kv_len - q_len).
  double scale = 0;              ///< Factor on the scores; 0 means 1/sqrt(head_dim) (double: exact in double graphs).
  attention_layout q_layout{};   ///< of q, o, dq and dout
  attention_layout kv_layout{};  ///< of k, v, dk and dv
};
/// @var attention_shape::batch
/// Number of sequences.
/// @var attention_shape::heads
/// Attention heads per sequence.
/// @var attention_shape::q_len
/// Queries per head.
/// @var attention_shape::kv_len
/// Keys (and values) per head.
/// @var attention_shape::head_dim
/// Features per query, key and value.

/// The (query, key) pairs an attention call scores: batch x heads x q_len x kv_len, fewer when causal.
constexpr double visible_pairs(const attention_shape& s) {
  double n = 0;
  for (int i = 0; i < s.q_len; ++i) {
    const int seen = s.causal ? i + 1 + (s.kv_len - s.q_len) : s.kv_len;
    n += seen < 0 ? 0 : seen > s.kv_len ? s.kv_len : seen;
  }
  return n * s.batch * s.heads;
}

/// Fused attention forward (FlashAttention-2 style): o = softmax(scale * q k^T [causal mask]) v.
/// Tiles queries and keys, keeps a running row max and sum, never materialises the score matrix;
/// writes lse = log-sum-exp of each row of scaled (masked) scores, kept for backward.
/// key_mask, if given: key j of sequence b is seen only where key_mask[b * kv_len + j] != 0 (a padding mask,
/// 1 at real keys and 0 at padded ones), on top of the causal rule.
/// A query row that sees no key (causal with q_len > kv_len, or every key masked) gets o = 0 and lse = -inf.
/// Parallel over batch x heads x query blocks. Extra memory: K and V packed once (2 x the size of k),
/// plus a few tiles per thread; kept by the calling thread for reuse, so repeated calls allocate nothing.
void attention_forward(const attention_shape&, const float* q, const float* k, const float* v, float* o, float* lse,
                       const float* key_mask = nullptr);
void attention_forward(const attention_shape&, const double* q, const double* k, const double* v, double* o,
                       double* lse, const double* key_mask = nullptr);

/// Fused attention backward: recomputes the probabilities from q, k and lse; dq, dk, dv are
/// overwritten (not accumulated). Parallel over batch x heads x key blocks. Extra memory O(N d):
/// packed copies of k, v, q, dout (about 5 x the size of q for self-attention) and one dq per extra thread.
/// @pre o and lse come from attention_forward on the same q, k, v, shape and key_mask
void attention_backward(const attention_shape&, const float* q, const float* k, const float* v, const float* o,
                        const float* lse, const float* dout, float* dq, float* dk, float* dv,
                        const float* key_mask = nullptr);
void attention_backward(const attention_shape&, const double* q, const double* k, const double* v, const double* o,
                        const double* lse, const double* dout, double* dq, double* dk, double* dv,
                        const double* key_mask = nullptr);

/// Unfused attention from the library's own gemm and a row softmax: materialises the
/// (q_len, kv_len) scores of one head at a time. Test oracle and the benchmark's "unfused" row.
/// Same contract as attention_forward / attention_backward (the backward does not read o or lse:
/// it recomputes the softmax itself).
void attention_forward_reference(const attention_shape&, const float* q, const float* k, const float* v, float* o,
                                 float* lse, const float* key_mask = nullptr);
void attention_forward_reference(const attention_shape&, const double* q, const double* k, const double* v, double* o,
                                 double* lse, const double* key_mask = nullptr);
void attention_backward_reference(const attention_shape&, const float* q, const float* k, const float* v,
                                  const float* o, const float* lse, const float* dout, float* dq, float* dk, float* dv,
                                  const float* key_mask = nullptr);
void attention_backward_reference(const attention_shape&, const double* q, const double* k, const double* v,
                                  const double* o, const double* lse, const double* dout, double* dq, double* dk,
                                  double* dv, const double* key_mask = nullptr);

/// The coefficients of one Adam (AdamW) update, torch.optim's rule (cg::adam, cg::adamw):
///   d = clip g + l2 p',  p' = decay p,  m = b1 m + (1 - b1) d,  v = b2 v + (1 - b2) d^2,
///   p = p' - step_size m / (sqrt(v) / bc2_sqrt + eps),  v replaced by max(vmax, v) with AMSGrad.
template <class T>
struct adam_step {
  T clip = 1;       ///< gradient factor (norm clipping); 1: none
  T l2 = 0;         ///< weight decay as an L2 term of the gradient (Adam); 0: none
  T decay = 1;      ///< decoupled weight decay, 1 - lr * weight_decay (AdamW); 1: none
  T b1 = 0;         ///< decay rate of the first moment
  T b2 = 0;         ///< decay rate of the second moment
  T a1 = 1;         ///< 1 - b1, rounded from double as torch does
  T a2 = 1;         ///< 1 - b2, rounded from double as torch does
  T step_size = 0;  ///< lr / (1 - b1^t)
  T bc2_sqrt = 1;   ///< sqrt(1 - b2^t)
  T eps = 0;        ///< added to the denominator
};

/// One Adam update of n elements: p, m, v (and vmax, if not null: AMSGrad) updated in place from g.
/// Vectorised, one loop per combination of options; threads for large n.
void adam_update(const adam_step<float>&, std::size_t n, float* p, const float* g, float* m, float* v, float* vmax);
void adam_update(const adam_step<double>&, std::size_t n, double* p, const double* g, double* m, double* v,
                 double* vmax);

/// @name Row kernels
/// Over R rows of C contiguous elements (a tensor's last axis), vectorised; rows are split across threads
/// when there are at least 2^16 elements and the caller is not in a parallel region.
/// @{

/// layer_norm's normalisation of each row: xhat = (x - mean) rstd, rstd = 1 / sqrt(var + eps), the variance
/// biased (torch's). xhat is R x C, rstd R.
void layer_norm_rows(const float* x, float* xhat, float* rstd, long R, long C, float eps);
void layer_norm_rows(const double* x, double* xhat, double* rstd, long R, long C, double eps);
/// y = softmax(x) of each row, or log_softmax(x) if `log`. y may be x.
void softmax_rows(float* y, const float* x, long R, long C, bool log);
void softmax_rows(double* y, const double* x, long R, long C, bool log);
/// y[r] = sum over j of x[r, j].
void sum_rows(const float* x, float* y, long R, long C);
void sum_rows(const double* x, double* y, long R, long C);
/// y[j] = sum over r of x[r, j] (a bias gradient); columns are split across threads.
void sum_columns(const float* x, float* y, long R, long C);
void sum_columns(const double* x, double* y, long R, long C);
/// log sum_j exp(x_j) of n elements, from their maximum (-inf if every element is -inf).
float logsumexp(const float* x, long n);
double logsumexp(const double* x, long n);
/// @}

}  // namespace ctgraph::kernels
