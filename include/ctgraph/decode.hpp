// <ctgraph/decode.hpp>: greedy decoding and beam search over a compiled decoder step.
//
// A decoder step is a function of the previous token of each row: it runs one step of a compiled
// decoder (its carries fed from the last step's outputs) and writes each row's scores over the
// vocabulary (logits, or log-probabilities). The search calls it once per position, until every
// row has ended (the end token) or max_steps have run.
//
//   auto tokens = cg::greedy_decode(rows, vocab, {.max_steps = 12, .start = 1, .end = 2}, step);
//   auto best = cg::beam_search(groups, width, vocab, {.max_steps = 12, .start = 1, .end = 2}, step);
//
// Beam search gives each of `groups` inputs `width` consecutive rows. Each step, a row continues
// a row of the step before: parents[r] names it, and the decoder's state (h, c, ...) must be
// reordered so that row r's state is the old row parents[r]'s before the step runs (greedy
// decoding's parents are always r itself). Scores are taken through a log-softmax, so logits do.
#pragma once
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

}  // namespace ctgraph
