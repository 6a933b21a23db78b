// ctgraph/compile.hpp: the public entry points around a graph: grad, compile, feed,
// parameters_of, init, and the compiled step with its run().
#pragma once
#include <fmt/format.h>

#include <cstdlib>
#include <memory>
#include <random>
#include <ranges>
#include <stdexcept>
#include <string>

#include "graph/exec.hpp"
#include "ops/all.hpp"
#include "view.hpp"

namespace ctgraph {

// ---------------------------------------------------------------- grad

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

// ---------------------------------------------------------------- program

namespace detail {
template <class T>
struct is_grads : std::false_type {};
template <class Y, class... X>
struct is_grads<grads<Y, X...>> : std::true_type {};
// Whether O is a compile() argument: an expression, or grads<Y, X...> matched by pattern.
// Never cg::expression<grads<...>>: clang 14 prints a failed requirement's type into a
// string, and grads<Y, X...> printed spells out Y's graph as a tree (exponential).
template <class O>
inline constexpr bool is_output = expression<O>;
template <class Y, class... X>
inline constexpr bool is_output<grads<Y, X...>> = true;

// Appends the output ids of one compile() argument: an expression, or grads<Y, X...>.
template <class O>
constexpr void flatten_output(builder& b, desc_map& seen, std::vector<int>& outs) {
  if constexpr (is_grads<O>::value) {
    [&]<class Y, class... X>(grads<Y, X...>*) {
      const int y = flatten(b, seen, &Y::desc);
      for (const node_desc* x : {&X::desc...})  // a loop, not a fold: see all_expressions
        outs.push_back(b.make(&grad_info, {}, {y, flatten(b, seen, x)}, static_cast<int>(x->type)));
    }(static_cast<O*>(nullptr));
  } else {
    outs.push_back(flatten(b, seen, &O::desc));
  }
}
template <class O>
constexpr std::size_t output_count() {
  if constexpr (is_grads<O>::value)
    return []<class Y, class... X>(grads<Y, X...>*) { return sizeof...(X); }(static_cast<O*>(nullptr));
  else
    return 1;
}
// Index of E within one compile() argument O (an expression or grads<Y, X...>), or -1.
template <class E, class O>
constexpr int index_within() {
  if constexpr (is_grads<O>::value) {
    return []<class Y, class... X>(grads<Y, X...>*) {
      constexpr bool same[] = {std::is_same_v<E, grad_expr<Y, X>>...};
      for (std::size_t k = 0; k < sizeof...(X); ++k)
        if (same[k]) return static_cast<int>(k);
      return -1;
    }(static_cast<O*>(nullptr));
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
template <class T>
struct is_grad_expr : std::false_type {};
template <class Y, class X>
struct is_grad_expr<grad_expr<Y, X>> : std::true_type {};
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
/// Flattens compile()'s arguments and plans the graph.
template <class... Outs>
constexpr dyn_plan analyse() {
  builder b0;
  desc_map seen;
  std::vector<int> outs;
  (flatten_output<Outs>(b0, seen, outs), ...);
  return plan_graph(b0, outs, &op_info_of<add_op>);
}
}  // namespace detail

/// A compiled graph: its plan, computed once per list of outputs.
template <class... Outs>
struct program {
  /// How many steps, leaves and outputs the plan has: the sizes of its arrays.
  static constexpr plan_sizes sizes = [] {
    dyn_plan p = detail::analyse<Outs...>();
    return plan_sizes{p.kernels.size(), p.fused.size(),  p.order.size(),
                      p.inputs.size(),  p.params.size(), p.outputs.size()};
  }();
  /// The plan: steps in order, arena offsets, leaf and output tables.
  static constexpr fixed_plan<sizes> plan = fix<sizes>(detail::analyse<Outs...>());
  static_assert(plan.error != plan_error::duplicate_name,
                "ctgraph: two different leaves (inputs or params) share one name");

  /// Position of expression E among the outputs (a grads<Y, X...> counts one per X), or -1.
  template <class E>
  static constexpr int output_index() {
    return detail::output_position<E, Outs...>();
  }
  /// Output index of the first gradient (grad_expr or grads) of the param named `name`, or -1.
  static constexpr int grad_index(const char* name) { return detail::grad_position<Outs...>(name); }
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

// ---------------------------------------------------------------- feeds

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

template <class T>
struct element_type {};
void feed_name_is_not_an_input_of_this_graph(auto name) = delete;
void feed_size_does_not_match_input_shape(auto name, auto input_dims, auto feed_size) = delete;
void feed_element_type_does_not_match_input(auto name, auto input_type, auto feed_type) = delete;
void input_is_not_fed(auto name) = delete;
void param_missing_from_parameter_set(auto name) = delete;
void param_shape_differs_in_parameter_set(auto name, auto step_dims, auto set_dims) = delete;
void not_an_output_of_this_step(auto expression) = delete;

template <std::size_t N>
struct count {};

// ---------------------------------------------------------------- parameters

namespace detail {
struct aligned_free {
  void operator()(std::byte* p) const { std::free(p); }
};
using aligned_bytes = std::unique_ptr<std::byte[], aligned_free>;
inline aligned_bytes allocate(std::size_t bytes) {
  bytes = (bytes + 63) / 64 * 64;
  auto* p = static_cast<std::byte*>(std::aligned_alloc(64, bytes ? bytes : 64));
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, bytes ? bytes : 64);
  return aligned_bytes(p);
}
template <int R>
std::array<int, R> dims_array(const shape& s) {
  std::array<int, R> d{};
  for (int k = 0; k < R; ++k) d[k] = s.d[k];
  return d;
}
}  // namespace detail

/// Storage for every param a program uses, by name. `get<"W">()` is a mutable view.
template <class Program>
class parameters {
 public:
  static constexpr std::size_t count = Program::sizes.params;   ///< The number of params.
  static constexpr const auto& entries = Program::plan.params;  ///< Name, element type and shape of each param.

  /// Allocates every param, zero-filled.
  parameters() : data_(detail::allocate(total_bytes())) {}

  /// Byte offset of each param in the storage, 64-byte aligned; the last entry is the total.
  static constexpr auto offsets = [] {
    std::array<long, count + 1> o{};
    for (std::size_t k = 0; k < count; ++k)
      o[k + 1] = o[k] + (entries[k].s.size() * static_cast<long>(dtype_size(entries[k].type)) + 63) / 64 * 64;
    return o;
  }();
  /// Byte offset of param `i`.
  static constexpr long offset(std::size_t i) { return offsets[i]; }
  /// Bytes of storage for all params.
  static constexpr long total_bytes() { return offsets[count]; }
  /// Index of the param called `name`, or -1.
  static constexpr int find(const char* name) {
    for (std::size_t k = 0; k < count; ++k)
      if (str_eq(entries[k].name, name)) return static_cast<int>(k);
    return -1;
  }
  /// The storage of param `i`.
  void* ptr(std::size_t i) { return data_.get() + offset(i); }
  /// The storage of param `i`, read-only.
  const void* ptr(std::size_t i) const { return data_.get() + offset(i); }

  /// A mutable view of the param called `Name`; a compile error if there is none.
  template <fixed_string Name>
  auto get() {
    constexpr int i = find(Name.data);
    static_assert(i >= 0, "ctgraph: parameters::get<Name>(): no param of that name in this set");
    constexpr auto e = entries[i];
    using T = element_t<e.type>;
    return view<T, e.s.rank>(static_cast<T*>(ptr(i)), detail::dims_array<e.s.rank>(e.s));
  }
  /// Calls f(name, span) for every param, in the program's order.
  template <class F>
  void for_each(F&& f) {
    for (std::size_t k = 0; k < count; ++k) {
      std::string_view n(entries[k].name);
      const std::size_t len = static_cast<std::size_t>(entries[k].s.size());
      if (entries[k].type == dtype::f64)
        f(n, std::span<double>(static_cast<double*>(ptr(k)), len), entries[k].s);
      else
        f(n, std::span<float>(static_cast<float*>(ptr(k)), len), entries[k].s);
    }
  }

 private:
  detail::aligned_bytes data_;
};

/// Initialises every param: Glorot (Xavier) uniform for rank >= 2, U(-a, a) with
/// a = sqrt(6 / (fan_in + fan_out)), fan_in = d1 * r, fan_out = d0 * r, r the product
/// of the trailing dims (PyTorch's convention for [Out, In, ...] weights); zeros for
/// rank 0 and 1 (biases). Each param draws from its own stream seeded by (seed, name),
/// so adding a param does not change the others.
template <class P>
void init(parameters<P>& params, std::uint64_t seed) {
  params.for_each([&](std::string_view name, auto data, const shape& s) {
    using T = typename decltype(data)::element_type;
    if (s.rank < 2) {
      std::fill(data.begin(), data.end(), T(0));
      return;
    }
    double r = 1;
    for (int k = 2; k < s.rank; ++k) r *= s.d[k];
    const double a = std::sqrt(6.0 / (s.d[1] * r + s.d[0] * r));
    std::uint64_t h = seed * 0x9e3779b97f4a7c15ull;
    for (char c : name) h = hash_mix(h, static_cast<unsigned char>(c));
    std::mt19937_64 gen(h);
    for (T& v : data) v = static_cast<T>(a * (2.0 * (static_cast<double>(gen() >> 11) * 0x1.0p-53) - 1.0));
  });
}

// ---------------------------------------------------------------- finite checks

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
// "[4, 3]": a shape as messages print it.
inline std::string describe(const shape& s) {
  std::string r = "[";
  for (int k = 0; k < s.rank; ++k) r += (k ? ", " : "") + std::to_string(s.d[k]);
  return r + "]";
}
template <class F>
struct is_check_finite : std::is_same<F, check_finite_t> {};
// The name a run() argument feeds, nullptr for cg::check_finite.
template <class F>
constexpr const char* fed_name() {
  if constexpr (is_check_finite<F>::value)
    return nullptr;
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
                                         non_finite_kind(v), i, what, e.name, describe(e.s)),
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
  const order_entry& e = p.order[bad.step];
  std::string op, loop;  // "sub", " (fused loop: add, sqrt, mul, sub)"
  shape s;
  bool backward;
  if (e.fused) {
    const fused_step& f = p.fused[e.index];
    op = f.code[f.n - 1].op->name;
    for (int k = 0; k < f.n && f.n > 1; ++k) loop += (k ? ", " : " (fused loop: ") + std::string(f.code[k].op->name);
    if (f.n > 1) loop += ")";
    s = f.out_shape, backward = f.backward;
  } else {
    const kernel_step& k = p.kernels[e.index];
    op = k.op->name, s = k.out_shape, backward = k.backward;
  }
  std::vector<char> inputs, params;
  leaves_of_step(p, bad.step, inputs, params);
  throw non_finite_error(
      fmt::format(fmt::runtime("ctgraph: non-finite value ({}) at element {} of step {} of {} ({}): {} {}{} (from {})"),
                  non_finite_kind(bad.value), bad.element, bad.step, p.order.size(), backward ? "gradient" : "forward",
                  op, describe(s), loop, leaf_list(p, inputs, params)),
      bad.step, bad.element, bad.value);
}
}  // namespace detail

// ---------------------------------------------------------------- step

template <class Step>
class results;

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
  /// cg::non_finite_error at the first one; the results are then incomplete.
  template <class P, class... Feeds>
  results<step> run(parameters<P>& params, const Feeds&... feeds) {
    check_feed_names<Feeds...>();
    bind_inputs<Feeds...>(std::make_index_sequence<sizes.inputs>{}, feeds...);
    bind_params(params);
    check_int_inputs(std::make_index_sequence<sizes.inputs>{});
    const exec_ctx c{arena_.get(), params_.data(), inputs_.data()};
    if constexpr ((detail::is_check_finite<Feeds>::value || ...)) {
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
          if constexpr (!detail::is_check_finite<F>::value) {  // cg::check_finite is a run option, not a feed
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
          if constexpr (j < 0) {
            input_is_not_fed(name<detail::name_of<plan.inputs[I].name>()>{});
          } else {
            const auto& f = std::get<j>(std::forward_as_tuple(feeds...));
            constexpr long want = plan.inputs[I].s.size();
            if (static_cast<long>(f.size) != want)
              throw std::invalid_argument(
                  fmt::format("ctgraph: feed<\"{}\">: got {} elements, input \"{}\" has {} ({})", plan.inputs[I].name,
                              f.size, plan.inputs[I].name, want, detail::describe(plan.inputs[I].s)));
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

/// compile(outputs...): plans the graph of the given expressions (and the cg::grads that
/// grad(y, x1, x2, ...) returns) once, at compile time, and returns a step ready to run.
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
