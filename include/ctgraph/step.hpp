// ctgraph/step.hpp: cg::compile(outputs...), the compiled step it returns, run(), and cg::parameters_of.
#pragma once
#include <fmt/format.h>

#include <array>
#include <cstddef>
#include <span>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "check_finite.hpp"
#include "feed.hpp"
#include "format.hpp"
#include "parameters.hpp"
#include "program.hpp"
#include "results.hpp"

namespace ctgraph {

void param_missing_from_parameter_set(auto name) = delete;
void param_shape_differs_in_parameter_set(auto name, auto step_dims, auto set_dims) = delete;

/// A compiled step: the plan's arena, allocated once; run() allocates nothing.
template <class Program>
class step {
 public:
  using program = Program;                            ///< The planned graph.
  static constexpr const auto& plan = Program::plan;  ///< The plan this step runs.
  static constexpr auto sizes = Program::sizes;       ///< Sizes of the plan's arrays.

  /// Allocates the arena.
  step() : arena_(detail::allocate(static_cast<std::size_t>(plan.arena_bytes))) {}

  /// Bytes of the arena after buffer reuse.
  static constexpr long arena_bytes() { return plan.arena_bytes; }
  /// Bytes all intermediates would take without reuse.
  static constexpr long intermediate_bytes() { return plan.intermediate_bytes; }
  /// Steps per run: kernel calls and fused loops.
  static constexpr std::size_t num_steps() { return sizes.order; }
  /// Kernel calls per run.
  static constexpr std::size_t num_kernel_steps() { return sizes.kernels; }
  /// Fused elementwise loops per run.
  static constexpr std::size_t num_fused_steps() { return sizes.fused; }
  /// Nodes of the flat graph, forward and gradient, before pruning.
  static constexpr int graph_nodes() { return plan.graph_nodes; }

  /// Runs the step on `params` with one feed per input. Views into the results stay
  /// valid until the next run. With cg::check_finite among the feeds (in any position),
  /// checks inputs, params and every step's output for NaN and infinities and throws
  /// cg::non_finite_error at the first one; the results are then incomplete. A step with
  /// dropout (a training step) takes cg::seed(s) among the feeds too. With cg::profile(times) among them, adds
  /// each step's seconds to `times` (cg::profile_table tabulates them).
  template <class P, class... Feeds>
  results<step> run(parameters<P>& params, const Feeds&... feeds) {
    check_feed_names<Feeds...>();
    bind_inputs<Feeds...>(std::make_index_sequence<sizes.inputs>{}, feeds...);
    bind_params(params);
    check_int_inputs(std::make_index_sequence<sizes.inputs>{});
    const exec_ctx c{arena_.get(), params_.data(), inputs_.data()};
    static_assert(!((detail::is_check_finite<Feeds>::value || ...) && (detail::is_profile<Feeds>::value || ...)),
                  "ctgraph: step.run: cg::check_finite and cg::profile do not combine (the checks would be timed)");
    if constexpr ((detail::is_profile<Feeds>::value || ...)) {
      detail::run_plan_timed(c, plan, *detail::profile_times(feeds...));
    } else if constexpr ((detail::is_check_finite<Feeds>::value || ...)) {
      const plan_view v = view_of(plan);
      detail::check_leaves_finite(v, c);
      if (const non_finite_at bad = run_plan_checked(c, plan); bad.step >= 0) detail::throw_non_finite(v, bad);
    } else {
      run_plan(c, plan);
    }
    return results<step>(this);
  }

 private:
  template <class Step>
  friend class results;

  template <class... Feeds>
  static constexpr void check_feed_names() {
    (
        [] {
          using F = Feeds;
          // cg::check_finite and cg::profile are run options, not feeds; cg::seed is ignored by a step without
          // dropout.
          if constexpr (!detail::is_check_finite<F>::value && !detail::is_profile<F>::value &&
                        !detail::is_seed<F>::value) {
            constexpr int i = input_index(F::name.data);
            if constexpr (i < 0) {
              feed_name_is_not_an_input_of_this_graph(name<F::name>{});
            } else {
              constexpr leaf_entry e = plan.inputs[i];
              if constexpr (dtype_of<typename F::value_type>() != e.type)
                feed_element_type_does_not_match_input(name<F::name>{}, element_type<element_t<e.type>>{},
                                                       element_type<typename F::value_type>{});
              if constexpr (F::extent != std::dynamic_extent && static_cast<long>(F::extent) != e.s.size())
                feed_size_does_not_match_input_shape(name<F::name>{}, dims_of<e.s>(), count<F::extent>{});
            }
          }
        }(),
        ...);
  }
  static constexpr int input_index(const char* n) {
    for (std::size_t k = 0; k < sizes.inputs; ++k)
      if (str_eq(plan.inputs[k].name, n)) return static_cast<int>(k);
    return -1;
  }
  template <std::size_t I, class... Feeds>
  static constexpr int feed_for() {
    int found = -1, j = 0;
    ((detail::fed_name<Feeds>() && str_eq(plan.inputs[I].name, detail::fed_name<Feeds>())&& found < 0 ? found = j : 0,
      ++j),
     ...);
    return found;
  }
  template <class... Feeds, std::size_t... I>
  void bind_inputs(std::index_sequence<I...>, const Feeds&... feeds) {
    (
        [&] {
          constexpr int j = feed_for<I, Feeds...>();
          if constexpr (j < 0 && str_eq(plan.inputs[I].name, detail::seed_input_name.data)) {
            step_applies_dropout_so_run_needs_cg_seed(name<detail::name_of<plan.inputs[I].name>()>{});
          } else if constexpr (j < 0) {
            input_is_not_fed(name<detail::name_of<plan.inputs[I].name>()>{});
          } else if constexpr (detail::is_seed<std::tuple_element_t<j, std::tuple<Feeds...>>>::value) {
            inputs_[I] = std::get<j>(std::forward_as_tuple(feeds...)).halves;
          } else {
            const auto& f = std::get<j>(std::forward_as_tuple(feeds...));
            constexpr long want = plan.inputs[I].s.size();
            if (static_cast<long>(f.size) != want)
              throw std::invalid_argument(
                  fmt::format("ctgraph: feed<\"{}\">: got {} elements, input \"{}\" has {} ({})", plan.inputs[I].name,
                              f.size, plan.inputs[I].name, want, plan.inputs[I].s));
            if (f.data == nullptr)
              throw std::invalid_argument(fmt::format("ctgraph: feed<\"{}\">: null data", plan.inputs[I].name));
            inputs_[I] = f.data;
          }
        }(),
        ...);
  }
  // For each param of this step, its index in parameter set P (-1: missing, -2: other shape or type).
  template <class P>
  static constexpr auto param_map = [] {
    std::array<int, sizes.params + 1> m{};
    for (std::size_t i = 0; i < sizes.params; ++i) {
      const int j = parameters<P>::find(plan.params[i].name);
      const bool same = j >= 0 && parameters<P>::entries[j].s == plan.params[i].s &&
                        parameters<P>::entries[j].type == plan.params[i].type;
      m[i] = j < 0 ? -1 : same ? j : -2;
    }
    return m;
  }();
  template <class P>
  static constexpr int first_bad_param() {
    for (std::size_t i = 0; i < sizes.params; ++i)
      if (param_map<P>[i] < 0) return static_cast<int>(i);
    return -1;
  }
  template <class P>
  void bind_params(parameters<P>& params) {
    constexpr int bad = first_bad_param<P>();
    if constexpr (bad >= 0) {
      constexpr auto n = name<detail::name_of<plan.params[bad].name>()>{};
      if constexpr (param_map<P>[bad] == -1)
        param_missing_from_parameter_set(n);
      else
        param_shape_differs_in_parameter_set(
            n, dims_of<plan.params[bad].s>(),
            dims_of<parameters<P>::entries[parameters<P>::find(plan.params[bad].name)].s>());
    } else {
      for (std::size_t i = 0; i < sizes.params; ++i) params_[i] = params.ptr(param_map<P>[i]);
    }
  }
  template <std::size_t... I>
  void check_int_inputs(std::index_sequence<I...>) const {
    (
        [&] {
          constexpr leaf_entry e = plan.inputs[I];
          if constexpr (e.type == dtype::i32 && e.bound > 0) {
            const int* v = static_cast<const int*>(inputs_[I]);
            for (long k = 0; k < e.s.size(); ++k)
              if (v[k] < 0 || v[k] >= e.bound)
                throw std::out_of_range(
                    fmt::format("ctgraph: input \"{}\" holds {} at index {}, outside [0, {}) required by {}", e.name,
                                v[k], k, e.bound, e.bound_op));
          }
        }(),
        ...);
  }
  detail::aligned_bytes arena_;
  std::array<void*, sizes.params + 1> params_{};
  std::array<const void*, sizes.inputs + 1> inputs_{};
};

/// compile(outputs...): plans the graph of the given expressions (and of what grad(y) and
/// grad(y, x1, x2, ...) return) once, at compile time, and returns a step ready to run.
template <class... O>
auto compile(O...) {
  static_assert((detail::is_output<O> && ...),
                "ctgraph: compile(outputs...) takes expressions and the results of grad()");
  return step<program<O...>>();
}

/// The parameter set a step's graph uses, zero-initialised; see init().
template <class P>
parameters<P> parameters_of(const step<P>&) {
  return parameters<P>();
}

}  // namespace ctgraph
