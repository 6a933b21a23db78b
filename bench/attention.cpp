// bench/attention.cpp: fused attention (forward, forward+backward) against the unfused reference
// and libtorch (naive and _scaled_dot_product_attention), if found. fp32, B=4, H=8, d=64, and the tlm
// step's short causal heads (B=32, H=4, N=64, d=32).
//   ./bench_attention [--benchmark_filter=...]
// Rows "2x t1" run two independent 1-thread calls at once, one per core: the 2-thread ceiling of the
// machine for this work (shared caches, memory, clocks), against which the t2 rows' scaling is read.
// FLOPs counted per visible (query, key) pair: forward 4 d, backward 8 d (the FlashAttention
// convention: the backward's recomputation of the scores is not counted as useful work).
#include <omp.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common.hpp"
#include "ctgraph/kernels.hpp"
#ifdef CTGRAPH_HAVE_TORCH
#include "torch_peer.hpp"
#endif

namespace {
namespace cb = ctgraph::bench;
namespace k = ctgraph::kernels;

struct tensors {
  std::vector<float> q, kk, v, o, lse, dout, dq, dk, dv;
  explicit tensors(const k::attention_shape& s) {
    const std::size_t nq = std::size_t(s.batch) * s.heads * s.q_len * s.head_dim;
    const std::size_t nk = std::size_t(s.batch) * s.heads * s.kv_len * s.head_dim;
    std::mt19937 rng(0);
    std::normal_distribution<float> g;
    for (auto* t : {&q, &dout, &o, &dq}) t->resize(nq);
    for (auto* t : {&kk, &v, &dk, &dv}) t->resize(nk);
    lse.resize(std::size_t(s.batch) * s.heads * s.q_len);
    for (auto* t : {&q, &kk, &v, &dout})
      for (auto& x : *t) x = g(rng);
  }
};

void add_case(const k::attention_shape& s, bool backward, int threads) {
  const std::string table = std::string("attention ") + (backward ? "forward+backward" : "forward") +
                            (s.causal ? ", causal" : "") + " (B=" + std::to_string(s.batch) +
                            " H=" + std::to_string(s.heads) + " d=" + std::to_string(s.head_dim) + ")";
  const std::string row = "N=" + std::to_string(s.q_len) + " t" + std::to_string(threads);
  const double flops = (backward ? 12.0 : 4.0) * visible_pairs(s) * s.head_dim;
  auto ours = [=](bool fused) {
    return [=] {
      auto t = std::make_shared<tensors>(s);
      return [=] {
        if (fused)
          k::attention_forward(s, t->q.data(), t->kk.data(), t->v.data(), t->o.data(), t->lse.data());
        else
          k::attention_forward_reference(s, t->q.data(), t->kk.data(), t->v.data(), t->o.data(), t->lse.data());
        if (!backward) return;
        if (fused)
          k::attention_backward(s, t->q.data(), t->kk.data(), t->v.data(), t->o.data(), t->lse.data(), t->dout.data(),
                                t->dq.data(), t->dk.data(), t->dv.data());
        else
          k::attention_backward_reference(s, t->q.data(), t->kk.data(), t->v.data(), t->o.data(), t->lse.data(),
                                          t->dout.data(), t->dq.data(), t->dk.data(), t->dv.data());
      };
    };
  };
  cb::add(table, row, "ctgraph fused", threads, flops, ours(true));
  if (threads == 2)  // what two cores give this work on this machine: two 1-thread runs at the same time
    cb::add(table, "N=" + std::to_string(s.q_len) + " 2x t1", "ctgraph fused", 2, 2 * flops, [=] {
      auto first = ours(true)(), second = ours(true)();
      return [=] {
#pragma omp parallel num_threads(2)  // the kernels see the parallel region and run on one thread each
        (omp_get_thread_num() == 0 ? first : second)();
      };
    });
  cb::add(table, row, "ctgraph unfused", threads, flops, ours(false));
#ifdef CTGRAPH_HAVE_TORCH
  namespace tp = cb::torch_peer;
  cb::add(table, row, "torch naive", threads, flops, [=] { return tp::make_attention(s, tp::impl::naive, backward); });
  cb::add(table, row, "torch sdpa", threads, flops, [=] { return tp::make_attention(s, tp::impl::sdpa, backward); });
#endif
}

}  // namespace

int main(int argc, char** argv) {
#ifdef CTGRAPH_HAVE_TORCH
  cb::set_threads_hook([](int t) { cb::torch_peer::set_threads(t); });
#endif
  for (bool backward : {false, true})
    for (bool causal : {false, true})
      for (int threads : {1, 2})
        for (int n : {256, 512, 1024, 2048}) {
          if (threads == 2 && n != 1024) continue;  // scaling measured at N = 1024 (keeps the run short)
          add_case({4, 8, n, n, 64, causal}, backward, threads);
        }
  // The tlm step's attention (bench_train): 32 sequences of 64 tokens, 4 heads of 32 features, causal.
  for (bool backward : {false, true}) add_case({32, 4, 64, 64, 32, true}, backward, 1);
  return cb::run(argc, argv, "attention");
}
