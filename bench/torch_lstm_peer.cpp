// bench/torch_lstm_peer.cpp: a training step of torch::nn::LSTM with torch::optim::Adam (libtorch's C++ frontend).
#include "torch_lstm_peer.hpp"

#include <ATen/Parallel.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <limits>
#include <memory>
#include <string>
#include <vector>

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

namespace {
struct seq2seq_state : torch::nn::Module {
  torch::nn::Embedding src_emb, tgt_emb;
  torch::nn::LSTM enc;
  torch::nn::LSTMCell dec;
  torch::nn::Linear Wh, Ws, v, out;
  torch::Tensor src, tgt_in, tgt_out;
  explicit seq2seq_state(const seq2seq_problem& p)
      : src_emb(register_module("src_emb", torch::nn::Embedding(p.V, p.E))),
        tgt_emb(register_module("tgt_emb", torch::nn::Embedding(p.V, p.E))),
        enc(register_module("enc", torch::nn::LSTM(torch::nn::LSTMOptions(p.E, p.H)))),
        dec(register_module("dec", torch::nn::LSTMCell(p.E + p.H, p.H))),
        Wh(register_module("Wh", torch::nn::Linear(torch::nn::LinearOptions(p.H, p.H).bias(false)))),
        Ws(register_module("Ws", torch::nn::Linear(p.H, p.H))),
        v(register_module("v", torch::nn::Linear(torch::nn::LinearOptions(p.H, 1).bias(false)))),
        out(register_module("out", torch::nn::Linear(2 * p.H, p.V))),
        src(torch::randint(1, p.V, {p.S, p.B}, torch::kLong)),
        tgt_in(torch::randint(1, p.V, {p.T, p.B}, torch::kLong)),
        tgt_out(torch::randint(1, p.V, {p.T, p.B}, torch::kLong)) {}
  torch::Tensor loss(int T, int V) {
    auto [enc_out, state] = enc->forward(src_emb->forward(src));  // [S, B, H]
    torch::Tensor h = std::get<0>(state)[0], c = std::get<1>(state)[0];
    const torch::Tensor keys = Wh->forward(enc_out);  // once, outside the loop
    const torch::Tensor emb = tgt_emb->forward(tgt_in);
    std::vector<torch::Tensor> logits;
    for (int t = 0; t < T; ++t) {
      const torch::Tensor e = v->forward(torch::tanh(keys + Ws->forward(h).unsqueeze(0))).squeeze(-1);  // [S, B]
      const torch::Tensor a = torch::softmax(e, 0);
      const torch::Tensor ctx = (a.unsqueeze(-1) * enc_out).sum(0);  // [B, H]
      std::tie(h, c) = dec->forward(torch::cat({emb[t], ctx}, 1), std::make_tuple(h, c));
      logits.push_back(out->forward(torch::cat({h, ctx}, 1)));
    }
    return torch::nn::functional::cross_entropy(torch::stack(logits).view({-1, V}), tgt_out.view({-1}),
                                                torch::nn::functional::CrossEntropyFuncOptions().ignore_index(0));
  }
};
struct seq2seq_run {
  std::shared_ptr<seq2seq_state> m;
  torch::optim::Adam adam;
  seq2seq_run(const seq2seq_problem& p)
      : m(std::make_shared<seq2seq_state>(p)), adam(m->parameters(), torch::optim::AdamOptions(p.lr)) {}
};
}  // namespace

lstm_step make_seq2seq_step(const seq2seq_problem& p, bool forward_only) {
  torch::manual_seed(0);
  auto st = std::make_shared<seq2seq_run>(p);
  lstm_step step;
  for (const auto& w : st->m->parameters()) step.params += w.numel();
  const int T = p.T, V = p.V;
  if (forward_only)
    step.run = [st, T, V] {
      torch::NoGradGuard no_grad;
      st->m->loss(T, V);
    };
  else
    step.run = [st, T, V] {
      st->adam.zero_grad();
      st->m->loss(T, V).backward();
      st->adam.step();
    };
  return step;
}

namespace {
struct tlm_state : torch::nn::Module {
  torch::nn::Embedding tok, pos;
  std::vector<torch::nn::TransformerEncoderLayer> layers;
  torch::nn::Linear head;
  torch::Tensor tokens, targets, mask;
  explicit tlm_state(const tlm_problem& p)
      : tok(register_module("tok", torch::nn::Embedding(p.V, p.E))),
        pos(register_module("pos", torch::nn::Embedding(p.S, p.E))),
        head(register_module("head", torch::nn::Linear(p.E, p.V))),
        tokens(torch::randint(0, p.V, {p.S, p.B}, torch::kLong)),
        targets(torch::randint(0, p.V, {p.S, p.B}, torch::kLong)),
        mask(torch::triu(torch::full({p.S, p.S}, -std::numeric_limits<float>::infinity()), 1)) {
    for (int l = 0; l < p.layers; ++l)
      layers.push_back(
          register_module("layer" + std::to_string(l),
                          torch::nn::TransformerEncoderLayer(
                              torch::nn::TransformerEncoderLayerOptions(p.E, p.H).dim_feedforward(p.FF).dropout(0.0))));
  }
  torch::Tensor loss(int S, int V) {
    torch::Tensor x = tok->forward(tokens) + pos->weight.slice(0, 0, S).unsqueeze(1);  // [S, B, E]
    for (auto& layer : layers) x = layer->forward(x, mask);
    return torch::nn::functional::cross_entropy(head->forward(x).view({-1, V}), targets.view({-1}));
  }
};
struct tlm_run {
  std::shared_ptr<tlm_state> m;
  torch::optim::Adam adam;
  explicit tlm_run(const tlm_problem& p)
      : m(std::make_shared<tlm_state>(p)), adam(m->parameters(), torch::optim::AdamOptions(p.lr)) {}
};
}  // namespace

lstm_step make_tlm_step(const tlm_problem& p, bool forward_only) {
  torch::manual_seed(0);
  auto st = std::make_shared<tlm_run>(p);
  lstm_step step;
  for (const auto& w : st->m->parameters()) step.params += w.numel();
  const int S = p.S, V = p.V;
  if (forward_only)
    step.run = [st, S, V] {
      torch::NoGradGuard no_grad;
      st->m->loss(S, V);
    };
  else
    step.run = [st, S, V] {
      st->adam.zero_grad();
      st->m->loss(S, V).backward();
      st->adam.step();
    };
  return step;
}

void set_threads(int threads) { at::set_num_threads(threads); }
std::string version() { return TORCH_VERSION; }

}  // namespace ctgraph::bench::torch_lstm_peer
