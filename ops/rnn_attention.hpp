// ops/rnn_attention.hpp: one step of additive (Bahdanau) attention after its gemms, in one fused kernel
// (<ctgraph/rnn_kernels.hpp>): what nn::additive_attention runs inside a decoder's scan.
//   additive_attention(pk [S,B,A], pq [B,A], v [1,A], keys [S,B,H][, mask [S,B]])
//     -> context [B,H], weights [B,S], act [S,B,A] = tanh(pk + pq) (saved for the VJP)
//     e_j = (v . act_j) mask_j + (mask_j - 1) 1e9, weights = softmax over j, context = sum_j w_j keys_j
//     (a padded position weighs exactly 0; a row with no real position, uniformly 1/S)
//     VJP: one additive_attention_grad node (act, v, keys, weights[, mask], dcontext, dweights)
//          -> dpk, dpq, dv, dkeys; the mask gets none (it is data)
//   Grad of grad: the grad op's VJP differentiates its own formulas written as graph ops
//   (additive_attention_grad_op::reference), so the fused pair stays differentiable to any order.
// The unfused graph made a pass over an [S,B,A] or [S,B,H] buffer for each of a dozen ops per step, and
// ran the score v . t as a gemm with one column; the kernel keeps a row's scores in L1.
#pragma once
#include <array>
#include <ctgraph/rnn_kernels.hpp>
#include <vector>

#include "../graph/autodiff.hpp"
#include "elementwise.hpp"
#include "reduce.hpp"
#include "rnn.hpp"

namespace ctgraph {

namespace detail {
constexpr shape dims3(int a, int b, int c) {
  shape s;
  s.rank = 3;
  s.d[0] = a, s.d[1] = b, s.d[2] = c;
  return s;
}
// [B, S] -> [S, B, 1]: a row's weights as a column over the positions, for broadcasting against keys.
constexpr ref positions_major(ref w) {
  const int perm[] = {1, 0};
  const shape& s = w.shape_of();
  return reshape(permute(w, perm), dims3(s.d[1], s.d[0], 1));
}
}  // namespace detail

/// Gradient of additive_attention: operands act [S,B,A], v [1,A], keys [S,B,H], weights [B,S], then mask
/// [S,B] (if a.i[2]), dcontext [B,H] (if a.i[0]) and dweights [B,S] (if a.i[1]); outputs dpk [S,B,A], dpq
/// [B,A], dv [1,A], dkeys [S,B,H].
struct additive_attention_grad_op {
  static constexpr const char* name = "additive_attention_grad";
  static constexpr op_class cls = op_class::kernel;
  static constexpr double flops = 8;               // per element of act (summaries): the backward formulas, roughly
  static constexpr unsigned accumulates = 0b1001;  // dpk and dkeys: a decoder's running sums, added in the kernel
  static constexpr bool outputs(const attr_t& a, const shape* in, int n, std::vector<shape>& out) {
    const bool has_dc = a.i[0], has_dw = a.i[1], has_mask = a.i[2];
    if (n != 4 + has_mask + has_dc + has_dw || in[0].rank != 3 || in[2].rank != 3) return false;
    const int S = in[0].d[0], B = in[0].d[1], A = in[0].d[2], H = in[2].d[2];
    if (!(in[1] == detail::matrix(1, A)) || !(in[2] == detail::dims3(S, B, H)) || !(in[3] == detail::matrix(B, S)))
      return false;
    if (has_mask && !(in[4] == detail::matrix(S, B))) return false;
    if (has_dc && !(in[4 + has_mask] == detail::matrix(B, H))) return false;
    if (has_dw && !(in[4 + has_mask + has_dc] == detail::matrix(B, S))) return false;
    out = {in[0], detail::matrix(B, A), detail::matrix(1, A), in[2]};
    return true;
  }
  static constexpr shape_result infer(const attr_t& a, const shape* in, int n) {
    return detail::first_output<additive_attention_grad_op>(a, in, n);
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    const bool has_dc = a.a.i[0], has_dw = a.a.i[1], has_mask = a.a.i[2];
    const shape& t = a.in_shape[0];
    const int S = t.d[0], B = t.d[1], A = t.d[2], H = a.in_shape[2].d[2];
    T* out[4] = {a.output(0), a.output(1), a.output(2), a.output(3)};
    detail::unread_to_scratch(out, {long(S) * B * A, long(B) * A, long(A), long(S) * B * H});
    kernels::additive_attention_backward<T>({S, B, A, H}, a.input(0), a.input(1), a.input(2), a.input(3),
                                            has_mask ? a.input(4) : nullptr, has_dc ? a.input(4 + has_mask) : nullptr,
                                            has_dw ? a.input(4 + has_mask + has_dc) : nullptr, out[0], out[1], out[2],
                                            out[3], a.accumulator(0), a.accumulator(3));
  }
  /// The kernel's formulas as graph ops, over the grad node's operands x: its four outputs.
  static constexpr std::array<ref, 4> reference(builder& b, const attr_t& attr, const std::vector<ref>& x) {
    const bool has_dc = attr.i[0], has_dw = attr.i[1], has_mask = attr.i[2];
    ref act = x[0], v = x[1], keys = x[2], w = x[3];
    const int k_dc = 4 + has_mask, k_dw = k_dc + has_dc;
    const shape& t = act.shape_of();
    const int S = t.d[0], B = t.d[1], A = t.d[2], H = keys.shape_of().d[2];
    const dtype type = act.get().type;
    detail::term g = has_dw ? detail::term(x[k_dw]) : detail::none(b);
    if (has_dc) {  // g += dc . key_j, as [B, S]
      ref dots = reshape(sum_rows(keys * reshape(x[k_dc], detail::dims3(1, B, H))), detail::matrix(S, B));
      const int perm[] = {1, 0};
      g = g + detail::term(permute(dots, perm));
    }
    if (!g.some()) g = ref{&b, b.constant(0.0, detail::matrix(B, S), type)};
    ref de = detail::positions_major(w * (g.r - sum_rows(w * g.r)));  // [S, B, 1]
    if (has_mask) de = de * reshape(x[4], detail::dims3(S, B, 1));
    ref u = de * reshape(v, detail::dims3(1, 1, A)) * (1.0 - act * act);
    ref dpq = reshape(sum_to(u, detail::dims3(1, B, A)), detail::matrix(B, A));
    ref dv = reshape(sum_to(de * act, detail::dims3(1, 1, A)), detail::matrix(1, A));
    ref dkeys = has_dc ? detail::positions_major(w) * reshape(x[k_dc], detail::dims3(1, B, H))
                       : ref{&b, b.constant(0.0, keys.shape_of(), type)};
    return {u, dpq, dv, dkeys};
  }
  // Through reference: the adjoints of the outputs swept back over its graph to the operands.
  static constexpr void vjp(vjp_ctx& c) {
    builder& b = c.b;
    std::vector<ref> x;
    std::vector<int> targets;
    for (int k = 0; k < c.self().n_in; ++k) x.push_back(c.x(k)), targets.push_back(c.x(k).id);
    const std::array<ref, 4> r = reference(b, c.attr(), x);
    std::vector<int> roots, seeds;
    for (int k = 0; k < 4; ++k)
      if (c.has_grad(k)) roots.push_back(r[k].id), seeds.push_back(c.grad(k).id);
    if (roots.empty()) return;
    // The operands are cut: an operand that depends on another (dweights on weights) passes its adjoint on
    // in the outer sweep, not here as well.
    const std::vector<char> cut(targets.size(), 1);
    const std::vector<int> d = reverse_sweep(b, roots, seeds, targets, &op_info_of<add_op>, &cut);
    for (int k = 0; k < c.self().n_in; ++k)
      if (c.wants[k]) c.set(k, ref{&b, d[k]});
  }
  static void shape_mismatch(auto...) = delete;
};

/// additive_attention(pk, pq, v, keys[, mask]): operands pk [S,B,A], pq [B,A], v [1,A], keys [S,B,H], mask
/// [S,B]; outputs context [B,H], weights [B,S] and act [S,B,A].
struct additive_attention_op {
  static constexpr const char* name = "additive_attention";
  static constexpr op_class cls = op_class::kernel;
  static constexpr double flops = 20;  // per element of act (summaries): a tanh, the score and the context
  static constexpr bool outputs(const attr_t&, const shape* in, int n, std::vector<shape>& out) {
    if (n < 4 || n > 5 || in[0].rank != 3 || in[3].rank != 3) return false;
    const int S = in[0].d[0], B = in[0].d[1], A = in[0].d[2], H = in[3].d[2];
    if (!(in[1] == detail::matrix(B, A)) || !(in[2] == detail::matrix(1, A)) || !(in[3] == detail::dims3(S, B, H)))
      return false;
    if (n == 5 && !(in[4] == detail::matrix(S, B))) return false;
    out = {detail::matrix(B, H), detail::matrix(B, S), in[0]};
    return true;
  }
  static constexpr shape_result infer(const attr_t& a, const shape* in, int n) {
    return detail::first_output<additive_attention_op>(a, in, n);
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    const shape& k = a.in_shape[0];
    const int S = k.d[0], B = k.d[1], A = k.d[2], H = a.in_shape[3].d[2];
    T* out[3] = {a.output(0), a.output(1), a.output(2)};
    detail::unread_to_scratch(out, {long(B) * H, long(B) * S, long(S) * B * A});
    kernels::additive_attention_forward<T>({S, B, A, H}, a.input(0), a.input(1), a.input(2), a.input(3),
                                           a.n_in > 4 ? a.input(4) : nullptr, out[0], out[1], out[2]);
  }
  static constexpr void vjp(vjp_ctx& c) {
    using detail::term;
    builder& b = c.b;
    ref act = c.out(2);
    const shape& t = act.shape_of();
    const int B = t.d[1], A = t.d[2];
    term dpk = detail::none(b), dpq = detail::none(b);
    if (c.has_grad(2)) {  // grad of grad: act's adjoint, through act = tanh(pk + pq)
      ref u = c.grad(2) * (1.0 - act * act);
      dpk = u;
      dpq = reshape(sum_to(u, detail::dims3(1, B, A)), detail::matrix(B, A));
    }
    const term dc = detail::grad_or_none(c, 0), dw = detail::grad_or_none(c, 1);
    const bool has_mask = c.self().n_in > 4;
    if (dc.some() || dw.some()) {
      const term mask = has_mask ? term(c.x(4)) : detail::none(b);
      const int g = detail::make_over<additive_attention_grad_op>(b, attr_ints({dc.some(), dw.some(), has_mask}),
                                                                  {act, c.x(2), c.x(3), c.out(1), mask, dc, dw});
      dpk = dpk + term(detail::output_ref(b, g, 0));
      dpq = dpq + term(detail::output_ref(b, g, 1));
      if (c.wants[2]) c.set(2, detail::output_ref(b, g, 2));
      if (c.wants[3]) c.set(3, detail::output_ref(b, g, 3));
    }
    if (c.wants[0] && dpk.some()) c.set(0, dpk.r);
    if (c.wants[1] && dpq.some()) c.set(1, dpq.r);
  }
  static void shape_mismatch(auto...) = delete;
};

/// What cg::additive_attention returns: the context [B, H] and the weights [B, S].
template <class C, class W>
struct additive_attention_state {
  C context;  ///< [B, H]: sum over the positions of weight times key
  W weights;  ///< [B, S]: softmax over the positions of the scores; 0 at padded ones
};

/// additive_attention(pk, pq, v, keys[, mask]): one step of Bahdanau attention after its gemms, in one fused
/// kernel. pk [S, B, A] = W_h h_j (the projected keys), pq [B, A] = W_s s + b_s (the projected query), v [1,
/// A], keys [S, B, H], mask [S, B] (1: real, 0: padded). Returns {context, weights}: e_j = v . tanh(pk_j + pq),
/// weights = softmax over j (exactly 0 at padded positions), context = sum_j weights_j keys_j.
template <expression PK, expression PQ, expression V, expression K, expression... M>
requires(sizeof...(M) <= 1) constexpr auto additive_attention(PK, PQ, V, K, M...) {
  static_assert(detail::same_value_types<PK, PQ, V, K, M...>,
                "ctgraph: additive_attention(pk, pq, v, keys[, mask]): one element type for all");
  constexpr auto t = make_node<additive_attention_op>(PK{}, PQ{}, V{}, K{}, M{}...);
  return additive_attention_state<decltype(output<0>(t)), decltype(output<1>(t))>{output<0>(t), output<1>(t)};
}

}  // namespace ctgraph
