// The encoder-decoder of issue 12's benchmark, built from the library's pieces: embeddings, an nn::lstm
// encoder, a cg::scan decoder whose cell attends over the encoder's outputs (nn::additive_attention) and steps
// an nn::lstm_cell on [embedded previous token; context], an output layer on [h; context], and a masked
// cross-entropy (padding id 0 ignored). Checked: its params are torch's model's (309,536), a training step's
// gradients agree with finite differences on a small version of it (double), Adam steps on one batch bring
// the loss down, and a step allocates nothing (this executable counts allocations).
#include <omp.h>

#include <cmath>
#include <vector>

#include "alloc_counting.hpp"
#include "gradcheck.hpp"

namespace cg = ctgraph;
namespace nn = ctgraph::nn;

namespace {
// Source [S, B] and target [T, B] token ids (0: padding), vocabulary V, embeddings E, hidden size H.
template <class Type, int S, int T, int B, int V, int E, int H>
struct seq2seq {
  static constexpr auto src = cg::input<"src", int, S, B>;
  static constexpr auto tgt_in = cg::input<"tgt_in", int, T, B>;    // the previous tokens (teacher forcing)
  static constexpr auto tgt_out = cg::input<"tgt_out", int, T, B>;  // the tokens to predict
  static constexpr auto enc = nn::lstm<"enc", H>(nn::embedding<"src_emb", V, E, Type>(src));
  static constexpr auto h0 = cg::reshape<B, H>(enc.h);
  static constexpr auto c0 = cg::reshape<B, H>(enc.c);
  static constexpr auto dec = cg::scan(
      [](auto carry, auto y_prev) {
        auto [h, c] = carry;
        auto a = nn::additive_attention<"attn", H>(h, enc.output);
        auto s = nn::lstm_cell<"dec", H>(cg::concat<1>(y_prev, a.context), h, c);
        return std::tuple{std::tuple{s.h, s.c}, nn::linear<"out", V>(cg::concat<1>(s.h, a.context))};
      },
      std::tuple{h0, c0}, nn::embedding<"tgt_emb", V, E, Type>(tgt_in));
  static constexpr auto loss = cg::cross_entropy(dec.outputs, tgt_out, cg::ignore_index<0>);
};

// A copy task: the target is the source, shifted by one (token 1 starts the decoder), padded after `len`.
struct batch {
  std::vector<int> src, tgt_in, tgt_out;
};
batch copy_batch(int S, int B, int V, unsigned seed) {
  batch r{std::vector<int>(S * B, 0), std::vector<int>(S * B, 0), std::vector<int>(S * B, 0)};
  std::uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  auto next = [&] { return s = s * 6364136223846793005ull + 1442695040888963407ull, static_cast<int>(s >> 33); };
  for (int b = 0; b < B; ++b) {
    const int len = S / 2 + next() % (S / 2 + 1);
    for (int t = 0; t < len; ++t) {
      const int tok = 2 + next() % (V - 2);
      r.src[t * B + b] = tok;
      r.tgt_out[t * B + b] = tok;
      r.tgt_in[t * B + b] = t == 0 ? 1 : r.src[(t - 1) * B + b];
    }
  }
  return r;
}
}  // namespace

TEST_CASE("seq2seq: issue 12's model has torch's 309,536 params", "[seq2seq]") {
  using M = seq2seq<float, 20, 20, 32, 32, 64, 128>;
  auto step = cg::compile(M::loss, cg::grad(M::loss));
  auto params = cg::parameters_of(step);
  long n = 0;
  for (std::size_t k = 0; k < decltype(step)::sizes.params; ++k) n += decltype(step)::plan.params[k].s.size();
  CHECK(n == 309536);
  STATIC_REQUIRE(decltype(step)::sizes.params == 16);  // 2 embeddings, 4 + 4 LSTM, 4 attention, 2 output
}

TEST_CASE("seq2seq: gradients against finite differences (small, double)", "[seq2seq][grad]") {
  using M = seq2seq<double, 4, 3, 2, 5, 3, 4>;
  ctgraph_test::gradcheck_params("seq2seq with attention", M::loss);
}

TEST_CASE("seq2seq: Adam steps on a copy batch bring the loss down; a step allocates nothing", "[seq2seq][train]") {
  constexpr int S = 12, B = 32, V = 16;
  using M = seq2seq<float, S, S, B, V, 16, 32>;
  auto step = cg::compile(M::loss, cg::grad(M::loss));
  auto params = cg::parameters_of(step);
  cg::init(params, 1);
  cg::adam opt(params, {.lr = 0.01});
  const batch d = copy_batch(S, B, V, 3);
  omp_set_num_threads(1);
  auto run = [&] {
    return step.run(params, cg::feed<"src">(d.src), cg::feed<"tgt_in">(d.tgt_in), cg::feed<"tgt_out">(d.tgt_out));
  };
  const float first = run()[M::loss];
  CHECK(std::abs(first - std::log(static_cast<float>(V))) < 0.5f);  // near uniform at init
  float last = first;
  long news_in_steps = 0, mallocs_in_steps = 0;
  for (int i = 0; i < 60; ++i) {
    count_scope c;
    auto out = run();
    last = out[M::loss];
    opt.step(params, out);
    if (i > 0) news_in_steps += news, mallocs_in_steps += mallocs;
  }
  INFO("loss " << first << " -> " << last);
  CHECK(last < 0.5f * first);
  CHECK(news_in_steps == 0);
  CHECK(mallocs_in_steps == 0);
}
