// <ctgraph/rnn_attention.hpp>: attention for recurrent models, part of <ctgraph/nn.hpp>.
//   nn::additive_attention<"attn", A>(q, keys[, mask])   Bahdanau: e_j = v^T tanh(W_s q + W_h h_j)
//   nn::dot_attention<"attn">(q, keys[, mask])            Luong dot: e_j = q . h_j
//   nn::dot_attention<"attn", nn::luong::general>(...)    Luong general: e_j = q^T W h_j
// q [B, Hq] (a decoder's state), keys [S, B, Hk] (an encoder's outputs, time-major as torch's
// nn.LSTM gives them), mask [S, B] or [S, B, 1] of the keys' element type, 1 at real positions
// and 0 at padded ones (cg::sequence_mask gives it). Weights a = softmax over the S positions of
// e (a padded position's weight is exactly 0), context c = sum_j a_j h_j. Inside a decoder's
// cg::scan, what depends only on the keys (W_h h_j) is a free value: computed once, before the
// loop.
#pragma once
#include "nn.hpp"

namespace ctgraph::nn {

/// What an attention layer returns: the context [B, Hk] and the weights [B, S].
template <class C, class W>
struct attention_result {
  C context;  ///< [B, Hk]: sum over the positions of weight times key
  W weights;  ///< [B, S]: softmax over the positions; 0 at padded ones
};

/// An attention layer's shape error: q must be [B, Hq], keys [S, B, Hk] with the same B (and, for
/// dot attention, Hq == Hk), a mask [S, B] or [S, B, 1]. Deleted, so that the first error line names
/// the layer and the shapes.
void attention_shape_mismatch(auto layer_name, auto query_dims, auto keys_dims, auto... mask_dims) = delete;

/// Luong's scores: dot (q . h_j, Hq == Hk, no params) or general (q^T W h_j, W [Hq, Hk]).
enum class luong { dot, general };

namespace detail {
template <shape Q, shape K, shape... M>
constexpr bool attention_shapes_fit(bool same_width) {
  bool ok = Q.rank == 2 && K.rank == 3 && Q.d[0] == K.d[1] && (!same_width || Q.d[1] == K.d[2]);
  ((ok = ok && (M.rank == 2 || (M.rank == 3 && M.d[2] == 1)) && M.d[0] == K.d[0] && M.d[1] == K.d[1]), ...);
  return ok;
}
// Weights [B, S] and context [B, Hk] from scores e [S, B] over keys [S, B, Hk], masked: a padded
// position's score is replaced by -1e9, so its weight is exactly 0 in float and double (finite, so that no
// inf - inf appears), and a row with no real position gets uniform weights, which its scores do not change
// (the fused additive kernel's rule). The softmax runs over the positions, the last axis once transposed.
template <class E, class K, class... M>
constexpr auto attend(E e, K keys, M... mask) {
  constexpr shape ks = shape_of<K>;
  constexpr int S = ks.d[0], B = ks.d[1];
  if constexpr (sizeof...(M) == 1) {
    auto m = reshape<S, B>(mask...);
    auto masked = e * m + (m - constant<1.0>)*constant<1e9>;
    return attend(masked, keys);
  } else {
    auto w = softmax(permute<1, 0>(e));  // [B, S]
    auto c = sum<0>(reshape<S, B, 1>(permute<1, 0>(w)) * keys);
    return attention_result<decltype(c), decltype(w)>{c, w};
  }
}
}  // namespace detail

/// nn::additive_attention<"attn", A>(q, keys[, mask]): Bahdanau attention, e_j = v^T tanh(W_s q + W_h h_j).
/// q [B, Hq], keys [S, B, Hk], mask [S, B] or [S, B, 1] (1: real, 0: padded) -> context [B, Hk], weights
/// [B, S]. Params, as torch.nn.Linear modules Wh, Ws and v of a module under the layer's name:
/// attn.Wh.weight [A, Hk] (no bias), attn.Ws.weight [A, Hq], attn.Ws.bias [A], attn.v.weight [1, A] (no
/// bias). Init (torch.nn.Linear's): U(-1/sqrt(in), 1/sqrt(in)), in the layer's input width. W_h h_j is one
/// gemm over all positions, and a free value of a decoder's scan (computed once, before its loop).
template <fixed_string Name, int A, expression Q, expression K, expression... M>
requires(sizeof...(M) <= 1) constexpr auto additive_attention(Q q, K keys, M... mask) {
  detail::require_floating<Q>();
  constexpr shape qs = shape_of<Q>, ks = shape_of<K>;
  if constexpr (!detail::attention_shapes_fit<qs, ks, shape_of<M>...>(false)) {
    attention_shape_mismatch(name<Name>{}, dims_of<qs>(), dims_of<ks>(), dims_of<shape_of<M>>()...);
  } else {
    using T = value_of<Q>;
    constexpr int B = qs.d[0], Hq = qs.d[1], S = ks.d[0], Hk = ks.d[2];
    constexpr auto Wh = init_param<detail::param_name<Name, "Wh.weight">(), T, init_rule::uniform(Hk), A, Hk>;
    constexpr auto Ws = init_param<detail::param_name<Name, "Ws.weight">(), T, init_rule::uniform(Hq), A, Hq>;
    constexpr auto bs = init_param<detail::param_name<Name, "Ws.bias">(), T, init_rule::uniform(Hq), A>;
    constexpr auto v = init_param<detail::param_name<Name, "v.weight">(), T, init_rule::uniform(A), 1, A>;
    auto projected_keys = matmul(keys, transpose(Wh));  // [S, B, A]
    auto projected_q = matmul(q, transpose(Ws)) + bs;   // [B, A]
    auto r = ctgraph::additive_attention(projected_keys, projected_q, v, keys, reshape<S, B>(mask)...);
    return attention_result<decltype(r.context), decltype(r.weights)>{r.context, r.weights};
  }
}

/// nn::dot_attention<"attn"[, nn::luong::general]>(q, keys[, mask]): Luong attention, e_j = q . h_j (dot:
/// q [B, H], keys [S, B, H]) or q^T W h_j (general: q [B, Hq], keys [S, B, Hk], param attn.weight [Hq, Hk],
/// init U(-1/sqrt(Hk), 1/sqrt(Hk)), torch.nn.Linear(Hk, Hq, bias=False)'s). Mask and results as
/// additive_attention's.
template <fixed_string Name, luong Score = luong::dot, expression Q, expression K, expression... M>
requires(sizeof...(M) <= 1) constexpr auto dot_attention(Q q, K keys, M... mask) {
  detail::require_floating<Q>();
  constexpr shape qs = shape_of<Q>, ks = shape_of<K>;
  if constexpr (!detail::attention_shapes_fit<qs, ks, shape_of<M>...>(Score == luong::dot)) {
    attention_shape_mismatch(name<Name>{}, dims_of<qs>(), dims_of<ks>(), dims_of<shape_of<M>>()...);
  } else {
    using T = value_of<Q>;
    constexpr int B = qs.d[0], Hq = qs.d[1], S = ks.d[0], Hk = ks.d[2];
    auto projected_keys = [&] {
      if constexpr (Score == luong::general)
        return matmul(keys,
                      transpose(init_param<detail::param_name<Name, "weight">(), T, init_rule::uniform(Hk), Hq, Hk>));
      else
        return keys;
    }();
    auto e = sum<2>(projected_keys * reshape<1, B, Hq>(q));  // [S, B]
    static_assert(shape_of<decltype(e)> == detail::matrix(S, B));
    return detail::attend(e, keys, mask...);
  }
}

}  // namespace ctgraph::nn
