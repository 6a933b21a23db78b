// cg::scan: values against the loop written out by hand, gradients against the same
// unrolled graph (1e-12 in double) and against finite differences; carry tuples, several
// outputs, reverse scans, free values hoisted out of the loop, rematerialisation.
#include <cmath>
#include <string_view>
#include <vector>

#include "gradcheck.hpp"
#include "testing.hpp"

namespace cg = ctgraph;
using namespace cg::literals;
using ctgraph_test::gradcheck;
using ctgraph_test::gradcheck_options;

namespace {

constexpr int T = 3, B = 2, In = 4, H = 5;
constexpr auto xs = cg::input<"xs", double, T, B, In>;
constexpr auto h0 = cg::input<"h0", double, B, H>;
constexpr auto W = cg::param<"W", double, In, H>;
constexpr auto U = cg::param<"U", double, H, H>;
constexpr auto bias = cg::param<"bias", double, H>;
constexpr auto V = cg::param<"V", double, H, 2>;

// An Elman cell: h' = tanh(x W + h U + b), output h' V.
constexpr auto elman = [](auto h, auto x) {
  auto n = cg::tanh(cg::matmul(x, W) + cg::matmul(h, U) + bias);
  return std::tuple{n, cg::matmul(n, V)};
};
constexpr auto rnn = cg::scan(elman, h0, xs);

// The same, unrolled: step t reads xs[t].
template <int t>
constexpr auto x_at() {
  return cg::reshape<B, In>(cg::slice<0, t, t + 1>(xs));
}
constexpr auto h1 = std::get<0>(elman(h0, x_at<0>()));
constexpr auto h2 = std::get<0>(elman(h1, x_at<1>()));
constexpr auto h3 = std::get<0>(elman(h2, x_at<2>()));
constexpr auto y_unrolled =
    cg::concat<0>(cg::reshape<1, B, 2>(cg::matmul(h1, V)), cg::reshape<1, B, 2>(cg::matmul(h2, V)),
                  cg::reshape<1, B, 2>(cg::matmul(h3, V)));

constexpr auto wy = cg::input<"wy", double, T, B, 2>;
constexpr auto wh = cg::input<"wh", double, B, H>;
constexpr auto loss_scan = cg::sum(rnn.outputs * wy) + cg::sum(rnn.carry * wh);
constexpr auto loss_unrolled = cg::sum(y_unrolled * wy) + cg::sum(h3 * wh);

std::vector<double> values(std::size_t n, unsigned seed) {
  std::vector<double> v(n);
  std::uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<double>(s >> 11) / static_cast<double>(1ull << 53) * 2 - 1;
  }
  return v;
}

template <class R, class E>
std::vector<double> copy_of(const R& r, E e) {
  auto v = r[e];
  return std::vector<double>(v.data(), v.data() + v.size());
}

}  // namespace

TEST_CASE("scan: a 3-step Elman RNN equals the cell unrolled by hand, values and gradients", "[scan]") {
  auto step_scan = cg::compile(loss_scan, rnn.outputs, rnn.carry, cg::grad(loss_scan, W, U, bias, V, h0, xs));
  auto step_unrolled = cg::compile(loss_unrolled, y_unrolled, h3, cg::grad(loss_unrolled, W, U, bias, V, h0, xs));
  auto params = cg::parameters_of(step_scan);
  cg::init(params, 7);
  const auto x = values(T * B * In, 1), h = values(B * H, 2), a = values(T * B * 2, 3), c = values(B * H, 4);
  auto feeds = [&](auto& s) {
    return s.run(params, cg::feed<"xs">(x), cg::feed<"h0">(h), cg::feed<"wy">(a), cg::feed<"wh">(c));
  };
  auto rs = feeds(step_scan);
  auto ru = feeds(step_unrolled);
  CHECK(static_cast<double>(rs[loss_scan]) == Approx(static_cast<double>(ru[loss_unrolled])).epsilon(1e-12));
  ctgraph_test::expect_values(rs[rnn.outputs], copy_of(ru, y_unrolled), 1e-12);
  ctgraph_test::expect_values(rs[rnn.carry], copy_of(ru, h3), 1e-12);
  ctgraph_test::expect_values(rs[cg::grad(loss_scan, W)], copy_of(ru, cg::grad(loss_unrolled, W)), 1e-12);
  ctgraph_test::expect_values(rs[cg::grad(loss_scan, U)], copy_of(ru, cg::grad(loss_unrolled, U)), 1e-12);
  ctgraph_test::expect_values(rs[cg::grad(loss_scan, bias)], copy_of(ru, cg::grad(loss_unrolled, bias)), 1e-12);
  ctgraph_test::expect_values(rs[cg::grad(loss_scan, V)], copy_of(ru, cg::grad(loss_unrolled, V)), 1e-12);
  ctgraph_test::expect_values(rs[cg::grad(loss_scan, h0)], copy_of(ru, cg::grad(loss_unrolled, h0)), 1e-12);
  ctgraph_test::expect_values(rs[cg::grad(loss_scan, xs)], copy_of(ru, cg::grad(loss_unrolled, xs)), 1e-12);
}

TEST_CASE("scan: gradients against finite differences", "[scan][grad]") {
  gradcheck("Elman RNN, outputs and final carry", loss_scan, W, U, bias, V, h0, xs);
  gradcheck("only the outputs", cg::sum(rnn.outputs * wy), W, U, h0);
  gradcheck("only the final carry", cg::sum(rnn.carry * wh), W, U, bias, xs);
}

TEST_CASE("scan: carry tuples, several outputs, values hoisted out of the loop", "[scan][grad]") {
  // A carry (h, c) and two outputs; P = tanh(U) * 0.5 depends on neither carry nor x_t: it is
  // computed once, outside the loop, and its gradient sums over the steps.
  constexpr auto c0 = cg::input<"c0", double, B, H>;
  constexpr auto P = cg::tanh(U) * 0.5_c;
  constexpr auto r = cg::scan(
      [](auto carry, auto x) {
        auto [h, c] = carry;
        auto c2 = c * cg::sigmoid(cg::matmul(h, P)) + cg::tanh(cg::matmul(x, W));
        auto h2 = cg::tanh(c2) + h * 0.25_c;
        return std::tuple{std::tuple{h2, c2}, std::tuple{h2 * h2, cg::sum(c2)}};
      },
      std::tuple{h0, c0}, xs);
  auto [h, c] = r.carry;
  auto [sq, total] = r.outputs;
  static_assert(cg::shape_of<decltype(sq)> == cg::make_shape<T, B, H>());
  static_assert(cg::shape_of<decltype(total)> == cg::make_shape<T>());
  constexpr auto wt = cg::input<"wt", double, T>;
  gradcheck("tuple carry, two outputs", cg::sum(h * wh) + cg::sum(c * c) + cg::sum(sq) + cg::sum(total * wt), W, U, h0,
            c0, xs);
}

TEST_CASE("scan: reverse runs t = T-1 .. 0 and keeps outputs indexed by t", "[scan][reverse]") {
  // A running sum from the end: out[t] = sum_{s >= t} x[s].
  constexpr auto x = cg::input<"x", double, 4, 3>;
  constexpr auto z = cg::input<"z", double, 3>;
  constexpr auto r = cg::scan<cg::scan_options{.reverse = true}>(
      [](auto acc, auto xt) {
        auto n = acc + xt;
        return std::tuple{n, n};
      },
      z, x);
  auto step = cg::compile(r.carry, r.outputs);
  auto params = cg::parameters_of(step);
  std::vector<double> xv(12), zv(3, 0.0);
  for (int i = 0; i < 12; ++i) xv[i] = i;
  auto out = step.run(params, cg::feed<"x">(xv), cg::feed<"z">(zv));
  auto ys = out[r.outputs];
  for (int t = 0; t < 4; ++t)
    for (int j = 0; j < 3; ++j) {
      double want = 0;
      for (int s = t; s < 4; ++s) want += xv[s * 3 + j];
      CHECK(ys(t, j) == want);
    }
  CHECK(out[r.carry](1) == 1 + 4 + 7 + 10);
  constexpr auto rr = cg::scan<cg::scan_options{.reverse = true}>(elman, h0, xs);
  gradcheck("reverse Elman RNN", cg::sum(rr.outputs * wy) + cg::sum(rr.carry * wh), W, U, bias, V, h0, xs);
}

TEST_CASE("scan: rematerialisation gives the same gradients in less memory", "[scan][remat]") {
  constexpr auto rm = cg::scan<cg::scan_options{.remat = true}>(elman, h0, xs);
  constexpr auto loss_remat = cg::sum(rm.outputs * wy) + cg::sum(rm.carry * wh);
  auto kept = cg::compile(loss_scan, cg::grad(loss_scan, W, U, xs));
  auto remat = cg::compile(loss_remat, cg::grad(loss_remat, W, U, xs));
  CHECK(remat.arena_bytes() < kept.arena_bytes());
  auto params = cg::parameters_of(kept);
  cg::init(params, 5);
  const auto x = values(T * B * In, 1), h = values(B * H, 2), a = values(T * B * 2, 3), c = values(B * H, 4);
  auto rk = kept.run(params, cg::feed<"xs">(x), cg::feed<"h0">(h), cg::feed<"wy">(a), cg::feed<"wh">(c));
  auto rr = remat.run(params, cg::feed<"xs">(x), cg::feed<"h0">(h), cg::feed<"wy">(a), cg::feed<"wh">(c));
  ctgraph_test::expect_values(rr[cg::grad(loss_remat, W)], copy_of(rk, cg::grad(loss_scan, W)), 1e-13);
  ctgraph_test::expect_values(rr[cg::grad(loss_remat, U)], copy_of(rk, cg::grad(loss_scan, U)), 1e-13);
  ctgraph_test::expect_values(rr[cg::grad(loss_remat, xs)], copy_of(rk, cg::grad(loss_scan, xs)), 1e-13);
  gradcheck("remat Elman RNN", loss_remat, W, U, bias, V, h0, xs);
}

TEST_CASE("scan: compile time does not depend on T: one cell, a loop at run time", "[scan]") {
  constexpr auto long_xs = cg::input<"xs", double, 1000, B, In>;
  constexpr auto r = cg::scan(elman, h0, long_xs);
  auto step = cg::compile(cg::sum(r.carry), cg::grad(cg::sum(r.carry), W));
  // The graph holds the cell once (forward and backward), whatever T.
  auto short_step = cg::compile(loss_scan, cg::grad(loss_scan, W));
  CHECK(step.graph_nodes() < 200);
  CHECK(step.num_steps() <= short_step.num_steps() + 4);
}

namespace {
// The matmuls of a plan's steps [begin, end) of `order` (its outer order or a cell's
// body_order), as their output shapes.
template <class Plan, class Order>
std::vector<cg::shape> matmuls(const Plan& p, const Order& order, int begin, int end) {
  std::vector<cg::shape> r;
  for (int i = begin; i < end; ++i)
    if (!order[i].fused && std::string_view(p.kernels[order[i].index].op->name) == "matmul")
      r.push_back(p.kernels[order[i].index].out_shape);
  return r;
}
}  // namespace

TEST_CASE("scan: x_t W runs for all steps as one gemm before the loop, dW, dU and dV as one gemm each after",
          "[scan][lift]") {
  auto step = cg::compile(loss_scan, cg::grad(loss_scan, W, U, V, xs));
  const auto& p = decltype(step)::plan;
  REQUIRE(p.scans.size() >= 2);  // the forward scan and its BPTT scan
  const auto& fwd = p.scans[0];
  // The cell: h U and the output's n V, no x_t W.
  const auto cell = matmuls(p, p.body_order, fwd.order_begin, fwd.order_end);
  CHECK(cell.size() == 2);
  for (const cg::shape& s : cell) CHECK(s.d[0] == B);
  // Outside every loop, over [T, B] rows: xs W, and the gradients of W and xs from its stacked
  // adjoint; and in the backward, the outputs' adjoints times V^T (x_t-only there too).
  const auto outer = matmuls(p, p.order, 0, static_cast<int>(p.order.size()));
  int stacked = 0, dW = 0;
  for (const cg::shape& s : outer) {
    stacked += s.rank == 3 && s.d[0] == T && s.d[1] == B;  // xs W, d xs = d(xs W) W^T, d ys V^T
    dW += s.rank == 2 && s.d[0] == In && s.d[1] == H;      // dW = xs^T d(xs W), [T * B] rows
  }
  CHECK(stacked == 3);
  CHECK(dW == 1);
  // The BPTT cell sums no weight gradient per step: dU = sum_t h_{t-1}^T d pre_t and
  // dV = sum_t n_t^T d y_t are one gemm each over the [T * B] rows of the values the loops
  // keep, after the backward loop; the cell only carries d h back (d pre_t U^T).
  const auto& bw = p.scans[1];
  const auto bw_cell = matmuls(p, p.body_order, bw.order_begin, bw.order_end);
  CHECK(bw_cell.size() == 1);
  for (const cg::shape& s : bw_cell) CHECK(s.d[0] == B);
  int dU = 0, dV = 0;
  for (const cg::shape& s : outer)
    dU += s.rank == 2 && s.d[0] == H && s.d[1] == H, dV += s.rank == 2 && s.d[0] == H && s.d[1] == 2;
  CHECK(dU == 1);
  CHECK(dV == 1);
}
