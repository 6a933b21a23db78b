// ops/losses.hpp: cross_entropy and the one_hot it differentiates through.
//   cross_entropy(logits [..., C], labels int [...]) = mean over positions of
//     logsumexp(logits row) - logits[label]        (labels checked in [0, C) at run time)
//   VJP (logits): (softmax(logits) - one_hot(labels)) * g / positions; labels get none.
#pragma once
#include <cmath>

#include "softmax.hpp"

namespace ctgraph {

struct cross_entropy_op {
  static constexpr const char* name = "cross_entropy";
  static constexpr op_class cls = op_class::kernel;
  static constexpr double flops = 0;
  static constexpr shape_result infer(const attr_t&, const shape* in, int) {
    const shape &x = in[0], &y = in[1];
    bool ok = x.rank >= 1 && y.rank == x.rank - 1;
    for (int k = 0; ok && k < y.rank; ++k) ok = x.d[k] == y.d[k];
    return {ok, shape{}};
  }
  static constexpr int int_bound(const attr_t&, const shape* in, int k) { return k == 1 ? in[0].back() : 0; }
  template <class T>
  static void forward(const run_args<T>& a) {
    const long R = a.in_shape[0].rows(), C = a.in_shape[0].back();
    const T* x = a.input(0);
    const int* y = a.template input<int>(1);
    T total = 0;
    for (long r = 0; r < R; ++r) {
      const T* xr = x + r * C;
      T mx = xr[0];
      for (long j = 1; j < C; ++j) mx = xr[j] > mx ? xr[j] : mx;
      T s = 0;
      for (long j = 0; j < C; ++j) s += std::exp(xr[j] - mx);
      total += mx + std::log(s) - xr[y[r]];
    }
    a.out[0] = total / T(R);
  }
  static constexpr void vjp(vjp_ctx& c) {
    ref x = c.x(0);
    const shape& s = x.shape_of();
    ref p = softmax(x) - one_hot(c.x(1), s.back(), x.get().type);
    c.set(0, p * (c.grad() / static_cast<double>(s.rows())));
  }
  static void shape_mismatch(auto...) = delete;
};

struct one_hot_op {
  static constexpr const char* name = "one_hot";
  static constexpr op_class cls = op_class::kernel;
  static constexpr bool no_gradient = true;  // its operand is int ids
  static constexpr double flops = 0;
  static constexpr shape_result infer(const attr_t& a, const shape* in, int) {
    shape s = in[0];
    if (s.rank >= max_rank || a.i[0] < 1) return {};
    s.d[s.rank++] = a.i[0];
    return {true, s};
  }
  static constexpr int int_bound(const attr_t& a, const shape*, int) { return a.i[0]; }
  template <class T>
  static void forward(const run_args<T>& a) {
    const long n = a.in_shape[0].size(), C = a.a.i[0];
    const int* ids = a.template input<int>(0);
    for (long i = 0; i < n * C; ++i) a.out[i] = T(0);
    for (long i = 0; i < n; ++i) a.out[i * C + ids[i]] = T(1);
  }
};

constexpr ref one_hot(ref ids, int classes, dtype t) {
  // Typed explicitly: its operand is int ids.
  return {ids.b, ids.b->make(&op_info_of<one_hot_op>, attr_ints({classes}), {ids.id}, static_cast<int>(t))};
}

/// cross_entropy(logits, labels): mean over positions of -log softmax(logits)[label].
/// logits [..., C] float; labels [...] an int input with values in [0, C).
constexpr auto cross_entropy(expression auto logits, expression auto labels) {
  static_assert(std::is_same_v<value_of<decltype(labels)>, int>,
                "ctgraph: cross_entropy(logits, labels): labels must be an int input");
  return make_node<cross_entropy_op>(logits, labels);
}

}  // namespace ctgraph
