// bench/torch_lstm_peer.hpp: libtorch's LSTM training step as a peer of bench_train, behind a plain C++
// interface so that only torch_lstm_peer.cpp pays for libtorch's headers. Built only when
// find_package(Torch) succeeds.
#pragma once

#include <functional>
#include <string>

namespace ctgraph::bench::torch_lstm_peer {

/// One LSTM layer trained on a fixed input x [T, B, In] (float, random; x is data: no gradient).
struct lstm_problem {
  int T, B, In, H;
  double lr = 1e-3;  // Adam
};

struct lstm_step {
  std::function<void()> run;  // one training step: forward, loss = output.sum(), backward, Adam step
  long long params = 0;       // parameters of the layer (4H (In + H) + 8H)
};

/// torch::nn::LSTM(In, H), one layer, with torch::optim::Adam over its parameters; seeded (0).
lstm_step make_lstm_step(const lstm_problem& p);

/// Issue 12's encoder-decoder: Embedding(V, E) for source and target, an LSTM(E, H) encoder, an
/// LSTMCell(E + H, H) decoder on [embedded previous token; context], Bahdanau attention (Wh: H -> H without
/// bias on the encoder's outputs, Ws: H -> H on the decoder's state, v: H -> 1 without bias), Linear(2H, V) on
/// [h; context], cross-entropy with ignore_index 0; source [S, B], T target steps, random tokens in [1, V).
struct seq2seq_problem {
  int S, T, B, V, E, H;
  double lr = 1e-3;  // Adam
};
/// One training step (forward, backward, Adam), or with forward_only the forward and loss alone.
lstm_step make_seq2seq_step(const seq2seq_problem& p, bool forward_only);

/// Issue 13's decoder-only transformer language model: Embedding(V, E) for tokens plus a learned
/// Embedding(S, E) for positions, `layers` x TransformerEncoderLayer(E, H, FF, dropout 0, post-norm, ReLU) under
/// a causal mask, Linear(E, V), cross-entropy over [S, B] random tokens (targets: the tokens shifted by one).
struct tlm_problem {
  int S, B, V, E, H, FF, layers;
  double lr = 1e-3;  // Adam
};
/// One training step (forward, backward, Adam), or with forward_only the forward and loss alone.
lstm_step make_tlm_step(const tlm_problem& p, bool forward_only);

void set_threads(int threads);
std::string version();

}  // namespace ctgraph::bench::torch_lstm_peer
