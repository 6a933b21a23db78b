// Attributes as template arguments: two attr_t values that differ only in which element of i is set
// must stay two arguments. g++ 12 compared them by their stored elements without the elements'
// positions, so {4, 0, ...} (a loop over an initializer list) and {0, 4, ...} (one element assigned)
// were one argument, and the second read the first's attributes: an attention with cg::heads<4>
// after a cg::sequence_mask<4> in the same file failed its shape check (attr_t's constructor fixes
// it). This file must see the {4} attribute first, so it holds nothing else.
#include <catch2/catch.hpp>
#include <ctgraph/ctgraph.hpp>

namespace cg = ctgraph;

namespace {
constexpr cg::attr_t one_at(int k, int v) {
  cg::attr_t a;
  a.i[k] = v;
  return a;
}
// Instantiated first: the attribute of sequence_mask<4>.
constexpr auto first_word = cg::detail::words_of<cg::attr_ints({4})>;
constexpr auto second_word = cg::detail::words_of<one_at(1, 4)>;
constexpr auto third_word = cg::detail::words_of<one_at(2, 4)>;

constexpr auto len = cg::input<"len", int, 3>;
constexpr auto steps = cg::sequence_mask<4>(len);  // attr {4}
constexpr auto q = cg::input<"q", float, 1, 3, 16>;
constexpr auto k = cg::input<"k", float, 8, 3, 16>;
constexpr auto mask = cg::input<"mask", float, 3, 8>;
constexpr auto o = cg::attention(q, k, k, cg::heads<4>, mask);  // attr {0, 4}
}  // namespace

TEST_CASE("attr_t template arguments differing only in which element is set stay apart", "[graph]") {
  STATIC_REQUIRE(first_word[0] == 4);
  STATIC_REQUIRE(first_word[1] == 0);
  STATIC_REQUIRE(second_word[0] == 0);
  STATIC_REQUIRE(second_word[1] == 4);
  STATIC_REQUIRE(third_word[1] == 0);
  STATIC_REQUIRE(third_word[2] == 4);
  STATIC_REQUIRE(cg::attr_of<one_at(1, 4)>::value.i[1] == 4);
  STATIC_REQUIRE(cg::attr_of<one_at(1, 4)>::value.i[0] == 0);
  // The case that was found: the attention keeps its heads (q [1, 3, 16] is 4 heads of 4 features).
  STATIC_REQUIRE(cg::shape_of<decltype(o)> == cg::shape{3, {1, 3, 16}});
  STATIC_REQUIRE(cg::shape_of<decltype(steps)> == cg::shape{3, {4, 3, 1}});
}
