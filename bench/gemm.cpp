// bench/gemm.cpp: ctgraph gemm against OpenBLAS (if found), fp32 (and a few fp64), 1 and 2 threads.
//   ./bench_gemm [--benchmark_filter=...]
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common.hpp"
#include "ctgraph/kernels.hpp"
#ifdef CTGRAPH_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace {
namespace cb = ctgraph::bench;

struct gemm_shape {
  int M, N, K;
  bool ta = false, tb = false;
};

template <class T>
struct operands {
  std::vector<T> A, B, C;
  explicit operands(const gemm_shape& s)
      : A(std::size_t(s.M) * s.K), B(std::size_t(s.K) * s.N), C(std::size_t(s.M) * s.N) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<T> u(-1, 1);
    for (auto& x : A) x = u(rng);
    for (auto& x : B) x = u(rng);
  }
};

template <class T>
void add_shape(const std::string& table, const gemm_shape& s, int threads) {
  const std::string row = std::to_string(s.M) + "x" + std::to_string(s.N) + "x" + std::to_string(s.K) +
                          (s.ta ? " A^T" : "") + (s.tb ? " B^T" : "") + " t" + std::to_string(threads);
  const double flops = 2.0 * s.M * s.N * s.K;
  const int lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
  cb::add(table, row, "ctgraph", threads, flops, [=] {
    auto op = std::make_shared<operands<T>>(s);
    return [=] {
      ctgraph::kernels::gemm<T>(s.ta, s.tb, s.M, s.N, s.K, T(1), op->A.data(), lda, op->B.data(), ldb, T(0),
                                op->C.data(), s.N);
    };
  });
#ifdef CTGRAPH_HAVE_OPENBLAS
  cb::add(table, row, "OpenBLAS", threads, flops, [=] {
    auto op = std::make_shared<operands<T>>(s);
    return [=] {
      const auto ta = s.ta ? CblasTrans : CblasNoTrans, tb = s.tb ? CblasTrans : CblasNoTrans;
      if constexpr (sizeof(T) == 4)
        cblas_sgemm(CblasRowMajor, ta, tb, s.M, s.N, s.K, 1.f, op->A.data(), lda, op->B.data(), ldb, 0.f, op->C.data(),
                    s.N);
      else
        cblas_dgemm(CblasRowMajor, ta, tb, s.M, s.N, s.K, 1.0, op->A.data(), lda, op->B.data(), ldb, 0.0, op->C.data(),
                    s.N);
    };
  });
#endif
}

}  // namespace

int main(int argc, char** argv) {
#ifdef CTGRAPH_HAVE_OPENBLAS
  cb::set_threads_hook([](int t) { openblas_set_num_threads(t); });
#endif
  for (int threads : {1, 2}) {
    for (int n : {64, 128, 256, 512, 768, 1024}) add_shape<float>("sgemm square", {n, n, n}, threads);
    // skinny shapes of small recurrent models: batch 32, K = input+hidden, N = 4 gates x hidden
    for (gemm_shape s :
         {gemm_shape{32, 1024, 128}, gemm_shape{32, 1024, 256}, gemm_shape{32, 128, 1024}, gemm_shape{32, 256, 1024}})
      add_shape<float>("sgemm skinny (M x N x K)", s, threads);
    // the products of batch-32 recurrent and transformer layers, in each layout they run in: x W^T
    // (forward, NT), dY W (input gradient, NN), dY^T x (weight gradient, TN)
    for (gemm_shape s :
         {gemm_shape{32, 256, 1024}, gemm_shape{32, 256, 1024, false, true}, gemm_shape{32, 256, 1024, true, false},
          gemm_shape{32, 1024, 256}, gemm_shape{32, 1024, 256, false, true}, gemm_shape{64, 64, 64},
          gemm_shape{64, 64, 64, false, true}, gemm_shape{64, 64, 64, true, false}})
      add_shape<float>("sgemm layer shapes (M x N x K)", s, threads);
    // issue 13's tlm step (S x B = 2048 rows, E 128, FF 512, 3E 384, V 64): the forward's x W^T (NT), the
    // input gradients dY W (NN), the weight gradients dY^T x (TN)
    for (gemm_shape s : {gemm_shape{2048, 384, 128, false, true}, gemm_shape{2048, 512, 128, false, true},
                         gemm_shape{2048, 128, 512, false, true}, gemm_shape{2048, 128, 128, false, true},
                         gemm_shape{2048, 64, 128, false, true}, gemm_shape{2048, 128, 384}, gemm_shape{2048, 128, 512},
                         gemm_shape{2048, 512, 128}, gemm_shape{384, 128, 2048, true, false},
                         gemm_shape{512, 128, 2048, true, false}, gemm_shape{128, 512, 2048, true, false}})
      add_shape<float>("sgemm tlm shapes (M x N x K)", s, threads);
    for (gemm_shape s : {gemm_shape{512, 512, 512, true, false}, gemm_shape{512, 512, 512, false, true},
                         gemm_shape{512, 512, 512, true, true}})
      add_shape<float>("sgemm transposed", s, threads);
    for (int n : {256, 1024}) add_shape<double>("dgemm square", {n, n, n}, threads);
  }
  return cb::run(argc, argv, "gemm");
}
