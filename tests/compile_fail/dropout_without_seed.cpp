// A training step with dropout run without cg::seed: the first error says so.
// EXPECT-ERROR: error: .*step_applies_dropout_so_run_needs_cg_seed
#include <ctgraph/ctgraph.hpp>
#include <vector>
namespace cg = ctgraph;
namespace nn = ctgraph::nn;
constexpr auto x = cg::input<"x", float, 4, 3>;
constexpr auto W = cg::param<"W", float, 3, 5>;
constexpr auto loss = cg::sum(nn::dropout<"drop", 0.1>(cg::matmul(x, W)));
int main() {
  auto step = cg::compile(loss, cg::grad(loss));
  auto params = cg::parameters_of(step);
  std::vector<float> xs(12);
#ifdef CTGRAPH_FAIL
  step.run(params, cg::feed<"x">(xs));
#else
  step.run(params, cg::feed<"x">(xs), cg::seed(1));
#endif
}
