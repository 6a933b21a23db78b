// ctgraph/check_finite.hpp: cg::check_finite, the run option that stops at the first NaN or infinity, and its error.
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "feed.hpp"
#include "format.hpp"
#include "graph/exec.hpp"
#include "profile.hpp"

namespace ctgraph {

/// The type of cg::check_finite.
struct check_finite_t {
  explicit constexpr check_finite_t() = default;
};
/// Passed among the feeds of step.run (in any position), checks the run for NaN and
/// infinities: each float or double input and param before the first step, then each
/// step's output after it runs. The first bad value throws cg::non_finite_error. Without
/// it, run() checks nothing and costs nothing more.
inline constexpr check_finite_t check_finite{};

/// What run(..., cg::check_finite) throws at the first NaN or infinity. what() names where:
/// the input or param holding it, or the step that produced it (its number in run order, as
/// in to_dot(), forward or gradient, its op and shape, and the inputs and params it is
/// computed from), the element's flat index and whether it is nan, +inf or -inf.
class non_finite_error : public std::runtime_error {
 public:
  /// The error with message `what`; step, element and value as the accessors below return them.
  non_finite_error(const std::string& what, int step, long element, double value)
      : std::runtime_error(what), step_(step), element_(element), value_(value) {}
  /// The step that produced the value, in run order from 0; -1 when an input or param holds it.
  int step() const noexcept { return step_; }
  /// The value's flat (row-major) index in the step's output, input or param.
  long element() const noexcept { return element_; }
  /// The value: a NaN, +inf or -inf.
  double value() const noexcept { return value_; }

 private:
  int step_;
  long element_;
  double value_;
};

namespace detail {
template <class F>
struct is_check_finite : std::is_same<F, check_finite_t> {};
// The name a run() argument feeds: nullptr for the run options (cg::check_finite, cg::profile), the seed
// input's for cg::seed.
template <class F>
constexpr const char* fed_name() {
  if constexpr (is_check_finite<F>::value || is_profile<F>::value)
    return nullptr;
  else if constexpr (is_seed<F>::value)
    return seed_input_name.data;
  else
    return F::name.data;
}
inline const char* non_finite_kind(double v) { return v != v ? "nan" : v > 0 ? "+inf" : "-inf"; }
// The helpers below are templates over the plan view (PV: plan_view) so that their fmt calls
// are dependent: a translation unit that never passes cg::check_finite instantiates none of them.
// Throws when an input or param of the run holds a NaN or an infinity.
template <class PV>
void check_leaves_finite(const PV& p, const exec_ctx& c) {
  auto check = [](const leaf_entry& e, const char* what, const void* data) {
    if (const long i = first_non_finite(e.type, data, e.s.size()); i >= 0) {
      const double v = element_as_double(e.type, data, i);
      throw non_finite_error(fmt::format(fmt::runtime("ctgraph: non-finite value ({}) at element {} of {} \"{}\" {}, "
                                                      "before any step"),
                                         non_finite_kind(v), i, what, e.name, e.s),
                             -1, i, v);
    }
  };
  for (std::size_t k = 0; k < p.inputs.size(); ++k) check(p.inputs[k], "input", c.inputs[k]);
  for (std::size_t k = 0; k < p.params.size(); ++k) check(p.params[k], "param", c.params[k]);
}
// "inputs x, y; params W1, b1": the leaves flagged, at most 8 names of each kind.
template <class PV>
std::string leaf_list(const PV& p, const std::vector<char>& inputs, const std::vector<char>& params) {
  std::string r;
  auto add = [&](const char* one, const char* many, auto table, const std::vector<char>& used) {
    std::vector<const char*> names;
    for (std::size_t k = 0; k < used.size(); ++k)
      if (used[k]) names.push_back(table[k].name);
    if (names.empty()) return;
    r += r.empty() ? "" : "; ";
    r += names.size() == 1 ? one : many;
    for (std::size_t k = 0; k < names.size() && k < 8; ++k) r += (k ? ", " : " ") + std::string(names[k]);
    if (names.size() > 8) r += fmt::format(fmt::runtime(" and {} more"), names.size() - 8);
  };
  add("input", "inputs", p.inputs, inputs);
  add("param", "params", p.params, params);
  return r.empty() ? "no input or param" : r;
}
// Throws the error for step `bad.step` of the plan, which produced a NaN or an infinity.
template <class PV>
[[noreturn]] void throw_non_finite(const PV& p, const non_finite_at& bad) {
  auto [op, loop, s, backward] = describe_step(p, static_cast<std::size_t>(bad.step));
  if (bad.output >= 0) {  // an output of a multi-output kernel
    const kernel_step& k = p.kernels[p.order[bad.step].index];
    op += fmt::format(fmt::runtime(" (output {})"), bad.output);
    s = p.in_shapes[k.first_in + k.n_in + bad.output];
  }
  std::vector<char> inputs, params;
  leaves_of_step(p, bad.step, inputs, params);
  throw non_finite_error(
      fmt::format(fmt::runtime("ctgraph: non-finite value ({}) at element {} of step {} of {} ({}): {} {}{} (from {})"),
                  non_finite_kind(bad.value), bad.element, bad.step, p.order.size(), backward ? "gradient" : "forward",
                  op, s, loop, leaf_list(p, inputs, params)),
      bad.step, bad.element, bad.value);
}
}  // namespace detail

}  // namespace ctgraph
