// ctgraph/results.hpp: cg::results, the views of a run's outputs and gradients.
#pragma once
#include "parameters.hpp"
#include "program.hpp"
#include "view.hpp"

namespace ctgraph {

void not_an_output_of_this_step(auto expression) = delete;

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
      not_an_output_of_this_step(dims_of<shape_of<E>>());
    else
      return output<i>();
  }
  /// Whether the step's outputs hold a gradient of the param named `Name`.
  template <fixed_string Name>
  static constexpr bool has_grad = Step::program::grad_index(Name.data) >= 0;
  /// A read-only view of the gradient of the param named `Name` (the first such output:
  /// a grad(y, W) or a grad(y, ..., W, ...)), found at compile time.
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
