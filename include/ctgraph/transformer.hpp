// <ctgraph/transformer.hpp>: transformer layers under PyTorch's names and semantics, part of <ctgraph/nn.hpp>.
//   nn::layer_norm<"norm">(x)                                       torch.nn.LayerNorm(E) over the last axis
//   nn::multihead_attention<"attn", H>(q, k, v[, cg::causal][, key_mask])   torch.nn.MultiheadAttention
//   nn::multihead_attention_weights<"attn", H>(q, k[, key_mask])   its head-averaged weights [B, L, S], unfused
//   nn::transformer_encoder_layer<"layers.0", H, FF>(x[, cg::causal][, key_mask])
//   nn::transformer_decoder_layer<"layers.0", H, FF>(x, memory[, cg::causal][, key_mask]
//                                                    [, nn::memory_key_mask(m)])
//   nn::learned_positions<"pos", S, E>(), cg::sinusoidal_positions<S, E>(): position tables [S, E]
//   nn::tied_linear<"emb", V>(x): an output head that shares nn::embedding<"emb", V, E>'s table
// Sequences are [L, B, E], torch's default layout (batch_first=False). A key mask is [B, S] of the input's
// element type, 1 at keys to attend and 0 at padded ones: the complement of torch's key_padding_mask (True at
// padded keys). cg::causal is torch's square subsequent mask (is_causal=True). Attention runs on the fused
// node (cg::attention): the heads are read where the projections wrote them, no Lq x Lk buffer is planned,
// and torch's averaged attention weights are not returned (nn::multihead_attention_weights computes them,
// unfused). Dropout (transformer_options::dropout, 0 by default where torch's is 0.1) applies where torch's
// layers apply theirs, named as torch names them (dropout1, ...), except on the attention weights, which the
// fused kernels do not drop.
#pragma once
#include "nn.hpp"

namespace ctgraph::nn {

/// nn::layer_norm<"norm"[, eps]>(x): torch.nn.LayerNorm(x.shape[-1], eps) over the last axis, affine:
/// (x - mean) / sqrt(var + eps) * norm.weight + norm.bias, weight and bias [E], init ones and zeros; eps 1e-5 by
/// default. The normalisation is one kernel; the affine part fuses with what follows it.
template <fixed_string Name, scalar_value Eps = scalar_value(1e-5), expression X>
constexpr auto layer_norm(X x) {
  detail::require_floating<X>();
  using T = value_of<X>;
  constexpr int E = shape_of<X>.back();
  constexpr auto w = init_param<detail::param_name<Name, "weight">(), T, init_rule::ones(), E>;
  constexpr auto b = init_param<detail::param_name<Name, "bias">(), T, init_rule::zeros(), E>;
  return ctgraph::layer_norm<Eps>(x) * w + b;
}

/// nn::learned_positions<"pos", S, E, T>(): a learned position table, the param pos.weight [S, E] (torch's
/// Embedding(S, E) read at positions 0..S-1; init N(0, 1)), to add to [S, B, E] token embeddings as
/// reshape<S, 1, E>. cg::sinusoidal_positions<S, E, T>() is the fixed alternative.
template <fixed_string Name, int S, int E, class T = float>
constexpr auto learned_positions() {
  return init_param<detail::param_name<Name, "weight">(), T, init_rule::normal(), S, E>;
}

/// nn::tied_linear<"emb", Num>(x): an output head that shares nn::embedding<"emb", Num, Dim>'s table (weight
/// tying): x [..., Dim] -> [..., Num] = x emb.weight^T, no bias. The table is one param, its gradient the sum
/// of both uses.
template <fixed_string Name, int Num, expression X>
constexpr auto tied_linear(X x) {
  detail::require_floating<X>();
  constexpr int Dim = shape_of<X>.back();
  return matmul(
      detail::as_rows<Dim>(x),
      transpose(init_param<detail::param_name<Name, "weight">(), value_of<X>, init_rule::normal(), Num, Dim>));
}

/// A transformer layer's shape error: q [L, B, E], k and v [S, B, E] (E divisible by the heads), a key mask
/// [B, S]. Deleted, so that the first error line names the layer and the shapes.
void transformer_shape_mismatch(auto layer_name, auto query_dims, auto key_dims, auto value_dims) = delete;

/// A decoder layer's memory key mask [B, S] (1: attend, 0: padded): torch's memory_key_padding_mask, negated.
template <expression M>
struct memory_key_mask_t {
  M mask;  ///< [B, S]
};
/// nn::memory_key_mask(m): marks m as the mask of the memory's keys in nn::transformer_decoder_layer.
template <expression M>
constexpr memory_key_mask_t<M> memory_key_mask(M m) {
  return {m};
}

namespace detail {
template <class O>
inline constexpr bool is_memory_mask = false;
template <class M>
inline constexpr bool is_memory_mask<memory_key_mask_t<M>> = true;
// The options of a self-attention (cg::causal, a key mask) among a layer's options.
template <class O>
constexpr auto self_options(O o) {
  if constexpr (is_memory_mask<O>)
    return std::tuple<>{};
  else
    return std::tuple<O>{o};
}
template <class O>
constexpr auto memory_options(O o) {
  if constexpr (is_memory_mask<O>)
    return std::tuple{o.mask};
  else
    return std::tuple<>{};
}
// nn::multihead_attention's params.
template <fixed_string Name, class T, int E>
struct attention_params {
  static constexpr auto W = init_param<param_name<Name, "in_proj_weight">(), T, init_rule{}, 3 * E, E>;
  static constexpr auto b = init_param<param_name<Name, "in_proj_bias">(), T, init_rule::zeros(), 3 * E>;
  static constexpr auto Wo = init_param<param_name<Name, "out_proj.weight">(), T, init_rule::uniform(E), E, E>;
  static constexpr auto bo = init_param<param_name<Name, "out_proj.bias">(), T, init_rule::zeros(), E>;
};
// x W^T + b with W and b a row block [Begin, Begin + E) of a packed [3E, E] weight and [3E] bias.
template <int Begin, int E, class X, class W, class Bv>
constexpr auto projection(X x, W w, Bv b) {
  return matmul(x, transpose(slice<0, Begin, Begin + E>(w))) + slice<0, Begin, Begin + E>(b);
}
}  // namespace detail

/// nn::multihead_attention<"attn", H>(q, k, v, options...): torch.nn.MultiheadAttention(E, H) with its packed
/// in-projection: q [L, B, E], k and v [S, B, E] -> [L, B, E], out_proj(attention over H heads of E / H features
/// of q W_q^T + b_q, k W_k^T + b_k, v W_v^T + b_v). Options: cg::causal (torch's attn_mask of a causal square
/// mask), a key mask [B, S] (1: attend; torch's key_padding_mask negated). Params (torch's names and init):
/// attn.in_proj_weight [3E, E] (Xavier uniform), attn.in_proj_bias [3E] (zeros), attn.out_proj.weight [E, E]
/// (U(-1/sqrt(E), 1/sqrt(E))), attn.out_proj.bias [E] (zeros).
template <fixed_string Name, int H, expression Q, expression K, expression V, class... O>
constexpr auto multihead_attention(Q q, K k, V v, O... options) {
  detail::require_floating<Q>();
  constexpr shape qs = shape_of<Q>, ks = shape_of<K>, vs = shape_of<V>;
  constexpr int E = qs.back();
  if constexpr (qs.rank != 3 || ks.rank != 3 || !(ks == vs) || ks.d[1] != qs.d[1] || ks.d[2] != E || E % H != 0) {
    transformer_shape_mismatch(name<Name>{}, dims_of<qs>(), dims_of<ks>(), dims_of<vs>());
  } else {
    using p = detail::attention_params<Name, value_of<Q>, E>;
    auto o = ctgraph::attention(detail::projection<0, E>(q, p::W, p::b), detail::projection<E, E>(k, p::W, p::b),
                                detail::projection<2 * E, E>(v, p::W, p::b), heads<H>, options...);
    return matmul(o, transpose(p::Wo)) + p::bo;
  }
}

namespace detail {
// 1 / sqrt(n), at compile time (Newton's iteration for sqrt(n), from n).
constexpr double inverse_sqrt(int n) {
  double r = n;
  for (int i = 0; i < 64; ++i) r = 0.5 * (r + n / r);
  return 1 / r;
}
}  // namespace detail

/// nn::multihead_attention_weights<"attn", H>(q, k[, key_mask]): the attention weights of
/// nn::multihead_attention<"attn", H>(q, k, v[, key_mask]) averaged over its H heads, what
/// torch.nn.MultiheadAttention returns beside its output with need_weights=True (average_attn_weights=True):
/// q [L, B, E], k [S, B, E] -> [B, L, S], the mean over the heads h of softmax(q_h k_h^T / sqrt(E / H)), q_h and
/// k_h the heads of q W_q^T and k W_k^T plus their biases. Each row sums to 1; a key mask [B, S] (1: attend, 0:
/// padded) gives padded keys weight 0. The params are the layer's own (attn.in_proj_weight and in_proj_bias),
/// so a trained layer's weights are read. Written unfused (matmuls and a softmax), so a program plans the
/// [B, H, L, S] scores: for looking into a model (a heatmap), not for training it.
template <fixed_string Name, int H, expression Q, expression K, class... M>
constexpr auto multihead_attention_weights(Q q, K k, M... key_mask) {
  detail::require_floating<Q>();
  static_assert(sizeof...(M) <= 1, "ctgraph: multihead_attention_weights(q, k[, key_mask]): one key mask at most");
  constexpr shape qs = shape_of<Q>, ks = shape_of<K>;
  constexpr int E = qs.back();
  constexpr bool mask_fits = ((shape_of<M> == shape{2, {qs.d[1], ks.d[0]}}) && ... && true);
  if constexpr (qs.rank != 3 || ks.rank != 3 || ks.d[1] != qs.d[1] || ks.d[2] != E || E % H != 0 || !mask_fits) {
    transformer_shape_mismatch(name<Name>{}, dims_of<qs>(), dims_of<ks>(), dims_of<ks>());
  } else {
    constexpr int L = qs.d[0], B = qs.d[1], S = ks.d[0], d = E / H;
    using p = detail::attention_params<Name, value_of<Q>, E>;
    // The heads, heads-major: [B, H, L, d] and [B, H, S, d].
    const auto qh = permute<1, 2, 0, 3>(reshape<L, B, H, d>(detail::projection<0, E>(q, p::W, p::b)));
    const auto kh = permute<1, 2, 0, 3>(reshape<S, B, H, d>(detail::projection<E, E>(k, p::W, p::b)));
    const auto scores = matmul(qh, transpose(kh)) * constant<scalar_value(detail::inverse_sqrt(d))>;
    // A padded key's score falls by 1e30: its weight is exactly 0 (torch adds -inf).
    return mean<1>(softmax((scores + ... + reshape<B, 1, 1, S>((key_mask - constant<1>)*constant<1e30>))));
  }
}

/// A transformer layer's feed-forward activation: torch's activation="relu" or "gelu" (exact).
enum class activation { relu, gelu };

/// Options of nn::transformer_encoder_layer and nn::transformer_decoder_layer (torch's keyword arguments).
struct transformer_options {
  bool norm_first = false;            ///< pre-norm (torch's norm_first=True); post-norm by default
  activation act = activation::relu;  ///< the feed-forward's activation
  double dropout = 0;  ///< torch's dropout, on each sub-layer's output and the feed-forward's hidden layer
};

namespace detail {
// Dropout `Sub` of a layer (torch's module name under the layer's), p = Opt.dropout.
template <fixed_string Name, fixed_string Sub, transformer_options Opt, class X>
constexpr auto layer_dropout(X x) {
  return nn::dropout<param_name<Name, Sub>(), scalar_value(Opt.dropout)>(x);
}
// linear2(dropout(act(linear1(x)))).
template <fixed_string Name, int FF, transformer_options Opt, class X>
constexpr auto feed_forward(X x) {
  constexpr int E = shape_of<X>.back();
  auto h = linear<param_name<Name, "linear1">(), FF>(x);
  auto a = [&] {
    if constexpr (Opt.act == activation::relu)
      return relu(h);
    else
      return gelu(h);
  }();
  return linear<param_name<Name, "linear2">(), E>(layer_dropout<Name, "dropout", Opt>(a));
}
// What a layer's self-attention reads: norm1(x) pre-norm, x post-norm.
template <fixed_string Name, transformer_options Opt, class X>
constexpr auto attention_input(X x) {
  if constexpr (Opt.norm_first)
    return layer_norm<param_name<Name, "norm1">()>(x);
  else
    return x;
}
// torch.nn.TransformerEncoderLayer's block around its self-attention sa (y -> y's shape), dropout and norms:
//   post-norm: x = norm1(x + sa(x)); x = norm2(x + ff(x));  norm_first: x = x + sa(norm1(x)); x = x + ff(norm2(x))
template <fixed_string Name, int FF, transformer_options Opt, class X, class SA>
constexpr auto encoder_block(X x, SA sa) {
  const auto a = layer_dropout<Name, "dropout1", Opt>(sa(attention_input<Name, Opt>(x)));
  auto ff = [](auto y) { return layer_dropout<Name, "dropout2", Opt>(feed_forward<Name, FF, Opt>(y)); };
  constexpr auto n1 = param_name<Name, "norm1">();
  constexpr auto n2 = param_name<Name, "norm2">();
  if constexpr (Opt.norm_first) {
    auto y = x + a;
    return y + ff(layer_norm<n2>(y));
  } else {
    auto y = layer_norm<n1>(x + a);
    return layer_norm<n2>(y + ff(y));
  }
}
}  // namespace detail

/// nn::transformer_encoder_layer<"layers.0", H, FF[, options]>(x, [cg::causal][, key_mask]):
/// torch.nn.TransformerEncoderLayer(E, H, FF, dropout=0) on x [L, B, E]:
///   post-norm: x = norm1(x + self_attn(x)); x = norm2(x + linear2(act(linear1(x))))
///   norm_first: x = x + self_attn(norm1(x)); x = x + linear2(act(linear1(norm2(x))))
/// Params under torch's names: self_attn.* (nn::multihead_attention), linear1.weight [FF, E], linear1.bias,
/// linear2.weight [E, FF], linear2.bias, norm1.*, norm2.* (nn::layer_norm).
template <fixed_string Name, int H, int FF, transformer_options Opt = transformer_options{}, expression X, class... O>
constexpr auto transformer_encoder_layer(X x, O... options) {
  return detail::encoder_block<Name, FF, Opt>(
      x, [&](auto y) { return multihead_attention<detail::param_name<Name, "self_attn">(), H>(y, y, y, options...); });
}

/// nn::transformer_decoder_layer<"layers.0", H, FF[, options]>(x, memory, [cg::causal][, key_mask]
/// [, nn::memory_key_mask(m)]): torch.nn.TransformerDecoderLayer(E, H, FF, dropout=0) on x [L, B, E] and the
/// encoder's memory [S, B, E]. cg::causal and key_mask [B, L] mask the self-attention (torch's tgt_mask,
/// tgt_key_padding_mask), nn::memory_key_mask(m [B, S]) the cross-attention (memory_key_padding_mask):
///   post-norm: x = norm1(x + self_attn(x)); x = norm2(x + multihead_attn(x, mem)); x = norm3(x + ff(x))
///   norm_first: x = x + self_attn(norm1(x)); x = x + multihead_attn(norm2(x), mem); x = x + ff(norm3(x))
/// Params: self_attn.*, multihead_attn.*, linear1.*, linear2.*, norm1.*, norm2.*, norm3.*.
template <fixed_string Name, int H, int FF, transformer_options Opt = transformer_options{}, expression X, expression M,
          class... O>
constexpr auto transformer_decoder_layer(X x, M memory, O... options) {
  using detail::param_name;
  static_assert((detail::is_memory_mask<O> + ... + 0) <= 1,
                "ctgraph: transformer_decoder_layer: one nn::memory_key_mask at most");
  auto sa = [&](auto y) {
    return detail::layer_dropout<Name, "dropout1", Opt>(
        std::apply([&](auto... o) { return multihead_attention<param_name<Name, "self_attn">(), H>(y, y, y, o...); },
                   std::tuple_cat(detail::self_options(options)...)));
  };
  auto ca = [&](auto y) {
    return detail::layer_dropout<Name, "dropout2", Opt>(std::apply(
        [&](auto... m) {
          return multihead_attention<param_name<Name, "multihead_attn">(), H>(y, memory, memory, m...);
        },
        std::tuple_cat(detail::memory_options(options)...)));
  };
  auto ff = [](auto y) { return detail::layer_dropout<Name, "dropout3", Opt>(detail::feed_forward<Name, FF, Opt>(y)); };
  constexpr auto n1 = param_name<Name, "norm1">();
  constexpr auto n2 = param_name<Name, "norm2">();
  constexpr auto n3 = param_name<Name, "norm3">();
  if constexpr (Opt.norm_first) {
    auto y = x + sa(layer_norm<n1>(x));
    auto z = y + ca(layer_norm<n2>(y));
    return z + ff(layer_norm<n3>(z));
  } else {
    auto y = layer_norm<n1>(x + sa(x));
    auto z = layer_norm<n2>(y + ca(y));
    return layer_norm<n3>(z + ff(z));
  }
}

/// One position of nn::transformer_encoder_layer_step: the layer's output there and the keys and values it adds
/// to the layer's cache.
template <class Y, class K, class V>
struct layer_step {
  Y y;  ///< [B, E]
  K k;  ///< [B, E]: this position's projected keys (heads side by side, as cached)
  V v;  ///< [B, E]: its projected values
};

/// nn::transformer_encoder_layer_step<"layers.0", H, FF[, options]>(x, k_cache, v_cache, mask): one position of a
/// causal nn::transformer_encoder_layer (a decoder-only model's layer) for incremental decoding, the same params:
/// x [B, E] the position's input, k_cache and v_cache [C, B, E] the projected keys and values of the positions
/// before (cg::kv_cache::keys, values), mask [B, C + 1] which of them to attend and, last, the position itself
/// (cg::kv_cache::mask). Its self-attention reads the C cached positions and the new one, so a position costs one
/// position's projections however long the prefix. Returns .y [B, E], and .k, .v [B, E] for cg::kv_cache::append.
/// An inference step: no dropout.
template <fixed_string Name, int H, int FF, transformer_options Opt = transformer_options{}, expression X,
          expression KC, expression VC, expression M>
constexpr auto transformer_encoder_layer_step(X x, KC k_cache, VC v_cache, M mask) {
  using detail::param_name;
  constexpr shape xs = shape_of<X>, cs = shape_of<KC>;
  constexpr int B = xs.d[0], E = xs.back(), C = cs.d[0];
  if constexpr (xs.rank != 2 || cs.rank != 3 || !(shape_of<VC> == cs) || cs.d[1] != B || cs.d[2] != E ||
                !(shape_of<M> == shape{2, {B, C + 1}}) || E % H != 0) {
    transformer_shape_mismatch(name<Name>{}, dims_of<xs>(), dims_of<cs>(), dims_of<shape_of<M>>());
  } else {
    using p = detail::attention_params<param_name<Name, "self_attn">(), value_of<X>, E>;
    // The self-attention of the new position's row block y [B, E] over the cache and itself.
    auto sa = [&](auto y) {
      const auto y3 = reshape<1, B, E>(y);
      const auto o = ctgraph::attention(
          detail::projection<0, E>(y3, p::W, p::b), concat<0>(k_cache, detail::projection<E, E>(y3, p::W, p::b)),
          concat<0>(v_cache, detail::projection<2 * E, E>(y3, p::W, p::b)), heads<H>, mask);
      return reshape<B, E>(matmul(o, transpose(p::Wo)) + p::bo);
    };
    // The k and v that sa projects (the same nodes: structurally equal nodes are one), for the cache.
    const auto in = reshape<1, B, E>(detail::attention_input<Name, Opt>(x));
    const auto k = reshape<B, E>(detail::projection<E, E>(in, p::W, p::b));
    const auto v = reshape<B, E>(detail::projection<2 * E, E>(in, p::W, p::b));
    const auto out = detail::encoder_block<Name, FF, Opt>(x, sa);
    return layer_step<decltype(out), decltype(k), decltype(v)>{out, k, v};
  }
}

}  // namespace ctgraph::nn
