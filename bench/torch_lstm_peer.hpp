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

void set_threads(int threads);
std::string version();

}  // namespace ctgraph::bench::torch_lstm_peer
