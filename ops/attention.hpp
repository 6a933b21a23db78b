// ops/attention.hpp: scaled dot-product attention as one node over the fused kernels (<ctgraph/kernels.hpp>).
//   attention(q, k, v[, key_mask]) -> o, lse      o = softmax(scale q k^T [causal] [key mask]) v, per head
//     layout heads-major: q [..., Lq, d], k, v [..., Lk, d] (torch's sdpa); lse [..., Lq]
//     layout sequence-first, H heads: q [Lq, B, H d], k, v [Lk, B, H d] (torch.nn.MultiheadAttention's
//       projections: the kernels read each head in place through their strides, no reshape or permute);
//       lse [B, H, Lq]
//     key_mask [B, Lk]: 1 at keys to attend, 0 at padded ones (B: q's first batch axis, or 1; sequence-first:
//       its second)
//     a.i[0] causal, a.i[1] H (0: heads-major), a.value() the scale (0: 1/sqrt(d))
//   VJP: one attention_grad node (q, k, v, o, lse, do[, key_mask]) -> dq, dk, dv: the fused backward, which
//   recomputes the probabilities from q, k and lse, so no Lq x Lk buffer is planned, forward or backward.
//   Its own VJP (a second derivative) is not built: asking for it is a compile error that says so.
// The rewrite: compile() turns matmul(softmax(matmul(q, k^T) [* s] [+ causal_mask]) v), as a user writes it,
// into this node (rewrite_attention), so that the pattern costs what cg::attention costs.
#pragma once
#include <bit>
#include <ctgraph/kernels.hpp>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../graph/expr.hpp"
#include "elementwise.hpp"
#include "matmul.hpp"
#include "rnn.hpp"
#include "softmax.hpp"

namespace ctgraph {

namespace detail {
// The kernels' view of an attention node: sizes, flags and the layouts of its operands.
struct attention_geometry {
  bool ok = false;
  kernels::attention_shape s{};
  shape lse;
};
constexpr attention_geometry attention_geometry_of(const attr_t& a, const shape& q, const shape& k, const shape& v) {
  attention_geometry g;
  if (const int H = a.i[1]) {  // sequence-first
    if (q.rank != 3 || !(k == v) || k.rank != 3 || k.d[1] != q.d[1] || k.d[2] != q.d[2] || q.d[2] % H) return g;
    const int L = q.d[0], N = k.d[0], B = q.d[1], D = q.d[2] / H;
    g.s = {B, H, L, N, D, bool(a.i[0]), a.value()};
    g.s.q_layout = {long(H) * D, D, long(B) * H * D};
    g.s.kv_layout = g.s.q_layout;
    g.lse.rank = 3;
    g.lse.d[0] = B, g.lse.d[1] = H, g.lse.d[2] = L;
  } else {
    if (q.rank < 2 || !(k == v) || k.rank != q.rank || k.back() != q.back()) return g;
    int batch = 1, heads = 1;
    for (int i = 0; i + 2 < q.rank; ++i) {
      if (q.d[i] != k.d[i]) return g;
      (i == 0 ? batch : heads) *= q.d[i];
    }
    g.s = {batch, heads, q.d[q.rank - 2], k.d[k.rank - 2], q.back(), bool(a.i[0]), a.value()};
    g.lse = q;
    --g.lse.rank;
  }
  g.ok = true;
  return g;
}
constexpr bool key_mask_fits(const attention_geometry& g, const shape& m) {
  return m.rank == 2 && m.d[0] == g.s.batch && m.d[1] == g.s.kv_len;
}
}  // namespace detail

/// Gradient of attention: operands q, k, v, o, lse, dout (then the key mask if a.i[2]); outputs dq, dk, dv.
struct attention_grad_op {
  static constexpr const char* name = "attention_grad";
  static constexpr op_class cls = op_class::kernel;
  static constexpr bool outputs(const attr_t& a, const shape* in, int n, std::vector<shape>& out) {
    const bool has_mask = a.i[2];
    if (n != 6 + has_mask) return false;
    const detail::attention_geometry g = detail::attention_geometry_of(a, in[0], in[1], in[2]);
    if (!g.ok || !(in[3] == in[0]) || !(in[4] == g.lse) || !(in[5] == in[0])) return false;
    if (has_mask && !detail::key_mask_fits(g, in[6])) return false;
    out = {in[0], in[1], in[2]};
    return true;
  }
  static constexpr shape_result infer(const attr_t& a, const shape* in, int n) {
    return detail::first_output<attention_grad_op>(a, in, n);
  }
  // Summaries: dv = P^T dO, dP = dO V^T, dq = dS K, dk = dS^T Q, 2 FLOPs each per visible (query, key) pair
  // and feature (the recomputed scores are not counted, as FlashAttention's papers count).
  static constexpr double step_flops(const attr_t& a, const shape* in, int) {
    const detail::attention_geometry g = detail::attention_geometry_of(a, in[0], in[1], in[2]);
    return 8.0 * kernels::visible_pairs(g.s) * g.s.head_dim;
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    const detail::attention_geometry g =
        detail::attention_geometry_of(a.a, a.in_shape[0], a.in_shape[1], a.in_shape[2]);
    T* out[3] = {a.output(0), a.output(1), a.output(2)};
    detail::unread_to_scratch(out, {a.in_shape[0].size(), a.in_shape[1].size(), a.in_shape[2].size()});
    kernels::attention_backward(g.s, a.input(0), a.input(1), a.input(2), a.input(3), a.input(4), a.input(5), out[0],
                                out[1], out[2], a.a.i[2] ? a.input(6) : nullptr);
  }
  static constexpr void vjp(vjp_ctx& c) {
    for (int k = 0; k < 3; ++k)
      if (c.has_grad(k))
        throw "ctgraph: the gradient of attention's gradient (a second derivative through cg::attention) is not built";
  }
  static void shape_mismatch(auto...) = delete;
};

/// attention(q, k, v[, key_mask]): outputs o (q's shape) and lse (the log-sum-exp of each row of scaled,
/// masked scores, kept for the backward).
struct attention_op {
  static constexpr const char* name = "attention";
  static constexpr op_class cls = op_class::kernel;
  static constexpr bool outputs(const attr_t& a, const shape* in, int n, std::vector<shape>& out) {
    if (n < 3 || n > 4) return false;
    const detail::attention_geometry g = detail::attention_geometry_of(a, in[0], in[1], in[2]);
    if (!g.ok || (n == 4 && !detail::key_mask_fits(g, in[3]))) return false;
    out = {in[0], g.lse};
    return true;
  }
  static constexpr shape_result infer(const attr_t& a, const shape* in, int n) {
    return detail::first_output<attention_op>(a, in, n);
  }
  // Summaries: s = q k^T and o = P v, 2 FLOPs each per visible (query, key) pair and feature.
  static constexpr double step_flops(const attr_t& a, const shape* in, int) {
    const detail::attention_geometry g = detail::attention_geometry_of(a, in[0], in[1], in[2]);
    return 4.0 * kernels::visible_pairs(g.s) * g.s.head_dim;
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    const detail::attention_geometry g =
        detail::attention_geometry_of(a.a, a.in_shape[0], a.in_shape[1], a.in_shape[2]);
    T* out[2] = {a.output(0), a.output(1)};
    detail::unread_to_scratch(out, {a.in_shape[0].size(), g.lse.size()});
    kernels::attention_forward(g.s, a.input(0), a.input(1), a.input(2), out[0], out[1],
                               a.n_in > 3 ? a.input(3) : nullptr);
  }
  static constexpr void vjp(vjp_ctx& c) {
    if (c.has_grad(1)) throw "ctgraph: no gradient flows through attention's log-sum-exp output";
    if (!c.has_grad(0)) return;
    builder& b = c.b;
    attr_t a = c.attr();
    const bool has_mask = c.self().n_in > 3;
    a.i[2] = has_mask;
    std::vector<int> ins = {c.x(0).id, c.x(1).id, c.x(2).id, c.out(0).id, c.out(1).id, c.grad(0).id};
    if (has_mask) ins.push_back(c.x(3).id);
    const int g = b.make(&op_info_of<attention_grad_op>, a, ins.data(), static_cast<int>(ins.size()));
    for (int k = 0; k < 3; ++k)
      if (c.wants[k]) c.set(k, detail::output_ref(b, g, k));
    // The key mask is data: no gradient.
  }
  static void shape_mismatch(auto...) = delete;
};

/// causal_mask: [Lq, Lk] of 0 where key j is visible to query i (j <= i + Lk - Lq) and -inf elsewhere, the
/// additive mask of a causal softmax; a.i[0] Lq, a.i[1] Lk; its operand, a scalar constant, gives the type.
struct causal_mask_op {
  static constexpr const char* name = "causal_mask";
  static constexpr op_class cls = op_class::kernel;
  static constexpr bool no_gradient = true;
  static constexpr double flops = 0;
  static constexpr shape_result infer(const attr_t& a, const shape*, int) {
    return {a.i[0] > 0 && a.i[1] > 0, detail::matrix(a.i[0], a.i[1])};
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    const int Lq = a.a.i[0], Lk = a.a.i[1];
    for (int i = 0; i < Lq; ++i)
      for (int j = 0; j < Lk; ++j)
        a.out[long(i) * Lk + j] = j <= i + Lk - Lq ? T(0) : -std::numeric_limits<T>::infinity();
  }
  static void shape_mismatch(auto...) = delete;
};
/// causal_mask<Lq, Lk, T>(): [Lq, Lk], 0 where query i may see key j (j <= i + Lk - Lq), -inf elsewhere: what a
/// causal softmax(q k^T * s + causal_mask) adds to its scores. compile() turns that pattern into cg::attention.
template <int Lq, int Lk, class T = float>
constexpr auto causal_mask() {
  return make_node<causal_mask_op, attr_ints({Lq, Lk})>(const_expr<dtype_of<T>(), 0>{});
}

/// The rewrite (compile(), ops/all.hpp): matmul(softmax(matmul(q, k^T) [* s] [+ causal_mask]), v), as a user
/// writes scaled dot-product attention, becomes attention(q, k, v[, causal], scale s) (s a scalar constant; 1
/// if none), when q [..., Lq, d], k and v [..., Lk, d] have the same leading axes. Anything else (a scale that is
/// not a scalar constant, another mask, softmax over a permuted axis, v of another width) stays as written.
constexpr int rewrite_attention(builder& b, const builder& in, int n, const std::vector<int>& remap) {
  const node& m = in[n];
  if (m.op != &op_info_of<matmul_op> || m.a.i[0] || m.a.i[1]) return -1;
  const int p = in.in(n, 0), v = in.in(n, 1);
  if (in[p].op != &op_info_of<softmax_op>) return -1;
  int x = in.in(p, 0);
  attr_t a;
  if (in[x].op == &op_info_of<add_op>) {  // + causal_mask, either side
    const int l = in.in(x, 0), r = in.in(x, 1);
    const bool right = in[r].op == &op_info_of<causal_mask_op>, left = in[l].op == &op_info_of<causal_mask_op>;
    if (right == left) return -1;
    const int scores = right ? l : r;
    if (!(in[scores].out == in[x].out) || in[right ? r : l].type != in[x].type) return -1;
    a.i[0] = 1;
    x = scores;
  }
  double scale = 1;
  if (in[x].op == &op_info_of<mul_op>) {  // * s, either side
    const int l = in.in(x, 0), r = in.in(x, 1);
    const bool right = in[r].op->cls == op_class::constant && in[r].out.rank == 0;
    const bool left = in[l].op->cls == op_class::constant && in[l].out.rank == 0;
    if (!right && !left) return -1;
    scale = in[right ? r : l].a.value();
    x = right ? l : r;
  }
  if (scale == 0 || in[x].op != &op_info_of<matmul_op> || in[x].a.i[0] || !in[x].a.i[1]) return -1;
  const int q = in.in(x, 0), k = in.in(x, 1);
  if (in[q].type != in[v].type || in[k].type != in[v].type) return -1;
  a.vbits = std::bit_cast<std::int64_t>(scale);
  const detail::attention_geometry g = detail::attention_geometry_of(a, in[q].out, in[k].out, in[v].out);
  if (!g.ok || !(in[q].out == m.out)) return -1;
  return project(b, b.make(&op_info_of<attention_op>, a, {remap[q], remap[k], remap[v]}), 0);
}

/// cg::causal: query i attends to keys j <= i + (Lk - Lq) only (a decoder's self-attention).
struct causal_t {};
inline constexpr causal_t causal{};
/// cg::attention_scale<s>: the scores' factor (default 1/sqrt(d)).
template <scalar_value S>
struct attention_scale_t {
  static constexpr double value = S.value();
};
template <scalar_value S>
inline constexpr attention_scale_t<S> attention_scale{};
/// cg::heads<H>: q [Lq, B, E], k, v [Lk, B, E], sequence-first as torch.nn.MultiheadAttention lays them out,
/// E = H d split into H heads of d features (read in place), instead of the heads-major [..., L, d].
template <int H>
struct heads_t {
  static_assert(H > 0, "ctgraph: cg::heads<H>: H >= 1");
  static constexpr int count = H;
};
template <int H>
inline constexpr heads_t<H> heads{};

namespace detail {
template <class O>
constexpr void attention_option(attr_t& a) {
  if constexpr (std::is_same_v<O, causal_t>)
    a.i[0] = 1;
  else if constexpr (requires { O::count; })
    a.i[1] = O::count;
  else if constexpr (requires { O::value; })
    a.vbits = std::bit_cast<std::int64_t>(static_cast<double>(O::value));
}
template <class... O>
constexpr attr_t attention_attr() {
  attr_t a;
  (attention_option<O>(a), ...);
  return a;
}
template <class O>
inline constexpr bool is_attention_tag = std::is_same_v<O, causal_t> || requires {
  O::count;
}
|| requires { O::value; };
template <class O>
constexpr auto key_masks(O o) {
  if constexpr (is_attention_tag<O>)
    return std::tuple<>{};
  else
    return std::tuple<O>{o};
}
}  // namespace detail

/// cg::attention(q, k, v, options...): scaled dot-product attention, o = softmax(scale q k^T) v per head, as
/// one node over the fused kernels (no Lq x Lk buffer). q [..., Lq, d], k and v [..., Lk, d] with the same
/// leading axes (the first one the batch); options, in any order: cg::causal, cg::attention_scale<s> (default
/// 1/sqrt(d)), cg::heads<H> (sequence-first: q [Lq, B, H d], k, v [Lk, B, H d]) and a key mask [B, Lk] of q's
/// element type (1: attend, 0: padded). A query that sees no key (all masked) gets o = 0.
template <expression Q, expression K, expression V, class... O>
constexpr auto attention(Q q, K k, V v, O... options) {
  static_assert(((detail::is_attention_tag<O> || expression<O>)&&...),
                "ctgraph: attention(q, k, v, options...): an option is cg::causal, cg::attention_scale<s>, "
                "cg::heads<H> or a key mask expression");
  static_assert((!detail::is_attention_tag<O> + ... + 0) <= 1,
                "ctgraph: attention(q, k, v, ...): one key mask at most");
  static_assert(detail::same_value_types<Q, K, V>, "ctgraph: attention(q, k, v): one element type for q, k and v");
  constexpr attr_t a = detail::attention_attr<O...>();
  return std::apply(
      [&](auto... mask) {
        static_assert((std::is_same_v<value_of<decltype(mask)>, value_of<Q>> && ...),
                      "ctgraph: attention: the key mask has q's element type (1: attend, 0: padded)");
        return output<0>(make_node<attention_op, a>(q, k, v, mask...));
      },
      std::tuple_cat(detail::key_masks(options)...));
}

}  // namespace ctgraph
