// ctgraph/program.hpp: cg::program, the plan of one list of compile() outputs, and where each output is.
#pragma once
#include <vector>

#include "grad.hpp"
#include "graph/exec.hpp"
#include "ops/all.hpp"

namespace ctgraph {

namespace detail {
template <class T>
struct is_grads : std::false_type {};
template <class Y, class... X>
struct is_grads<grads<Y, X...>> : std::true_type {};
template <class T>
struct is_param_grads : std::false_type {};
template <class Y>
struct is_param_grads<param_grads<Y>> : std::true_type {};
template <class T>
struct is_grad_expr : std::false_type {};
template <class Y, class X>
struct is_grad_expr<grad_expr<Y, X>> : std::true_type {};
// Whether O is a compile() argument: an expression, or grads<Y, X...> or param_grads<Y>
// matched by pattern. Never cg::expression<grads<...>>: clang 14 prints a failed
// requirement's type into a string, and grads<Y, X...> printed spells out Y's graph as a
// tree (exponential).
template <class O>
inline constexpr bool is_output = expression<O>;
template <class Y, class... X>
inline constexpr bool is_output<grads<Y, X...>> = true;
template <class Y>
inline constexpr bool is_output<param_grads<Y>> = true;

// Appends a marker grad(y, x[k]) for each of the n descs x (y: its id).
constexpr void push_grads(builder& b, desc_map& seen, std::vector<int>& outs, int y, const node_desc* const* x,
                          std::size_t n) {
  for (std::size_t k = 0; k < n; ++k)  // a loop, not a fold: see all_expressions
    outs.push_back(b.make(&grad_info, {}, {y, flatten(b, seen, x[k])}, static_cast<int>(x[k]->type)));
}
// Appends the output ids of one compile() argument: an expression, grads<Y, X...> or
// param_grads<Y> (grads<Y, X...> for X the params of Y).
template <class O>
constexpr void flatten_output(builder& b, desc_map& seen, std::vector<int>& outs) {
  if constexpr (is_grads<O>::value) {
    [&]<class Y, class... X>(grads<Y, X...>*) {
      const node_desc* const x[] = {&X::desc...};
      push_grads(b, seen, outs, flatten(b, seen, &Y::desc), x, sizeof...(X));
    }(static_cast<O*>(nullptr));
  } else if constexpr (is_param_grads<O>::value) {
    [&]<class Y>(param_grads<Y>*) {
      push_grads(b, seen, outs, flatten(b, seen, &Y::desc), params_of<Y>.data(), params_of<Y>.size());
    }(static_cast<O*>(nullptr));
  } else {
    outs.push_back(flatten(b, seen, &O::desc));
  }
}
template <class O>
constexpr std::size_t output_count() {
  if constexpr (is_grads<O>::value)
    return []<class Y, class... X>(grads<Y, X...>*) { return sizeof...(X); }(static_cast<O*>(nullptr));
  else if constexpr (is_param_grads<O>::value)
    return []<class Y>(param_grads<Y>*) { return param_count_of<Y>; }(static_cast<O*>(nullptr));
  else
    return 1;
}
// Index of E within one compile() argument O (an expression, grads<Y, X...> or
// param_grads<Y>), or -1.
template <class E, class O>
constexpr int index_within() {
  if constexpr (is_grads<O>::value) {
    return []<class Y, class... X>(grads<Y, X...>*) {
      constexpr bool same[] = {std::is_same_v<E, grad_expr<Y, X>>...};
      for (std::size_t k = 0; k < sizeof...(X); ++k)
        if (same[k]) return static_cast<int>(k);
      return -1;
    }(static_cast<O*>(nullptr));
  } else if constexpr (is_param_grads<O>::value && is_grad_expr<E>::value) {
    return []<class Y, class Y2, class X>(param_grads<Y>*, grad_expr<Y2, X>*) {
      if constexpr (std::is_same_v<Y, Y2>) {
        for (std::size_t k = 0; k < params_of<Y>.size(); ++k)
          if (params_of<Y>[k] == &X::desc) return static_cast<int>(k);
      }
      return -1;
    }(static_cast<O*>(nullptr), static_cast<E*>(nullptr));
  } else {
    return std::is_same_v<E, O> ? 0 : -1;
  }
}
// Position among the outputs of compile(O...) of the first match, given for each argument the
// index of its match within that argument (-1: none); -1 when no argument matches.
template <class... O>
constexpr int position_among_outputs(const int* at) {
  constexpr std::size_t count[] = {output_count<O>()...};
  int pos = 0;
  for (std::size_t k = 0; k < sizeof...(O); ++k) {
    if (at[k] >= 0) return pos + at[k];
    pos += static_cast<int>(count[k]);
  }
  return -1;
}
// Position of expression E among the outputs of compile(O...), or -1.
template <class E, class... O>
constexpr int output_position() {
  constexpr int at[] = {index_within<E, O>()...};
  return position_among_outputs<O...>(at);
}
// Whether X is the param leaf named `name`.
template <class X>
constexpr bool is_param_named(const char* name) {
  return X::desc.op == &param_info && str_eq(X::desc.name, name);
}
// Index of the gradient of the param named `name` within one compile() argument O, or -1.
template <class O>
constexpr int grad_within(const char* name) {
  if constexpr (is_grads<O>::value) {
    return [name]<class Y, class... X>(grads<Y, X...>*) {
      const bool match[] = {is_param_named<X>(name)...};
      for (std::size_t k = 0; k < sizeof...(X); ++k)
        if (match[k]) return static_cast<int>(k);
      return -1;
    }(static_cast<O*>(nullptr));
  } else if constexpr (is_param_grads<O>::value) {
    return [name]<class Y>(param_grads<Y>*) {
      for (std::size_t k = 0; k < params_of<Y>.size(); ++k) {
        const node_desc* p = params_of<Y>[k];
        if (str_eq(p->name, name)) return static_cast<int>(k);
      }
      return -1;
    }(static_cast<O*>(nullptr));
  } else if constexpr (is_grad_expr<O>::value) {
    return [name]<class Y, class X>(grad_expr<Y, X>*) {
      return is_param_named<X>(name) ? 0 : -1;
    }(static_cast<O*>(nullptr));
  } else {
    return -1;
  }
}
// Position among the outputs of compile(O...) of the first gradient of the param named `name`, or -1.
template <class... O>
constexpr int grad_position(const char* name) {
  const int at[] = {grad_within<O>(name)...};
  return position_among_outputs<O...>(at);
}
// The descriptions below one compile() argument, appended to `roots`.
template <class O>
constexpr void push_roots(std::vector<const node_desc*>& roots) {
  if constexpr (is_grads<O>::value)
    [&]<class Y, class... X>(grads<Y, X...>*) {
      (roots.push_back(&Y::desc), ..., roots.push_back(&X::desc));
    }(static_cast<O*>(nullptr));
  else if constexpr (is_param_grads<O>::value)
    [&]<class Y>(param_grads<Y>*) { roots.push_back(&Y::desc); }(static_cast<O*>(nullptr));
  else
    roots.push_back(&O::desc);
}
/// Table sizes one analysis of compile(Outs...) fits in, guessed from the number of distinct
/// expression nodes below the outputs (a walk over their descriptions, far cheaper than the
/// analysis): a graph with its gradients has a few times as many nodes as its forward part.
/// A guess too small costs a second analysis (program), never a wrong plan.
template <class... Outs>
constexpr plan_sizes capacity_guess() {
  std::vector<const node_desc*> stack;
  (push_roots<Outs>(stack), ...);
  desc_map seen;
  std::size_t n = 0;
  while (!stack.empty()) {
    const node_desc* d = stack.back();
    stack.pop_back();
    if (seen.find(d)) continue;
    seen.put(d, 0);
    ++n;
    for (int k = 0; k < d->n_in; ++k) stack.push_back(d->in[k]);
    for (int k = 0; k < d->n_body; ++k) stack.push_back(d->body[k]);
  }
  const std::size_t outputs = (output_count<Outs>() + ...), steps = 4 * (n + outputs) + 32;
  return plan_sizes{steps,     steps,          2 * steps,     n, n, outputs, 6 * steps, n + 4,
                    2 * steps, 4 * steps + 64, 4 * steps + 64};
}
/// Flattens compile()'s arguments and plans the graph.
template <class... Outs>
constexpr dyn_plan analyse() {
  builder b0;
  desc_map seen;
  std::vector<int> outs;
  (flatten_output<Outs>(b0, seen, outs), ...);
  return plan_graph(b0, outs, &op_info_of<add_op>, &rewrite_node);
}
}  // namespace detail

/// A compiled graph: its plan, computed once per list of outputs.
template <class... Outs>
struct program {
  // The graph is analysed once, into tables of guessed sizes (a constant expression cannot
  // keep its heap, so the plan's own sizes are known only after the analysis); the plan is
  // then copied into tables of its exact sizes. When the guess is too small, it is analysed
  // a second time.
  /// Table sizes guessed for the one analysis: a few times the expression's distinct nodes.
  static constexpr plan_sizes capacity = detail::capacity_guess<Outs...>();
  /// The analysis in tables of sizes `capacity`, and whether it fit.
  static constexpr bounded_plan<capacity> first = fix_within<capacity>(detail::analyse<Outs...>());
  /// How many steps, leaves and outputs the plan has: the sizes of its arrays.
  static constexpr plan_sizes sizes = first.fits ? first.used : sizes_of(detail::analyse<Outs...>());
  /// The plan: steps in order, arena offsets, leaf and output tables.
  static constexpr fixed_plan<sizes> plan =
      first.fits ? fix<sizes>(first.plan) : fix<sizes>(detail::analyse<Outs...>(), sizes);
  static_assert(plan.error != plan_error::duplicate_name,
                "ctgraph: two different leaves (inputs or params) share one name");

  /// Position of expression E among the outputs (a grads<Y, X...> counts one per X, a
  /// param_grads<Y> one per param of Y), or -1.
  template <class E>
  static constexpr int output_index() {
    return detail::output_position<E, Outs...>();
  }
  /// Output index of the first gradient (grad_expr, grads or param_grads) of the param named
  /// `name`, or -1.
  static constexpr int grad_index(const char* name) { return detail::grad_position<Outs...>(name); }
  /// Whether one of the outputs is grad(y) (a param_grads<Y>), every param's gradient of Y.
  template <class Y>
  static constexpr bool grads_every_param_of = (std::is_same_v<Outs, param_grads<Y>> || ...);
};

namespace detail {
// A plan's leaf name as a fixed_string, so that diagnostics can print it. Given the name
// (`name_of<e.name>()`), not the plan entry: clang 14 rejects a reference to a subobject
// (an array element) as a template argument.
template <const char* Name>
consteval auto name_of() {
  constexpr std::size_t n = [] {
    std::size_t k = 0;
    while (Name[k]) ++k;
    return k;
  }();
  fixed_string<n + 1> s;
  for (std::size_t k = 0; k < n; ++k) s.data[k] = Name[k];
  return s;
}
}  // namespace detail

}  // namespace ctgraph
