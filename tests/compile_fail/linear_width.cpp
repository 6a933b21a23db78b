// nn::linear declared for 64 inputs, given x [32, 63]: the first error names the layer, its name, x's shape and
// the weight's [Out, In].
// EXPECT-ERROR: error: .*linear_shape_mismatch.*fixed_string<3>\{"fc"\}>. .*dims<32, 63>. .*dims<10, 64>
#include <ctgraph/ctgraph.hpp>
namespace cg = ctgraph;
namespace nn = ctgraph::nn;
#ifdef CTGRAPH_FAIL
constexpr auto x = cg::input<"x", float, 32, 63>;
#else
constexpr auto x = cg::input<"x", float, 32, 64>;
#endif
int main() {
  constexpr auto y = nn::linear<"fc", 10, nn::linear_options{.in = 64}>(x);
  auto step = cg::compile(cg::sum(y));
  return static_cast<int>(step.num_steps()) > 0 ? 0 : 1;
}
