// Greedy decoding and beam search (ctgraph/decode.hpp).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctgraph/decode.hpp>
#include <limits>
#include <numeric>
#include <random>
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

std::vector<std::vector<int>> generate(const std::vector<std::vector<int>>& prompts, int vocab, const decode_options& o,
                                       const sampling& how, const decoder_step& step) {
  const int rows = static_cast<int>(prompts.size());
  if (rows < 1) throw std::invalid_argument("ctgraph: generate: no prompts (one row each)");
  check("generate", rows, vocab, {o.max_steps, 0, o.end});
  std::size_t longest = 0;
  for (int r = 0; r < rows; ++r) {
    if (prompts[r].empty()) throw std::invalid_argument(fmt::format("ctgraph: generate: prompt {} is empty", r));
    for (std::size_t t = 0; t < prompts[r].size(); ++t)
      if (prompts[r][t] < 0 || prompts[r][t] >= vocab)
        throw std::invalid_argument(
            fmt::format("ctgraph: generate: prompt {} holds token {} at position {}, outside the vocabulary [0, {})", r,
                        prompts[r][t], t, vocab));
    longest = std::max(longest, prompts[r].size());
  }
  if (!(how.temperature >= 0))
    throw std::invalid_argument(
        fmt::format("ctgraph: generate: temperature {} (need 0, greedy, or more)", how.temperature));
  if (how.top_k < 0 || how.top_k > vocab)
    throw std::invalid_argument(
        fmt::format("ctgraph: generate: top_k {} outside [0, {}] (0: the whole vocabulary)", how.top_k, vocab));
  std::mt19937_64 rng(how.seed);
  std::vector<int> tokens(rows), parents(rows);
  std::iota(parents.begin(), parents.end(), 0);
  std::vector<float> scores(static_cast<std::size_t>(rows) * vocab);
  std::vector<std::vector<int>> out(rows);
  std::vector<char> ended(rows, 0);
  std::vector<int> order(vocab);
  std::vector<double> weight(vocab);
  int running = rows;
  for (std::size_t t = 0; running > 0; ++t) {
    for (int r = 0; r < rows; ++r)
      if (t < prompts[r].size()) tokens[r] = prompts[r][t];
    step(tokens, parents, scores);
    for (int r = 0; r < rows; ++r) {
      if (ended[r] || t + 1 < prompts[r].size()) continue;  // stopped, or its prompt goes on
      const float* s = scores.data() + static_cast<std::size_t>(r) * vocab;
      for (int k = 0; k < vocab; ++k)
        if (std::isnan(s[k]))
          throw std::runtime_error(
              fmt::format("ctgraph: generate: row {}'s scores hold NaN (token {}) at step {}", r, k, t));
      int token;
      if (how.temperature == 0) {
        token = static_cast<int>(std::max_element(s, s + vocab) - s);
      } else {
        // The candidates, best first when only the top k are kept; then a softmax of score / temperature.
        std::iota(order.begin(), order.end(), 0);
        int n = vocab;
        if (how.top_k > 0 && how.top_k < vocab) {
          n = how.top_k;
          std::partial_sort(order.begin(), order.begin() + n, order.end(),
                            [s](int a, int b) { return s[a] > s[b] || (s[a] == s[b] && a < b); });
        }
        double best = -std::numeric_limits<double>::infinity(), z = 0;
        for (int k = 0; k < n; ++k) best = std::max(best, static_cast<double>(s[order[k]]));
        for (int k = 0; k < n; ++k) z += weight[k] = std::exp((s[order[k]] - best) / how.temperature);
        const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53 * z;  // uniform in [0, z)
        double acc = 0;
        token = order[n - 1];
        for (int k = 0; k < n; ++k)
          if ((acc += weight[k]) > u) {
            token = order[k];
            break;
          }
      }
      if (token != o.end) out[r].push_back(token);
      const bool stop = token == o.end || static_cast<int>(out[r].size()) == o.max_steps;
      tokens[r] = stop ? o.end : token;
      if (stop) ended[r] = 1, --running;
    }
  }
  return out;
}

kv_cache::kv_cache(int layers, int capacity, int rows, int width)
    : layers_(layers), capacity_(capacity), rows_(rows), width_(width) {
  if (layers < 1 || capacity < 1 || rows < 1 || width < 1)
    throw std::invalid_argument(
        fmt::format("ctgraph: kv_cache: layers {}, capacity {}, rows {}, width {} (each must be at least 1)", layers,
                    capacity, rows, width));
  const std::size_t n = static_cast<std::size_t>(layers) * capacity * rows * width;
  k_.assign(n, 0.0f);
  v_.assign(n, 0.0f);
  mask_.resize(static_cast<std::size_t>(rows) * (capacity + 1));
  appended_.assign(layers, 0);
  clear();
}
std::size_t kv_cache::slot_(int layer, int pos) const {
  return (static_cast<std::size_t>(layer) * capacity_ + pos) * rows_ * width_;
}
std::span<const float> kv_cache::keys(int layer) const {
  return {k_.data() + slot_(layer, 0), static_cast<std::size_t>(capacity_) * rows_ * width_};
}
std::span<const float> kv_cache::values(int layer) const {
  return {v_.data() + slot_(layer, 0), static_cast<std::size_t>(capacity_) * rows_ * width_};
}
std::span<const float> kv_cache::mask() const { return mask_; }
void kv_cache::append(int layer, std::span<const float> k, std::span<const float> v) {
  const std::size_t n = static_cast<std::size_t>(rows_) * width_;
  if (layer < 0 || layer >= layers_)
    throw std::invalid_argument(fmt::format("ctgraph: kv_cache::append: layer {} outside [0, {})", layer, layers_));
  if (k.size() != n || v.size() != n)
    throw std::invalid_argument(
        fmt::format("ctgraph: kv_cache::append: keys of {} and values of {} elements, need rows {} x width {} = {}",
                    k.size(), v.size(), rows_, width_, n));
  if (position_ == capacity_)
    throw std::length_error(fmt::format("ctgraph: kv_cache::append: full, at its capacity of {} positions", capacity_));
  std::copy(k.begin(), k.end(), k_.begin() + static_cast<std::ptrdiff_t>(slot_(layer, position_)));
  std::copy(v.begin(), v.end(), v_.begin() + static_cast<std::ptrdiff_t>(slot_(layer, position_)));
  appended_[layer] = 1;
}
void kv_cache::advance() {
  for (int l = 0; l < layers_; ++l)
    if (!appended_[l])
      throw std::logic_error(fmt::format(
          "ctgraph: kv_cache::advance: layer {} has not appended position {}'s keys and values", l, position_));
  std::fill(appended_.begin(), appended_.end(), 0);
  for (int r = 0; r < rows_; ++r) mask_[static_cast<std::size_t>(r) * (capacity_ + 1) + position_] = 1;
  ++position_;
}
void kv_cache::reorder(std::span<const int> parents) {
  if (parents.size() != static_cast<std::size_t>(rows_))
    throw std::invalid_argument(
        fmt::format("ctgraph: kv_cache::reorder: {} parents for {} rows", parents.size(), rows_));
  for (int p : parents)
    if (p < 0 || p >= rows_)
      throw std::invalid_argument(fmt::format("ctgraph: kv_cache::reorder: row {} outside [0, {})", p, rows_));
  for (std::vector<float>* buf : {&k_, &v_})
    for (int l = 0; l < layers_; ++l)
      for (int pos = 0; pos < position_; ++pos) {
        float* at = buf->data() + slot_(l, pos);
        scratch_.assign(at, at + static_cast<std::size_t>(rows_) * width_);
        for (int r = 0; r < rows_; ++r)
          std::copy_n(scratch_.data() + static_cast<std::size_t>(parents[r]) * width_, width_,
                      at + static_cast<std::size_t>(r) * width_);
      }
}
void kv_cache::clear() {
  position_ = 0;
  std::fill(mask_.begin(), mask_.end(), 0.0f);
  for (int r = 0; r < rows_; ++r) mask_[static_cast<std::size_t>(r) * (capacity_ + 1) + capacity_] = 1;
  std::fill(appended_.begin(), appended_.end(), 0);
}

}  // namespace ctgraph
