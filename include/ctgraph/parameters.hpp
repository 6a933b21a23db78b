// ctgraph/parameters.hpp: cg::parameters, the storage of every param of a program, by name.
#pragma once
#include <array>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <string_view>

#include "program.hpp"
#include "view.hpp"

namespace ctgraph {

namespace detail {
struct aligned_free {
  void operator()(std::byte* p) const { std::free(p); }
};
using aligned_bytes = std::unique_ptr<std::byte[], aligned_free>;
inline aligned_bytes allocate(std::size_t bytes) {
  bytes = (bytes + 63) / 64 * 64;
  auto* p = static_cast<std::byte*>(std::aligned_alloc(64, bytes ? bytes : 64));
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, bytes ? bytes : 64);
  return aligned_bytes(p);
}
template <int R>
std::array<int, R> dims_array(const shape& s) {
  std::array<int, R> d{};
  for (int k = 0; k < R; ++k) d[k] = s.d[k];
  return d;
}
}  // namespace detail

/// Storage for every param a program uses, by name. `get<"W">()` is a mutable view.
template <class Program>
class parameters {
 public:
  static constexpr std::size_t count = Program::sizes.params;   ///< The number of params.
  static constexpr const auto& entries = Program::plan.params;  ///< Name, element type and shape of each param.

  /// Allocates every param, zero-filled.
  parameters() : data_(detail::allocate(total_bytes())) {}

  /// Byte offset of each param in the storage, 64-byte aligned; the last entry is the total.
  static constexpr auto offsets = [] {
    std::array<long, count + 1> o{};
    for (std::size_t k = 0; k < count; ++k)
      o[k + 1] = o[k] + (entries[k].s.size() * static_cast<long>(dtype_size(entries[k].type)) + 63) / 64 * 64;
    return o;
  }();
  /// Byte offset of param `i`.
  static constexpr long offset(std::size_t i) { return offsets[i]; }
  /// Bytes of storage for all params.
  static constexpr long total_bytes() { return offsets[count]; }
  /// Index of the param called `name`, or -1.
  static constexpr int find(const char* name) {
    for (std::size_t k = 0; k < count; ++k)
      if (str_eq(entries[k].name, name)) return static_cast<int>(k);
    return -1;
  }
  /// The storage of param `i`.
  void* ptr(std::size_t i) { return data_.get() + offset(i); }
  /// The storage of param `i`, read-only.
  const void* ptr(std::size_t i) const { return data_.get() + offset(i); }

  /// A mutable view of the param called `Name`; a compile error if there is none.
  template <fixed_string Name>
  auto get() {
    constexpr int i = find(Name.data);
    static_assert(i >= 0, "ctgraph: parameters::get<Name>(): no param of that name in this set");
    constexpr auto e = entries[i];
    using T = element_t<e.type>;
    return view<T, e.s.rank>(static_cast<T*>(ptr(i)), detail::dims_array<e.s.rank>(e.s));
  }
  /// Calls f(name, span) for every param, in the program's order.
  template <class F>
  void for_each(F&& f) {
    for (std::size_t k = 0; k < count; ++k) {
      std::string_view n(entries[k].name);
      const std::size_t len = static_cast<std::size_t>(entries[k].s.size());
      if (entries[k].type == dtype::f64)
        f(n, std::span<double>(static_cast<double*>(ptr(k)), len), entries[k].s);
      else
        f(n, std::span<float>(static_cast<float*>(ptr(k)), len), entries[k].s);
    }
  }

 private:
  detail::aligned_bytes data_;
};

}  // namespace ctgraph
