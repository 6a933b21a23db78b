// ctgraph/results.hpp: cg::results, the views of a run's outputs and gradients.
#pragma once
#include "parameters.hpp"
#include "program.hpp"
#include "view.hpp"

namespace ctgraph {

void not_an_output_of_this_step(auto expression) = delete;
// out[grad(y, W)] for a step compiled with grad(y): y does not depend on W, so W has no gradient.
void no_gradient_y_does_not_depend_on_param(auto param_name) = delete;
// out[grad(y, x)] for a step compiled with grad(y) and an input x: grad(y) holds params only.
void grad_y_holds_params_only_not_input(auto input_name) = delete;

namespace detail {
// The compile error of out[e] for an e that is not an output of Program's step: one that
// names the param (or input) when e is grad(y, x) and the step was compiled with grad(y).
// Its return type is deduced so that it is instantiated where out[e] is, and its error
// comes first.
template <class Program, class E>
auto missing_output() {
  if constexpr (is_grad_expr<E>::value) {
    [&]<class Y, class X>(grad_expr<Y, X>*) {
      if constexpr (Program::template grads_every_param_of<Y> && X::desc.op == &param_info)
        no_gradient_y_does_not_depend_on_param(name<X::name>{});
      else if constexpr (Program::template grads_every_param_of<Y> && X::desc.op == &input_info)
        grad_y_holds_params_only_not_input(name<X::name>{});
      else  // dependent on the lambda's parameters, or clang diagnoses it in the discarded branches
        not_an_output_of_this_step(dims_of<shape_of<grad_expr<Y, X>>>());
    }(static_cast<E*>(nullptr));
  } else {
    not_an_output_of_this_step(dims_of<shape_of<E>>());
  }
}
}  // namespace detail

/// The values a run produced: `out[e]` is a view of output e (an expression passed to compile).
template <class Step>
class results {
 public:
  /// Results of the last run of step `s`.
  explicit results(const Step* s) : s_(s) {}
  /// A read-only view of output `e`.
  template <expression E>
  auto operator[](E) const {
    constexpr int i = Step::program::template output_index<E>();
    if constexpr (i < 0)
      detail::missing_output<typename Step::program, E>();
    else
      return output<i>();
  }
  /// Whether the step's outputs hold a gradient of the param named `Name`.
  template <fixed_string Name>
  static constexpr bool has_grad = Step::program::grad_index(Name.data) >= 0;
  /// A read-only view of the gradient of the param named `Name` (the first such output:
  /// a grad(y, W), a grad(y, ..., W, ...) or W's among grad(y)), found at compile time.
  template <fixed_string Name>
  auto grad() const {
    constexpr int i = Step::program::grad_index(Name.data);
    static_assert(i >= 0, "ctgraph: results::grad<Name>(): no gradient of a param of that name among the outputs");
    return output<i>();
  }

 private:
  template <int I>
  auto output() const {
    constexpr output_entry o = Step::plan.outputs[I];
    using T = element_t<o.type>;
    const exec_ctx c{s_->arena_.get(), s_->params_.data(), s_->inputs_.data()};
    return view<const T, o.s.rank>(resolve<const T>(c, o.l), detail::dims_array<o.s.rank>(o.s));
  }

  const Step* s_;
};

}  // namespace ctgraph
