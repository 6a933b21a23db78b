// ctgraph/feed.hpp: cg::feed<"x">(range), an input's data for one run, and the compile errors of feeds.
#pragma once
#include <cstddef>
#include <cstdint>
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

namespace detail {
// The input a step with dropout reads its seed from (ops/dropout.hpp), bound to cg::seed(s) by run().
inline constexpr fixed_string seed_input_name = "ctgraph.seed";
}  // namespace detail
/// The type of cg::seed(s).
struct seed_t {
  int halves[2];  ///< The seed's low and high 32 bits: what the step's seed input reads.
};
namespace detail {
template <class F>
struct is_seed : std::is_same<F, seed_t> {};
}  // namespace detail
/// cg::seed(s), among the feeds of step.run: the seed of the run's dropout masks (a run is a function of its
/// feeds and its seed; the same seed draws the same masks). A step with dropout in a training program needs
/// one (its absence is a compile error); a step without ignores it, so an evaluation step may be given one.
constexpr seed_t seed(std::uint64_t s) {
  return {{static_cast<int>(static_cast<std::uint32_t>(s)), static_cast<int>(static_cast<std::uint32_t>(s >> 32))}};
}
void step_applies_dropout_so_run_needs_cg_seed(auto) = delete;

template <class T>
struct element_type {};
void feed_name_is_not_an_input_of_this_graph(auto name) = delete;
void feed_size_does_not_match_input_shape(auto name, auto input_dims, auto feed_size) = delete;
void feed_element_type_does_not_match_input(auto name, auto input_type, auto feed_type) = delete;
void input_is_not_fed(auto name) = delete;

template <std::size_t N>
struct count {};

}  // namespace ctgraph
