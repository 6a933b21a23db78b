// A feed of static extent 11 for a [4,3] input: the first error names the input, its shape and the size.
// EXPECT-ERROR: error: .*feed_size_does_not_match_input_shape.*"x".*dims<4, 3>.*count<11>
#include <array>
#include <ctgraph/ctgraph.hpp>
namespace cg = ctgraph;
constexpr auto x = cg::input<"x", float, 4, 3>;
constexpr auto W = cg::param<"W", float, 3, 2>;
int main() {
  auto step = cg::compile(cg::matmul(x, W));
  auto params = cg::parameters_of(step);
#ifdef CTGRAPH_FAIL
  std::array<float, 11> xs{};
#else
  std::array<float, 12> xs{};
#endif
  step.run(params, cg::feed<"x">(xs));
}
