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

TEST_CASE("generate: at temperature 0 it is greedy decoding, prompts of one start token", "[decode]") {
  constexpr int rows = 7, max_steps = 6;
  toy_decoder a(1), b(1);
  const auto greedy = cg::greedy_decode(rows, V, {.max_steps = max_steps, .start = start, .end = end}, std::ref(a));
  const std::vector<std::vector<int>> prompts(rows, std::vector<int>{start});
  const auto drawn = cg::generate(prompts, V, {.max_steps = max_steps, .end = end}, {.temperature = 0}, std::ref(b));
  CHECK(drawn == greedy);
}

TEST_CASE("generate: prompts are fed in lockstep, then each row's draws", "[decode]") {
  // Scores favour token (previous + 1) % V, except the end token; rows' prompts have other lengths.
  const std::vector<std::vector<int>> prompts = {{2}, {3, 4, 2}, {4, 2}};
  std::vector<std::vector<int>> fed(prompts.size());
  auto step = [&](std::span<const int> tokens, std::span<const int> parents, std::span<float> scores) {
    for (std::size_t r = 0; r < tokens.size(); ++r) {
      CHECK(parents[r] == static_cast<int>(r));
      fed[r].push_back(tokens[r]);
      for (int v = 0; v < V; ++v) scores[r * V + v] = 0;
      int next = (tokens[r] + 1) % V;
      if (next == end) next = (next + 1) % V;
      scores[r * V + next] = 5;
    }
  };
  const auto drawn = cg::generate(prompts, V, {.max_steps = 3, .end = end}, {.temperature = 0}, step);
  CHECK(drawn == std::vector<std::vector<int>>{{3, 4, 0}, {3, 4, 0}, {3, 4, 0}});
  // Row 0 draws from its first step; row 1 is fed its whole prompt first.
  CHECK(fed[0] == std::vector<int>{2, 3, 4, 1, 1});
  CHECK(fed[1] == std::vector<int>{3, 4, 2, 3, 4});
  CHECK(fed[2] == std::vector<int>{4, 2, 3, 4, 1});
}

TEST_CASE("generate: samples follow softmax(scores / temperature), top-k keeps the k best", "[decode]") {
  constexpr int rows = 20000;
  const float s[V] = {0.5f, -1.0f, 1.5f, 0.0f, 1.0f};  // token 1 is the end token
  auto step = [&](std::span<const int> tokens, std::span<const int>, std::span<float> scores) {
    for (std::size_t r = 0; r < tokens.size(); ++r)
      for (int v = 0; v < V; ++v) scores[r * V + v] = s[v];
  };
  const std::vector<std::vector<int>> prompts(rows, std::vector<int>{0});
  for (const double temperature : {1.0, 0.5}) {
    for (const int top_k : {0, 3}) {
      const auto drawn = cg::generate(prompts, V, {.max_steps = 1, .end = end}, {temperature, top_k, 17}, step);
      std::vector<double> count(V, 0), want(V, 0);
      for (const auto& d : drawn) count[d.empty() ? end : d[0]] += 1.0 / rows;
      double z = 0;
      for (int v = 0; v < V; ++v)
        if (top_k == 0 || v == 2 || v == 4 || v == 0) z += want[v] = std::exp(s[v] / temperature);
      for (int v = 0; v < V; ++v) {
        INFO("temperature " << temperature << ", top_k " << top_k << ", token " << v);
        CHECK(std::abs(count[v] - want[v] / z) < 0.012);  // 4 standard deviations at most
      }
    }
  }
  // The same seed draws the same tokens; another seed others.
  const auto a = cg::generate(prompts, V, {.max_steps = 4, .end = end}, {.seed = 3}, step);
  const auto b = cg::generate(prompts, V, {.max_steps = 4, .end = end}, {.seed = 3}, step);
  const auto c = cg::generate(prompts, V, {.max_steps = 4, .end = end}, {.seed = 4}, step);
  CHECK(a == b);
  CHECK(a != c);
}

TEST_CASE("generate: bad arguments and NaN scores are errors that say which", "[decode]") {
  auto none = [](std::span<const int>, std::span<const int>, std::span<float>) {};
  auto nan = [](std::span<const int>, std::span<const int>, std::span<float> s) {
    for (float& v : s) v = 0;
    s[V + 2] = NAN;
  };
  const std::vector<std::vector<int>> two = {{0}, {0}};
  CHECK_THROWS_WITH(cg::generate({}, V, {.max_steps = 3}, {}, none), Catch::Contains("no prompts"));
  CHECK_THROWS_WITH(cg::generate({{0}, {}}, V, {.max_steps = 3}, {}, none), Catch::Contains("prompt 1 is empty"));
  CHECK_THROWS_WITH(cg::generate({{0, 9}}, V, {.max_steps = 3}, {}, none),
                    Catch::Contains("prompt 0 holds token 9 at position 1"));
  CHECK_THROWS_WITH(cg::generate(two, V, {.max_steps = 3}, {.temperature = -1}, none),
                    Catch::Contains("temperature -1"));
  CHECK_THROWS_WITH(cg::generate(two, V, {.max_steps = 3}, {.top_k = 6}, none), Catch::Contains("top_k 6"));
  CHECK_THROWS_WITH(cg::generate(two, V, {.max_steps = 3}, {}, nan), Catch::Contains("row 1's scores hold NaN"));
}

TEST_CASE("kv_cache: slots fill in order, the mask follows, errors say what is wrong", "[decode]") {
  constexpr int layers = 2, cap = 3, rows = 2, width = 4;
  cg::kv_cache c(layers, cap, rows, width);
  auto mask = [&] { return std::vector<float>(c.mask().begin(), c.mask().end()); };
  CHECK(mask() == std::vector<float>{0, 0, 0, 1, 0, 0, 0, 1});  // the new position's own key only
  std::vector<float> k(rows * width), v(rows * width);
  for (int pos = 0; pos < cap; ++pos) {
    for (int l = 0; l < layers; ++l) {
      for (int i = 0; i < rows * width; ++i) k[i] = float(100 * l + 10 * pos + i), v[i] = -k[i];
      c.append(l, k, v);
    }
    if (pos == 0) {
      CHECK_THROWS_WITH(c.append(2, k, v), Catch::Contains("layer 2 outside [0, 2)"));
      CHECK_THROWS_WITH(c.append(0, std::span(k).first(3), v), Catch::Contains("keys of 3"));
    }
    c.advance();
  }
  CHECK(c.position() == cap);
  CHECK(mask() == std::vector<float>{1, 1, 1, 1, 1, 1, 1, 1});
  CHECK(c.keys(1)[2 * rows * width + 5] == 100 + 20 + 5);  // layer 1, position 2, row 1, feature 1
  CHECK(c.values(0)[rows * width + 1] == -(10 + 1));
  CHECK_THROWS_AS(c.append(0, k, v), std::length_error);
  c.reorder(std::vector<int>{1, 1});
  CHECK(c.keys(0)[0] == c.keys(0)[width]);  // row 0 now holds row 1's past
  CHECK(c.keys(0)[width] == float(width));  // position 0, row 1
  CHECK_THROWS_WITH(c.reorder(std::vector<int>{0, 2}), Catch::Contains("row 2 outside"));
  CHECK_THROWS_WITH(c.reorder(std::vector<int>{0}), Catch::Contains("1 parents for 2 rows"));
  c.clear();
  CHECK(mask() == std::vector<float>{0, 0, 0, 1, 0, 0, 0, 1});
  c.append(0, k, v);
  CHECK_THROWS_WITH(c.advance(), Catch::Contains("layer 1 has not appended position 0"));
  CHECK_THROWS_WITH(cg::kv_cache(1, 0, 1, 1), Catch::Contains("capacity 0"));
}
