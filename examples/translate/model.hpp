// examples/translate/model.hpp: the date translator, an LSTM encoder-decoder with Bahdanau attention.
//
// The encoder, a bidirectional LSTM over the embedded characters (padded positions skipped:
// nn::lengths), gives one output per source position [S, B, 2He]; its two final states, side by
// side, start the decoder. The decoder is an LSTM cell whose input is the embedded previous output
// character beside the context, the attention-weighted sum of the encoder's outputs; the output
// layer reads its state beside the context. Three programs share the params by name: the training
// step (the decoder as a cg::scan over the target, teacher-forced), the encoder, and one decoder
// step, which greedy decoding and beam search run in a loop (lstm_translator). lstm_model is what
// run.hpp's training loop and translation read of it (--model lstm, the default).
#pragma once
#include <fmt/format.h>

#include <algorithm>
#include <ctgraph/ctgraph.hpp>
#include <span>
#include <string>
#include <vector>

#include "task.hpp"

namespace translate {

constexpr int Es = 32;     // source character embedding
constexpr int He = 64;     // encoder LSTM, per direction
constexpr int H = 2 * He;  // decoder LSTM: starts from the encoder's two final states
constexpr int A = 64;      // attention's hidden width
constexpr int Et = 16;     // target character embedding

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

// The encoder and one decoder step, programs of their own.
inline auto compile_encoder() { return cg::compile(encoding::memory, encoding::h0, encoding::c0); }
inline auto compile_decoder() { return cg::compile(decoding::h1, decoding::c1, decoding::logits, decoding::weights); }

// Translates up to `rows / width` inputs (source ids, each valid): the encoder runs once over them
// all, then the decoder step runs in a loop, greedy (width 1) or a beam search of `width`.
template <class Params>
class lstm_translator {
 public:
  explicit lstm_translator(Params& params) : params_(params) {}

  // with_weights: keep each step's attention weights (greedy only: a beam's rows move between
  // hypotheses, and its best one ended steps before the search did).
  std::vector<translation> run(const std::vector<std::vector<int>>& inputs, int width, bool with_weights = false) {
    const int groups = static_cast<int>(inputs.size()), used = groups * width;
    const source_rows s = make_source_rows(inputs, width);
    auto e = encoder_.run(params_, cg::feed<"src">(s.src), cg::feed<"src_len">(s.len));
    const auto memory = e[encoding::memory].span();
    std::vector<float> h(e[encoding::h0].begin(), e[encoding::h0].end()),
        c(e[encoding::c0].begin(), e[encoding::c0].end());
    std::vector<float> h_in(h.size()), c_in(c.size());
    std::vector<int> y(rows, dates::pad);
    std::vector<std::vector<float>> seen(with_weights && width == 1 ? rows : 0);  // each row's weights so far
    auto step = [&](std::span<const int> tokens, std::span<const int> parents, std::span<float> scores) {
      for (int r = 0; r < used; ++r) {  // row r continues row parents[r]: its state first
        std::copy_n(h.begin() + parents[r] * H, H, h_in.begin() + r * H);
        std::copy_n(c.begin() + parents[r] * H, H, c_in.begin() + r * H);
        y[r] = tokens[r];
      }
      auto o = decoder_.run(params_, cg::feed<"y">(y), cg::feed<"h">(h_in), cg::feed<"c">(c_in),
                            cg::feed<"memory">(memory), cg::feed<"src_len">(s.len));
      std::copy_n(o[decoding::logits].begin(), used * Vt, scores.begin());
      std::copy(o[decoding::h1].begin(), o[decoding::h1].end(), h.begin());
      std::copy(o[decoding::c1].begin(), o[decoding::c1].end(), c.begin());
      const float* w = o[decoding::weights].data();
      for (int r = 0; r < static_cast<int>(seen.size()) && r < used; ++r)
        seen[r].insert(seen[r].end(), w + r * S, w + (r + 1) * S);
    };
    const cg::decode_options opts{.max_steps = T, .start = dates::bos, .end = dates::eos};
    std::vector<translation> out(groups);
    if (width == 1) {
      const auto ids = cg::greedy_decode(used, Vt, opts, step);
      for (int g = 0; g < groups; ++g) out[g] = {ids[g], seen.empty() ? std::vector<float>() : seen[g]};
    } else {
      const auto best = cg::beam_search(groups, width, Vt, opts, step);
      for (int g = 0; g < groups; ++g) out[g].ids = best[g].front().tokens;
    }
    return out;
  }

 private:
  Params& params_;
  decltype(compile_encoder()) encoder_ = compile_encoder();
  decltype(compile_decoder()) decoder_ = compile_decoder();
};

// --model lstm: the training step (its loss, the logits, the gradient), its description and its translator.
struct lstm_model {
  static constexpr const char* name = "lstm";
  static constexpr int default_steps = 2000;
  static constexpr const char* attention_title = "attention: output (rows) over input (columns)";
  static constexpr auto loss = training::loss;
  static auto compile_training() { return cg::compile(training::loss, training::logits, cg::grad(training::loss)); }
  static std::string description() {
    return fmt::format("bidirectional LSTM encoder ({0}+{0}), LSTM decoder ({1}) with Bahdanau attention ({2})", He, H,
                       A);
  }
  template <class Params>
  static lstm_translator<Params> make_translator(Params& params) {
    return lstm_translator<Params>(params);
  }
};

}  // namespace translate
