// examples/translate/transformer_model.hpp: the date translator as a transformer encoder-decoder
// (torch.nn.Transformer's layers, pre-norm), the alternative to model.hpp's LSTM (--model transformer).
//
// The encoder embeds the source characters [S, B] and adds a learned position table, then runs
// `layers` encoder layers whose self-attention skips the padding of short inputs (a key mask [B, S]
// from src_len) and a final layer norm: the memory [S, B, E]. The decoder embeds the target
// characters read so far [T, B] (bos, then the ISO characters) with positions of their own, runs
// `layers` decoder layers (causal self-attention, then attention over the memory, padded keys
// masked) and a final layer norm, and a linear head gives each position's logits over the next
// character [T, B, Vt]. Params under torch.nn.Transformer's names (encoder.layers.0.self_attn...,
// encoder.norm, decoder.layers.1.multihead_attn..., decoder.norm) beside the embeddings src_emb,
// tgt_emb, src_pos, tgt_pos and the head out. Three programs share them by name: the training step
// (teacher-forced, the whole target at once), the encoder, and the decoder over a whole target
// prefix, which greedy decoding and beam search run once per output character (T is 11: the
// prefix is recomputed rather than cached), and which also returns the last decoder layer's
// cross-attention weights for attention.svg (transformer_translator). transformer_model is what
// run.hpp's training loop and translation read of it.
#pragma once
#include <fmt/format.h>

#include <algorithm>
#include <ctgraph/ctgraph.hpp>
#include <span>
#include <string>
#include <vector>

#include "task.hpp"

namespace translate::transformer {

constexpr int E = 64;      // model width
constexpr int heads = 4;   // attention heads (16 features each)
constexpr int FF = 256;    // feed-forward width
constexpr int layers = 2;  // encoder layers, and decoder layers
constexpr nn::transformer_options options{.norm_first = true};

// "encoder.layers." and 3 -> "encoder.layers.3".
template <cg::fixed_string Prefix, int I>
constexpr auto layer_name() {
  static_assert(I >= 0 && I < 10);
  cg::fixed_string<2> digit;
  digit.data[0] = static_cast<char>('0' + I);
  return Prefix + digit;
}

// src_len [B] -> the key mask [B, S]: 1 at real positions, 0 at padding.
template <int B>
constexpr auto key_mask(cg::expression auto src_len) {
  return cg::permute<1, 0>(cg::reshape<S, B>(cg::sequence_mask<S, float>(src_len)));
}

// The encoder layers from the I-th on.
template <int I = 0>
constexpr auto encoder_layers(cg::expression auto x, cg::expression auto mask) {
  if constexpr (I == layers)
    return x;
  else
    return encoder_layers<I + 1>(
        nn::transformer_encoder_layer<layer_name<"encoder.layers.", I>(), heads, FF, options>(x, mask), mask);
}

// src [S, B] ids, src_len [B] -> the memory [S, B, E].
template <int B>
constexpr auto encoder(cg::expression auto src, cg::expression auto src_len) {
  const auto x = nn::embedding<"src_emb", Vs, E>(src) + cg::reshape<S, 1, E>(nn::learned_positions<"src_pos", S, E>());
  return nn::layer_norm<"encoder.norm">(encoder_layers(x, key_mask<B>(src_len)));
}

// Decoder layers I to N - 1 over the memory and its key mask.
template <int N, int I = 0>
constexpr auto decoder_layers(cg::expression auto x, cg::expression auto memory, cg::expression auto mask) {
  if constexpr (I == N)
    return x;
  else
    return decoder_layers<N, I + 1>(
        nn::transformer_decoder_layer<layer_name<"decoder.layers.", I>(), heads, FF, options>(
            x, memory, cg::causal, nn::memory_key_mask(mask)),
        memory, mask);
}

// The embedded target prefix [T, B] ids -> [T, B, E].
constexpr auto embed_target(cg::expression auto y) {
  return nn::embedding<"tgt_emb", Vt, E>(y) + cg::reshape<T, 1, E>(nn::learned_positions<"tgt_pos", T, E>());
}

// The target prefix y [T, B] (bos first), the memory [S, B, E] and src_len [B] -> logits [T, B, Vt]: at
// position t, the scores of the character after y[0..t].
template <int B>
constexpr auto decoder(cg::expression auto y, cg::expression auto memory, cg::expression auto src_len) {
  const auto h = decoder_layers<layers>(embed_target(y), memory, key_mask<B>(src_len));
  return nn::linear<"out", Vt>(nn::layer_norm<"decoder.norm">(h));
}

// The last decoder layer's cross-attention weights [B, T, S], averaged over its heads (torch's
// need_weights=True), from the same expressions the layer builds: its cross-attention reads norm2 of
// y = x + self_attn(norm1(x)), x the layer's input (pre-norm). Structurally equal nodes are one, so
// a program with the logits computes these once.
template <int B>
constexpr auto cross_attention_weights(cg::expression auto y, cg::expression auto memory, cg::expression auto src_len) {
  static_assert(options.norm_first, "post-norm reads norm1(x + self_attn(x)) instead");
  constexpr auto name = layer_name<"decoder.layers.", layers - 1>();
  const auto x = decoder_layers<layers - 1>(embed_target(y), memory, key_mask<B>(src_len));
  const auto n1 = nn::layer_norm<name + ".norm1">(x);
  const auto z = x + nn::multihead_attention<name + ".self_attn", heads>(n1, n1, n1, cg::causal);
  return nn::multihead_attention_weights<name + ".multihead_attn", heads>(nn::layer_norm<name + ".norm2">(z), memory,
                                                                          key_mask<B>(src_len));
}

// The training step's graph: teacher forcing over a batch of dates.
struct training {
  static constexpr auto src = cg::input<"src", int, S, batch>;
  static constexpr auto src_len = cg::input<"src_len", int, batch>;
  static constexpr auto tgt_in = cg::input<"tgt_in", int, T, batch>;    // bos, then the ISO characters
  static constexpr auto tgt_out = cg::input<"tgt_out", int, T, batch>;  // the ISO characters, then eos
  static constexpr auto logits = decoder<batch>(tgt_in, encoder<batch>(src, src_len), src_len);  // [T, B, Vt]
  static constexpr auto loss = cg::cross_entropy(logits, tgt_out, cg::ignore_index<dates::pad>);
};

// The encoder program's graph, over `rows` inputs.
struct encoding {
  static constexpr auto src = cg::input<"src", int, S, rows>;
  static constexpr auto src_len = cg::input<"src_len", int, rows>;
  static constexpr auto memory = encoder<rows>(src, src_len);
};

// The decoder program's graph: a whole target prefix of `rows` rows (positions after the prefix are
// read by nothing before them: the self-attention is causal).
struct decoding {
  static constexpr auto y = cg::input<"y", int, T, rows>;
  static constexpr auto memory = cg::input<"memory", float, S, rows, E>;
  static constexpr auto src_len = cg::input<"src_len", int, rows>;
  static constexpr auto logits = decoder<rows>(y, memory, src_len);                   // [T, rows, Vt]
  static constexpr auto weights = cross_attention_weights<rows>(y, memory, src_len);  // [rows, T, S]
};

// The encoder and the decoder, programs of their own.
inline auto compile_encoder() { return cg::compile(encoding::memory); }
inline auto compile_decoder() { return cg::compile(decoding::logits, decoding::weights); }

}  // namespace translate::transformer

namespace translate {

// Translates up to `rows / width` inputs (source ids, each valid): the encoder runs once over them all,
// then the decoder once per output position over each row's prefix so far, greedy (width 1) or a beam
// search of `width` (whose rows take their parent's prefix before each step).
template <class Params>
class transformer_translator {
 public:
  explicit transformer_translator(Params& params) : params_(params) {}

  // with_weights: keep the cross-attention weights of each output position (greedy only, as the LSTM's).
  std::vector<translation> run(const std::vector<std::vector<int>>& inputs, int width, bool with_weights = false) {
    namespace tf = transformer;
    const int groups = static_cast<int>(inputs.size()), used = groups * width;
    const source_rows s = make_source_rows(inputs, width);
    auto e = encoder_.run(params_, cg::feed<"src">(s.src), cg::feed<"src_len">(s.len));
    const auto memory = e[tf::encoding::memory].span();
    // The prefixes [T, rows]: position t is written at step t; later positions are read by no earlier one.
    std::vector<int> y(T * rows, dates::pad), moved(T * rows, dates::pad);
    std::vector<float> weights;  // the last step's [rows, T, S]
    int t = 0;                   // the position the step writes
    auto step = [&](std::span<const int> tokens, std::span<const int> parents, std::span<float> scores) {
      for (int r = 0; r < used; ++r) {  // row r continues row parents[r]: its prefix first
        for (int p = 0; p < t; ++p) moved[p * rows + r] = y[p * rows + parents[r]];
        moved[t * rows + r] = tokens[r];
      }
      std::swap(y, moved);
      auto o = decoder_.run(params_, cg::feed<"y">(y), cg::feed<"memory">(memory), cg::feed<"src_len">(s.len));
      std::copy_n(o[tf::decoding::logits].data() + t * rows * Vt, used * Vt, scores.begin());
      if (with_weights && width == 1) weights.assign(o[tf::decoding::weights].begin(), o[tf::decoding::weights].end());
      ++t;
    };
    const cg::decode_options opts{.max_steps = T, .start = dates::bos, .end = dates::eos};
    std::vector<translation> out(groups);
    if (width == 1) {
      const auto ids = cg::greedy_decode(used, Vt, opts, step);
      for (int g = 0; g < groups; ++g) {
        out[g].ids = ids[g];
        // Position p's weights are final once p is written (causal): the last step holds them all.
        const int n = weights.empty() ? 0 : std::min(static_cast<int>(ids[g].size()) + 1, T);
        const float* w = weights.data() + static_cast<std::size_t>(g) * T * S;
        out[g].weights.assign(w, w + n * S);
      }
    } else {
      const auto best = cg::beam_search(groups, width, Vt, opts, step);
      for (int g = 0; g < groups; ++g) out[g].ids = best[g].front().tokens;
    }
    return out;
  }

 private:
  Params& params_;
  decltype(transformer::compile_encoder()) encoder_ = transformer::compile_encoder();
  decltype(transformer::compile_decoder()) decoder_ = transformer::compile_decoder();
};

// --model transformer: the training step (its loss, the logits, the gradient), its description and its
// translator.
struct transformer_model {
  static constexpr const char* name = "transformer";
  static constexpr int default_steps = 600;  // 99.6% to 100% held-out (seeds 1 to 3)
  static constexpr const char* attention_title =
      "last decoder layer's cross-attention, mean of its heads: output (rows) over input (columns)";
  static constexpr auto loss = transformer::training::loss;
  static auto compile_training() {
    namespace tf = transformer;
    return cg::compile(tf::training::loss, tf::training::logits, cg::grad(tf::training::loss));
  }
  static std::string description() {
    namespace tf = transformer;
    return fmt::format(
        "transformer encoder-decoder ({0}+{0} pre-norm layers of width {1}, {2} heads, feed-forward {3}), learned "
        "positions",
        tf::layers, tf::E, tf::heads, tf::FF);
  }
  template <class Params>
  static transformer_translator<Params> make_translator(Params& params) {
    return transformer_translator<Params>(params);
  }
};

}  // namespace translate
