// ops/kernels/optim.cpp: the optimizers' element loops, compiled once into the library, where
// they vectorise: this file is built with -fno-math-errno (sqrt then has no errno path), and
// each combination of options is its own loop, with no branch inside.
#include <omp.h>

#include <cmath>
#include <cstddef>

#include "ctgraph/kernels.hpp"

namespace ctgraph::kernels {
namespace {

// Clip, L2 and decoupled decay are template flags: the common step (none of them) is the
// plainest loop.
template <class T, bool Clip, bool L2, bool Decay, bool Ams>
void adam_loop(const adam_step<T>& s, std::size_t begin, std::size_t end, T* __restrict p, const T* __restrict g,
               T* __restrict m, T* __restrict v, T* __restrict vmax) {
  const T a1 = s.a1, a2 = s.a2;
#pragma omp simd
  for (std::size_t i = begin; i < end; ++i) {
    T d = Clip ? g[i] * s.clip : g[i];
    T pi = p[i];
    if constexpr (Decay) pi = pi * s.decay;
    if constexpr (L2) d = d + s.l2 * pi;
    const T mi = m[i] * s.b1 + d * a1;
    T vi = v[i] * s.b2 + a2 * d * d;
    m[i] = mi;
    v[i] = vi;
    if constexpr (Ams) vi = vmax[i] = vmax[i] < vi ? vi : vmax[i];
    const T denom = std::sqrt(vi) / s.bc2_sqrt + s.eps;
    p[i] = pi - s.step_size * (mi / denom);
  }
}

template <class T>
void adam_range(const adam_step<T>& s, std::size_t begin, std::size_t end, T* p, const T* g, T* m, T* v, T* vmax) {
  const bool clip = s.clip != T(1), l2 = s.l2 != T(0), decay = s.decay != T(1);
  if (vmax) return adam_loop<T, true, true, true, true>(s, begin, end, p, g, m, v, vmax);  // rare: one general loop
  if (!clip && !l2 && !decay) return adam_loop<T, false, false, false, false>(s, begin, end, p, g, m, v, vmax);
  if (!clip && !l2) return adam_loop<T, false, false, true, false>(s, begin, end, p, g, m, v, vmax);
  if (!clip && !decay) return adam_loop<T, false, true, false, false>(s, begin, end, p, g, m, v, vmax);
  adam_loop<T, true, true, true, false>(s, begin, end, p, g, m, v, vmax);
}

template <class T>
void adam_any(const adam_step<T>& s, std::size_t n, T* p, const T* g, T* m, T* v, T* vmax) {
  // Below ~64K elements a second thread costs more than the loop (a few microseconds).
  const int threads = n < (std::size_t(1) << 16) || omp_in_parallel() ? 1 : omp_get_max_threads();
  if (threads == 1) return adam_range(s, 0, n, p, g, m, v, vmax);
#pragma omp parallel num_threads(threads)
  {
    const std::size_t t = static_cast<std::size_t>(omp_get_thread_num()), nt = static_cast<std::size_t>(threads);
    // Ranges on 16-element boundaries: each thread's loop starts on a full vector.
    const std::size_t chunk = (n / nt + 15) / 16 * 16;
    const std::size_t b = t * chunk < n ? t * chunk : n, e = t + 1 == nt || b + chunk > n ? n : b + chunk;
    adam_range(s, b, e, p, g, m, v, vmax);
  }
}

}  // namespace

void adam_update(const adam_step<float>& s, std::size_t n, float* p, const float* g, float* m, float* v, float* vmax) {
  adam_any(s, n, p, g, m, v, vmax);
}
void adam_update(const adam_step<double>& s, std::size_t n, double* p, const double* g, double* m, double* v,
                 double* vmax) {
  adam_any(s, n, p, g, m, v, vmax);
}

}  // namespace ctgraph::kernels
