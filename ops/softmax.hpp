// ops/softmax.hpp: softmax and log_softmax over the last axis (row max subtracted: stable).
//   softmax:     y = exp(x - max) / sum exp(x - max)     VJP: y * (g - rowsum(g * y))
//   log_softmax: z = x - max - log sum exp(x - max)      VJP: g - exp(z) * rowsum(g)
#pragma once
#include <ctgraph/kernels.hpp>

#include "elementwise.hpp"
#include "reduce.hpp"

namespace ctgraph {

template <bool Log>
struct softmax_family {
  static constexpr op_class cls = op_class::kernel;
  static constexpr double flops = 14;
  static constexpr shape_result infer(const attr_t&, const shape* in, int) { return {in[0].rank >= 1, in[0]}; }
  template <class T>
  static void forward(const run_args<T>& a) {
    kernels::softmax_rows(a.out, a.input(0), a.out_shape.rows(), a.out_shape.back(), Log);
  }
  static void shape_mismatch(auto...) = delete;
};
struct softmax_op : softmax_family<false> {
  static constexpr const char* name = "softmax";
  static constexpr void vjp(vjp_ctx& c) {
    ref y = c.out(), g = c.grad();
    c.set(0, y * (g - sum_rows(g * y)));
  }
};
struct log_softmax_op : softmax_family<true> {
  static constexpr const char* name = "log_softmax";
  static constexpr void vjp(vjp_ctx& c) {
    ref z = c.out(), g = c.grad();
    c.set(0, g - exp(z) * sum_rows(g));
  }
};

constexpr ref softmax(ref x) { return apply<softmax_op>(x); }

/// softmax(x): over the last axis.
constexpr auto softmax(expression auto x) {
  static_assert(shape_of<decltype(x)>.rank >= 1, "ctgraph: softmax(x) needs rank >= 1");
  return make_node<softmax_op>(x);
}
/// log_softmax(x): over the last axis.
constexpr auto log_softmax(expression auto x) {
  static_assert(shape_of<decltype(x)>.rank >= 1, "ctgraph: log_softmax(x) needs rank >= 1");
  return make_node<log_softmax_op>(x);
}

}  // namespace ctgraph
