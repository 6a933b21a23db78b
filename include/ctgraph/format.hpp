// ctgraph/format.hpp: how shapes print: fmt::formatter<ctgraph::shape>, "[32, 64]" ("[]" for a scalar).
#pragma once
#include <fmt/format.h>

#include <algorithm>
#include <span>

#include "graph/base.hpp"

namespace ctgraph::detail {
// Writes dims as every message prints a shape, "[32, 64]" and "[]", for any range of integers
// (a shape's dims, or a checkpoint's dims as read from a file). By hand, not with fmt::join:
// join's formatter costs each translation unit that formats a shape a second of compile time.
template <class Out, class Dims>
Out format_dims(Out out, const Dims& dims) {
  *out++ = '[';
  bool first = true;
  for (const auto d : dims) {
    if (!first) *out++ = ',', *out++ = ' ';
    first = false;
    const fmt::format_int digits(d);
    out = std::copy(digits.data(), digits.data() + digits.size(), out);
  }
  *out++ = ']';
  return out;
}
}  // namespace ctgraph::detail

/// @cond CTGRAPH_FMT_FORMATTER (Doxygen cannot place a specialization in fmt's namespace)
/// `fmt::format("{}", s)` for a ctgraph::shape: "[32, 64]", "[]" for a scalar. No format
/// specs: a formatter<string_view> base, for width and alignment, cost the spiral example
/// 1.2 s of compile time.
template <>
struct fmt::formatter<ctgraph::shape> {
  constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }
  // A member template, so that nothing of it is compiled where no shape is formatted.
  template <class FormatContext>
  auto format(const ctgraph::shape& s, FormatContext& ctx) const {
    return ctgraph::detail::format_dims(ctx.out(), std::span<const int>(s.d, static_cast<std::size_t>(s.rank)));
  }
};
/// @endcond
