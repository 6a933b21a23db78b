// ctgraph/grad.hpp: cg::grad(y, x...), the marker of a gradient that compile() derives.
#pragma once
#include "graph/expr.hpp"

namespace ctgraph {

template <class Y>
void grad_needs_a_scalar_output(auto) = delete;

/// The gradients of scalar Y with respect to each X, as one compile() argument. One type
/// for them all keeps type names short: y appears once, not once per x.
template <class Y, class... X>
struct grads {};

namespace detail {
// Whether every X is an expression. An array, not a fold (nor `expression... X`, which is
// one): clang caps a fold at 256 operands (-fbracket-depth), and a net can have more params.
template <class... X>
inline constexpr bool all_expressions = [] {
  const bool is[] = {expression<X>..., true};
  for (bool b : is)
    if (!b) return false;
  return true;
}();
}  // namespace detail

/// grad(y, x): the gradient of scalar y with respect to x (a param or input), as an
/// expression. With several x, a cg::grads<Y, X...> to pass to compile(); `out[grad(y, x)]`
/// then finds each. compile() derives all gradients of one y in a single reverse sweep.
template <expression Y, class... X>
requires detail::all_expressions<X...>
constexpr auto grad(Y, X...) {
  static_assert(sizeof...(X) > 0, "ctgraph: grad(y, x...) needs at least one x");
  if constexpr (shape_of<Y>.size() != 1) {
    grad_needs_a_scalar_output<Y>(dims_of<shape_of<Y>>());
  } else if constexpr (sizeof...(X) == 1) {
    return grad_expr<Y, X...>{};
  } else {
    return grads<Y, X...>{};
  }
}

}  // namespace ctgraph
