// Greedy decoding and beam search (ctgraph/decode.hpp).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctgraph/decode.hpp>
#include <limits>
#include <numeric>
#include <stdexcept>

namespace ctgraph {
namespace {
void check(const char* who, int rows, int vocab, const decode_options& o) {
  if (rows < 1 || vocab < 1 || o.max_steps < 1)
    throw std::invalid_argument(fmt::format("ctgraph: {}: rows {}, vocab {}, max_steps {} (each must be at least 1)",
                                            who, rows, vocab, o.max_steps));
  if (o.start < 0 || o.start >= vocab || o.end < 0 || o.end >= vocab)
    throw std::invalid_argument(fmt::format(
        "ctgraph: {}: start token {} and end token {} must be in the vocabulary [0, {})", who, o.start, o.end, vocab));
}
// log-softmax of one row of scores, in double.
void log_softmax(std::span<const float> s, std::vector<double>& out) {
  const double m = *std::max_element(s.begin(), s.end());
  double z = 0;
  for (float v : s) z += std::exp(v - m);
  const double lz = m + std::log(z);
  out.resize(s.size());
  for (std::size_t k = 0; k < s.size(); ++k) out[k] = s[k] - lz;
}
}  // namespace

std::vector<std::vector<int>> greedy_decode(int rows, int vocab, const decode_options& o, const decoder_step& step) {
  check("greedy_decode", rows, vocab, o);
  std::vector<int> tokens(rows, o.start), parents(rows);
  std::iota(parents.begin(), parents.end(), 0);
  std::vector<float> scores(static_cast<std::size_t>(rows) * vocab);
  std::vector<std::vector<int>> out(rows);
  std::vector<char> ended(rows, 0);
  int running = rows;
  for (int t = 0; t < o.max_steps && running > 0; ++t) {
    step(tokens, parents, scores);
    for (int r = 0; r < rows; ++r) {
      if (ended[r]) continue;  // it keeps being fed the end token, and its scores are not read
      const float* s = scores.data() + static_cast<std::size_t>(r) * vocab;
      const int best = static_cast<int>(std::max_element(s, s + vocab) - s);
      tokens[r] = best;
      if (best == o.end)
        ended[r] = 1, --running;
      else
        out[r].push_back(best);
    }
  }
  return out;
}

std::vector<std::vector<hypothesis>> beam_search(int groups, int width, int vocab, const decode_options& o,
                                                 const decoder_step& step) {
  check("beam_search", groups, vocab, o);
  if (width < 1) throw std::invalid_argument(fmt::format("ctgraph: beam_search: width {} (need at least 1)", width));
  constexpr double dead = -std::numeric_limits<double>::infinity();
  const int rows = groups * width;
  std::vector<int> tokens(rows, o.start), parents(rows), next_tokens(rows), next_parents(rows);
  std::iota(parents.begin(), parents.end(), 0);
  std::vector<float> scores(static_cast<std::size_t>(rows) * vocab);
  // Each row's beam: its score (dead for an unused row) and its tokens. At the first step every
  // beam of a group is the same, so only its first row is alive.
  std::vector<double> score(rows, dead), next_score(rows);
  std::vector<std::vector<int>> seq(rows), next_seq(rows);
  for (int g = 0; g < groups; ++g) score[g * width] = 0;
  std::vector<std::vector<hypothesis>> finished(groups);
  std::vector<char> done(groups, 0);

  struct candidate {
    double score;
    int row, token;
  };
  std::vector<candidate> cands;
  std::vector<double> lp;
  for (int t = 0; t < o.max_steps; ++t) {
    if (std::all_of(done.begin(), done.end(), [](char d) { return d != 0; })) break;
    step(tokens, parents, scores);
    for (int g = 0; g < groups; ++g) {
      const int first = g * width;
      for (int k = 0; k < width; ++k) {  // unused rows: fed the end token, continuing row 0 of the group
        next_score[first + k] = dead, next_tokens[first + k] = o.end, next_parents[first + k] = first;
        next_seq[first + k].clear();
      }
      if (done[g]) continue;
      cands.clear();
      for (int k = 0; k < width; ++k) {
        const int r = first + k;
        if (score[r] == dead) continue;
        log_softmax(std::span<const float>(scores.data() + static_cast<std::size_t>(r) * vocab, vocab), lp);
        for (int v = 0; v < vocab; ++v) cands.push_back({score[r] + lp[v], r, v});
      }
      // At most `width` candidates end (one per beam), so the best 2 * width hold `width` that go on.
      const std::size_t keep = std::min(cands.size(), static_cast<std::size_t>(2 * width));
      auto better = [](const candidate& a, const candidate& b) {
        return a.score != b.score ? a.score > b.score : a.row != b.row ? a.row < b.row : a.token < b.token;
      };
      std::partial_sort(cands.begin(), cands.begin() + static_cast<std::ptrdiff_t>(keep), cands.end(), better);
      int alive = 0;
      for (std::size_t i = 0; i < keep && alive < width; ++i) {
        const candidate& c = cands[i];
        if (c.token == o.end) {
          finished[g].push_back({seq[c.row], c.score, true});
          continue;
        }
        const int r = first + alive++;
        next_score[r] = c.score, next_tokens[r] = c.token, next_parents[r] = c.row;
        next_seq[r] = seq[c.row];
        next_seq[r].push_back(c.token);
      }
      // Scores only fall: once the best finished one is at least the best beam, nothing beats it.
      double best_finished = dead;
      for (const auto& h : finished[g]) best_finished = std::max(best_finished, h.log_prob);
      const double best_alive = alive > 0 ? next_score[first] : dead;
      if (alive == 0 || (!finished[g].empty() && best_finished >= best_alive)) done[g] = 1;
    }
    std::swap(score, next_score), std::swap(seq, next_seq);
    std::swap(tokens, next_tokens), std::swap(parents, next_parents);
  }
  for (int g = 0; g < groups; ++g) {
    if (!done[g])
      for (int k = 0; k < width; ++k)
        if (score[g * width + k] != dead) finished[g].push_back({seq[g * width + k], score[g * width + k], false});
    std::stable_sort(finished[g].begin(), finished[g].end(),
                     [](const hypothesis& a, const hypothesis& b) { return a.log_prob > b.log_prob; });
    if (finished[g].size() > static_cast<std::size_t>(width)) finished[g].resize(width);
  }
  return finished;
}

}  // namespace ctgraph
