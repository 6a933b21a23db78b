// nn::transformer_encoder_layer_step with a mask one slot short ([B, C], not [B, C + 1]): the first error
// names the layer and the shapes of the input, the cache and the mask.
// EXPECT-ERROR: error: .*transformer_shape_mismatch.*"layers.0"\}>. .*dims<2, 8>. .*dims<5, 2, 8>. .*dims<2, 5>
#include <ctgraph/ctgraph.hpp>
namespace cg = ctgraph;
namespace nn = ctgraph::nn;
#ifdef CTGRAPH_FAIL
constexpr auto mask = cg::input<"mask", float, 2, 5>;
#else
constexpr auto mask = cg::input<"mask", float, 2, 6>;
#endif
constexpr auto x = cg::input<"x", float, 2, 8>;
constexpr auto k = cg::input<"k", float, 5, 2, 8>;
constexpr auto v = cg::input<"v", float, 5, 2, 8>;
int main() {
  constexpr auto s = nn::transformer_encoder_layer_step<"layers.0", 2, 16>(x, k, v, mask);
  auto step = cg::compile(s.y, s.k, s.v);
  return static_cast<int>(step.num_steps()) > 0 ? 0 : 1;
}
