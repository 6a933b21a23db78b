// 2.0 * e with a plain double: the graph is fixed at compile time, the message points at 2.0_c.
// EXPECT-ERROR: error: static assertion failed: .*2\.0_c
#include <ctgraph/ctgraph.hpp>
namespace cg = ctgraph;
using namespace cg::literals;
constexpr auto e = cg::input<"e", double, 3>;
int main() {
#ifdef CTGRAPH_FAIL
  auto step = cg::compile(2.0 * e);
#else
  auto step = cg::compile(2.0_c * e);
#endif
  return static_cast<int>(step.num_steps()) - 1;
}
