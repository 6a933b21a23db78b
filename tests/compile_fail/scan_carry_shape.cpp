// A scan cell whose next carry has another shape than its carry: the first error names the
// carry's index and both shapes.
// EXPECT-ERROR: error: .*scan_next_carry_shape_differs_from_carry.*carry_index<0>.*dims<2, 5>.*dims<2, 3>
#include <ctgraph/ctgraph.hpp>
namespace cg = ctgraph;
constexpr auto xs = cg::input<"xs", float, 7, 2, 3>;
constexpr auto h0 = cg::input<"h0", float, 2, 5>;
constexpr auto W = cg::param<"W", float, 3, 5>;
#ifdef CTGRAPH_FAIL
constexpr auto r = cg::scan([](auto h, auto x) { return std::tuple{x, h}; }, h0, xs);  // next carry: x [2, 3]
#else
constexpr auto r = cg::scan([](auto h, auto x) { return std::tuple{cg::tanh(cg::matmul(x, W) + h), h}; }, h0, xs);
#endif
int main() {
  auto step = cg::compile(r.carry);
  return step.num_steps() > 0 ? 0 : 1;
}
