// examples/translate/task.hpp: what both models of the translate example share: the task's shapes, the
// programs' row counts, and what a translation returns.
#pragma once
#include <ctgraph/ctgraph.hpp>
#include <vector>

#include "dates.hpp"

namespace translate {
namespace cg = ctgraph;
namespace nn = ctgraph::nn;

constexpr int S = dates::max_source, T = dates::target_steps;
constexpr int Vs = dates::source_vocab, Vt = dates::target_vocab;
constexpr int batch = 64;  // training batch
constexpr int rows = 64;   // rows of the decoding programs (greedy: inputs; beam: inputs * width)

// One translation: the ISO characters' ids, and, when asked for, the attention weights of each output
// step ([steps, S], the end token's step included).
struct translation {
  std::vector<int> ids;
  std::vector<float> weights;
};

// The source ids of up to `rows` inputs, padded, time-major [S, rows], each input repeated `width` times
// (a beam's rows), and each row's length.
struct source_rows {
  std::vector<int> src, len;
};
inline source_rows make_source_rows(const std::vector<std::vector<int>>& inputs, int width) {
  source_rows s{std::vector<int>(S * rows, dates::pad), std::vector<int>(rows, 0)};
  for (std::size_t g = 0; g < inputs.size(); ++g)
    for (int k = 0; k < width; ++k) {
      const int r = static_cast<int>(g) * width + k;
      s.len[r] = static_cast<int>(inputs[g].size());
      for (int t = 0; t < s.len[r]; ++t) s.src[t * rows + r] = inputs[g][t];
    }
  return s;
}

}  // namespace translate
