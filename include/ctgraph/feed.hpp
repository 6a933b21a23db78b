// ctgraph/feed.hpp: cg::feed<"x">(range), an input's data for one run, and the compile errors of feeds.
#pragma once
#include <cstddef>
#include <ranges>
#include <span>
#include <type_traits>

#include "graph/base.hpp"

namespace ctgraph {

/// Binds input `Name` to a contiguous range for one run: `cg::feed<"x">(xs)`.
template <fixed_string Name, class T, std::size_t Extent>
struct feed_ref {
  static constexpr auto name = Name;             ///< The input's name.
  static constexpr std::size_t extent = Extent;  ///< The range's static size, or std::dynamic_extent.
  using value_type = T;                          ///< The element type.
  const T* data;                                 ///< The first element.
  std::size_t size;                              ///< The number of elements.
};
template <fixed_string Name, std::ranges::contiguous_range R>
auto feed(const R& r) {
  std::span s(r);
  using T = std::remove_const_t<typename decltype(s)::element_type>;
  return feed_ref<Name, T, decltype(s)::extent>{s.data(), s.size()};
}

template <class T>
struct element_type {};
void feed_name_is_not_an_input_of_this_graph(auto name) = delete;
void feed_size_does_not_match_input_shape(auto name, auto input_dims, auto feed_size) = delete;
void feed_element_type_does_not_match_input(auto name, auto input_type, auto feed_type) = delete;
void input_is_not_fed(auto name) = delete;

template <std::size_t N>
struct count {};

}  // namespace ctgraph
