// bench/torch_lstm_peer.cpp: a training step of torch::nn::LSTM with torch::optim::Adam (libtorch's C++ frontend).
#include "torch_lstm_peer.hpp"

#include <ATen/Parallel.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <memory>

namespace ctgraph::bench::torch_lstm_peer {
namespace {

struct state {
  torch::nn::LSTM lstm;
  torch::Tensor x;
  torch::optim::Adam adam;
  explicit state(const lstm_problem& p)
      : lstm(torch::nn::LSTMOptions(p.In, p.H).num_layers(1)),
        x(torch::randn({p.T, p.B, p.In})),
        adam(lstm->parameters(), torch::optim::AdamOptions(p.lr)) {}
};

}  // namespace

lstm_step make_lstm_step(const lstm_problem& p) {
  torch::manual_seed(0);
  auto st = std::make_shared<state>(p);
  lstm_step step;
  for (const auto& w : st->lstm->parameters()) step.params += w.numel();
  step.run = [st] {
    st->adam.zero_grad();
    const torch::Tensor output = std::get<0>(st->lstm->forward(st->x));  // [T, B, H]
    output.sum().backward();
    st->adam.step();
  };
  return step;
}

void set_threads(int threads) { at::set_num_threads(threads); }
std::string version() { return TORCH_VERSION; }

}  // namespace ctgraph::bench::torch_lstm_peer
