// ctgraph/format.hpp: how shapes print: fmt::formatter<ctgraph::shape>, "[32, 64]" ("[]" for a scalar).
#pragma once
#include <fmt/format.h>
#if FMT_VERSION >= 110000
#include <fmt/ranges.h>  // fmt::join moved there in fmt 11
#endif

#include <iterator>
#include <span>

#include "graph/base.hpp"

namespace ctgraph::detail {
// Writes dims as every message prints a shape, "[32, 64]" and "[]", for any range of integers
// (a shape's dims, or a checkpoint's dims as read from a file).
template <class Out, class Dims>
Out format_dims(Out out, const Dims& dims) {
  return fmt::format_to(out, "[{}]", fmt::join(dims, ", "));
}
}  // namespace ctgraph::detail

/// `fmt::format("{}", s)` for a ctgraph::shape: "[32, 64]", "[]" for a scalar. Width and
/// alignment apply to the whole text, as for a string: `{:<16}`.
template <>
struct fmt::formatter<ctgraph::shape> : fmt::formatter<fmt::string_view> {
  // A member template, so that nothing of it is compiled where no shape is formatted.
  template <class FormatContext>
  auto format(const ctgraph::shape& s, FormatContext& ctx) const {
    fmt::memory_buffer text;
    ctgraph::detail::format_dims(std::back_inserter(text), std::span<const int>(s.d, static_cast<std::size_t>(s.rank)));
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(text.data(), text.size()), ctx);
  }
};
