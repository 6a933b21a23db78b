// [4,3] + [4] does not broadcast: the first error names add and both shapes.
// EXPECT-ERROR: error: .*add_op::shape_mismatch.*dims<4, 3>, ctgraph::dims<4>
#include <ctgraph/ctgraph.hpp>
namespace cg = ctgraph;
constexpr auto a = cg::input<"a", float, 4, 3>;
#ifdef CTGRAPH_FAIL
constexpr auto b = cg::param<"b", float, 4>;
#else
constexpr auto b = cg::param<"b", float, 3>;
#endif
int main() {
  auto step = cg::compile(a + b);
  return static_cast<int>(step.num_steps()) - 1;
}
