// A feed whose name is not an input of the graph: the first error names the feed.
// EXPECT-ERROR: error: .*feed_name_is_not_an_input_of_this_graph.*name<(ctgraph::)?fixed_string<2>\{"z"\}>
#include <ctgraph/ctgraph.hpp>
#include <vector>
namespace cg = ctgraph;
constexpr auto x = cg::input<"x", float, 4, 3>;
constexpr auto W = cg::param<"W", float, 3, 2>;
int main() {
  auto step = cg::compile(cg::matmul(x, W));
  auto params = cg::parameters_of(step);
  std::vector<float> xs(12);
#ifdef CTGRAPH_FAIL
  step.run(params, cg::feed<"x">(xs), cg::feed<"z">(xs));
#else
  step.run(params, cg::feed<"x">(xs));
#endif
}
