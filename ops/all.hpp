// ops/all.hpp: every op family. Adding an op: its file, plus one line here.
#pragma once
#include "attention.hpp"
#include "dropout.hpp"
#include "elementwise.hpp"
#include "embedding.hpp"
#include "layer_norm.hpp"
#include "losses.hpp"
#include "matmul.hpp"
#include "reduce.hpp"
#include "rnn.hpp"
#include "rnn_attention.hpp"
#include "scan.hpp"
#include "shape_ops.hpp"
#include "softmax.hpp"

namespace ctgraph {
/// compile()'s rewrites (graph/autodiff.hpp, rewrite_fn), one pattern per op that has one:
/// softmax(q k^T * s [+ causal_mask]) v -> attention (ops/attention.hpp); x * dropout_mask -> x in a program
/// without gradients (ops/dropout.hpp).
constexpr int rewrite_node(builder& b, const builder& in, int n, const std::vector<int>& remap) {
  if (const int r = rewrite_attention(b, in, n, remap); r >= 0) return r;
  return rewrite_dropout(b, in, n, remap);
}
}  // namespace ctgraph

// Last: the instance lists name every op above.
#include "instances.hpp"
