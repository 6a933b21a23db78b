// ops/elementwise.hpp: per-element ops with NumPy broadcasting.
//   binary: + - * /      unary: -x exp log tanh sigmoid relu sqrt erf      helper: step
//   composed: gelu (exact, through erf, and its tanh form)
//   Each is one scalar function; compile() fuses chains of them into one loop.
//   VJPs (g the output adjoint, y the output), each summed back over broadcast axes:
//     a+b: g, g    a-b: g, -g    a*b: g*b, g*a    a/b: g/b, -g*y/b    -x: -g
//     exp: g*y     log: g/x      tanh: g*(1-y*y)  sigmoid: g*y*(1-y)
//     relu: g*heaviside(x)            sqrt: g*0.5/y    step: none (zero almost everywhere)
//     erf: g*2/sqrt(pi)*exp(-x*x)
#pragma once
#include <cmath>
#include <ctgraph/rnn_kernels.hpp>

#include "fwd.hpp"

namespace ctgraph {

/// Shape rule of every elementwise op: operands broadcast together; with an explicit
/// target (a.i[0] == 1, broadcast_to) they must broadcast to exactly a.s.
constexpr shape_result elementwise_infer(const attr_t& a, const shape* in, int n) {
  shape_result r{true, in[0]};
  for (int k = 1; k < n && r.ok; ++k) r = broadcast(r.s, in[k]);
  if (r.ok && a.i[0] == 1) r = {broadcasts_to(r.s, a.s), a.s};
  return r;
}

template <class Derived>
struct elementwise_op {
  static constexpr op_class cls = op_class::elementwise;
  static constexpr bool stacks = true;
  static constexpr shape_result infer(const attr_t& a, const shape* in, int n) { return elementwise_infer(a, in, n); }
};

struct add_op : elementwise_op<add_op> {
  static constexpr const char* name = "add";
  static constexpr bool is_add = true;
  template <class T>
  static T scalar(T a, T b) {
    return a + b;
  }
  static constexpr void vjp(vjp_ctx& c) {
    set_unbroadcast(c, 0, c.grad());
    set_unbroadcast(c, 1, c.grad());
  }
  static void shape_mismatch(auto...) = delete;
};
struct sub_op : elementwise_op<sub_op> {
  static constexpr const char* name = "sub";
  template <class T>
  static T scalar(T a, T b) {
    return a - b;
  }
  static constexpr void vjp(vjp_ctx& c) {
    set_unbroadcast(c, 0, c.grad());
    if (c.wants[1]) set_unbroadcast(c, 1, -c.grad());
  }
  static void shape_mismatch(auto...) = delete;
};
struct mul_op : elementwise_op<mul_op> {
  static constexpr const char* name = "mul";
  template <class T>
  static T scalar(T a, T b) {
    return a * b;
  }
  static constexpr void vjp(vjp_ctx& c) {
    if (c.wants[0]) set_unbroadcast(c, 0, c.grad() * c.x(1));
    if (c.wants[1]) set_unbroadcast(c, 1, c.grad() * c.x(0));
  }
  static void shape_mismatch(auto...) = delete;
};
struct div_op : elementwise_op<div_op> {
  static constexpr const char* name = "div";
  static constexpr double flops = 4;
  template <class T>
  static T scalar(T a, T b) {
    return a / b;
  }
  static constexpr void vjp(vjp_ctx& c) {
    if (c.wants[0]) set_unbroadcast(c, 0, c.grad() / c.x(1));
    if (c.wants[1]) set_unbroadcast(c, 1, -(c.grad() * c.out()) / c.x(1));
  }
  static void shape_mismatch(auto...) = delete;
};
struct neg_op : elementwise_op<neg_op> {
  static constexpr const char* name = "neg";
  template <class T>
  static T scalar(T a, T) {
    return -a;
  }
  static constexpr void vjp(vjp_ctx& c) { c.set(0, -c.grad()); }
};
struct exp_op : elementwise_op<exp_op> {
  static constexpr const char* name = "exp";
  static constexpr double flops = 10;
  template <class T>
  static T scalar(T a, T) {
    return std::exp(a);
  }
  static constexpr void vjp(vjp_ctx& c) { c.set(0, c.grad() * c.out()); }
};
struct log_op : elementwise_op<log_op> {
  static constexpr const char* name = "log";
  static constexpr double flops = 10;
  template <class T>
  static T scalar(T a, T) {
    return std::log(a);
  }
  static constexpr void vjp(vjp_ctx& c) { c.set(0, c.grad() / c.x(0)); }
};
struct tanh_op : elementwise_op<tanh_op> {
  static constexpr const char* name = "tanh";
  static constexpr double flops = 20;
  template <class T>
  static T scalar(T a, T) {
    return std::tanh(a);
  }
  // Fused loops run tiles through this: the gate kernels' vectorised tanh (libm's is a call per element).
  template <class T>
  static void array(T* __restrict out, const T* a, int sa, const T*, int, long n) {
    if (sa)
      kernels::tanh_array(a, out, n);
    else
      for (long i = 0; i < n; ++i) out[i] = std::tanh(a[0]);
  }
  static constexpr void vjp(vjp_ctx& c) { c.set(0, c.grad() * (1.0 - c.out() * c.out())); }
};
struct sigmoid_op : elementwise_op<sigmoid_op> {
  static constexpr const char* name = "sigmoid";
  static constexpr double flops = 12;
  template <class T>
  static T scalar(T a, T) {
    return T(1) / (T(1) + std::exp(-a));
  }
  template <class T>
  static void array(T* __restrict out, const T* a, int sa, const T*, int, long n) {
    if (sa)
      kernels::sigmoid_array(a, out, n);
    else
      for (long i = 0; i < n; ++i) out[i] = scalar(a[0], a[0]);
  }
  static constexpr void vjp(vjp_ctx& c) { c.set(0, c.grad() * c.out() * (1.0 - c.out())); }
};
struct relu_op : elementwise_op<relu_op> {
  static constexpr const char* name = "relu";
  template <class T>
  static T scalar(T a, T) {
    return a > T(0) ? a : T(0);
  }
  static constexpr void vjp(vjp_ctx& c) { c.set(0, c.grad() * heaviside(c.x(0))); }
};
struct sqrt_op : elementwise_op<sqrt_op> {
  static constexpr const char* name = "sqrt";
  static constexpr double flops = 4;
  template <class T>
  static T scalar(T a, T) {
    return std::sqrt(a);
  }
  static constexpr void vjp(vjp_ctx& c) { c.set(0, 0.5 * c.grad() / c.out()); }
};
struct erf_op : elementwise_op<erf_op> {
  static constexpr const char* name = "erf";
  static constexpr double flops = 20;
  template <class T>
  static T scalar(T a, T) {
    return std::erf(a);
  }
  static constexpr void vjp(vjp_ctx& c) {  // d erf(x) = 2/sqrt(pi) exp(-x^2)
    c.set(0, c.grad() * (1.1283791670955125739 * exp(-(c.x(0) * c.x(0)))));
  }
};
struct step_op : elementwise_op<step_op> {
  static constexpr const char* name = "step";
  static constexpr bool no_gradient = true;  // its derivative is zero almost everywhere
  template <class T>
  static T scalar(T a, T) {
    return a > T(0) ? T(1) : T(0);
  }
};
/// broadcast_to: the identity, reading its operand with broadcasting (a.i[0] == 1, a.s the target).
struct broadcast_op : elementwise_op<broadcast_op> {
  static constexpr const char* name = "broadcast_to";
  template <class T>
  static T scalar(T a, T) {
    return a;
  }
  static constexpr void vjp(vjp_ctx& c) { set_unbroadcast(c, 0, c.grad()); }
  static void shape_mismatch(auto...) = delete;
};

// ---- on builder refs (vector-Jacobian rules) ----
namespace detail {
constexpr ref scalar_ref(builder* b, double v, dtype t) { return {b, b->constant(v, shape{}, t)}; }
}  // namespace detail
constexpr ref operator+(ref a, ref b) { return apply<add_op>(a, b); }
constexpr ref operator-(ref a, ref b) { return apply<sub_op>(a, b); }
constexpr ref operator*(ref a, ref b) { return apply<mul_op>(a, b); }
constexpr ref operator/(ref a, ref b) { return apply<div_op>(a, b); }
constexpr ref operator-(ref a) { return apply<neg_op>(a); }
constexpr ref operator+(double a, ref b) { return detail::scalar_ref(b.b, a, b.get().type) + b; }
constexpr ref operator-(double a, ref b) { return detail::scalar_ref(b.b, a, b.get().type) - b; }
constexpr ref operator*(double a, ref b) { return detail::scalar_ref(b.b, a, b.get().type) * b; }
constexpr ref operator/(ref a, double b) { return a * detail::scalar_ref(a.b, 1.0 / b, a.get().type); }
constexpr ref exp(ref x) { return apply<exp_op>(x); }
constexpr ref log(ref x) { return apply<log_op>(x); }
constexpr ref tanh(ref x) { return apply<tanh_op>(x); }
constexpr ref sigmoid(ref x) { return apply<sigmoid_op>(x); }
constexpr ref relu(ref x) { return apply<relu_op>(x); }
constexpr ref sqrt(ref x) { return apply<sqrt_op>(x); }
constexpr ref heaviside(ref x) { return apply<step_op>(x); }
constexpr ref erf(ref x) { return apply<erf_op>(x); }

// ---- on expressions (the public API) ----
namespace detail {
template <class T>
inline constexpr bool always_false = false;
template <class A, class B>
concept ew_operands = (expression<A> && (expression<B> || is_scalar_constant<B>::value)) ||
                      (is_scalar_constant<A>::value && expression<B>);
template <class Op, class A, class B>
constexpr auto binary(A a, B b) {
  if constexpr (is_scalar_constant<A>::value)
    return make_node<Op>(as_operand<B>(a), b);
  else
    return make_node<Op>(a, as_operand<A>(b));
}
template <class A, class B>
concept plain_number_operand = (std::is_arithmetic_v<A> && expression<B>) || (expression<A> && std::is_arithmetic_v<B>);
template <class A>
constexpr auto reject_plain_number() {
  static_assert(always_false<A>,
                "ctgraph: a plain number is a run-time value, but the graph is fixed at compile time: "
                "write 2.0_c * e (using namespace ctgraph::literals) or ctgraph::constant<2.0> * e");
}
}  // namespace detail

template <class A, class B>
requires detail::ew_operands<A, B>
constexpr auto operator+(A a, B b) { return detail::binary<add_op>(a, b); }
template <class A, class B>
requires detail::ew_operands<A, B>
constexpr auto operator-(A a, B b) { return detail::binary<sub_op>(a, b); }
template <class A, class B>
requires detail::ew_operands<A, B>
constexpr auto operator*(A a, B b) { return detail::binary<mul_op>(a, b); }
template <class A, class B>
requires detail::ew_operands<A, B>
constexpr auto operator/(A a, B b) { return detail::binary<div_op>(a, b); }

template <class A, class B>
requires detail::plain_number_operand<A, B>
constexpr auto operator+(A, B) { detail::reject_plain_number<A>(); }
template <class A, class B>
requires detail::plain_number_operand<A, B>
constexpr auto operator-(A, B) { detail::reject_plain_number<A>(); }
template <class A, class B>
requires detail::plain_number_operand<A, B>
constexpr auto operator*(A, B) { detail::reject_plain_number<A>(); }
template <class A, class B>
requires detail::plain_number_operand<A, B>
constexpr auto operator/(A, B) { detail::reject_plain_number<A>(); }

constexpr auto operator-(expression auto x) { return make_node<neg_op>(x); }
template <scalar_value V>
constexpr auto operator-(scalar_constant<V>) {
  return scalar_constant<scalar_value(-V.value())>{};
}
constexpr auto exp(expression auto x) { return make_node<exp_op>(x); }
constexpr auto log(expression auto x) { return make_node<log_op>(x); }
constexpr auto tanh(expression auto x) { return make_node<tanh_op>(x); }
constexpr auto sigmoid(expression auto x) { return make_node<sigmoid_op>(x); }
constexpr auto relu(expression auto x) { return make_node<relu_op>(x); }
constexpr auto sqrt(expression auto x) { return make_node<sqrt_op>(x); }
/// erf(x), the error function.
constexpr auto erf(expression auto x) { return make_node<erf_op>(x); }

/// The two forms of GELU torch offers (torch.nn.GELU(approximate='none' or 'tanh')).
enum class gelu_form { exact, tanh };
/// gelu(x) = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); gelu<gelu_form::tanh>(x) = 0.5 x (1 + tanh(sqrt(2/pi)
/// (x + 0.044715 x^3))). Built from elementwise ops, so one fused loop computes it and autodiff its gradient.
template <gelu_form F = gelu_form::exact>
constexpr auto gelu(expression auto x) {
  constexpr auto half = constant<0.5>;
  constexpr auto one = constant<1.0>;
  if constexpr (F == gelu_form::exact)
    return half * x * (one + erf(x * constant<0.70710678118654752440>));
  else
    return half * x * (one + tanh(constant<0.79788456080286535588> * (x + constant<0.044715> * x * x * x)));
}

/// broadcast_to<dims...>(x): x repeated along broadcast axes (NumPy rules).
template <int... D>
constexpr auto broadcast_to(expression auto x) {
  constexpr attr_t a = [] {
    attr_t r = attr_shape(make_shape<D...>());
    r.i[0] = 1;
    return r;
  }();
  return make_node<broadcast_op, a>(x);
}

}  // namespace ctgraph
