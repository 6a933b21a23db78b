// ctgraph/distributed.hpp: data-parallel training over MPI (built when CMake finds MPI:
// CTGRAPH_MPI=AUTO|ON|OFF, and then CTGRAPH_HAS_MPI is defined).
//
//   int main(int argc, char** argv) {
//     cg::communicator comm(argc, argv);              // MPI_Init; MPI_Finalize at the end
//     return cg::run_or_abort(comm, [&] {             // an exception on one rank ends the job
//       auto step = cg::compile(loss, grads);          // each rank's step takes its share of the batch
//       auto params = cg::parameters_of(step);
//       cg::init(params, seed);
//       cg::broadcast(comm, params);                   // rank 0's params on every rank
//       cg::adam opt(params, {.lr = 1e-3});
//       for (...) {
//         auto r = step.run(params, ...);              // this rank's share (cg::batches::shard)
//         cg::average_grads(comm, params, r);          // the mean over ranks, in place
//         opt.step(params, r);                         // the same update on every rank
//         const double l = cg::average(comm, r[loss]); // the global batch's mean loss
//       }
//       return 0;
//     });
//   }
//
// Equivalence: a loss that is a mean over the batch (cg::cross_entropy, a cg::mean) has, on a global batch of
// G examples split in N shards of G / N, the mean of the shards' means as its value and the mean of
// the shards' gradients as its gradient. average_grads and average therefore divide the sum over
// ranks by N, and N ranks give the run of one rank on the whole batch, up to float rounding.
// Equal shards are required for this (cg::batches::shard checks that N divides the batch).
//
// The gradients are reduced with one MPI_Allreduce(MPI_IN_PLACE) per param gradient, in the
// step's arena (no copy): the planner does not yet place all param gradients in one contiguous
// region, which would let a single call (or a few buckets overlapping the backward) cover them.
#pragma once
#ifndef CTGRAPH_HAS_MPI
#error "ctgraph/distributed.hpp needs MPI: configure with -DCTGRAPH_MPI=ON (or AUTO, with libopenmpi-dev installed)"
#endif
#include <cstddef>
#include <exception>
#include <filesystem>
#include <type_traits>
#include <utility>

#include "checkpoint.hpp"
#include "optim.hpp"
#include "parameters.hpp"
#include "results.hpp"

namespace ctgraph {

/// The processes of one MPI job (MPI_COMM_WORLD): initialises MPI when made and finalises it when
/// destroyed. One per process, made before any other MPI use. If it is destroyed while an
/// exception propagates, it ends the whole job with MPI_Abort instead: the other ranks may wait in
/// a collective call that this rank will never join.
class communicator {
 public:
  /// MPI_Init (thread support: funneled, the main thread alone calls MPI). Reads rank and size.
  /// @throws std::runtime_error if MPI is already initialised or fails to start
  communicator(int& argc, char**& argv);
  /// MPI_Finalize, or MPI_Abort during stack unwinding.
  ~communicator();
  /// Not copyable: one per process.
  communicator(const communicator&) = delete;
  /// Not assignable: one per process.
  communicator& operator=(const communicator&) = delete;

  /// This process's number, 0 to size() - 1.
  int rank() const noexcept { return rank_; }
  /// The number of processes of the job.
  int size() const noexcept { return size_; }
  /// Whether this is rank 0, the one that prints, logs and writes checkpoints.
  bool is_root() const noexcept { return rank_ == 0; }
  /// Waits until every rank has called it.
  void barrier() const;
  /// Ends every rank of the job at once (MPI_Abort) with this exit code; does not return.
  [[noreturn]] void abort(int code) const;

  /// The sum over ranks of `n` elements at `data`, in place on every rank (MPI_Allreduce with
  /// MPI_IN_PLACE; counts above INT_MAX go in several calls).
  void sum_in_place(float* data, std::size_t n) const;
  /// The same for doubles.
  void sum_in_place(double* data, std::size_t n) const;
  /// Rank 0's `n` bytes at `data` copied to every other rank (MPI_Bcast).
  void broadcast_bytes(void* data, std::size_t n) const;

 private:
  int rank_ = 0, size_ = 1;
};

namespace detail {
// Whether every gradient that Step's outputs hold for a param of P lives in the step's arena,
// written by the step each run (and not an input, a param or a literal the graph reads).
template <class P, class Step>
consteval bool grads_in_arena() {
  for (std::size_t k = 0; k < parameters<P>::count; ++k) {
    const int i = Step::program::grad_index(parameters<P>::entries[k].name);
    if (i >= 0 && Step::plan.outputs[i].l.sp != space::arena) return false;
  }
  return true;
}
// Prints "rank R: <what>" on stderr and calls comm.abort(1) (used by run_or_abort).
[[noreturn]] void report_and_abort(const communicator& comm, const char* what);
}  // namespace detail

/// Runs `body` (which returns an exit code) and returns its result. An exception out of it prints
/// "rank R: <what()>" on stderr and ends the whole job (MPI_Abort, exit code 1): the other ranks,
/// which may be waiting for this one in an allreduce, stop too instead of hanging.
template <class F>
int run_or_abort(const communicator& comm, F&& body) {
  try {
    return std::forward<F>(body)();
  } catch (const std::exception& e) {
    detail::report_and_abort(comm, e.what());
  } catch (...) {
    detail::report_and_abort(comm, "an exception of unknown type");
  }
}

/// Copies rank 0's values of every param of `params` to the other ranks: one MPI_Bcast of the
/// set's storage, so every rank starts (or resumes) from the same params.
template <class P>
void broadcast(const communicator& comm, parameters<P>& params) {
  if (parameters<P>::count > 0)
    comm.broadcast_bytes(params.ptr(0), static_cast<std::size_t>(parameters<P>::total_bytes()));
}

/// Replaces each gradient that `out` holds for a param of `params` by its mean over the ranks
/// (sum, then division by size()): with a loss that is a mean over each rank's equal share of the
/// batch, the gradient of the mean loss over the global batch. In place in the step's arena,
/// one MPI_Allreduce per gradient; call it after run() and before the optimizer's step(). The
/// results' views then read the averaged gradients. Allocates nothing.
template <class P, class Step>
void average_grads(const communicator& comm, parameters<P>& params, const results<Step>& out) {
  static_assert(detail::grads_in_arena<P, Step>(),
                "ctgraph: average_grads: a gradient of this step is not computed into its arena (it is an input, a "
                "param or a literal of the graph), so it cannot be averaged in place");
  if (comm.size() == 1) return;
  const void* done[parameters<P>::count + 1] = {};  // a gradient output shared by two params: reduced once
  std::size_t n_done = 0;
  detail::for_each_grad(params, out, [&]<class T>(std::size_t, T*, const T* g, std::size_t n) {
    for (std::size_t k = 0; k < n_done; ++k)
      if (done[k] == g) return;
    done[n_done++] = g;
    // The gradient is an output of the step, in its arena (mutable storage the step owns);
    // results hands it out read-only so that user code does not write it by mistake.
    T* grad = const_cast<T*>(g);
    comm.sum_in_place(grad, n);
    const T scale = T(1) / static_cast<T>(comm.size());
    for (std::size_t i = 0; i < n; ++i) grad[i] *= scale;
  });
}

/// The mean over ranks of `value` (a loss, an accuracy), the same on every rank.
double average(const communicator& comm, double value);

/// cg::save on rank 0 only (the others write nothing), then a barrier: when it returns on any
/// rank, the checkpoint is complete. The params are the same on every rank, and so is the
/// optimizer's state, which is updated with the same averaged gradients.
template <class P, optimizer_with_state Opt>
void save(const communicator& comm, const parameters<P>& params, const Opt& opt, const std::filesystem::path& path,
          const checkpoint_metadata& metadata = {}) {
  if (comm.is_root()) save(params, opt, path, metadata);
  comm.barrier();
}

/// cg::load on every rank (the file must be readable by each: a shared file system, or a copy),
/// then broadcast(comm, params), so that every rank resumes from rank 0's params exactly.
template <class P, optimizer_with_state Opt>
void load(const communicator& comm, parameters<P>& params, Opt& opt, const std::filesystem::path& path,
          const load_options& options = {}) {
  load(params, opt, path, options);
  broadcast(comm, params);
}

}  // namespace ctgraph
