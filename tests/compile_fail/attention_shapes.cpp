// nn::additive_attention with a query whose batch (4) is not the keys' (3): the first error names the layer,
// its name and the shapes of the query and the keys.
// EXPECT-ERROR: error: .*attention_shape_mismatch.*"attn"\}>. .*dims<4, 8>. .*dims<7, 3, 6>
#include <ctgraph/ctgraph.hpp>
namespace cg = ctgraph;
namespace nn = ctgraph::nn;
#ifdef CTGRAPH_FAIL
constexpr auto q = cg::input<"q", float, 4, 8>;
#else
constexpr auto q = cg::input<"q", float, 3, 8>;
#endif
constexpr auto keys = cg::input<"keys", float, 7, 3, 6>;
int main() {
  constexpr auto a = nn::additive_attention<"attn", 5>(q, keys);
  auto step = cg::compile(cg::sum(a.context));
  return static_cast<int>(step.num_steps()) > 0 ? 0 : 1;
}
