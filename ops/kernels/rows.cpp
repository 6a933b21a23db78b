// ops/kernels/rows.cpp: the row kernels of layer_norm, softmax, cross-entropy and sums, vectorised.
//
// Written scalar, these loops are chains of dependent adds (a float sum is not reassociated without
// -ffast-math): 4 cycles an element, which made layer_norm and the row sums of its gradient cost as much
// as a third of the gemms around them. Here each sum keeps two vectors of partial sums, and the kernels
// split rows (or, for column sums, columns) across threads when there is enough work.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "ctgraph/kernels.hpp"
#include "ops/kernels/simd.hpp"

namespace ctgraph::kernels {
namespace {

// Below this many elements a parallel region costs more than the work it splits.
constexpr long parallel_elements = 1L << 16;

// f(begin, end) over parts of [0, items), one part per thread when `elements` are enough to split.
template <class F>
void parallel_ranges(long items, long elements, F&& f) {
  const int threads =
      omp_in_parallel() || elements < parallel_elements ? 1 : int(std::min<long>(omp_get_max_threads(), items));
  if (threads <= 1) return f(0L, items);  // no region for one thread: libgomp allocates a team even for one
#pragma omp parallel num_threads(threads)
  {
    const long t = omp_get_thread_num(), nt = omp_get_num_threads();
    f(items * t / nt, items * (t + 1) / nt);
  }
}

// Rows [r0, r1) of R x C split across threads.
template <class F>
void for_rows(long R, long C, F&& f) {
  parallel_ranges(R, R * C, f);
}

// sum_j term(x_j) over n elements; term applies to a vector or to one element alike.
template <class T, class Term>
T sum_of(const T* x, long n, Term term) {
  using V = simd::vec<T>;
  constexpr int W = simd::width<T>;
  V a{}, b{};
  long j = 0;
  for (; j + 2 * W <= n; j += 2 * W) a += term(simd::loadu(x + j)), b += term(simd::loadu(x + j + W));
  if (j + W <= n) a += term(simd::loadu(x + j)), j += W;
  T s = simd::hsum<T>(a + b);
  for (; j < n; ++j) s += term(x[j]);
  return s;
}
constexpr auto identity = [](auto v) { return v; };

template <class T>
T max_of(const T* x, long n) {
  using V = simd::vec<T>;
  constexpr int W = simd::width<T>;
  T m = -std::numeric_limits<T>::infinity();
  long j = 0;
  if (n >= W) {
    V a = simd::loadu(x);
    for (j = W; j + W <= n; j += W) a = simd::max<T>(a, simd::loadu(x + j));
    m = simd::hmax<T>(a);
  }
  for (; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

// sum_j exp(x_j - m), writing the terms to y if y is not null.
template <class T>
T sum_exp(const T* x, long n, T m, T* y) {
  using V = simd::vec<T>;
  constexpr int W = simd::width<T>;
  const V vm = simd::splat(m);
  V a{};
  long j = 0;
  for (; j + W <= n; j += W) {
    const V e = simd::exp(simd::loadu(x + j) - vm);
    if (y) simd::storeu(y + j, e);
    a += e;
  }
  T s = simd::hsum<T>(a);
  for (; j < n; ++j) {
    const T e = std::exp(x[j] - m);
    if (y) y[j] = e;
    s += e;
  }
  return s;
}

template <class T>
void layer_norm_impl(const T* x, T* xhat, T* rstd, long R, long C, T eps) {
  using V = simd::vec<T>;
  constexpr int W = simd::width<T>;
  for_rows(R, C, [&](long r0, long r1) {
    for (long r = r0; r < r1; ++r) {
      const T* xr = x + r * C;
      T* yr = xhat + r * C;
      const T mean = sum_of(xr, C, identity) / T(C);
      const T ss = sum_of(xr, C, [mean](auto v) { return (v - mean) * (v - mean); });
      const T rs = T(1) / std::sqrt(ss / T(C) + eps);
      const V vm = simd::splat(mean), vr = simd::splat(rs);
      long j = 0;
      for (; j + W <= C; j += W) simd::storeu(yr + j, (simd::loadu(xr + j) - vm) * vr);
      for (; j < C; ++j) yr[j] = (xr[j] - mean) * rs;
      rstd[r] = rs;
    }
  });
}

template <class T>
void softmax_impl(T* y, const T* x, long R, long C, bool log) {
  using V = simd::vec<T>;
  constexpr int W = simd::width<T>;
  for_rows(R, C, [&](long r0, long r1) {
    for (long r = r0; r < r1; ++r) {
      const T* xr = x + r * C;
      T* yr = y + r * C;
      const T mx = max_of(xr, C);
      const T s = sum_exp(xr, C, mx, log ? nullptr : yr);
      long j = 0;
      if (log) {
        const T shift = mx + std::log(s);
        const V vs = simd::splat(shift);
        for (; j + W <= C; j += W) simd::storeu(yr + j, simd::loadu(xr + j) - vs);
        for (; j < C; ++j) yr[j] = xr[j] - shift;
      } else {
        const T inv = T(1) / s;
        const V vi = simd::splat(inv);
        for (; j + W <= C; j += W) simd::storeu(yr + j, simd::loadu(yr + j) * vi);
        for (; j < C; ++j) yr[j] *= inv;
      }
    }
  });
}

template <class T>
void sum_rows_impl(const T* x, T* y, long R, long C) {
  for_rows(R, C, [&](long r0, long r1) {
    for (long r = r0; r < r1; ++r) y[r] = sum_of(x + r * C, C, identity);
  });
}

// y[j] = sum_r x[r, j] over columns [c0, c1), four rows per pass over y.
template <class T>
void sum_columns_range(const T* x, T* y, long R, long C, long c0, long c1) {
  std::fill(y + c0, y + c1, T(0));
  long r = 0;
  for (; r + 4 <= R; r += 4) {
    const T *x0 = x + r * C, *x1 = x0 + C, *x2 = x1 + C, *x3 = x2 + C;
#pragma omp simd
    for (long j = c0; j < c1; ++j) y[j] += (x0[j] + x1[j]) + (x2[j] + x3[j]);
  }
  for (; r < R; ++r) {
    const T* xr = x + r * C;
#pragma omp simd
    for (long j = c0; j < c1; ++j) y[j] += xr[j];
  }
}

template <class T>
void sum_columns_impl(const T* x, T* y, long R, long C) {
  constexpr long W = simd::width<T>;  // threads take whole vectors of columns
  parallel_ranges((C + W - 1) / W, R * C,
                  [&](long b0, long b1) { sum_columns_range(x, y, R, C, std::min(C, b0 * W), std::min(C, b1 * W)); });
}

template <class T>
T logsumexp_impl(const T* x, long n) {
  const T mx = max_of(x, n);
  if (mx == -std::numeric_limits<T>::infinity()) return mx;
  return mx + std::log(sum_exp(x, n, mx, static_cast<T*>(nullptr)));
}

}  // namespace

void layer_norm_rows(const float* x, float* xhat, float* rstd, long R, long C, float eps) {
  layer_norm_impl(x, xhat, rstd, R, C, eps);
}
void layer_norm_rows(const double* x, double* xhat, double* rstd, long R, long C, double eps) {
  layer_norm_impl(x, xhat, rstd, R, C, eps);
}
void softmax_rows(float* y, const float* x, long R, long C, bool log) { softmax_impl(y, x, R, C, log); }
void softmax_rows(double* y, const double* x, long R, long C, bool log) { softmax_impl(y, x, R, C, log); }
void sum_rows(const float* x, float* y, long R, long C) { sum_rows_impl(x, y, R, C); }
void sum_rows(const double* x, double* y, long R, long C) { sum_rows_impl(x, y, R, C); }
void sum_columns(const float* x, float* y, long R, long C) { sum_columns_impl(x, y, R, C); }
void sum_columns(const double* x, double* y, long R, long C) { sum_columns_impl(x, y, R, C); }
float logsumexp(const float* x, long n) { return logsumexp_impl(x, n); }
double logsumexp(const double* x, long n) { return logsumexp_impl(x, n); }

}  // namespace ctgraph::kernels
