// ctgraph/train/batches.hpp: fixed-size mini-batches over a data set, shuffled by seed.
//
//   cg::batches order(n_train, 32, {.seed = 7});                // 32 of n_train examples per batch
//   for (std::uint64_t epoch = 0; epoch < epochs; ++epoch)
//     for (std::size_t i = 0; i < order.per_epoch(); ++i) {
//       auto idx = order.indices(epoch, i);                       // 32 example numbers
//       cg::gather_rows(xs, 2, idx, xb);                          // their rows, into the batch
//       ...
//     }
//
// A compiled step has a fixed batch, so every batch has the same size. When the batch size does
// not divide the data set, the remainder of each epoch is, by option (batch_options::rest),
// dropped: the last n % size examples of the epoch's order are left out of that epoch (other ones
// each epoch when shuffled); or wrapped: the epoch's last batch is completed with the first examples
// of the same epoch's order, so that every example is seen each epoch and a few twice.
//
// Data-parallel training: shard(e, i, rank, ranks) is one rank's equal, contiguous part of batch i
// of epoch e, so the ranks' parts together are that batch (the global batch).
//
// Batch i of epoch e is a function of (seed, e, i) alone: a resumed run that asks for the same
// epochs and indices, or the same step numbers through at(), gets the same batches. The order of
// epoch e is a Fisher-Yates shuffle of 0..n-1 whose draws come from std::mt19937_64 seeded with a
// fixed mix of (seed, e), each draw in [0, k] by rejection: every step of it is specified by the
// C++ standard, unlike std::shuffle's and std::uniform_int_distribution's, so the same seed gives
// the same batches on every platform and standard library.
#pragma once
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace ctgraph {

/// What batches does with the examples left over when the batch size does not divide the data set.
enum class remainder {
  drop,  ///< leave the last n % size examples of each epoch's order out of that epoch
  wrap,  ///< complete the last batch with the first examples of the same epoch's order
};

/// Options of batches.
struct batch_options {
  std::uint64_t seed = 0;            ///< the shuffle's seed: the same seed gives the same batches
  bool shuffle = true;               ///< false: every epoch visits 0, 1, ..., n-1 in order
  remainder rest = remainder::drop;  ///< what happens to the remainder of an epoch
};

/// A schedule of fixed-size mini-batches over the examples 0..n-1: each epoch a new order.
/// Batch `i` of epoch `e` is a function of (seed, e, i); see the file's comment for the shuffle.
class batches {
 public:
  /// Batches of `size` examples over `examples` examples.
  /// @throws std::invalid_argument if size is 0 or larger than examples
  batches(std::size_t examples, std::size_t size, batch_options options = {});

  /// The number of examples in the data set.
  std::size_t examples() const noexcept { return examples_; }
  /// The number of examples in each batch.
  std::size_t batch_size() const noexcept { return size_; }
  /// The number of batches of each epoch: n / size, rounded up when the remainder wraps.
  std::size_t per_epoch() const noexcept { return per_epoch_; }
  /// The options it was made with.
  const batch_options& options() const noexcept { return options_; }

  /// The order of epoch `epoch`: a permutation of 0..n-1 (the identity without shuffle).
  /// The span stays valid until a call for another epoch.
  std::span<const std::size_t> order(std::uint64_t epoch);
  /// The example numbers of batch `index` of epoch `epoch`: batch_size() of them, valid until a
  /// call for another epoch.
  /// @throws std::out_of_range if index >= per_epoch()
  std::span<const std::size_t> indices(std::uint64_t epoch, std::size_t index);
  /// The batch of step `step`, counting steps over epochs from 0: indices(step / per_epoch(),
  /// step % per_epoch()). A run resumed at step k asks for at(k) and goes on.
  std::span<const std::size_t> at(std::uint64_t step) { return indices(step / per_epoch_, step % per_epoch_); }

  /// This process's share of batch `index` of epoch `epoch` in data-parallel training over `ranks`
  /// processes (see ctgraph/distributed.hpp): positions [rank * s, (rank + 1) * s) of
  /// indices(epoch, index), with s = batch_size() / ranks. The ranks' shards, in rank order, are
  /// the batch itself, so N ranks see together the batches of one rank, for the same seed.
  /// @throws std::invalid_argument if ranks does not divide batch_size() (the shards must be equal
  ///         for the mean of the ranks' mean losses to be the batch's), or rank is not in [0, ranks)
  /// @throws std::out_of_range if index >= per_epoch()
  std::span<const std::size_t> shard(std::uint64_t epoch, std::size_t index, int rank, int ranks) {
    if (ranks < 1 || rank < 0 || rank >= ranks)
      throw std::invalid_argument("ctgraph: batches::shard: rank " + std::to_string(rank) + " of " +
                                  std::to_string(ranks) + " ranks");
    const auto n = static_cast<std::size_t>(ranks);
    if (size_ % n != 0)
      throw std::invalid_argument("ctgraph: batches::shard: " + std::to_string(ranks) +
                                  " ranks do not divide the batch of " + std::to_string(size_) + " examples");
    const std::size_t s = size_ / n;
    return indices(epoch, index).subspan(static_cast<std::size_t>(rank) * s, s);
  }
  /// shard() of the batch of step `step`, counting steps over epochs from 0, as at().
  std::span<const std::size_t> shard_at(std::uint64_t step, int rank, int ranks) {
    return shard(step / per_epoch_, step % per_epoch_, rank, ranks);
  }

 private:
  void plan(std::uint64_t epoch);

  std::size_t examples_, size_, per_epoch_;
  batch_options options_;
  std::uint64_t epoch_ = 0;            // the epoch whose schedule is in schedule_
  bool planned_ = false;               // whether schedule_ holds one yet
  std::vector<std::size_t> schedule_;  // the order, then its head again when the remainder wraps
};

/// Copies rows of `data` (a row-major [rows, row] data set) into `out`: row indices[k] of data goes
/// to row k of out. The usual way to fill a batch's feed from batches::indices().
/// @param data    a contiguous range whose size is a multiple of `row`
/// @param row     elements per example (2 for a point in the plane, 1 for a label)
/// @param indices example numbers, each less than data.size() / row
/// @param out     a contiguous range of indices.size() * row elements, of data's element type
/// @throws std::invalid_argument on a row of 0, sizes that do not fit, or an index out of range
template <std::ranges::contiguous_range In, std::ranges::contiguous_range Out>
requires std::is_same_v<std::ranges::range_value_t<In>, std::ranges::range_value_t<Out>>
void gather_rows(const In& data, std::size_t row, std::span<const std::size_t> indices, Out&& out) {
  const std::size_t have = std::ranges::size(data), want = std::ranges::size(out);
  if (row == 0) throw std::invalid_argument("ctgraph: gather_rows: row size 0");
  if (have % row != 0)
    throw std::invalid_argument("ctgraph: gather_rows: the data's " + std::to_string(have) +
                                " elements are not a whole number of rows of " + std::to_string(row));
  if (want != indices.size() * row)
    throw std::invalid_argument("ctgraph: gather_rows: the output has " + std::to_string(want) + " elements, " +
                                std::to_string(indices.size()) + " rows of " + std::to_string(row) + " need " +
                                std::to_string(indices.size() * row));
  const auto* from = std::ranges::data(data);
  auto* to = std::ranges::data(out);
  for (const std::size_t i : indices)  // all checked first: a bad index leaves out as it was
    if (i >= have / row)
      throw std::invalid_argument("ctgraph: gather_rows: index " + std::to_string(i) + " is past the data's " +
                                  std::to_string(have / row) + " rows");
  for (std::size_t k = 0; k < indices.size(); ++k)
    for (std::size_t c = 0; c < row; ++c) to[k * row + c] = from[indices[k] * row + c];
}

}  // namespace ctgraph
