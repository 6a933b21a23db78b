// src/distributed.cpp: the MPI calls behind ctgraph/distributed.hpp (built with CTGRAPH_HAS_MPI).
#include "ctgraph/distributed.hpp"

#include <fmt/format.h>
#include <mpi.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string_view>

namespace ctgraph {

namespace {
// MPI takes int counts: n elements in calls of at most INT_MAX each.
template <class F>
void in_chunks(std::size_t n, F&& f) {
  constexpr std::size_t most = INT_MAX;
  for (std::size_t at = 0; at < n; at += most) f(at, static_cast<int>(n - at < most ? n - at : most));
}
void check(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  throw std::runtime_error(fmt::format("ctgraph: {}: {}", call, std::string_view(text, static_cast<std::size_t>(len))));
}
}  // namespace

communicator::communicator(int& argc, char**& argv) {
  int started = 0;
  MPI_Initialized(&started);
  if (started) throw std::runtime_error("ctgraph: communicator: MPI is already initialised (make one communicator)");
  int provided = 0;
  check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

communicator::~communicator() {
  // Unwinding: this rank will not reach the collective calls the others may wait in, and
  // MPI_Finalize would wait for them. End the job instead.
  if (std::uncaught_exceptions() > 0) {
    std::fprintf(stderr, "rank %d: an exception left the communicator's scope: ending the job\n", rank_);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
}

void communicator::barrier() const { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

void communicator::abort(int code) const {
  std::fflush(stdout);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::abort();  // MPI_Abort does not return; this tells the compiler so
}

void communicator::sum_in_place(float* data, std::size_t n) const {
  in_chunks(n, [&](std::size_t at, int count) {
    check(MPI_Allreduce(MPI_IN_PLACE, data + at, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
  });
}

void communicator::sum_in_place(double* data, std::size_t n) const {
  in_chunks(n, [&](std::size_t at, int count) {
    check(MPI_Allreduce(MPI_IN_PLACE, data + at, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
  });
}

void communicator::broadcast_bytes(void* data, std::size_t n) const {
  in_chunks(n, [&](std::size_t at, int count) {
    check(MPI_Bcast(static_cast<char*>(data) + at, count, MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast");
  });
}

double average(const communicator& comm, double value) {
  comm.sum_in_place(&value, 1);
  return value / comm.size();
}

namespace detail {
void report_and_abort(const communicator& comm, const char* what) {
  std::fflush(stdout);
  std::fprintf(stderr, "rank %d: %s\n", comm.rank(), what);
  comm.abort(1);
}
}  // namespace detail

}  // namespace ctgraph
