// ops/kernels/simd.hpp: the SIMD vocabulary of the compiled kernels (internal; never included by graph code).
//
// GCC/Clang vector extensions: the width follows the target (-march=native through CTGRAPH_NATIVE):
// 64 bytes with AVX-512, 32 with AVX, 16 otherwise. On a target without SIMD the compiler lowers the
// same code to scalar instructions, which is the portable fallback.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace ctgraph::kernels::simd {

#if defined(__AVX512F__)
inline constexpr int vector_bytes = 64;
#elif defined(__AVX__)
inline constexpr int vector_bytes = 32;
#else
inline constexpr int vector_bytes = 16;
#endif

typedef float vfloat __attribute__((vector_size(vector_bytes)));
typedef double vdouble __attribute__((vector_size(vector_bytes)));
typedef std::int32_t vint32 __attribute__((vector_size(vector_bytes)));
typedef std::int64_t vint64 __attribute__((vector_size(vector_bytes)));

template <class T>
struct vec_of;
template <>
struct vec_of<float> {
  using type = vfloat;
  using itype = vint32;
};
template <>
struct vec_of<double> {
  using type = vdouble;
  using itype = vint64;
};
/// vec<T>: one SIMD register of T; width<T> lanes.
template <class T>
using vec = typename vec_of<T>::type;
template <class T>
inline constexpr int width = vector_bytes / int(sizeof(T));

template <class T>
[[gnu::always_inline]] inline vec<T> splat(T s) {
  return s - vec<T>{};  // x - 0 == x exactly (x + 0 is not, for -0): folds to a plain broadcast
}
template <class T>
[[gnu::always_inline]] inline vec<T> loadu(const T* p) {
  vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
/// v, held in a register: the compiler may no longer fold the load that made v into each instruction
/// that uses it. A micro-kernel loads each B vector once per k; folded, it would load it once per row,
/// and the loads, not the FMAs, would set the pace (GCC 12 does this to the 4-row tile).
template <class T>
[[gnu::always_inline]] inline vec<T> in_register(vec<T> v) {
#if defined(__AVX512F__)
  asm("" : "+v"(v));
#elif defined(__SSE2__)
  asm("" : "+x"(v));
#endif
  return v;
}
template <class T>
[[gnu::always_inline]] inline void storeu(T* p, vec<T> v) {
  std::memcpy(p, &v, sizeof v);
}
template <class T>
[[gnu::always_inline]] inline vec<T> max(vec<T> a, vec<T> b) {
  return a > b ? a : b;
}
template <class T>
[[gnu::always_inline]] inline T hsum(vec<T> v) {
  T s = 0;
  for (int i = 0; i < width<T>; ++i) s += v[i];
  return s;
}
/// True if some lane of v exceeds s (NaN lanes do not).
template <class T>
[[gnu::always_inline]] inline bool any_greater(vec<T> v, T s) {
  const auto gt = v > splat(s);  // lanes of all ones or zeros
  std::uint64_t words[sizeof gt / 8];
  std::memcpy(words, &gt, sizeof gt);
  std::uint64_t any = 0;
  for (auto w : words) any |= w;
  return any != 0;
}
template <class T>
[[gnu::always_inline]] inline T hmax(vec<T> v) {
  T s = v[0];
  for (int i = 1; i < width<T>; ++i) s = s > v[i] ? s : v[i];
  return s;
}

/// exp(x) for float lanes: 2^n * 2^f, n = round(x log2 e), |f| <= 1/2, 2^f by a degree-6 polynomial
/// (relative error ~2e-7). x below about -87 (including -inf) gives exactly 0; x above 88 saturates.
[[gnu::always_inline]] inline vfloat exp(vfloat x) {
  const vfloat t = x * 1.44269504088896341f;
  const vfloat tc = t < -126.f ? splat(-126.f) : (t > 127.f ? splat(127.f) : t);
  // round to nearest by the 1.5 * 2^23 trick (valid for |tc| < 2^22)
  const vfloat shifter = splat(12582912.f);
  const vfloat nf = (tc + shifter) - shifter;
  const vfloat f = (tc - nf) * 0.693147180559945309f;  // f in [-ln2/2, ln2/2]
  vfloat p = splat(1.f / 720) * f + 1.f / 120;
  p = p * f + 1.f / 24;
  p = p * f + 1.f / 6;
  p = p * f + 0.5f;
  p = p * f + 1.f;
  p = p * f + 1.f;
  const vint32 n = __builtin_convertvector(nf, vint32);
  const vint32 bits = (n + 127) << 23;
  vfloat two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  const vfloat r = p * two_n;
  return t < -126.f ? vfloat{} : r;
}

/// 2^x for float lanes with x < 127 (the softmax case: scores minus a running max): n = round(x),
/// f = x - n in [-1/2, 1/2], 2^f by a degree-4 minimax polynomial (relative error < 3e-6), 2^n written
/// into the exponent bits. x below -126.5 (including -inf) gives exactly 0; NaN stays NaN. 10 vector
/// operations.
[[gnu::always_inline]] inline vfloat exp2_softmax(vfloat x) {
  x = x < -127.f ? splat(-127.f) : x;        // n = -127 makes the exponent field, and the result, 0
  const vfloat shifter = splat(12583039.f);  // 1.5 * 2^23 + 127: y's low bits hold round(x) + 127
  const vfloat y = x + shifter;
  const vfloat f = x - (y - shifter);
  vfloat p = splat(9.57010128e-3f) * f + 5.59178628e-2f;
  p = p * f + 2.40247443e-1f;
  p = p * f + 6.93121791e-1f;
  p = p * f + 9.99999285e-1f;
  vint32 bits;
  std::memcpy(&bits, &y, sizeof bits);
  bits <<= 23;  // round(x) + 127 lands in the exponent field; the shifter's own bits leave through the top
  vfloat two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return p * two_n;
}

/// exp(x) for double lanes: the same reduction, degree-11 polynomial (relative error ~1e-16).
[[gnu::always_inline]] inline vdouble exp(vdouble x) {
  const vdouble t = x * 1.4426950408889634074;
  const vdouble tc = t < -1022. ? splat(-1022.) : (t > 1023. ? splat(1023.) : t);
  const vdouble shifter = splat(6755399441055744.);  // 1.5 * 2^52
  const vdouble nf = (tc + shifter) - shifter;
  const vdouble f = (tc - nf) * 0.69314718055994530942;
  constexpr double c[] = {1.0 / 39916800, 1.0 / 3628800, 1.0 / 362880, 1.0 / 40320, 1.0 / 5040, 1.0 / 720,
                          1.0 / 120,      1.0 / 24,      1.0 / 6,      0.5,         1.0,        1.0};
  vdouble p = splat(c[0]);
  for (int i = 1; i < 12; ++i) p = p * f + c[i];
  const vint64 n = __builtin_convertvector(nf, vint64);
  const vint64 bits = (n + 1023) << 52;
  vdouble two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  const vdouble r = p * two_n;
  return t < -1022. ? vdouble{} : r;
}

/// 2^x for double lanes with x < 1023: exp of x ln 2 (full double accuracy).
[[gnu::always_inline]] inline vdouble exp2_softmax(vdouble x) { return exp(x * 0.69314718055994530942); }

}  // namespace ctgraph::kernels::simd
