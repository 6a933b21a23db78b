// nn::lstm_cell with x of rank 3 ([T, B, In] is nn::lstm's input, not the cell's): the first error names the
// layer, its name, H and the shapes of x, h and c.
// EXPECT-ERROR: error: .*lstm_cell_shape_mismatch.*"dec"\}>. .*hidden<6>. .*dims<5, 3, 4>. .*dims<3, 6>. .*dims<3, 6>
#include <ctgraph/ctgraph.hpp>
namespace cg = ctgraph;
namespace nn = ctgraph::nn;
#ifdef CTGRAPH_FAIL
constexpr auto x = cg::input<"x", float, 5, 3, 4>;
#else
constexpr auto x = cg::input<"x", float, 3, 4>;
#endif
constexpr auto h = cg::input<"h", float, 3, 6>;
constexpr auto c = cg::input<"c", float, 3, 6>;
int main() {
  constexpr auto s = nn::lstm_cell<"dec", 6>(x, h, c);
  auto step = cg::compile(cg::sum(s.h) + cg::sum(s.c));
  return static_cast<int>(step.num_steps()) > 0 ? 0 : 1;
}
