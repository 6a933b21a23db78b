// Multi-output nodes: one kernel step writes several outputs, each output its own buffer
// (allocated only when read), and the node's vector-Jacobian rule gets the adjoint of each
// output, or none. Checked with a test op of three outputs of x [R, C]:
//   out0 = 2 x,   out1 = sum_j x_j^2 (per row, [R]),   out2 = exp(x)
//   dx = 2 g0 + 2 x g1 + g2 out2        (only the terms whose adjoint flows)
#include <cmath>
#include <vector>

#include "gradcheck.hpp"
#include "testing.hpp"

namespace cg = ctgraph;
using ctgraph_test::gradcheck;
using ctgraph_test::probe;

namespace {

struct three_out_op {
  static constexpr const char* name = "three_out";
  static constexpr cg::op_class cls = cg::op_class::kernel;
  static constexpr bool outputs(const cg::attr_t&, const cg::shape* in, int n, std::vector<cg::shape>& out) {
    if (n != 1 || in[0].rank != 2) return false;
    cg::shape rows;
    rows.rank = 1;
    rows.d[0] = in[0].d[0];
    out = {in[0], rows, in[0]};
    return true;
  }
  static constexpr cg::shape_result infer(const cg::attr_t& a, const cg::shape* in, int n) {
    std::vector<cg::shape> out;
    const bool ok = outputs(a, in, n, out);
    return {ok, ok ? out[0] : cg::shape{}};
  }
  template <class T>
  static void forward(const cg::run_args<T>& a) {
    const long R = a.in_shape[0].d[0], C = a.in_shape[0].d[1];
    const T* x = a.input(0);
    if (T* out0 = a.output(0))
      for (long i = 0; i < R * C; ++i) out0[i] = 2 * x[i];
    if (T* out1 = a.output(1))
      for (long r = 0; r < R; ++r) {
        T s = 0;
        for (long j = 0; j < C; ++j) s += x[r * C + j] * x[r * C + j];
        out1[r] = s;
      }
    if (T* out2 = a.output(2))
      for (long i = 0; i < R * C; ++i) out2[i] = std::exp(x[i]);
  }
  static constexpr void vjp(cg::vjp_ctx& c) {
    cg::ref x = c.x(0), dx{&c.b, -1};
    auto add = [&](cg::ref t) { dx = dx.id < 0 ? t : dx + t; };
    if (c.has_grad(0)) add(2.0 * c.grad(0));
    if (c.has_grad(1)) add(2.0 * x * cg::expand(c.grad(1), 1 << 1, x.shape_of()));
    if (c.has_grad(2)) add(c.grad(2) * c.out(2));
    if (dx.id >= 0) c.set(0, dx);
  }
};

template <cg::expression X>
constexpr auto three_out(X x) {
  constexpr auto t = cg::make_node<three_out_op>(X{});
  (void)x;
  return std::tuple{cg::output<0>(t), cg::output<1>(t), cg::output<2>(t)};
}

constexpr auto x = cg::input<"x", double, 3, 4>;
constexpr auto W = cg::param<"W", double, 4, 4>;
constexpr auto h = cg::tanh(cg::matmul(x, W));  // a param below the node, so gradients reach W
constexpr auto outs = three_out(h);
constexpr auto out0 = std::get<0>(outs);
constexpr auto out1 = std::get<1>(outs);
constexpr auto out2 = std::get<2>(outs);

}  // namespace

TEST_CASE("multi-output node: each output's values, read as step outputs", "[multi_output]") {
  auto step = cg::compile(out0, out1, out2, h);
  auto params = cg::parameters_of(step);
  cg::init(params, 3);
  std::vector<double> xs(12);
  for (int i = 0; i < 12; ++i) xs[i] = 0.1 * i - 0.5;
  auto r = step.run(params, cg::feed<"x">(xs));
  auto hv = r[h];
  for (int i = 0; i < 3; ++i) {
    double s = 0;
    for (int j = 0; j < 4; ++j) {
      CHECK(r[out0](i, j) == 2 * hv(i, j));
      CHECK(r[out2](i, j) == Approx(std::exp(hv(i, j))).epsilon(1e-15));
      s += hv(i, j) * hv(i, j);
    }
    CHECK(r[out1](i) == Approx(s).epsilon(1e-15));
  }
}

TEST_CASE("multi-output node: gradients against finite differences, any outputs absent", "[multi_output][grad]") {
  gradcheck("all three outputs", probe(out0) + probe(out2) + cg::sum(out1 * out1), W, x);
  gradcheck("only out1 (out0 and out2 get no adjoint)", cg::sum(out1 * out1), W, x);
  gradcheck("out0 and out2", probe(out0) * probe(out2), W);
  gradcheck("out2 alone, through fan-out", probe(out2 * out2 + out2), W);
}

TEST_CASE("multi-output node: only the outputs read get a buffer", "[multi_output][planner]") {
  // out1 is [3]; out0 and out2 are [3, 4]: a step that reads out1 alone plans less memory.
  auto one = cg::compile(cg::sum(out1));
  auto all = cg::compile(cg::sum(out1) + cg::sum(out0) + cg::sum(out2));
  CHECK(one.intermediate_bytes() < all.intermediate_bytes());
  auto params = cg::parameters_of(one);
  cg::init(params, 1);
  std::vector<double> xs(12, 0.25);
  auto r = one.run(params, cg::feed<"x">(xs));
  auto ra = all.run(params, cg::feed<"x">(xs));
  CHECK(std::isfinite(static_cast<double>(r[cg::sum(out1)])));
  CHECK(static_cast<double>(r[cg::sum(out1)]) > 0);
  // The same values either way: the unread outputs were not written, the read one was.
  auto both = cg::compile(cg::sum(out1), cg::sum(out1) + cg::sum(out0) + cg::sum(out2));
  auto rb = both.run(params, cg::feed<"x">(xs));
  CHECK(static_cast<double>(rb[cg::sum(out1)]) == static_cast<double>(r[cg::sum(out1)]));
  CHECK(static_cast<double>(ra[cg::sum(out1) + cg::sum(out0) + cg::sum(out2)]) ==
        static_cast<double>(rb[cg::sum(out1) + cg::sum(out0) + cg::sum(out2)]));
}

TEST_CASE("multi-output node: grad of grad through its rule", "[multi_output][hvp]") {
  constexpr auto v = cg::input<"v", double, 4, 4>;
  constexpr auto loss = probe(out2) + cg::sum(out1 * out1);
  gradcheck("<grad W, v>", cg::sum(cg::grad(loss, W) * v), W);
}
