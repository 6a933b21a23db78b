// ops/kernels/rnn.cpp: fused LSTM and GRU gate kernels (contract in <ctgraph/rnn_kernels.hpp>).
//
// The loops are plain scalar code over j < H, marked `omp simd` so that g++ vectorises them at -O2 too (its
// cost model there gives up on loops that need a remainder); no libm call is left in them. sigmoid and tanh
// stand on one exp core:
//   y = n ln2 + r, |r| <= ln2/2, n = round(y / ln2); r exact (Cody-Waite: ln2 in two parts);
//   q = expm1(r) by its Taylor series (to r^8/8! in float, r^13/13! in double: truncation < 0.3 ulp);
//   2^n written into the exponent bits;  exp(y) = 2^n (1 + q),  expm1(y) = 2^n q + (2^n - 1).
// Only y <= 0 is needed, so nothing overflows:
//   sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) below, with e = exp(-|x|);
//   tanh(x) = sign(x) * -m / (2 + m), m = expm1(-2|x|): accurate near 0, where 1 - exp(-2|x|) would cancel.
// Measured (tests/kernels/rnn.test.cpp, 30,000 inputs): relative error below 1.5 eps in float and double.
#include <omp.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ctgraph/rnn_kernels.hpp"

namespace ctgraph::kernels {
namespace {

using idx = std::ptrdiff_t;

template <class T>
struct fp;
template <>
struct fp<float> {
  using bits = std::uint32_t;
  static constexpr int mantissa = 23, bias = 127, degree = 8;
  static constexpr float shifter = 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer
  static constexpr float log2e = 1.44269504088896341f;
  static constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;  // ln2_hi: 9 bits, n ln2_hi exact
  static constexpr float lowest = -88.f;  // n >= -127; at -127 the exponent field, and 2^n, is 0
};
template <>
struct fp<double> {
  using bits = std::uint64_t;
  static constexpr int mantissa = 52, bias = 1023, degree = 13;
  static constexpr double shifter = 6755399441055744.;  // 1.5 * 2^52
  static constexpr double log2e = 1.4426950408889634074;
  static constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;  // 32 bits
  static constexpr double lowest = -709.;                                                            // n >= -1023
};

// 1 / (k + 1)!, k < degree: expm1(r) = r (1 + r/2! + r^2/3! + ...).
template <class T>
constexpr auto taylor = [] {
  std::array<T, fp<T>::degree> c{};
  double f = 1;
  for (int k = 0; k < fp<T>::degree; ++k) c[k] = T(1 / (f *= k + 1));
  return c;
}();

// y = n ln2 + r: returns expm1(r) and 2^n, for y <= 0. y is clamped at `lowest` (fp<T>::lowest), where n is
// one below the smallest normal exponent and 2^n comes out as 0: results below the normal range are flushed
// to zero without a select of their own. NaN passes the clamp and stays NaN.
template <class T>
struct exp_parts {
  T q, scale;
};
template <class T>
[[gnu::always_inline]] inline exp_parts<T> split_exp(T y, T lowest) {
  using F = fp<T>;
  using U = typename F::bits;
  y = y < lowest ? lowest : y;
  const T shifted = y * F::log2e + F::shifter;  // round(y / ln2) in the low mantissa bits
  const T n = shifted - F::shifter;
  const T r = (y - n * F::ln2_hi) - n * F::ln2_lo;
  T p = taylor<T>[F::degree - 1];
#pragma GCC unroll 16
  for (int k = F::degree - 2; k >= 0; --k) p = p * r + taylor<T>[k];
  // The mantissa holds 2^(mantissa-1) + n: shifted up, only n is left, in the exponent field.
  const U e = (std::bit_cast<U>(shifted) << F::mantissa) + (U(F::bias) << F::mantissa);
  return {p * r, std::bit_cast<T>(e)};
}

// The clamp bound, read once per row through a volatile: as a constant, it lets g++ 12 split off the
// clamped path (whose results are then constants) as a branch, and a branch in the loop stops vectorisation.
template <class T>
inline volatile T clamp_bound = fp<T>::lowest;

template <class T>
[[gnu::always_inline]] inline T sigmoid(T x, T lowest) {
  const T y = -std::abs(x);
  const auto [q, scale] = split_exp(y, lowest);
  const T e = scale * q + scale;  // exp(-|x|)
  return (x < T(0) ? e : T(1)) / (T(1) + e);
}

template <class T>
[[gnu::always_inline]] inline T tanh_accurate(T x, T lowest) {
  const auto [q, scale] = split_exp(T(-2) * std::abs(x), lowest);
  const T m = scale * q + (scale - T(1));  // expm1(-2|x|) in [-1, 0]
  return std::copysign(-m / (T(2) + m), x);
}

// Rows [0, B) of a step, split over threads when the step is large enough to pay for the team.
template <class F>
void for_rows(const rnn_shape& s, F&& row) {
  const bool parallel = idx(s.batch) * s.hidden >= (idx(1) << 15) && !omp_in_parallel() && omp_get_max_threads() > 1;
  if (!parallel) {  // no parallel region at all: libgomp allocates a team for each, even an if(false) one
    for (int b = 0; b < s.batch; ++b) row(b);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int b = 0; b < s.batch; ++b) row(b);
}

int ld_or(int ld, int dense) { return ld > 0 ? ld : dense; }

// ---- LSTM -------------------------------------------------------------------------------------------

template <class T, bool has_c>
void lstm_forward_row(int H, const T* __restrict pre, const T* __restrict c, T* __restrict h_next, T* __restrict c_next,
                      T* __restrict act) {
  const T lo = clamp_bound<T>;
#pragma omp simd
  for (int j = 0; j < H; ++j) {
    const T i = sigmoid(pre[j], lo), f = sigmoid(pre[H + j], lo), g = tanh_accurate(pre[2 * H + j], lo);
    const T o = sigmoid(pre[3 * H + j], lo);
    const T cn = has_c ? f * c[j] + i * g : i * g;
    const T tc = tanh_accurate(cn, lo);
    h_next[j] = o * tc;
    c_next[j] = cn;
    act[j] = i;
    act[H + j] = f;
    act[2 * H + j] = g;
    act[3 * H + j] = o;
    act[4 * H + j] = tc;
  }
}

template <class T, bool has_c, bool has_dc_next, bool want_dc>
void lstm_backward_row(int H, const T* __restrict act, const T* __restrict c, const T* __restrict dh_next,
                       const T* __restrict dc_next, T* __restrict dpre, T* __restrict dc) {
#pragma omp simd
  for (int j = 0; j < H; ++j) {
    const T i = act[j], f = act[H + j], g = act[2 * H + j], o = act[3 * H + j], tc = act[4 * H + j];
    const T dh = dh_next[j];
    const T dct = dh * o * (T(1) - tc * tc) + (has_dc_next ? dc_next[j] : T(0));
    dpre[j] = dct * g * (i * (T(1) - i));
    dpre[H + j] = has_c ? dct * c[j] * (f * (T(1) - f)) : T(0);
    dpre[2 * H + j] = dct * i * (T(1) - g * g);
    dpre[3 * H + j] = dh * tc * (o * (T(1) - o));
    if constexpr (want_dc) dc[j] = dct * f;
  }
}

// ---- GRU --------------------------------------------------------------------------------------------

template <class T, bool has_h>
void gru_forward_row(int H, const T* __restrict gx, const T* __restrict gh, const T* __restrict h, T* __restrict h_next,
                     T* __restrict act) {
  const T lo = clamp_bound<T>;
#pragma omp simd
  for (int j = 0; j < H; ++j) {
    const T r = sigmoid(gx[j] + gh[j], lo), z = sigmoid(gx[H + j] + gh[H + j], lo);
    const T ghn = gh[2 * H + j];
    const T n = tanh_accurate(gx[2 * H + j] + r * ghn, lo);
    h_next[j] = has_h ? (T(1) - z) * n + z * h[j] : (T(1) - z) * n;
    act[j] = r;
    act[H + j] = z;
    act[2 * H + j] = n;
    act[3 * H + j] = ghn;
  }
}

template <class T, bool has_h, bool want_dh>
void gru_backward_row(int H, const T* __restrict act, const T* __restrict h, const T* __restrict dh_next,
                      T* __restrict dgx, T* __restrict dgh, T* __restrict dh) {
#pragma omp simd
  for (int j = 0; j < H; ++j) {
    const T r = act[j], z = act[H + j], n = act[2 * H + j], ghn = act[3 * H + j];
    const T d = dh_next[j];
    const T dn = d * (T(1) - z) * (T(1) - n * n);
    const T dz = d * ((has_h ? h[j] : T(0)) - n) * (z * (T(1) - z));
    const T dr = dn * ghn * (r * (T(1) - r));
    dgx[j] = dr;
    dgx[H + j] = dz;
    dgx[2 * H + j] = dn;
    dgh[j] = dr;
    dgh[H + j] = dz;
    dgh[2 * H + j] = dn * r;
    if constexpr (want_dh) dh[j] = d * z;
  }
}

// Calls f(std::bool_constant<b0>{}, ...) for run-time flags: one loop instance per case of null pointers.
template <class F>
void with_flags(F&& f) {
  f();
}
template <class F, class... B>
void with_flags(F&& f, bool b, B... rest) {
  if (b)
    with_flags([&](auto... flags) { f(std::true_type{}, flags...); }, rest...);
  else
    with_flags([&](auto... flags) { f(std::false_type{}, flags...); }, rest...);
}

}  // namespace

template <class T>
void lstm_gates_forward(const rnn_shape& s, const T* pre, const T* c, T* h_next, T* c_next, T* act) {
  const int H = s.hidden, ldg = ld_or(s.ld_gates, 4 * H), ldh = ld_or(s.ld_h, H);
  with_flags(
      [&](auto has_c) {
        for_rows(s, [&](int b) {
          lstm_forward_row<T, has_c>(H, pre + idx(b) * ldg, has_c ? c + idx(b) * H : nullptr, h_next + idx(b) * ldh,
                                     c_next + idx(b) * H, act + idx(b) * lstm_saved * H);
        });
      },
      c != nullptr);
}

template <class T>
void lstm_gates_backward(const rnn_shape& s, const T* act, const T* c, const T* dh_next, const T* dc_next, T* dpre,
                         T* dc) {
  const int H = s.hidden, ldg = ld_or(s.ld_gates, 4 * H), lddh = ld_or(s.ld_dh, H);
  with_flags(
      [&](auto has_c, auto has_dc_next, auto want_dc) {
        for_rows(s, [&](int b) {
          lstm_backward_row<T, has_c, has_dc_next, want_dc>(
              H, act + idx(b) * lstm_saved * H, has_c ? c + idx(b) * H : nullptr, dh_next + idx(b) * lddh,
              has_dc_next ? dc_next + idx(b) * H : nullptr, dpre + idx(b) * ldg, want_dc ? dc + idx(b) * H : nullptr);
        });
      },
      c != nullptr, dc_next != nullptr, dc != nullptr);
}

template <class T>
void gru_gates_forward(const rnn_shape& s, const T* gx, const T* gh, const T* h, T* h_next, T* act) {
  const int H = s.hidden, ldg = ld_or(s.ld_gates, 3 * H), ldh = ld_or(s.ld_h, H);
  with_flags(
      [&](auto has_h) {
        for_rows(s, [&](int b) {
          gru_forward_row<T, has_h>(H, gx + idx(b) * ldg, gh + idx(b) * ldg, has_h ? h + idx(b) * ldh : nullptr,
                                    h_next + idx(b) * ldh, act + idx(b) * gru_saved * H);
        });
      },
      h != nullptr);
}

template <class T>
void gru_gates_backward(const rnn_shape& s, const T* act, const T* h, const T* dh_next, T* dgx, T* dgh, T* dh) {
  const int H = s.hidden, ldg = ld_or(s.ld_gates, 3 * H), ldh = ld_or(s.ld_h, H), lddh = ld_or(s.ld_dh, H);
  with_flags(
      [&](auto has_h, auto want_dh) {
        for_rows(s, [&](int b) {
          gru_backward_row<T, has_h, want_dh>(H, act + idx(b) * gru_saved * H, has_h ? h + idx(b) * ldh : nullptr,
                                              dh_next + idx(b) * lddh, dgx + idx(b) * ldg, dgh + idx(b) * ldg,
                                              want_dh ? dh + idx(b) * lddh : nullptr);
        });
      },
      h != nullptr, dh != nullptr);
}

// ---- Additive attention -------------------------------------------------------------------------------

// Every pass over an [S, B, *] buffer runs in its memory order (positions, then rows), so that it streams:
// row by row, each row's S slices lie a whole [B, *] apart, and the hardware prefetchers follow that no better
// than a gather. A row's scores, weights and context are small ([B, S], [B, H]) and stay in cache.
template <class T>
void additive_attention_forward(const additive_attention_shape& s, const T* __restrict pk, const T* __restrict pq,
                                const T* __restrict v, const T* __restrict keys, const T* __restrict mask,
                                T* __restrict context, T* __restrict weights, T* __restrict act) {
  const idx S = s.positions, B = s.batch, A = s.width, H = s.key_width;
  const T lo = clamp_bound<T>;
  for (idx j = 0; j < S; ++j)  // scores e_bj = v . tanh(pk_jb + pq_b), masked
    for (idx b = 0; b < B; ++b) {
      const T* k = pk + (j * B + b) * A;
      const T* q = pq + b * A;
      T* t = act + (j * B + b) * A;
      T e = 0;
#pragma omp simd reduction(+ : e)
      for (idx a = 0; a < A; ++a) {
        const T x = tanh_accurate(k[a] + q[a], lo);
        t[a] = x;
        e += v[a] * x;
      }
      weights[b * S + j] = mask ? e * mask[j * B + b] + (mask[j * B + b] - T(1)) * T(1e9) : e;
    }
  for (idx b = 0; b < B; ++b) {  // softmax over each row's positions
    T* w = weights + b * S;
    T mx = w[0];
    for (idx j = 1; j < S; ++j) mx = w[j] > mx ? w[j] : mx;
    T sum = 0;
    for (idx j = 0; j < S; ++j) sum += (w[j] = std::exp(w[j] - mx));
    const T inv = T(1) / sum;
    for (idx j = 0; j < S; ++j) w[j] *= inv;
  }
  for (idx i = 0; i < B * H; ++i) context[i] = 0;
  for (idx j = 0; j < S; ++j)  // context c_b = sum_j w_bj keys_jb
    for (idx b = 0; b < B; ++b) {
      const T wj = weights[b * S + j];
      if (wj == T(0)) continue;  // a padded position: its key is never read
      const T* key = keys + (j * B + b) * H;
      T* c = context + b * H;
#pragma omp simd
      for (idx h = 0; h < H; ++h) c[h] += wj * key[h];
    }
}

template <class T>
void additive_attention_backward(const additive_attention_shape& s, const T* __restrict act, const T* __restrict v,
                                 const T* __restrict keys, const T* __restrict weights, const T* __restrict mask,
                                 const T* __restrict dc, const T* __restrict dw, T* __restrict dpk, T* __restrict dpq,
                                 T* __restrict dv, T* __restrict dkeys, const T* __restrict acc_dpk,
                                 const T* __restrict acc_dkeys) {
  const idx S = s.positions, B = s.batch, A = s.width, H = s.key_width;
  thread_local std::vector<T> scores;  // [B, S]; grown on first use: later runs allocate nothing
  if (static_cast<idx>(scores.size()) < B * S) scores.resize(static_cast<std::size_t>(B * S));
  T* g = scores.data();  // g_bj = dw_bj + dc_b . key_jb, then de_bj = w_bj (g_bj - <w_b, g_b>) mask_jb
  for (idx i = 0; i < B * S; ++i) g[i] = dw ? dw[i] : T(0);
  if (dc)
    for (idx j = 0; j < S; ++j)
      for (idx b = 0; b < B; ++b) {
        if (weights[b * S + j] == T(0)) continue;
        const T* key = keys + (j * B + b) * H;
        const T* g_c = dc + b * H;
        T d = 0;
#pragma omp simd reduction(+ : d)
        for (idx h = 0; h < H; ++h) d += g_c[h] * key[h];
        g[b * S + j] += d;
      }
  for (idx b = 0; b < B; ++b) {
    const T* w = weights + b * S;
    T* gb = g + b * S;
    T wg = 0;
    for (idx j = 0; j < S; ++j) wg += w[j] * gb[j];
    for (idx j = 0; j < S; ++j) gb[j] = mask ? w[j] * (gb[j] - wg) * mask[j * B + b] : w[j] * (gb[j] - wg);
  }
  for (idx i = 0; i < B * A; ++i) dpq[i] = 0;
  for (idx a = 0; a < A; ++a) dv[a] = 0;
  for (idx j = 0; j < S; ++j)
    for (idx b = 0; b < B; ++b) {
      const T e = g[b * S + j];
      const T* t = act + (j * B + b) * A;
      T* d = dpk + (j * B + b) * A;
      T* q = dpq + b * A;
      const T* ad = acc_dpk ? acc_dpk + (j * B + b) * A : nullptr;
      with_flags(
          [&](auto has_acc) {
#pragma omp simd
            for (idx a = 0; a < A; ++a) {
              const T u = e * v[a] * (T(1) - t[a] * t[a]);
              d[a] = has_acc ? ad[a] + u : u;
              q[a] += u;
              dv[a] += e * t[a];
            }
          },
          ad != nullptr);
      T* dk = dkeys + (j * B + b) * H;
      const T* ak = acc_dkeys ? acc_dkeys + (j * B + b) * H : nullptr;
      const T* g_c = dc ? dc + b * H : nullptr;
      const T wj = weights[b * S + j];
      with_flags(
          [&](auto has_acc, auto has_dc) {
#pragma omp simd
            for (idx h = 0; h < H; ++h) {
              const T x = has_dc ? wj * g_c[h] : T(0);
              dk[h] = has_acc ? ak[h] + x : x;
            }
          },
          ak != nullptr, g_c != nullptr);
    }
}

// Elementwise tanh and sigmoid over arrays (the graph's tanh and sigmoid ops run on these): the same cores.
template <class T>
void tanh_array(const T* __restrict x, T* __restrict y, long n) {
  const T lo = clamp_bound<T>;
#pragma omp simd
  for (long i = 0; i < n; ++i) y[i] = tanh_accurate(x[i], lo);
}
template <class T>
void sigmoid_array(const T* __restrict x, T* __restrict y, long n) {
  const T lo = clamp_bound<T>;
#pragma omp simd
  for (long i = 0; i < n; ++i) y[i] = sigmoid(x[i], lo);
}
template void tanh_array<float>(const float*, float*, long);
template void tanh_array<double>(const double*, double*, long);
template void sigmoid_array<float>(const float*, float*, long);
template void sigmoid_array<double>(const double*, double*, long);

template void additive_attention_forward<float>(const additive_attention_shape&, const float*, const float*,
                                                const float*, const float*, const float*, float*, float*, float*);
template void additive_attention_forward<double>(const additive_attention_shape&, const double*, const double*,
                                                 const double*, const double*, const double*, double*, double*,
                                                 double*);
template void additive_attention_backward<float>(const additive_attention_shape&, const float*, const float*,
                                                 const float*, const float*, const float*, const float*, const float*,
                                                 float*, float*, float*, float*, const float*, const float*);
template void additive_attention_backward<double>(const additive_attention_shape&, const double*, const double*,
                                                  const double*, const double*, const double*, const double*,
                                                  const double*, double*, double*, double*, double*, const double*,
                                                  const double*);
template void lstm_gates_forward<float>(const rnn_shape&, const float*, const float*, float*, float*, float*);
template void lstm_gates_forward<double>(const rnn_shape&, const double*, const double*, double*, double*, double*);
template void lstm_gates_backward<float>(const rnn_shape&, const float*, const float*, const float*, const float*,
                                         float*, float*);
template void lstm_gates_backward<double>(const rnn_shape&, const double*, const double*, const double*, const double*,
                                          double*, double*);
template void gru_gates_forward<float>(const rnn_shape&, const float*, const float*, const float*, float*, float*);
template void gru_gates_forward<double>(const rnn_shape&, const double*, const double*, const double*, double*,
                                        double*);
template void gru_gates_backward<float>(const rnn_shape&, const float*, const float*, const float*, float*, float*,
                                        float*);
template void gru_gates_backward<double>(const rnn_shape&, const double*, const double*, const double*, double*,
                                         double*, double*);

}  // namespace ctgraph::kernels
