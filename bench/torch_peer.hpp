// bench/torch_peer.hpp: libtorch as an attention peer, behind a plain C++ interface so that only
// torch_peer.cpp pays for libtorch's headers. Built only when find_package(Torch) succeeds.
#pragma once

#include <functional>
#include <string>

#include "ctgraph/kernels.hpp"

namespace ctgraph::bench::torch_peer {

enum class impl {
  naive,  // matmul, masked_fill, softmax, matmul (materialises the scores)
  sdpa,   // at::_scaled_dot_product_attention (libtorch 1.13: no fused CPU kernel)
};

/// Allocates q, k, v (and dout) for `s`; the returned closure runs one forward (and backward through
/// autograd, if `backward`) and keeps every result alive until the next call.
std::function<void()> make_attention(const kernels::attention_shape& s, impl which, bool backward);

/// Output bytes the closure allocates per call (o, and dq, dk, dv with backward): not "extra" memory.
double output_bytes(const kernels::attention_shape& s, bool backward);

void set_threads(int threads);
std::string version();

}  // namespace ctgraph::bench::torch_peer
