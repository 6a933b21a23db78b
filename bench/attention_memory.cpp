// bench/attention_memory.cpp: peak resident memory that one attention forward+backward adds beyond
// its inputs and outputs. One configuration per process (peak RSS is per process):
//   ./bench_attention_memory <ctgraph|unfused|torch-naive|torch-sdpa> <N> [d=64] [B=1] [H=1] [causal=0]
// Inputs (q, k, v, dout) and, for ctgraph, outputs (o, lse, dq, dk, dv) are allocated and touched
// first; the peak-RSS mark is then reset (/proc/self/clear_refs) and one forward+backward runs.
// For libtorch, which allocates its outputs inside the call, their size is subtracted.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "ctgraph/kernels.hpp"
#ifdef CTGRAPH_HAVE_TORCH
#include "torch_peer.hpp"
#endif

namespace {
namespace k = ctgraph::kernels;

double status_mib(const char* key) {  // VmRSS / VmHWM from /proc/self/status, in MiB
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::strtod(line.c_str() + std::string(key).size() + 1, nullptr) / 1024.0;
  return -1;
}
bool reset_peak() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  return bool(f);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s <ctgraph|unfused|torch-naive|torch-sdpa> N [d] [B] [H] [causal]\n", argv[0]);
    return 2;
  }
  const std::string which = argv[1];
  const int n = std::atoi(argv[2]), d = argc > 3 ? std::atoi(argv[3]) : 64;
  const int b = argc > 4 ? std::atoi(argv[4]) : 1, h = argc > 5 ? std::atoi(argv[5]) : 1;
  const bool causal = argc > 6 && std::atoi(argv[6]) != 0;
  const k::attention_shape s{b, h, n, n, d, causal};
  const std::size_t nq = std::size_t(b) * h * n * d, nl = std::size_t(b) * h * n;
  double io_mib = 0, before = 0, extra_outputs = 0;
  if (which == "ctgraph" || which == "unfused") {
    std::mt19937 rng(0);
    std::normal_distribution<float> g;
    std::vector<float> q(nq), kk(nq), v(nq), dout(nq), o(nq), dq(nq), dk(nq), dv(nq), lse(nl);
    for (auto* t : {&q, &kk, &v, &dout})
      for (auto& x : *t) x = g(rng);
    for (auto* t : {&o, &dq, &dk, &dv, &lse}) std::fill(t->begin(), t->end(), 0.f);  // touch the outputs
    io_mib = (9.0 * nq + nl) * 4 / (1 << 20);
    if (!reset_peak()) std::fprintf(stderr, "warning: cannot reset the peak RSS mark\n");
    before = status_mib("VmRSS:");
    if (which == "ctgraph") {
      k::attention_forward(s, q.data(), kk.data(), v.data(), o.data(), lse.data());
      k::attention_backward(s, q.data(), kk.data(), v.data(), o.data(), lse.data(), dout.data(), dq.data(), dk.data(),
                            dv.data());
    } else {
      k::attention_forward_reference(s, q.data(), kk.data(), v.data(), o.data(), lse.data());
      k::attention_backward_reference(s, q.data(), kk.data(), v.data(), o.data(), lse.data(), dout.data(), dq.data(),
                                      dk.data(), dv.data());
    }
  } else {
#ifdef CTGRAPH_HAVE_TORCH
    namespace tp = ctgraph::bench::torch_peer;
    tp::make_attention({1, 1, 16, 16, d, causal}, tp::impl::naive, true)();  // load and initialise libtorch first
    auto run = tp::make_attention(s, which == "torch-sdpa" ? tp::impl::sdpa : tp::impl::naive, true);
    io_mib = 4.0 * nq * 4 / (1 << 20);
    extra_outputs = tp::output_bytes(s, true) / (1 << 20);
    if (!reset_peak()) std::fprintf(stderr, "warning: cannot reset the peak RSS mark\n");
    before = status_mib("VmRSS:");
    run();
#else
    std::fprintf(stderr, "libtorch peer not built\n");
    return 1;
#endif
  }
  const double peak = status_mib("VmHWM:");
  std::printf("%s N=%d d=%d B=%d H=%d causal=%d: inputs+outputs %.1f MiB, peak RSS %.1f MiB, added %.1f MiB\n",
              which.c_str(), n, d, b, h, int(causal), io_mib + extra_outputs, peak, peak - before - extra_outputs);
  return 0;
}
