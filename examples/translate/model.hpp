// examples/translate/model.hpp: the date translator, an LSTM encoder-decoder with Bahdanau attention.
//
// The encoder, a bidirectional LSTM over the embedded characters (padded positions skipped:
// nn::lengths), gives one output per source position [S, B, 2He]; its two final states, side by
// side, start the decoder. The decoder is an LSTM cell whose input is the embedded previous output
// character beside the context, the attention-weighted sum of the encoder's outputs; the output
// layer reads its state beside the context. Three programs share the params by name: the training
// step (the decoder as a cg::scan over the target, teacher-forced), the encoder, and one decoder
// step, which greedy decoding and beam search run in a loop.
#pragma once
#include <ctgraph/ctgraph.hpp>

#include "dates.hpp"

namespace translate {
namespace cg = ctgraph;
namespace nn = ctgraph::nn;

constexpr int S = dates::max_source, T = dates::target_steps;
constexpr int Vs = dates::source_vocab, Vt = dates::target_vocab;
constexpr int Es = 32;     // source character embedding
constexpr int He = 64;     // encoder LSTM, per direction
constexpr int H = 2 * He;  // decoder LSTM: starts from the encoder's two final states
constexpr int A = 64;      // attention's hidden width
constexpr int Et = 16;     // target character embedding
constexpr int batch = 64;  // training batch
constexpr int rows = 64;   // rows of the encoder and decoder-step programs (greedy: inputs; beam: inputs * width)

// src [S, B] ids, src_len [B] -> {outputs [S, B, H], h0 [B, H], c0 [B, H]}.
template <int B>
constexpr auto encoder(cg::expression auto src, cg::expression auto src_len) {
  const auto r = nn::lstm<"enc", He, nn::lstm_options{.bidirectional = true}>(nn::embedding<"src_emb", Vs, Es>(src),
                                                                              nn::lengths(src_len));
  // h_n [2, B, He] (forward, reverse) -> [B, 2He]
  const auto h0 = cg::reshape<B, H>(cg::permute<1, 0, 2>(r.h));
  const auto c0 = cg::reshape<B, H>(cg::permute<1, 0, 2>(r.c));
  return std::tuple{r.output, h0, c0};
}

// One decoder step: the embedded previous character y [B, Et], the state h, c [B, H], the encoder's
// outputs memory [S, B, H] and their mask [S, B, 1] -> {h, c, logits [B, Vt], attention weights [B, S]}.
constexpr auto decoder_cell(cg::expression auto y, cg::expression auto h, cg::expression auto c,
                            cg::expression auto memory, cg::expression auto mask) {
  const auto a = nn::additive_attention<"attn", A>(h, memory, mask);
  const auto s = nn::lstm_cell<"dec", H>(cg::concat<1>(y, a.context), h, c);
  const auto logits = nn::linear<"out", Vt>(cg::concat<1>(s.h, a.context));
  return std::tuple{s.h, s.c, logits, a.weights};
}

// The training step's graph: teacher forcing over a batch of dates.
struct training {
  static constexpr auto src = cg::input<"src", int, S, batch>;
  static constexpr auto src_len = cg::input<"src_len", int, batch>;
  static constexpr auto tgt_in = cg::input<"tgt_in", int, T, batch>;    // bos, then the ISO characters
  static constexpr auto tgt_out = cg::input<"tgt_out", int, T, batch>;  // the ISO characters, then eos
  static constexpr auto enc = encoder<batch>(src, src_len);
  static constexpr auto mask = cg::sequence_mask<S>(src_len);
  static constexpr auto dec = cg::scan(
      [](auto carry, auto y) {
        const auto [h, c] = carry;
        const auto [h1, c1, logits, weights] = decoder_cell(y, h, c, std::get<0>(enc), mask);
        return std::tuple{std::tuple{h1, c1}, logits};
      },
      std::tuple{std::get<1>(enc), std::get<2>(enc)}, nn::embedding<"tgt_emb", Vt, Et>(tgt_in));
  static constexpr auto logits = dec.outputs;  // [T, B, Vt]
  static constexpr auto loss = cg::cross_entropy(logits, tgt_out, cg::ignore_index<dates::pad>);
};

// The encoder program's graph, over `rows` inputs.
struct encoding {
  static constexpr auto src = cg::input<"src", int, S, rows>;
  static constexpr auto src_len = cg::input<"src_len", int, rows>;
  static constexpr auto enc = encoder<rows>(src, src_len);
  static constexpr auto memory = std::get<0>(enc), h0 = std::get<1>(enc), c0 = std::get<2>(enc);
};

// The decoder step program's graph: one step of `rows` rows, its state fed from the step before.
struct decoding {
  static constexpr auto y = cg::input<"y", int, rows>;  // each row's previous character
  static constexpr auto h = cg::input<"h", float, rows, H>;
  static constexpr auto c = cg::input<"c", float, rows, H>;
  static constexpr auto memory = cg::input<"memory", float, S, rows, H>;
  static constexpr auto src_len = cg::input<"src_len", int, rows>;
  static constexpr auto cell =
      decoder_cell(nn::embedding<"tgt_emb", Vt, Et>(y), h, c, memory, cg::sequence_mask<S>(src_len));
  static constexpr auto h1 = std::get<0>(cell), c1 = std::get<1>(cell);
  static constexpr auto logits = std::get<2>(cell), weights = std::get<3>(cell);
};

}  // namespace translate
