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
  constexpr view(T* data, std::array<int, R> dims) : data_(data), dims_(dims) {}
  T* data() const { return data_; }
  std::size_t size() const {
    std::size_t n = 1;
    for (int d : dims_) n *= static_cast<std::size_t>(d);
    return n;
  }
  static constexpr int rank() { return R; }
  const std::array<int, R>& dims() const { return dims_; }
  int dim(int k) const { return dims_[k]; }
  T* begin() const { return data_; }
  T* end() const { return data_ + size(); }
  std::span<T> span() const { return {data_, size()}; }
  operator std::span<T>() const { return span(); }
  operator std::span<const T>() const requires(!std::is_const_v<T>) { return {data_, size()}; }
  template <class... I>
  requires(sizeof...(I) == R) T& operator()(I... idx) const {
    std::size_t off = 0;
    int k = 0;
    ((off = off * static_cast<std::size_t>(dims_[k++]) + static_cast<std::size_t>(idx)), ...);
    return data_[off];
  }
  T& operator[](std::size_t i) const { return data_[i]; }
  operator T() const requires(R == 0) { return *data_; }

 private:
  T* data_;
  std::array<int, R> dims_;
};

}  // namespace ctgraph
