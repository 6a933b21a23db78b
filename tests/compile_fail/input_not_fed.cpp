// An input of the graph with no feed: the first error names the input.
// EXPECT-ERROR: error: .*input_is_not_fed.*"y"
#include <ctgraph/ctgraph.hpp>
#include <vector>
namespace cg = ctgraph;
constexpr auto x = cg::input<"x", float, 4, 3>;
constexpr auto y = cg::input<"y", int, 4>;
constexpr auto W = cg::param<"W", float, 3, 5>;
int main() {
  auto step = cg::compile(cg::cross_entropy(cg::matmul(x, W), y));
  auto params = cg::parameters_of(step);
  std::vector<float> xs(12);
  std::vector<int> ys(4);
#ifdef CTGRAPH_FAIL
  step.run(params, cg::feed<"x">(xs));
#else
  step.run(params, cg::feed<"x">(xs), cg::feed<"y">(ys));
#endif
}
