// ctgraph/view.hpp: row-major views of parameters and step results.
#pragma once
#include <array>
#include <cstddef>
#include <span>

namespace ctgraph {

/// A non-owning row-major view of R-dimensional data: `.data()`, `.size()`,
/// `v(i, j, ...)`, conversion to std::span, and for rank 0 to the element itself.
template <class T, int R>
class view {
 public:
  /// A view of `data` with dimensions `dims` (row-major, dense); it does not own the data.
  constexpr view(T* data, std::array<int, R> dims) : data_(data), dims_(dims) {}
  /// The first element.
  T* data() const { return data_; }
  /// The number of elements: the product of the dimensions (1 for rank 0).
  std::size_t size() const {
    std::size_t n = 1;
    for (int d : dims_) n *= static_cast<std::size_t>(d);
    return n;
  }
  /// The number of dimensions, R.
  static constexpr int rank() { return R; }
  /// All dimensions, outermost first.
  const std::array<int, R>& dims() const { return dims_; }
  /// Dimension `k`.
  int dim(int k) const { return dims_[k]; }
  /// The first element, for range-for over all elements in row-major order.
  T* begin() const { return data_; }
  /// One past the last element.
  T* end() const { return data_ + size(); }
  /// All elements as a span, in row-major order.
  std::span<T> span() const { return {data_, size()}; }
  /// Converts to a span of all elements.
  operator std::span<T>() const { return span(); }
  /// Converts a mutable view to a read-only span.
  operator std::span<const T>() const requires(!std::is_const_v<T>) { return {data_, size()}; }
  /// The element at index (i, j, ...), one index per dimension. Not bounds-checked.
  template <class... I>
  requires(sizeof...(I) == R) T& operator()(I... idx) const {
    std::size_t off = 0;
    int k = 0;
    ((off = off * static_cast<std::size_t>(dims_[k++]) + static_cast<std::size_t>(idx)), ...);
    return data_[off];
  }
  /// The element at flat row-major index `i`. Not bounds-checked.
  T& operator[](std::size_t i) const { return data_[i]; }
  /// A rank-0 view converts to its element: `float l = out[loss];`.
  operator T() const requires(R == 0) { return *data_; }

 private:
  T* data_;
  std::array<int, R> dims_;
};

}  // namespace ctgraph
