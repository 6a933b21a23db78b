// ops/losses.hpp: cross_entropy and the one_hot it differentiates through.
//   cross_entropy(logits [..., C], labels int [...]) = mean over positions of
//     ce_i = logsumexp(logits row i) - logits[i, label_i]   (labels checked in [0, C) at run time)
//   masked: with cg::ignore_index<K>, the mean over positions whose label is not K (torch's
//     ignore_index, reduction 'mean'); with position weights w [...] (a 0/1 mask of padded
//     targets, say), sum_i w_i ce_i / sum_i w_i. No positions, or weights summing to 0: 0.
//   VJP (logits): (softmax(logits) - one_hot(labels)) * g * r_i, r_i the row's weight in the
//     mean (1 / positions, or ce_weights); labels and weights get none (they are data).
#pragma once
#include <cmath>

#include "softmax.hpp"

namespace ctgraph {

namespace detail {
// Row r's weight in a cross-entropy mean: 1 / R unmasked; (y_r != K) / count with
// cg::ignore_index<K> (a.i[0] = 1, a.i[1] = K); w_r / sum w with weights. 0 where nothing counts.
template <class T>
void ce_row_weights(const attr_t& a, long R, const int* y, const T* w, T* out) {
  T total = 0;
  for (long r = 0; r < R; ++r) total += w ? w[r] : a.i[0] && y[r] == a.i[1] ? T(0) : T(1);
  const T inv = total != T(0) ? T(1) / total : T(0);
  for (long r = 0; r < R; ++r) out[r] = (w ? w[r] : a.i[0] && y[r] == a.i[1] ? T(0) : T(1)) * inv;
}
}  // namespace detail

struct cross_entropy_op {
  static constexpr const char* name = "cross_entropy";
  static constexpr op_class cls = op_class::kernel;
  static constexpr double flops = 0;
  static constexpr shape_result infer(const attr_t&, const shape* in, int n) {
    const shape &x = in[0], &y = in[1];
    bool ok = x.rank >= 1 && y.rank == x.rank - 1 && (n == 2 || in[2] == y);
    for (int k = 0; ok && k < y.rank; ++k) ok = x.d[k] == y.d[k];
    return {ok, shape{}};
  }
  static constexpr int int_bound(const attr_t&, const shape* in, int k) { return k == 1 ? in[0].back() : 0; }
  template <class T>
  static void forward(const run_args<T>& a) {
    const long R = a.in_shape[0].rows(), C = a.in_shape[0].back();
    const T* x = a.input(0);
    const int* y = a.template input<int>(1);
    const T* w = a.n_in > 2 ? a.input(2) : nullptr;
    T total = 0, count = 0;
    for (long r = 0; r < R; ++r) {
      const T wr = w ? w[r] : a.a.i[0] && y[r] == a.a.i[1] ? T(0) : T(1);
      count += wr;
      if (wr == T(0)) continue;  // an ignored or padded position: not even read
      const T* xr = x + r * C;
      total += wr * (kernels::logsumexp(xr, C) - xr[y[r]]);
    }
    a.out[0] = count != T(0) ? total / count : T(0);
  }
  static constexpr void vjp(vjp_ctx& c);
  static void shape_mismatch(auto...) = delete;
};

/// A cross-entropy mean's row weights, [..., 1] (detail::ce_row_weights): operands labels
/// and, for a weighted mean, the weights; attributes as cross_entropy's.
struct ce_weights_op {
  static constexpr const char* name = "ce_weights";
  static constexpr op_class cls = op_class::kernel;
  static constexpr bool no_gradient = true;  // labels are ids; weights are data (a mask)
  static constexpr double flops = 0;
  static constexpr shape_result infer(const attr_t&, const shape* in, int) {
    shape s = in[0];
    if (s.rank >= max_rank) return {};
    s.d[s.rank++] = 1;
    return {true, s};
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    detail::ce_row_weights<T>(a.a, a.in_shape[0].size(), a.template input<int>(0), a.n_in > 1 ? a.input(1) : nullptr,
                              a.out);
  }
};

constexpr void cross_entropy_op::vjp(vjp_ctx& c) {
  ref x = c.x(0);
  const shape s = x.shape_of();
  ref p = softmax(x) - one_hot(c.x(1), s.back(), x.get().type);
  if (c.self().n_in == 2 && !c.attr().i[0]) return c.set(0, p * (c.grad() / static_cast<double>(s.rows())));
  builder& b = *x.b;
  const int rw = c.self().n_in > 2
                     ? b.make(&op_info_of<ce_weights_op>, c.attr(), {c.x(1).id, c.x(2).id})
                     : b.make(&op_info_of<ce_weights_op>, c.attr(), {c.x(1).id}, static_cast<int>(x.get().type));
  c.set(0, p * (c.grad() * ref{&b, rw}));
}

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

/// The label cross_entropy(logits, labels, cg::ignore_index<K>) skips (torch's ignore_index):
/// a padding token's id, in [0, C).
template <int K>
struct ignore_index_t {
  static constexpr int value = K;
};
template <int K>
inline constexpr ignore_index_t<K> ignore_index{};

/// The mean over the positions whose label is not K (0 when there are none); K in [0, C).
template <int K>
constexpr auto cross_entropy(expression auto logits, expression auto labels, ignore_index_t<K>) {
  static_assert(std::is_same_v<value_of<decltype(labels)>, int>,
                "ctgraph: cross_entropy(logits, labels, ignore_index<K>): labels must be an int input");
  static_assert(K >= 0 && K < shape_of<decltype(logits)>.back(),
                "ctgraph: cross_entropy: ignore_index<K> must be a class, in [0, C)");
  return make_node<cross_entropy_op, attr_ints({1, K})>(logits, labels);
}

/// The weighted mean sum_i w_i ce_i / sum_i w_i over positions, weights [...] as the labels
/// (a 0/1 mask of real targets gives the mean over those); 0 when the weights sum to 0.
/// No gradient flows to the weights: they are data.
template <expression W>
requires(!std::is_same_v<value_of<W>, int>) constexpr auto cross_entropy(expression auto logits, expression auto labels,
                                                                         W weights) {
  static_assert(std::is_same_v<value_of<decltype(labels)>, int>,
                "ctgraph: cross_entropy(logits, labels, weights): labels must be an int input");
  return make_node<cross_entropy_op>(logits, labels, weights);
}

}  // namespace ctgraph
