// src/ops.cpp: the one compiled copy of every built-in op's kernels (ops/instances.hpp).
#define CTGRAPH_DEFINE_OP_INSTANCES
#include "ops/instances.hpp"

namespace ctgraph {
#define CTGRAPH_X(Op) CTGRAPH_KERNEL_INSTANCE(Op, float) CTGRAPH_KERNEL_INSTANCE(Op, double)
CTGRAPH_KERNEL_OPS(CTGRAPH_X)
#undef CTGRAPH_X
#define CTGRAPH_X(Op) CTGRAPH_ELEMENTWISE_INSTANCE(Op, float) CTGRAPH_ELEMENTWISE_INSTANCE(Op, double)
CTGRAPH_ELEMENTWISE_OPS(CTGRAPH_X)
#undef CTGRAPH_X
}  // namespace ctgraph
