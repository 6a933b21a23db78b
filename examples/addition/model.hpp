// examples/addition/model.hpp: a decoder-only transformer that adds, and the two programs it runs.
//
// Tokens (sums.hpp) are embedded with a learned position table and pass two causal pre-norm
// transformer layers (torch.nn.TransformerEncoderLayer, norm_first=True, with the square subsequent
// mask), a final layer norm and a linear head over the vocabulary: a GPT-style language model of
// the problem text. The training step reads whole problems, teacher-forced, and scores the sum's
// tokens only. The decoding step reads one position of `rows` problems at a time, with each layer's
// past keys and values in a cg::kv_cache, so that a token costs one position's work.
#pragma once
#include <ctgraph/ctgraph.hpp>

#include "sums.hpp"

namespace addition {
namespace cg = ctgraph;
namespace nn = ctgraph::nn;

constexpr int E = 128, heads = 4, FF = 512;  // model width, attention heads, feed-forward width
constexpr int V = sums::vocab;
constexpr int batch = 64;  // problems per training step
constexpr int rows = 128;  // problems per decoding step (evaluation, sampling)
constexpr nn::transformer_options options{.norm_first = true};

constexpr int layers = 2;

// The shapes of the D-digit task: the prompt, the sum's tokens, the positions the model reads.
template <int D>
struct task {
  static constexpr int digits = D;
  static constexpr int prompt = 2 * D + 2;       // "437+589="
  static constexpr int answer = D + 2;           // "6201", end
  static constexpr int S = prompt + answer - 1;  // everything but the last token, which nothing reads
};

// Token embedding plus the learned position of each token: [.., E].
constexpr auto embed(cg::expression auto ids, cg::expression auto positions) {
  return nn::embedding<"tok", V, E>(ids) + positions;
}
// The head: final norm, then logits over the vocabulary.
constexpr auto head(cg::expression auto x) { return nn::linear<"head", V>(nn::layer_norm<"norm">(x)); }

// The training step's graph: `batch` whole problems [S, batch], the next token's logits at each
// position [S, batch, V], the loss over the sum's tokens.
template <int D>
struct training {
  static constexpr int S = task<D>::S;
  static constexpr auto ids = cg::input<"ids", int, S, batch>;
  static constexpr auto targets = cg::input<"targets", int, S, batch>;  // the next token; sums::ignore in the prompt
  static constexpr auto x0 = embed(ids, cg::reshape<S, 1, E>(nn::learned_positions<"pos", S, E>()));
  static constexpr auto x1 = nn::transformer_encoder_layer<"layers.0", heads, FF, options>(x0, cg::causal);
  static constexpr auto x2 = nn::transformer_encoder_layer<"layers.1", heads, FF, options>(x1, cg::causal);
  static constexpr auto logits = head(x2);
  static constexpr auto loss = cg::cross_entropy(logits, targets, cg::ignore_index<sums::ignore>);
};

// The decoding step's graph: position `at` of `rows` problems, the layers' keys and values of the
// positions before it fed from a cg::kv_cache of capacity S.
template <int D>
struct decoding {
  static constexpr int S = task<D>::S;
  static constexpr auto tok = cg::input<"tok", int, rows>;
  static constexpr auto at = cg::input<"at", int, rows>;
  static constexpr auto mask = cg::input<"mask", float, rows, S + 1>;
  static constexpr auto k0 = cg::input<"k0", float, S, rows, E>;
  static constexpr auto v0 = cg::input<"v0", float, S, rows, E>;
  static constexpr auto k1 = cg::input<"k1", float, S, rows, E>;
  static constexpr auto v1 = cg::input<"v1", float, S, rows, E>;
  static constexpr auto x0 = embed(tok, cg::embedding(at, nn::learned_positions<"pos", S, E>()));
  static constexpr auto s0 = nn::transformer_encoder_layer_step<"layers.0", heads, FF, options>(x0, k0, v0, mask);
  static constexpr auto s1 = nn::transformer_encoder_layer_step<"layers.1", heads, FF, options>(s0.y, k1, v1, mask);
  static constexpr auto logits = head(s1.y);  // [rows, V]
};

}  // namespace addition
