// An op struct whose gradient rule is misspelled (vjpp): a compile error that names the
// missing rule, where before the op silently had no gradient.
// EXPECT-ERROR: error: static assertion failed: ctgraph: an op struct needs its gradient rule
#include <ctgraph/ctgraph.hpp>
namespace cg = ctgraph;
struct twice_op {
  static constexpr const char* name = "twice";
  static constexpr cg::op_class cls = cg::op_class::elementwise;
  static constexpr cg::shape_result infer(const cg::attr_t& a, const cg::shape* in, int n) {
    return cg::elementwise_infer(a, in, n);
  }
  template <class T>
  static T scalar(T a, T) {
    return 2 * a;
  }
#ifdef CTGRAPH_FAIL
  static constexpr void vjpp(cg::vjp_ctx& c) { c.set(0, 2.0 * c.grad()); }
#else
  static constexpr void vjp(cg::vjp_ctx& c) { c.set(0, 2.0 * c.grad()); }
#endif
};
constexpr auto W = cg::param<"W", float, 3>;
constexpr auto loss = cg::sum(cg::make_node<twice_op>(W));
int main() {
  auto step = cg::compile(loss, cg::grad(loss));
  return step.num_steps() > 0 ? 0 : 1;
}
