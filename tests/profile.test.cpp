// run(..., cg::profile(times)): each step's seconds, summed over runs, in run order; profile_table() names
// the slowest steps as to_dot() and cg::non_finite_error do. A profiled run computes what a plain one does.
#include <algorithm>
#include <catch2/catch.hpp>
#include <ctgraph/ctgraph.hpp>
#include <string>
#include <vector>

namespace cg = ctgraph;
using Catch::Matchers::Contains;

TEST_CASE("cg::profile times every step of every run, and profile_table ranks them", "[profile]") {
  constexpr auto x = cg::input<"x", float, 64, 32>;
  constexpr auto W = cg::param<"W", float, 32, 48>;
  constexpr auto l = cg::sum(cg::tanh(cg::matmul(x, W)));
  auto step = cg::compile(l, cg::grad(l, W));
  auto params = cg::parameters_of(step);
  cg::init(params, 1);
  std::vector<float> xs(64 * 32, 0.25f);
  const float plain = step.run(params, cg::feed<"x">(xs))[l];

  cg::step_times times;
  for (int r = 0; r < 3; ++r) {
    const float v = step.run(params, cg::profile(times), cg::feed<"x">(xs))[l];
    CHECK(v == plain);
  }
  REQUIRE(times.runs == 3);
  REQUIRE(times.seconds.size() == decltype(step)::num_steps());
  double total = 0;
  for (double s : times.seconds) {
    CHECK(s >= 0);
    total += s;
  }
  CHECK(total > 0);

  const std::string all = cg::profile_table(times, step, 100);
  CHECK_THAT(all, Contains("| step | what | ms | share |"));
  CHECK_THAT(all, Contains("forward matmul [64, 48]"));
  CHECK_THAT(all, Contains("gradient matmul [32, 48]"));
  CHECK_THAT(all, Contains(fmt::format("all {} steps", decltype(step)::num_steps())));
  // A header of two lines, a row per step, the total.
  CHECK(std::count(all.begin(), all.end(), '\n') == long(2 + decltype(step)::num_steps() + 1));
  const std::string top = cg::profile_table(times, step, 2);
  CHECK(std::count(top.begin(), top.end(), '\n') == 2 + 2 + 1);

  times.clear();
  CHECK_THROWS_WITH(cg::profile_table(times, step), Contains("the times hold 0 runs"));
}
