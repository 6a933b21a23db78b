// Greedy decoding and beam search (ctgraph/decode.hpp) on a toy decoder whose scores depend on the
// input and on the whole prefix: a decoder step that reorders its state by the parents wrongly,
// or a search that drops or mixes up beams, gives other sequences. Checked against an exhaustive
// search over every sequence.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <ctgraph/decode.hpp>
#include <functional>
#include <stdexcept>
#include <vector>

namespace cg = ctgraph;

namespace {
constexpr int V = 5, start = 0, end = 1;

// A pseudo-random score of token v after `prefix`, for input g.
float toy_score(int g, const std::vector<int>& prefix, int v) {
  std::uint64_t h = 1469598103934665603ull ^ static_cast<std::uint64_t>(g);
  for (int t : prefix) h = (h ^ static_cast<std::uint64_t>(t)) * 1099511628211ull;
  h = (h ^ static_cast<std::uint64_t>(v)) * 1099511628211ull;
  h ^= h >> 29;
  return static_cast<float>(h % 1000) / 250.f - 2.f;  // [-2, 2)
}
double toy_log_prob(int g, const std::vector<int>& prefix, int v) {
  double z = 0;
  for (int u = 0; u < V; ++u) z += std::exp(static_cast<double>(toy_score(g, prefix, u)));
  return toy_score(g, prefix, v) - std::log(z);
}

// The toy decoder: row r belongs to input r / width; its state is its prefix, reordered by parents.
struct toy_decoder {
  explicit toy_decoder(int width) : width(width) {}
  int width;
  std::vector<std::vector<int>> prefix = {};
  bool first = true;  // the first step's tokens are the start token, not part of a prefix
  void operator()(std::span<const int> tokens, std::span<const int> parents, std::span<float> scores) {
    const int rows = static_cast<int>(tokens.size());
    if (prefix.empty()) prefix.assign(rows, {});
    std::vector<std::vector<int>> next(rows);
    for (int r = 0; r < rows; ++r) {
      next[r] = prefix[parents[r]];
      if (!first) next[r].push_back(tokens[r]);
    }
    prefix = next;
    first = false;
    for (int r = 0; r < rows; ++r)
      for (int v = 0; v < V; ++v) scores[r * V + v] = toy_score(r / width, prefix[r], v);
  }
};

// The best sequence that ends within max_steps (end token included), by exhaustive search.
cg::hypothesis exhaustive(int g, int max_steps) {
  cg::hypothesis best{{}, -INFINITY, true};
  std::function<void(std::vector<int>&, double)> go = [&](std::vector<int>& p, double lp) {
    const double ended = lp + toy_log_prob(g, p, end);
    if (ended > best.log_prob) best = {p, ended, true};
    if (static_cast<int>(p.size()) + 1 >= max_steps) return;
    for (int v = 0; v < V; ++v) {  // the start token may follow too: only the end token ends
      if (v == end) continue;
      const double l = toy_log_prob(g, p, v);
      p.push_back(v);
      go(p, lp + l);
      p.pop_back();
    }
  };
  std::vector<int> p;
  go(p, 0);
  return best;
}
}  // namespace

TEST_CASE("decode: a wide beam finds the best sequence an exhaustive search finds", "[decode]") {
  constexpr int groups = 6, width = 64, max_steps = 4;  // 4^3 prefixes: the beam holds them all
  toy_decoder d{width};
  const auto found =
      cg::beam_search(groups, width, V, {.max_steps = max_steps, .start = start, .end = end}, std::ref(d));
  REQUIRE(found.size() == groups);
  for (int g = 0; g < groups; ++g) {
    const cg::hypothesis want = exhaustive(g, max_steps);
    INFO("input " << g);
    REQUIRE(!found[g].empty());
    CHECK(found[g][0].ended);
    CHECK(found[g][0].tokens == want.tokens);
    CHECK(found[g][0].log_prob == Approx(want.log_prob).epsilon(1e-9));
    for (std::size_t k = 1; k < found[g].size(); ++k) CHECK(found[g][k - 1].log_prob >= found[g][k].log_prob);
    // Each hypothesis's score is its own tokens' log-probabilities: no beam was mixed up.
    for (const auto& h : found[g]) {
      double lp = 0;
      std::vector<int> p;
      for (int t : h.tokens) lp += toy_log_prob(g, p, t), p.push_back(t);
      if (h.ended) lp += toy_log_prob(g, p, end);
      CHECK(h.log_prob == Approx(lp).epsilon(1e-9));
    }
  }
}

TEST_CASE("decode: beam width 1 is greedy decoding; groups do not see each other", "[decode]") {
  constexpr int rows = 5, max_steps = 7;
  toy_decoder greedy_d{1};
  const auto greedy =
      cg::greedy_decode(rows, V, {.max_steps = max_steps, .start = start, .end = end}, std::ref(greedy_d));
  toy_decoder beam_d{1};
  const auto beam = cg::beam_search(rows, 1, V, {.max_steps = max_steps, .start = start, .end = end}, std::ref(beam_d));
  for (int g = 0; g < rows; ++g) {
    INFO("row " << g);
    CHECK(beam[g][0].tokens == greedy[g]);
    // Greedy: each token is the best after its prefix.
    std::vector<int> p;
    for (int t : greedy[g]) {
      for (int v = 0; v < V; ++v) CHECK(toy_score(g, p, v) <= toy_score(g, p, t));
      p.push_back(t);
    }
    // One input alone gives what it gives among others.
    toy_decoder alone{3};
    const auto one = cg::beam_search(1, 3, V, {.max_steps = max_steps, .start = start, .end = end},
                                     [&](std::span<const int> tk, std::span<const int> pa, std::span<float> sc) {
                                       alone(tk, pa, sc);
                                       // alone's rows are input 0's: give them input g's scores
                                       for (int r = 0; r < 3; ++r)
                                         for (int v = 0; v < V; ++v) sc[r * V + v] = toy_score(g, alone.prefix[r], v);
                                     });
    toy_decoder many{3};
    const auto all = cg::beam_search(rows, 3, V, {.max_steps = max_steps, .start = start, .end = end}, std::ref(many));
    CHECK(one[0][0].tokens == all[g][0].tokens);
    CHECK(one[0][0].log_prob == Approx(all[g][0].log_prob).epsilon(1e-12));
  }
}

TEST_CASE("decode: searches stop at the end token or at max_steps", "[decode]") {
  // A decoder that always prefers the end token stops after one step.
  int calls = 0;
  auto ends = [&](std::span<const int>, std::span<const int>, std::span<float> sc) {
    ++calls;
    for (std::size_t k = 0; k < sc.size(); ++k) sc[k] = k % V == end ? 5.f : 0.f;
  };
  const auto g = cg::greedy_decode(3, V, {.max_steps = 9, .start = start, .end = end}, ends);
  CHECK(calls == 1);
  for (const auto& row : g) CHECK(row.empty());
  calls = 0;
  const auto b = cg::beam_search(2, 4, V, {.max_steps = 9, .start = start, .end = end}, ends);
  CHECK(calls <= 2);  // the ended hypothesis beats every beam after the first step or the second
  CHECK(b[0][0].ended);
  CHECK(b[0][0].tokens.empty());
  // One that never ends runs max_steps and returns what it has, unfinished.
  calls = 0;
  auto never = [&](std::span<const int>, std::span<const int>, std::span<float> sc) {
    ++calls;
    for (std::size_t k = 0; k < sc.size(); ++k) sc[k] = k % V == 3 ? 5.f : k % V == end ? -50.f : 0.f;
  };
  const auto n = cg::greedy_decode(2, V, {.max_steps = 6, .start = start, .end = end}, never);
  CHECK(calls == 6);
  CHECK(n[0] == std::vector<int>(6, 3));
  const auto nb = cg::beam_search(1, 2, V, {.max_steps = 6, .start = start, .end = end}, never);
  CHECK(nb[0][0].tokens == std::vector<int>(6, 3));
  CHECK_FALSE(nb[0][0].ended);
}

TEST_CASE("decode: bad arguments are errors that say which", "[decode]") {
  auto none = [](std::span<const int>, std::span<const int>, std::span<float>) {};
  CHECK_THROWS_WITH(cg::greedy_decode(0, V, {.max_steps = 3}, none), Catch::Contains("rows 0"));
  CHECK_THROWS_WITH(cg::greedy_decode(2, V, {.max_steps = 0}, none), Catch::Contains("max_steps 0"));
  CHECK_THROWS_WITH(cg::beam_search(1, 0, V, {.max_steps = 3}, none), Catch::Contains("width 0"));
  CHECK_THROWS_WITH(cg::beam_search(1, 2, V, {.max_steps = 3, .start = 0, .end = V}, none),
                    Catch::Contains("end token 5"));
}
