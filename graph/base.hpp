// graph/base.hpp: the value types every graph algorithm works on: compile-time
// strings, element types, shapes and node attributes. No ops, no kernels.
#pragma once
#include <bit>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <type_traits>
#include <utility>

namespace ctgraph {

/// A string usable as a template argument: leaf names (`cg::param<"W", ...>`).
/// Concatenates at compile time: `Name + ".weight"`.
template <std::size_t N>
struct fixed_string {
  char data[N]{};
  constexpr fixed_string() = default;
  constexpr fixed_string(const char (&s)[N]) {
    for (std::size_t i = 0; i < N; ++i) data[i] = s[i];
  }
  static constexpr std::size_t size() { return N - 1; }
  constexpr const char* c_str() const { return data; }
  constexpr std::string_view view() const { return {data, N - 1}; }
  template <std::size_t M>
  constexpr fixed_string<N + M - 1> operator+(const fixed_string<M>& o) const {
    fixed_string<N + M - 1> r;
    for (std::size_t i = 0; i + 1 < N; ++i) r.data[i] = data[i];
    for (std::size_t i = 0; i < M; ++i) r.data[N - 1 + i] = o.data[i];
    return r;
  }
  template <std::size_t M>
  constexpr fixed_string<N + M - 1> operator+(const char (&s)[M]) const {
    return *this + fixed_string<M>(s);
  }
  template <std::size_t M>
  constexpr bool operator==(const fixed_string<M>& o) const {
    return view() == o.view();
  }
};
template <std::size_t N>
fixed_string(const char (&)[N]) -> fixed_string<N>;

/// Element types a node can hold. int is for labels and ids only.
enum class dtype : std::uint8_t { f32, f64, i32 };

template <class T>
constexpr dtype dtype_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, int>,
                "ctgraph: element type must be float, double or int");
  if constexpr (std::is_same_v<T, float>)
    return dtype::f32;
  else if constexpr (std::is_same_v<T, double>)
    return dtype::f64;
  else
    return dtype::i32;
}
constexpr std::size_t dtype_size(dtype t) { return t == dtype::f64 ? 8 : 4; }
constexpr const char* dtype_name(dtype t) { return t == dtype::f32 ? "float" : t == dtype::f64 ? "double" : "int"; }

inline constexpr int max_rank = 6;

/// A static shape: rank and dimensions, row-major. Rank 0 is a scalar.
struct shape {
  int rank = 0;
  int d[max_rank] = {};
  constexpr std::int64_t size() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= d[i];
    return n;
  }
  constexpr int operator[](int i) const { return d[i]; }
  constexpr int back() const { return rank ? d[rank - 1] : 1; }
  constexpr std::int64_t rows() const { return rank ? size() / d[rank - 1] : 1; }  // all but the last axis
  constexpr bool operator==(const shape&) const = default;
};

template <int... D>
constexpr shape make_shape() {
  static_assert(sizeof...(D) <= max_rank, "ctgraph: rank above 6 is not supported");
  static_assert(((D > 0) && ...), "ctgraph: every dimension must be positive");
  shape s;
  s.rank = sizeof...(D);
  int i = 0;
  ((s.d[i++] = D), ...);
  return s;
}

/// NumPy broadcasting of two shapes; ok == false when they are incompatible.
struct shape_result {
  bool ok = false;
  shape s;
};
constexpr shape_result broadcast(const shape& a, const shape& b) {
  shape r;
  r.rank = a.rank > b.rank ? a.rank : b.rank;
  for (int i = 0; i < r.rank; ++i) {
    int ia = a.rank - r.rank + i, ib = b.rank - r.rank + i;
    int da = ia >= 0 ? a.d[ia] : 1, db = ib >= 0 ? b.d[ib] : 1;
    if (da != db && da != 1 && db != 1) return {false, r};
    r.d[i] = da == 1 ? db : da;
  }
  return {true, r};
}
/// True when `from` broadcasts to exactly `to`.
constexpr bool broadcasts_to(const shape& from, const shape& to) {
  auto r = broadcast(from, to);
  return r.ok && r.s == to;
}

/// Shapes as types, so that compile errors print them: dims<32, 64>.
template <int... D>
struct dims {};
template <shape S>
constexpr auto dims_of() {
  return []<std::size_t... I>(std::index_sequence<I...>) { return dims<S.d[I]...>{}; }
  (std::make_index_sequence<S.rank>{});
}
template <fixed_string S>
struct name {};

/// Per-node attributes: small ints (axes, flags), a scalar value and a target shape.
/// The scalar is held as its bit pattern so that attr_t stays a template argument
/// clang 14 accepts (no floating-point template arguments there).
/// The constructor stores every element of i, zeros included: g++ 12 compares two attr_t template
/// arguments by their stored elements without their positions, so {4, 0, ...} built by a loop and
/// {0, 4, ...} built by `a.i[1] = 4` on a value-initialised array were one argument, and the second
/// read the first's attributes (an attention with heads<4> after a sequence_mask<4>).
struct attr_t {
  int i[max_rank];
  std::int64_t vbits = 0;
  shape s;
  constexpr attr_t() : i{} {
    for (int& x : i) x = 0;
  }
  constexpr double value() const { return std::bit_cast<double>(vbits); }
  constexpr bool operator==(const attr_t&) const = default;
};
namespace detail {
constexpr attr_t attr_bits(std::int64_t bits) {
  attr_t a;
  a.vbits = bits;
  return a;
}
}  // namespace detail
constexpr attr_t attr_value(double v) {
  attr_t a;
  a.vbits = std::bit_cast<std::int64_t>(v);
  return a;
}
constexpr attr_t attr_ints(std::initializer_list<int> v) {
  attr_t a;
  int k = 0;
  for (int x : v) a.i[k++] = x;
  return a;
}
constexpr attr_t attr_shape(const shape& s) {
  attr_t a;
  a.s = s;
  return a;
}

// FNV-1a style mixing, used for hash-consing nodes.
constexpr std::uint64_t hash_mix(std::uint64_t h, std::uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0x100000001b3ull;
}
constexpr std::uint64_t hash_str(const char* s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  while (*s) h = hash_mix(h, static_cast<unsigned char>(*s++));
  return h;
}
constexpr std::uint64_t hash_shape(std::uint64_t h, const shape& s) {
  h = hash_mix(h, s.rank);
  for (int i = 0; i < s.rank; ++i) h = hash_mix(h, s.d[i]);
  return h;
}
constexpr std::uint64_t hash_attr(std::uint64_t h, const attr_t& a) {
  for (int x : a.i) h = hash_mix(h, static_cast<std::uint64_t>(x));
  h = hash_mix(h, static_cast<std::uint64_t>(a.vbits));
  return hash_shape(h, a.s);
}
constexpr bool str_eq(const char* a, const char* b) {
  while (*a && *a == *b) ++a, ++b;
  return *a == *b;
}

}  // namespace ctgraph
