// A kernel op struct whose forward is misspelled (forwad): a compile error that names the
// missing member, where before it was a null call at run time.
// EXPECT-ERROR: error: static assertion failed: ctgraph: a kernel op struct needs .*forward
#include <ctgraph/ctgraph.hpp>
namespace cg = ctgraph;
struct copy_op {
  static constexpr const char* name = "copy";
  static constexpr cg::op_class cls = cg::op_class::kernel;
  static constexpr cg::shape_result infer(const cg::attr_t&, const cg::shape* in, int) { return {true, in[0]}; }
  template <class T>
#ifdef CTGRAPH_FAIL
  static void forwad(const cg::run_args<T>& a) {
#else
  static void forward(const cg::run_args<T>& a) {
#endif
    for (long i = 0; i < a.out_shape.size(); ++i) a.out[i] = a.input(0)[i];
  }
  static constexpr void vjp(cg::vjp_ctx& c) { c.set(0, c.grad()); }
};
constexpr auto W = cg::param<"W", float, 3>;
constexpr auto loss = cg::sum(cg::make_node<copy_op>(W));
int main() {
  auto step = cg::compile(loss, cg::grad(loss));
  return step.num_steps() > 0 ? 0 : 1;
}
