// ops/instances.hpp: the built-in ops' kernels are compiled once, into the library
// (src/ops.cpp), not again in every translation unit that builds a graph. Each op's
// forward_entry and elementwise_array are declared here as explicit instantiations that
// exist elsewhere; an op defined outside the library instantiates its own as before.
// Adding a built-in op: its name in one of the two lists.
#pragma once
#include "all.hpp"

// clang-format off
// Ops with `forward` (kernel steps).
#define CTGRAPH_KERNEL_OPS(X) \
  X(embedding_op) X(scatter_add_op) X(cross_entropy_op) X(one_hot_op) X(matmul_op) X(matmul_rows_op) X(sum_op) X(expand_op) \
  X(lstm_gates_op) X(lstm_gates_grad_op) X(gru_gates_op) X(gru_gates_grad_op) \
  X(additive_attention_op) X(additive_attention_grad_op) X(sequence_mask_op) X(attention_op) X(attention_grad_op) X(causal_mask_op) X(sinusoidal_positions_op) \
  X(layer_norm_op) X(dropout_mask_op) \
  X(reshape_op) X(permute_op) X(concat_op) X(slice_op) X(pad_op) X(softmax_op) X(log_softmax_op) X(ce_weights_op)
// Ops with `scalar` (elementwise, run in fused loops).
#define CTGRAPH_ELEMENTWISE_OPS(X) \
  X(add_op) X(sub_op) X(mul_op) X(div_op) X(neg_op) X(exp_op) X(log_op) X(tanh_op) X(sigmoid_op) X(relu_op) \
  X(sqrt_op) X(erf_op) X(step_op) X(broadcast_op)
// clang-format on

#define CTGRAPH_KERNEL_INSTANCE(Op, T) template void forward_entry<Op, T>(const run_args<T>&);
#define CTGRAPH_ELEMENTWISE_INSTANCE(Op, T) \
  template void elementwise_array<Op, T>(T* __restrict, const T*, int, const T*, int, long);

#ifndef CTGRAPH_DEFINE_OP_INSTANCES
namespace ctgraph {
#define CTGRAPH_X(Op) extern CTGRAPH_KERNEL_INSTANCE(Op, float) extern CTGRAPH_KERNEL_INSTANCE(Op, double)
CTGRAPH_KERNEL_OPS(CTGRAPH_X)
#undef CTGRAPH_X
#define CTGRAPH_X(Op) extern CTGRAPH_ELEMENTWISE_INSTANCE(Op, float) extern CTGRAPH_ELEMENTWISE_INSTANCE(Op, double)
CTGRAPH_ELEMENTWISE_OPS(CTGRAPH_X)
#undef CTGRAPH_X
}  // namespace ctgraph
#endif
