// Batch axes 2 and 3 do not broadcast: the first error names matmul and both shapes.
// EXPECT-ERROR: error: .*matmul_op::shape_mismatch.*dims<2, 5, 3>, ctgraph::dims<3, 3, 4>
#include <ctgraph/ctgraph.hpp>
namespace cg = ctgraph;
constexpr auto x = cg::input<"x", double, 2, 5, 3>;
#ifdef CTGRAPH_FAIL
constexpr auto W = cg::param<"W", double, 3, 3, 4>;
#else
constexpr auto W = cg::param<"W", double, 1, 3, 4>;
#endif
int main() {
  auto step = cg::compile(cg::matmul(x, W));
  return static_cast<int>(step.num_steps()) - 1;
}
