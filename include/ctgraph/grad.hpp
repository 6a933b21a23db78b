// ctgraph/grad.hpp: cg::grad(y) and cg::grad(y, x...), markers of the gradients that compile() derives.
#pragma once
#include <array>
#include <cstddef>
#include <vector>

#include "graph/autodiff.hpp"
#include "graph/expr.hpp"

namespace ctgraph {

template <class Y>
void grad_needs_a_scalar_output(auto) = delete;

/// The gradients of scalar Y with respect to each X, as one compile() argument. One type
/// for them all keeps type names short: y appears once, not once per x.
template <class Y, class... X>
struct grads {};

/// The gradients of scalar Y with respect to every param in its graph, as one compile()
/// argument: what grad(y) returns. Which params, and in which order: detail::params_of<Y>.
template <class Y>
struct param_grads {};

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

// The params in the graph below `root`, each once, operands first (the order in which
// flatten() emits them). An int node stops the walk, as it stops gradients. Iterative, as
// flatten() is, and the same walk written again: one walk shared by both, taking the visit
// as a lambda, made the 64-layer MLP compile 11% slower (10.6 s -> 11.8 s, g++ 12 -O2).
constexpr std::vector<const node_desc*> params_below(const node_desc* root) {
  std::vector<const node_desc*> params, stack{root};
  desc_map seen;
  while (!stack.empty()) {
    const node_desc* d = stack.back();
    if (seen.find(d)) {
      stack.pop_back();
      continue;
    }
    bool ready = true;
    if (d->type != dtype::i32) {
      for (int k = d->n_in - 1; k >= 0; --k)
        if (!seen.find(d->in[k])) stack.push_back(d->in[k]), ready = false;
      for (int k = d->n_body - 1; k >= 0; --k)  // a scan's cell reads params too
        if (!seen.find(d->body[k])) stack.push_back(d->body[k]), ready = false;
    }
    if (!ready) continue;
    stack.pop_back();
    seen.put(d, 0);
    if (d->op == &param_info) params.push_back(d);
  }
  return params;
}
template <class Y>
inline constexpr std::size_t param_count_of = params_below(&Y::desc).size();
// The params that grad(y) differentiates: every param in the graph of Y, operands first.
template <class Y>
inline constexpr std::array<const node_desc*, param_count_of<Y>> params_of = [] {
  std::array<const node_desc*, param_count_of<Y>> r{};
  const std::vector<const node_desc*> p = params_below(&Y::desc);
  for (std::size_t k = 0; k < p.size(); ++k) r[k] = p[k];
  return r;
}();
}  // namespace detail

/// grad(y): the gradient of scalar y with respect to every param in its graph, as a
/// cg::param_grads<Y> to pass to compile(); `out[grad(y, W)]` then finds each param's.
/// grad(y, x): the gradient with respect to x (a param or input), as an expression. With
/// several x, a cg::grads<Y, X...> to pass to compile(). compile() derives all gradients of
/// one y in a single reverse sweep.
template <expression Y, class... X>
requires detail::all_expressions<X...>
constexpr auto grad(Y, X...) {
  if constexpr (shape_of<Y>.size() != 1) {
    grad_needs_a_scalar_output<Y>(dims_of<shape_of<Y>>());
  } else if constexpr (sizeof...(X) == 0) {
    return param_grads<Y>{};
  } else if constexpr (sizeof...(X) == 1) {
    return grad_expr<Y, X...>{};
  } else {
    return grads<Y, X...>{};
  }
}

}  // namespace ctgraph
