// Reductions (sum, mean over all or chosen axes, with and without keepdim) and shape
// ops (reshape, permute, transpose, concat, slice): forward values by hand, gradients
// against finite differences.
#include <array>
#include <vector>

#include "gradcheck.hpp"
#include "testing.hpp"

namespace cg = ctgraph;
using namespace cg::literals;
using ctgraph_test::expect_values;
using ctgraph_test::gradcheck;
using ctgraph_test::iota_values;
using ctgraph_test::probe;

// ---------------------------------------------------------------- forward values

TEST_CASE("reduce forward: sum and mean of a [2,3] matrix", "[reduce][forward]") {
  constexpr auto x = cg::input<"x", double, 2, 3>;
  constexpr auto s_all = cg::sum(x);
  constexpr auto s0 = cg::sum<0>(x);
  constexpr auto s1 = cg::sum<1>(x);
  constexpr auto s1k = cg::sum<1>(x, cg::keepdim);
  constexpr auto sm1 = cg::sum<-1>(x);
  constexpr auto s01k = cg::sum<0, 1>(x, cg::keepdim);
  constexpr auto m_all = cg::mean(x);
  constexpr auto m0 = cg::mean<0>(x);
  constexpr auto m1k = cg::mean<1>(x, cg::keepdim);
  static_assert(cg::shape_of<decltype(s_all)>.rank == 0);
  static_assert(cg::shape_of<decltype(s1k)> == cg::make_shape<2, 1>());
  static_assert(cg::shape_of<decltype(s01k)> == cg::make_shape<1, 1>());
  static_assert(cg::shape_of<decltype(m1k)> == cg::make_shape<2, 1>());
  static_assert(std::is_same_v<decltype(s1), decltype(sm1)>);  // axis -1 is axis 1
  auto step = cg::compile(s_all, s0, s1, s1k, s01k, m_all, m0, m1k);
  auto params = cg::parameters_of(step);
  const std::array<double, 6> xv{1, 2, 3, 4, 5, 6};
  auto out = step.run(params, cg::feed<"x">(xv));
  CHECK(static_cast<double>(out[s_all]) == 21);
  expect_values(out[s0], {5, 7, 9});
  expect_values(out[s1], {6, 15});
  expect_values(out[s1k], {6, 15});
  CHECK(out[s1k].dims() == std::array<int, 2>{2, 1});
  expect_values(out[s01k], {21});
  CHECK(static_cast<double>(out[m_all]) == 3.5);
  expect_values(out[m0], {2.5, 3.5, 4.5});
  expect_values(out[m1k], {2, 5});
}

TEST_CASE("reduce forward: sums over axes of a rank-3 tensor", "[reduce][forward]") {
  constexpr auto x = cg::input<"x", double, 2, 3, 4>;  // x(i,j,k) = 12 i + 4 j + k
  constexpr auto s02 = cg::sum<0, 2>(x);
  constexpr auto s1k = cg::sum<1>(x, cg::keepdim);
  constexpr auto m2 = cg::mean<2>(x);
  auto step = cg::compile(s02, s1k, m2);
  auto params = cg::parameters_of(step);
  auto xv = iota_values(24);
  auto out = step.run(params, cg::feed<"x">(xv));
  // sum over i, k of 12 i + 4 j + k = 4*12 + 8*4 j + 2*6
  expect_values(out[s02], {60, 92, 124});
  CHECK(out[s1k].dims() == std::array<int, 3>{2, 1, 4});
  // sum over j of 12 i + 4 j + k = 36 i + 12 + 3 k
  expect_values(out[s1k], {12, 15, 18, 21, 48, 51, 54, 57});
  // mean over k: 12 i + 4 j + 1.5
  expect_values(out[m2], {1.5, 5.5, 9.5, 13.5, 17.5, 21.5});
}

TEST_CASE("shape forward: reshape, permute, transpose", "[shape][forward]") {
  constexpr auto x = cg::input<"x", double, 2, 3, 4>;
  constexpr auto r = cg::reshape<4, 6>(x);
  constexpr auto r1 = cg::reshape<24>(x);
  constexpr auto p = cg::permute<2, 0, 1>(x);  // out(k, i, j) = x(i, j, k)
  constexpr auto t = cg::transpose(x);         // out(i, k, j) = x(i, j, k)
  auto step = cg::compile(r, r1, p, t);
  auto params = cg::parameters_of(step);
  auto xv = iota_values(24);
  auto out = step.run(params, cg::feed<"x">(xv));
  CHECK(out[r].dims() == std::array<int, 2>{4, 6});
  expect_values(out[r], xv);
  expect_values(out[r1], xv);
  auto pv = out[p];
  REQUIRE(pv.dims() == std::array<int, 3>{4, 2, 3});
  auto tv = out[t];
  REQUIRE(tv.dims() == std::array<int, 3>{2, 4, 3});
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) {
        CHECK(pv(k, i, j) == 12 * i + 4 * j + k);
        CHECK(tv(i, k, j) == 12 * i + 4 * j + k);
      }
}

TEST_CASE("shape forward: concat and slice", "[shape][forward]") {
  constexpr auto a = cg::input<"a", double, 2, 3>;
  constexpr auto b = cg::input<"b", double, 1, 3>;
  constexpr auto c = cg::input<"c", double, 2, 2>;
  constexpr auto c0 = cg::concat<0>(a, b);
  constexpr auto c1 = cg::concat<1>(a, c);
  constexpr auto c3 = cg::concat<-1>(c, a, c);
  constexpr auto s1 = cg::slice<1, 1, 3>(a);
  constexpr auto s0 = cg::slice<0, 1, 2>(a);
  constexpr auto sm = cg::slice<-1, 0, 1>(a);
  auto step = cg::compile(c0, c1, c3, s1, s0, sm);
  auto params = cg::parameters_of(step);
  const std::array<double, 6> av{1, 2, 3, 4, 5, 6};
  const std::array<double, 3> bv{7, 8, 9};
  const std::array<double, 4> cv{10, 11, 12, 13};
  auto out = step.run(params, cg::feed<"a">(av), cg::feed<"b">(bv), cg::feed<"c">(cv));
  CHECK(out[c0].dims() == std::array<int, 2>{3, 3});
  expect_values(out[c0], {1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(out[c1].dims() == std::array<int, 2>{2, 5});
  expect_values(out[c1], {1, 2, 3, 10, 11, 4, 5, 6, 12, 13});
  CHECK(out[c3].dims() == std::array<int, 2>{2, 7});
  expect_values(out[c3], {10, 11, 1, 2, 3, 10, 11, 12, 13, 4, 5, 6, 12, 13});
  CHECK(out[s1].dims() == std::array<int, 2>{2, 2});
  expect_values(out[s1], {2, 3, 5, 6});
  expect_values(out[s0], {4, 5, 6});
  expect_values(out[sm], {1, 4});
}

// ---------------------------------------------------------------- gradients

TEST_CASE("reduce gradients: sum over all, axes, keepdim", "[reduce][grad]") {
  constexpr auto x = cg::param<"x", double, 2, 3, 4>;
  gradcheck("sum all", probe(cg::sum(x)), x);
  gradcheck("sum<1>", probe(cg::sum<1>(x)), x);
  gradcheck("sum<-1>", probe(cg::sum<-1>(x)), x);
  gradcheck("sum<0,2> keepdim", probe(cg::sum<0, 2>(x, cg::keepdim)), x);
  gradcheck("sum<0> keepdim, then broadcast back", probe(x * cg::sum<0>(x, cg::keepdim)), x);
}

TEST_CASE("reduce gradients: mean over all, axes, keepdim", "[reduce][grad]") {
  constexpr auto x = cg::param<"x", double, 3, 5>;
  constexpr auto y = cg::param<"y", double, 2, 3, 4>;
  gradcheck("mean all", probe(cg::mean(x)), x);
  gradcheck("mean<0>", probe(cg::mean<0>(x)), x);
  gradcheck("mean<1> keepdim", probe(cg::mean<1>(x, cg::keepdim)), x);
  gradcheck("x - mean<-1>(x, keepdim)", probe(y - cg::mean<-1>(y, cg::keepdim)), y);
}

TEST_CASE("shape gradients: reshape, permute, transpose", "[shape][grad]") {
  constexpr auto x = cg::param<"x", double, 2, 3, 4>;
  gradcheck("reshape<4,6>", probe(cg::reshape<4, 6>(x)), x);
  gradcheck("reshape<6,2,2> of tanh", probe(cg::reshape<6, 2, 2>(cg::tanh(x))), x);
  gradcheck("permute<2,0,1>", probe(cg::permute<2, 0, 1>(x)), x);
  gradcheck("permute<1,2,0> * tanh", probe(cg::tanh(cg::permute<1, 2, 0>(x))), x);
  gradcheck("transpose rank 3", probe(cg::transpose(x)), x);
}

TEST_CASE("shape gradients: concat", "[shape][grad]") {
  constexpr auto a = cg::param<"a", double, 2, 3>;
  constexpr auto b = cg::param<"b", double, 1, 3>;
  constexpr auto c = cg::input<"c", double, 2, 2>;
  gradcheck("concat<0>", probe(cg::concat<0>(a, b)), a, b);
  gradcheck("concat<1>", probe(cg::concat<1>(a, c)), a, c);
  gradcheck("concat<-1>(c, a, c)", probe(cg::concat<-1>(c, a, c)), a, c);
  gradcheck("concat<0>(a, a)", probe(cg::concat<0>(a, a)), a);
}

TEST_CASE("shape gradients: slice", "[shape][grad]") {
  constexpr auto x = cg::param<"x", double, 3, 4, 2>;
  gradcheck("slice<1,1,3>", probe(cg::slice<1, 1, 3>(x)), x);
  gradcheck("slice<0,0,1>", probe(cg::slice<0, 0, 1>(x)), x);
  gradcheck("slice<-1,1,2>", probe(cg::slice<-1, 1, 2>(x)), x);
  gradcheck("two slices of one tensor", probe(cg::slice<1, 0, 2>(x) * cg::slice<1, 2, 4>(x)), x);
}

TEST_CASE("shape gradients: rank 4 permute, rank 3 concat, reshape between reductions", "[shape][grad]") {
  constexpr auto x = cg::param<"x", double, 2, 3, 2, 2>;
  constexpr auto y = cg::param<"y", double, 2, 1, 2, 2>;
  gradcheck("permute<0,2,1,3>", probe(cg::permute<0, 2, 1, 3>(x)), x);
  gradcheck("permute<3,2,1,0> of sigmoid", probe(cg::permute<3, 2, 1, 0>(cg::sigmoid(x))), x);
  gradcheck("concat<1>(x, y, x) rank 4", probe(cg::concat<1>(x, y, x)), x, y);
  gradcheck("sum<1>(reshape<6,4>(x), keepdim) * mean<0>(...)",
            probe(cg::sum<1>(cg::reshape<6, 4>(x), cg::keepdim) * cg::mean<0>(cg::reshape<6, 4>(x))), x);
}
