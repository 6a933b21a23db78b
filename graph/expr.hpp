// graph/expr.hpp: expressions as types. An expression's type names its node; the
// node's description (op, type, shape, attributes, pointers to its operands'
// descriptions) is one constant per type, so the compiler shares it wherever the
// type recurs and a graph is walked once, by pointer, when a step is compiled.
#pragma once
#include <array>
#include <concepts>

#include "node.hpp"

namespace ctgraph {

/// A node as the type system sees it: what `compile` reads to flatten a graph.
struct node_desc {
  const op_info* op;
  dtype type;
  shape out;
  attr_t a;
  int n_in;
  const node_desc* const* in;  // n_in operands
  const char* name;
  std::uint64_t hash;
  const node_desc* const* body = nullptr;  // a scan: its cell (graph/scan.hpp)
  int n_body = 0;
};

//! cg::expression: a type that names one graph node.
//! Needs: a static constexpr `desc` (its node_desc) and `value_type`.
//! Models: cg::input, cg::param, constants, every op's result, cg::grad.
template <class E>
concept expression = requires {
  { E::desc } -> std::convertible_to<const node_desc&>;
  typename E::value_type;
};

template <class E>
inline constexpr shape shape_of = E::desc.out;

/// One out-of-line entry per op and element type: every step of that op calls it, so a
/// graph of a thousand matmuls compiles one matmul kernel, not a thousand copies.
template <class Op, class T>
[[gnu::noinline]] void forward_entry(const run_args<T>& a) {
  Op::template forward<T>(a);
}

/// An elementwise op over arrays, one instantiation per op and type; a fused loop calls
/// these on L1-sized tiles. Strides are 0 (a broadcast value) or 1.
template <class Op, class T>
void elementwise_array(T* __restrict out, const T* a, int sa, const T* b, int sb, long n) {
  if (sa && sb)
    for (long i = 0; i < n; ++i) out[i] = Op::scalar(a[i], b[i]);
  else if (sa)
    for (long i = 0; i < n; ++i) out[i] = Op::scalar(a[i], b[0]);
  else if (sb)
    for (long i = 0; i < n; ++i) out[i] = Op::scalar(a[0], b[i]);
  else
    for (long i = 0; i < n; ++i) out[i] = Op::scalar(a[0], b[0]);
}

/// Gathers an op struct's run-time parts (its kernels) into one constant table.
template <class Op>
consteval op_runtime make_op_runtime() {
  op_runtime r;
  r.name = Op::name;
  if constexpr (requires { &Op::template array<float>; }) {  // an op with its own array loop (tanh: vectorised)
    r.array_f32 = &Op::template array<float>;
    r.array_f64 = &Op::template array<double>;
  } else if constexpr (requires { &Op::template scalar<float>; }) {
    r.array_f32 = &elementwise_array<Op, float>;
    r.array_f64 = &elementwise_array<Op, double>;
  }
  if constexpr (requires { &Op::template forward<float>; }) {
    r.fwd_f32 = &forward_entry<Op, float>;
    r.fwd_f64 = &forward_entry<Op, double>;
  }
  if constexpr (requires { Op::flops; }) r.flops = Op::flops;
  if constexpr (requires { &Op::step_flops; }) r.step_flops = &Op::step_flops;
  return r;
}
template <class Op>
inline constexpr op_runtime op_runtime_of = make_op_runtime<Op>();

//! cg::op_struct: what an op struct (see ops/) must hold, checked where the op is first used.
//! - `static constexpr const char* name` and `static constexpr op_class cls`;
//! - `static constexpr shape_result infer(const attr_t&, const shape*, int)`, the shape rule
//!   (a multi-output op: the first output's), and for a multi-output op also
//!   `static constexpr bool outputs(const attr_t&, const shape*, int, std::vector<shape>&)`;
//! - its computation: `template <class T> static T scalar(T, T)` (elementwise) or
//!   `template <class T> static void forward(const run_args<T>&)` (kernel);
//! - its gradient: `static constexpr void vjp(vjp_ctx&)`, or `static constexpr bool
//!   no_gradient = true` for an op none flows through (a misspelled vjp is an error, not a
//!   silent zero).
template <class Op>
concept op_struct = requires(const attr_t& a, const shape* s, vjp_ctx& c) {
  { Op::name } -> std::convertible_to<const char*>;
  { Op::cls } -> std::convertible_to<op_class>;
  { Op::infer(a, s, 0) } -> std::same_as<shape_result>;
}
&&(Op::cls != op_class::elementwise || requires(float x) { Op::template scalar<float>(x, x); }) &&
    (Op::cls != op_class::kernel || requires(const run_args<float>& r) { Op::template forward<float>(r); }) &&
    (
        requires(vjp_ctx & c) { Op::vjp(c); } != requires { Op::no_gradient; });

/// Gathers an op struct's parts (see ops/) into its op_info, after checking them, so that a
/// wrong op definition fails to compile with a message that names the part.
template <class Op>
consteval op_info make_op_info() {
  static_assert(
      requires {
        { Op::name } -> std::convertible_to<const char*>;
      },
      "ctgraph: an op struct needs `static constexpr const char* name`");
  static_assert(
      requires {
        { Op::cls } -> std::convertible_to<op_class>;
      },
      "ctgraph: an op struct needs `static constexpr op_class cls`");
  static_assert(
      requires(const attr_t& a, const shape* s) {
        { Op::infer(a, s, 0) } -> std::same_as<shape_result>;
      },
      "ctgraph: an op struct needs its shape rule, "
      "`static constexpr shape_result infer(const attr_t&, const shape*, int)`");
  static_assert(
      Op::cls != op_class::elementwise || requires(float x) { Op::template scalar<float>(x, x); },
      "ctgraph: an elementwise op struct needs `template <class T> static T scalar(T, T)`");
  static_assert(
      Op::cls != op_class::kernel || requires(const run_args<float>& r) { Op::template forward<float>(r); },
      "ctgraph: a kernel op struct needs `template <class T> static void forward(const run_args<T>&)`");
  constexpr bool has_vjp = requires(vjp_ctx & c) { Op::vjp(c); };
  constexpr bool no_gradient = requires { Op::no_gradient; };
  static_assert(has_vjp || no_gradient,
                "ctgraph: an op struct needs its gradient rule, `static constexpr void vjp(vjp_ctx&)`, or "
                "`static constexpr bool no_gradient = true` when no gradient flows through it");
  static_assert(!(has_vjp && no_gradient), "ctgraph: an op struct has both a vjp and no_gradient");
  op_info i;
  i.name = Op::name;
  i.cls = Op::cls;
  i.infer = &Op::infer;
  if constexpr (has_vjp) i.vjp = &Op::vjp;
  if constexpr (requires { &Op::int_bound; }) i.int_bound = &Op::int_bound;
  if constexpr (requires { Op::stacks; }) i.stacks = Op::stacks;
  if constexpr (requires { Op::accumulates; }) i.accumulates = Op::accumulates;
  if constexpr (requires { Op::accumulates_rows; }) i.accumulates_rows = Op::accumulates_rows;
  if constexpr (requires { Op::is_add; }) i.is_add = Op::is_add;
  if constexpr (requires { &Op::outputs; }) i.outputs = &Op::outputs;
  if constexpr (requires { &Op::build; }) i.build = &Op::build;
  i.rt = &op_runtime_of<Op>;
  static_assert(op_struct<Op>);
  return i;
}
template <class Op>
inline constexpr op_info op_info_of = make_op_info<Op>();

/// The one way to build a node on a builder (what vector-Jacobian rules compute with):
/// `apply<exp_op>(x)`, `apply<slice_op>(attr_ints({axis, b, e}), x)`. Type and shape come
/// from the operands and the op's shape rule.
template <class Op, class... R>
requires(std::same_as<R, ref>&&...) constexpr ref apply(attr_t a, ref x, R... rest) {
  return {x.b, x.b->make(&op_info_of<Op>, a, {x.id, rest.id...})};
}
template <class Op, class... R>
requires(std::same_as<R, ref>&&...) constexpr ref apply(ref x, R... rest) { return apply<Op>(attr_t{}, x, rest...); }

/// Output k of multi-output node id: its projection.
constexpr int project(builder& b, int id, int k) {
  attr_t a;
  a.i[0] = k;
  a.s = b.outputs_of(id)[k];
  return b.make(&op_info_of<project_op>, a, {id}, static_cast<int>(b[id].type));
}

template <class T>
using value_of = typename T::value_type;

namespace detail {
constexpr dtype first_float_type(std::initializer_list<const node_desc*> in) {
  for (const node_desc* d : in)
    if (d->type != dtype::i32) return d->type;
  return dtype::i32;
}
template <dtype T>
using value_type_t = std::conditional_t<T == dtype::f32, float, std::conditional_t<T == dtype::f64, double, int>>;

constexpr node_desc finish(node_desc d) {
  node n;
  n.op = d.op;
  n.type = d.type;
  n.out = d.out;
  n.a = d.a;
  n.n_in = d.n_in;
  n.name = d.name;
  n.n_body = d.n_body;
  d.hash = node_hash(n, [&](int k) { return k < d.n_in ? d.in[k]->hash : d.body[k - d.n_in]->hash; });
  return d;
}
}  // namespace detail

/// Attributes as a type: a pack of integers (trailing zeros dropped). Integer packs keep
/// expression types cheap for the compiler to compare, which class-type template
/// arguments are not.
template <long long... V>
struct attr_pack {
  static constexpr attr_t value = [] {
    long long v[14] = {V...};
    attr_t a;
    for (int k = 0; k < max_rank; ++k) a.i[k] = static_cast<int>(v[k]);
    a.vbits = v[6];
    a.s.rank = static_cast<int>(v[7]);
    for (int k = 0; k < max_rank; ++k) a.s.d[k] = static_cast<int>(v[8 + k]);
    return a;
  }();
};
namespace detail {
constexpr std::array<long long, 14> attr_words(const attr_t& a) {
  std::array<long long, 14> w{};
  for (int k = 0; k < max_rank; ++k) w[k] = a.i[k];
  w[6] = a.vbits;
  w[7] = a.s.rank;
  for (int k = 0; k < max_rank; ++k) w[8 + k] = a.s.d[k];
  return w;
}
template <attr_t A>
inline constexpr std::array<long long, 14> words_of = attr_words(A);
template <attr_t A>
constexpr auto attr_type() {
  constexpr std::size_t n = [] {
    std::size_t m = 14;
    while (m > 0 && words_of<A>[m - 1] == 0) --m;
    return m;
  }();
  return []<std::size_t... I>(std::index_sequence<I...>) { return attr_pack<words_of<A>[I]...>{}; }
  (std::make_index_sequence<n>{});
}
}  // namespace detail
template <attr_t A>
using attr_of = decltype(detail::attr_type<A>());

/// An op applied to operands, given by the addresses of their descs (not their types):
/// argument-dependent lookup (every `a + b`) visits the type arguments of a template, and
/// clang 14 does so as a tree, remembering nothing, so with fan-out (a residual net uses
/// h twice per layer) type operands cost time exponential in depth. Non-type arguments
/// are not visited. Built only by make_node, after the shape rule passed.
template <class Op, class Attr, const node_desc*... In>
struct op_expr {
  static constexpr dtype type = detail::first_float_type({In...});
  using value_type = detail::value_type_t<type>;
  static constexpr const node_desc* operands[] = {In..., nullptr};
  static constexpr node_desc desc =
      detail::finish({&op_info_of<Op>, type,
                      Op::infer(Attr::value, std::array<shape, sizeof...(In)>{In->out...}.data(), sizeof...(In)).s,
                      Attr::value, sizeof...(In), operands, nullptr, 0});
};

enum class leaf_kind { input, param };

/// A leaf's name as a type (a pack of characters).
template <char... C>
struct chars {
  static constexpr char data[] = {C..., '\0'};
};
namespace detail {
template <fixed_string S>
constexpr auto chars_of() {
  return []<std::size_t... I>(std::index_sequence<I...>) { return chars<S.data[I]...>{}; }
  (std::make_index_sequence<S.size()>{});
}
}  // namespace detail

/// A named leaf: fed at run time (input) or held in a parameter set (param).
template <leaf_kind K, class Name, class T, int... D>
struct leaf_expr {
  using value_type = T;
  static constexpr fixed_string<sizeof(Name::data)> name = Name::data;
  static constexpr node_desc desc = detail::finish({K == leaf_kind::input ? &input_info : &param_info,
                                                    dtype_of<T>(),
                                                    make_shape<D...>(),
                                                    {},
                                                    0,
                                                    nullptr,
                                                    Name::data,
                                                    0});
};

/// `cg::input<"x", float, 32, 64>`: a [32, 64] float input named "x".
template <fixed_string Name, class T, int... D>
inline constexpr leaf_expr<leaf_kind::input, decltype(detail::chars_of<Name>()), T, D...> input{};
/// `cg::param<"W", float, 64, 10>`: a trainable [64, 10] float parameter named "W".
template <fixed_string Name, class T, int... D>
requires(!std::is_same_v<T, int>) inline constexpr leaf_expr<leaf_kind::param, decltype(detail::chars_of<Name>()), T,
                                                             D...> param{};

/// A compile-time scalar: `cg::constant<0.5>`, or with `using namespace cg::literals`, `0.5_c`.
struct scalar_value {
  std::int64_t bits;
  consteval scalar_value(double v) : bits(std::bit_cast<std::int64_t>(v)) {}
  consteval scalar_value(int v) : scalar_value(static_cast<double>(v)) {}
  constexpr double value() const { return std::bit_cast<double>(bits); }
};

/// A scalar that has not met an operand yet: it takes the operand's element type.
template <scalar_value V>
struct scalar_constant {
  static constexpr double value = V.value();
};
template <scalar_value V>
inline constexpr scalar_constant<V> constant{};

/// A scalar constant of element type T: a node (it broadcasts against any shape).
template <dtype T, std::int64_t Bits>
struct const_expr {
  using value_type = detail::value_type_t<T>;
  static constexpr node_desc desc =
      detail::finish({&constant_info, T, shape{}, detail::attr_bits(Bits), 0, nullptr, nullptr, 0});
};

template <class C>
struct is_scalar_constant : std::false_type {};
template <scalar_value V>
struct is_scalar_constant<scalar_constant<V>> : std::true_type {};

/// Turns a scalar_constant into a node of E's element type; passes expressions through.
template <class E, class S>
constexpr auto as_operand(S s) {
  if constexpr (is_scalar_constant<S>::value)
    return const_expr<E::desc.type, std::bit_cast<std::int64_t>(S::value)>{};
  else
    return s;
}

/// grad(y, x): the adjoint of x in y. A marker: compile() runs one reverse sweep per y.
template <class Y, class X>
struct grad_expr {
  using value_type = value_of<X>;
  static constexpr const node_desc* operands[] = {&Y::desc, &X::desc};
  static constexpr node_desc desc =
      detail::finish({&grad_info, X::desc.type, X::desc.out, {}, 2, operands, nullptr, 0});
};

namespace literals {
/// `2.5_c`, `3_c`, `1e-3_c`: compile-time scalars (a plain `2.5 * e` cannot be: a
/// function argument is a run-time value, and the graph is fixed at compile time).
template <char... C>
consteval double parse_literal() {
  constexpr char s[] = {C..., '\0'};
  std::int64_t mant = 0;
  int exp10 = 0, i = 0;
  bool frac = false;
  for (; s[i] && s[i] != 'e' && s[i] != 'E'; ++i) {
    if (s[i] == '.') {
      frac = true;
      continue;
    }
    if (s[i] == '\'') continue;
    mant = mant * 10 + (s[i] - '0');
    if (frac) --exp10;
  }
  if (s[i]) {
    ++i;
    int sign = 1, e = 0;
    if (s[i] == '-' || s[i] == '+') sign = s[i++] == '-' ? -1 : 1;
    for (; s[i]; ++i) e = e * 10 + (s[i] - '0');
    exp10 += sign * e;
  }
  double v = static_cast<double>(mant), p = 1;
  for (int k = 0; k < (exp10 < 0 ? -exp10 : exp10); ++k) p *= 10;
  return exp10 < 0 ? v / p : v * p;
}
template <char... C>
consteval auto operator""_c() {
  return scalar_constant<scalar_value(parse_literal<C...>())>{};
}
}  // namespace literals

/// Builds the node `Op(in...)` over operand descs after checking its shape rule. A failed
/// check is a compile error whose first line names the op and the operand shapes.
template <class Op, attr_t A, const node_desc*... In>
constexpr auto make_node_of() {
  constexpr shape ins[] = {In->out..., shape{}};
  constexpr shape_result r = Op::infer(A, ins, sizeof...(In));
  if constexpr (!r.ok) {
    if constexpr (A.s.rank > 0)
      Op::shape_mismatch(dims_of<In->out>()..., dims_of<A.s>());
    else
      Op::shape_mismatch(dims_of<In->out>()...);
  } else {
    return op_expr<Op, attr_of<A>, In...>{};
  }
}

/// Builds the node `Op(in...)` after checking its shape rule.
template <class Op, attr_t A = attr_t{}, class... In>
constexpr auto make_node(In...) {
  static_assert((expression<In> && ...), "ctgraph: every operand must be a cg::expression");
  return make_node_of<Op, A, &In::desc...>();
}

namespace detail {
template <const node_desc* D>
constexpr std::vector<shape> outputs_of() {
  std::vector<shape> in, out;
  for (int k = 0; k < D->n_in; ++k) in.push_back(D->in[k]->out);
  in.push_back({});
  D->op->outputs(D->a, in.data(), D->n_in, out);
  return out;
}
template <const node_desc* D, int K>
constexpr attr_t project_attr() {
  attr_t a;
  a.i[0] = K;
  a.s = outputs_of<D>()[K];
  return a;
}
}  // namespace detail

/// Output K of a multi-output node (what a multi-output op's public function hands out).
template <int K, expression Tuple>
constexpr auto output(Tuple) {
  static_assert(Tuple::desc.op->outputs != nullptr, "ctgraph: output<K>(e) needs e to be a multi-output node");
  static_assert(K >= 0 && K < static_cast<int>(detail::outputs_of<&Tuple::desc>().size()),
                "ctgraph: output<K>(e): e has no output K");
  constexpr attr_t a = detail::project_attr<&Tuple::desc, K>();
  return make_node_of<project_op, a, &Tuple::desc>();
}

}  // namespace ctgraph
