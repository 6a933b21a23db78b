// <ctgraph/decode.hpp>: greedy decoding and beam search over a compiled decoder step.
//
// A decoder step is a function of the previous token of each row: it runs one step of a compiled
// decoder (its carries fed from the last step's outputs) and writes each row's scores over the
// vocabulary (logits, or log-probabilities). The search calls it once per position, until every
// row has ended (the end token) or max_steps have run.
//
//   auto tokens = cg::greedy_decode(rows, vocab, {.max_steps = 12, .start = 1, .end = 2}, step);
//   auto best = cg::beam_search(groups, width, vocab, {.max_steps = 12, .start = 1, .end = 2}, step);
//   auto drawn = cg::generate(prompts, vocab, {.max_steps = 8, .end = 2}, {.temperature = 0.8, .top_k = 5}, step);
//
// Beam search gives each of `groups` inputs `width` consecutive rows. Each step, a row continues
// a row of the step before: parents[r] names it, and the decoder's state (h, c, ...) must be
// reordered so that row r's state is the old row parents[r]'s before the step runs (greedy
// decoding's parents are always r itself). Scores are taken through a log-softmax, so logits do.
//
// generate() continues prompts, one row each, in lockstep: step t feeds every row token t of its prompt
// while it has one, then the token drawn from the scores of the step before (greedy at temperature 0,
// else sampled, optionally from the top k). A decoder-only transformer's step reads its layers' past keys
// and values from a cg::kv_cache, so that a position costs one position's work, not the prefix's.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace ctgraph {

/// What a search starts and stops with.
struct decode_options {
  int max_steps = 0;  ///< positions at most, the end token included
  int start = 1;      ///< the token fed at the first step (begin of sequence)
  int end = 2;        ///< the token that ends a sequence (end of sequence)
};

/// A decoder step: tokens [rows] (each row's previous token), parents [rows] (the row of the step
/// before that each row continues: reorder the state first), scores [rows * vocab] to write
/// (row-major logits or log-probabilities).
using decoder_step =
    std::function<void(std::span<const int> tokens, std::span<const int> parents, std::span<float> scores)>;

/// Greedy decoding of `rows` sequences: each step takes each row's best-scored token. Returns each
/// row's tokens, without the start token and without the end token (a row that did not end within
/// max_steps keeps all max_steps tokens).
/// @throws std::invalid_argument on rows, vocab or max_steps below 1, or start or end outside the vocabulary
std::vector<std::vector<int>> greedy_decode(int rows, int vocab, const decode_options& options,
                                            const decoder_step& step);

/// One hypothesis of beam_search().
struct hypothesis {
  std::vector<int> tokens;  ///< without the start token and without the end token
  double log_prob = 0;      ///< the sum of its tokens' log-probabilities (the end token's included)
  bool ended = false;       ///< whether it ended with the end token within max_steps
};

/// Beam search over `groups` inputs, `width` rows each (row g * width + k is group g's k-th beam):
/// each step keeps, in each group, the `width` best-scored continuations of its beams; a
/// continuation with the end token leaves the beam as a finished hypothesis. A group stops when
/// none of its beams can beat its best finished hypothesis any more (scores only fall), or at
/// max_steps, where its beams become unfinished hypotheses. Returns, per group, its hypotheses
/// best first, at most `width`. Width 1 is greedy decoding.
/// @throws std::invalid_argument on groups, width, vocab or max_steps below 1, or start or end
///         outside the vocabulary
std::vector<std::vector<hypothesis>> beam_search(int groups, int width, int vocab, const decode_options& options,
                                                 const decoder_step& step);

/// How generate() draws each token from a row's scores.
struct sampling {
  double temperature = 1;  ///< scores are divided by it before the softmax; 0: the best-scored token (greedy)
  int top_k = 0;           ///< draw among the k best-scored tokens only; 0: among all
  std::uint64_t seed = 0;  ///< the draws are a function of the seed (and the scores)
};

/// Continues each prompt (prompts[r]: row r's tokens, at least one): step t feeds row r token t of its prompt
/// while t < its length, then the token drawn from its scores at the step before; a row stops at options.end
/// or after options.max_steps drawn tokens (options.start is not read: a prompt starts itself). Rows that
/// stopped are fed options.end and their scores are not read. Returns each row's drawn tokens, without the end
/// token. parents[r] is always r. Steps run: the longest prompt's length, plus up to max_steps - 1.
/// @throws std::invalid_argument on no prompts, an empty prompt, a prompt token outside the vocabulary, vocab or
///         max_steps below 1, end outside the vocabulary, a negative or NaN temperature, top_k outside [0, vocab]
/// @throws std::runtime_error when a row's scores hold a NaN (naming the row and the step)
std::vector<std::vector<int>> generate(const std::vector<std::vector<int>>& prompts, int vocab,
                                       const decode_options& options, const sampling& how, const decoder_step& step);

/// The keys and values of past positions, per layer, for a decoder step that attends over them
/// (nn::transformer_encoder_layer_step): keys(l), values(l) [capacity, rows, width] and mask() [rows,
/// capacity + 1] feed the step program; its new keys and values [rows, width] go back with append(), and
/// advance() moves to the next position. Slot capacity of the mask is the new position's own key (always 1);
/// slots below position() are 1, the rest 0, so unused slots are never attended.
class kv_cache {
 public:
  /// An empty cache of `layers` layers, `capacity` positions, `rows` rows of `width` (the model's E).
  /// @throws std::invalid_argument when a size is below 1
  kv_cache(int layers, int capacity, int rows, int width);
  std::span<const float> keys(int layer) const;    ///< [capacity, rows, width]
  std::span<const float> values(int layer) const;  ///< [capacity, rows, width]
  std::span<const float> mask() const;             ///< [rows, capacity + 1], 1: attend
  int position() const { return position_; }       ///< positions cached so far
  int capacity() const { return capacity_; }       ///< positions it holds at most
  /// Stores a layer's keys and values [rows, width] of the position being decoded, in slot position().
  /// @throws std::invalid_argument on another size or layer; std::length_error when the cache is full
  void append(int layer, std::span<const float> k, std::span<const float> v);
  /// Moves to the next position, once every layer has appended. @throws std::logic_error if one has not
  void advance();
  /// Reorders rows: row r's past becomes old row parents[r]'s (a beam search's step).
  /// @throws std::invalid_argument on another size or a row out of range
  void reorder(std::span<const int> parents);
  /// Empties the cache (position 0).
  void clear();

 private:
  std::size_t slot_(int layer, int pos) const;
  int layers_, capacity_, rows_, width_, position_ = 0;
  std::vector<float> k_, v_, mask_, scratch_;
  std::vector<char> appended_;
};

}  // namespace ctgraph
