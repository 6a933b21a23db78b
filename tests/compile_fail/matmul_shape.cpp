// matmul of [32,64] by [63,10]: the first error names matmul and both shapes.
// EXPECT-ERROR: error: .*matmul_op::shape_mismatch.*dims<32, 64>, ctgraph::dims<63, 10>
#include <ctgraph/ctgraph.hpp>
namespace cg = ctgraph;
constexpr auto x = cg::input<"x", float, 32, 64>;
#ifdef CTGRAPH_FAIL
constexpr auto W = cg::param<"W", float, 63, 10>;
#else
constexpr auto W = cg::param<"W", float, 64, 10>;
#endif
int main() {
  auto step = cg::compile(cg::sum(cg::matmul(x, W)));
  return static_cast<int>(step.num_steps()) - 2;
}
