// bench/torch_peer.cpp: libtorch attention (naive and _scaled_dot_product_attention), forward and autograd.
#include "torch_peer.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/version.h>

#include <cmath>
#include <memory>
#include <optional>

namespace ctgraph::bench::torch_peer {
namespace {

struct state {
  at::Tensor q, k, v, dout, mask;
  at::Tensor out;
};

at::Tensor attention(const state& st, const kernels::attention_shape& s, impl which) {
  const double scale = s.scale != 0 ? s.scale : 1.0 / std::sqrt(double(s.head_dim));
  if (which == impl::sdpa) {
    // 1.13 scales by 1/sqrt(d) itself; is_causal masks j > i (q_len == kv_len in the benches).
    return std::get<0>(at::_scaled_dot_product_attention(st.q, st.k, st.v, {}, 0.0, false, s.causal));
  }
  at::Tensor scores = at::matmul(st.q, st.k.transpose(-2, -1)) * scale;
  if (s.causal) scores = scores.masked_fill(st.mask, -std::numeric_limits<float>::infinity());
  return at::matmul(at::softmax(scores, -1), st.v);
}

}  // namespace

std::function<void()> make_attention(const kernels::attention_shape& s, impl which, bool backward) {
  auto st = std::make_shared<state>();
  at::manual_seed(0);
  st->q = at::randn({s.batch, s.heads, s.q_len, s.head_dim});
  st->k = at::randn({s.batch, s.heads, s.kv_len, s.head_dim});
  st->v = at::randn({s.batch, s.heads, s.kv_len, s.head_dim});
  st->dout = at::randn({s.batch, s.heads, s.q_len, s.head_dim});
  if (s.causal)  // query i sees keys j <= i + (kv_len - q_len)
    st->mask = at::ones({s.q_len, s.kv_len}, at::kBool).triu(1 + s.kv_len - s.q_len);
  if (backward) {
    st->q.requires_grad_(true);
    st->k.requires_grad_(true);
    st->v.requires_grad_(true);
  }
  return [st, s, which, backward] {
    if (!backward) {
      c10::InferenceMode guard;
      st->out = attention(*st, s, which);
      return;
    }
    for (auto* t : {&st->q, &st->k, &st->v}) t->mutable_grad() = at::Tensor();
    st->out = attention(*st, s, which);
    st->out.backward(st->dout);
  };
}

double output_bytes(const kernels::attention_shape& s, bool backward) {
  const double q = 4.0 * s.batch * s.heads * s.q_len * s.head_dim, kv = 4.0 * s.batch * s.heads * s.kv_len * s.head_dim;
  return backward ? 2 * q + 2 * kv : q;
}

void set_threads(int threads) { at::set_num_threads(threads); }
std::string version() { return TORCH_VERSION; }

}  // namespace ctgraph::bench::torch_peer
