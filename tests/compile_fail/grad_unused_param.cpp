// out[grad(loss, U)] for a step compiled with grad(loss), when the loss does not depend on
// param U: U has no gradient, and the first error names U.
// EXPECT-ERROR: error: .*no_gradient_y_does_not_depend_on_param.*name<(ctgraph::)?fixed_string<2>\{"U"\}>
#include <ctgraph/ctgraph.hpp>
#include <vector>
namespace cg = ctgraph;
constexpr auto x = cg::input<"x", float, 4, 3>;
constexpr auto W = cg::param<"W", float, 3, 2>;
constexpr auto U = cg::param<"U", float, 3, 2>;
constexpr auto loss = cg::sum(cg::tanh(cg::matmul(x, W)));
int main() {
  auto step = cg::compile(loss, cg::matmul(x, U), cg::grad(loss));  // U is a param of the step
  auto params = cg::parameters_of(step);
  std::vector<float> xs(12);
  auto out = step.run(params, cg::feed<"x">(xs));
#ifdef CTGRAPH_FAIL
  auto g = out[cg::grad(loss, U)];
#else
  auto g = out[cg::grad(loss, W)];
#endif
  return g.size() == 6 ? 0 : 1;
}
