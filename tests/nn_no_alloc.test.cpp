// A compiled nn::lstm_cell training step allocates nothing per run: this executable replaces the global
// operator new/delete and interposes malloc & co (tests/alloc_counting.hpp). After a warm-up run (the thread
// pool; the per-thread buffer of the outputs a gate kernel writes and the graph does not read), runs of
// forward + every gradient count zero allocations, with the loss on h' alone (c' unread) and on both.
// Sizes big enough for every kernel's threaded path (gemms >= 2 MFLOP, gates B*H >= 2^15): below them the gemm
// and gate kernels enter `omp parallel` regions of one thread, and libgomp mallocs a team for each such region
// (one malloc per call, measured with g++ 12's libgomp): a kernel-side issue, see the report of this change.
#include <omp.h>

#include <cmath>
#include <vector>

#include "alloc_counting.hpp"
#include "gradcheck.hpp"

namespace cg = ctgraph;
namespace nn = ctgraph::nn;

namespace {
template <class Loss>
void check_no_alloc(Loss loss) {
  constexpr int B = 128, In = 64, H = 256;
  auto step = cg::compile(loss, cg::grad(loss));
  auto params = cg::parameters_of(step);
  cg::init(params, 1);
  std::vector<float> xs(B * In), hs(B * H), cs(B * H);
  for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>((i * 37 % 101) / 101.0 - 0.5);
  for (std::size_t i = 0; i < hs.size(); ++i) hs[i] = cs[i] = static_cast<float>((i * 13 % 29) / 29.0 - 0.5);
  omp_set_num_threads(2);
  const float l0 = step.run(params, cg::feed<"x">(xs), cg::feed<"h">(hs), cg::feed<"c">(cs))[loss];  // warm-up
  float l = 0;
  long n, m;
  {
    count_scope c;
    for (int r = 0; r < 5; ++r) {
      auto out = step.run(params, cg::feed<"x">(xs), cg::feed<"h">(hs), cg::feed<"c">(cs));
      l = out[loss];
    }
    n = news, m = mallocs;
  }
  CHECK(n == 0);
  CHECK(m == 0);
  CHECK(l == l0);
  CHECK(std::isfinite(l));
}
constexpr auto x = cg::input<"x", float, 128, 64>;
constexpr auto h = cg::input<"h", float, 128, 256>;
constexpr auto c = cg::input<"c", float, 128, 256>;
constexpr auto s = nn::lstm_cell<"cell", 256>(x, h, c);
}  // namespace

TEST_CASE("run() of an nn::lstm_cell training step allocates nothing", "[alloc][nn]") {
  check_no_alloc(cg::sum(s.h * s.h));                       // c' unread: written to the scratch buffer
  check_no_alloc(cg::sum(s.h * s.h) + cg::sum(s.c * s.h));  // both read
  check_no_alloc(cg::sum(nn::linear<"out", 256>(s.h)) + cg::sum(nn::gru_cell<"g", 256>(x, s.h)));
}

namespace {
// nn::lstm over a sequence (cg::scan): the shapes of bench_train's lstm/ctgraph, at 1 and 2 threads. The
// kernels below their threading thresholds run without a parallel region, so small steps allocate nothing too.
constexpr auto xs_seq = cg::input<"xs", float, 20, 32, 64>;
constexpr auto layer = nn::lstm<"lstm", 128>(xs_seq);
constexpr auto seq_loss = cg::sum(layer.output);
}  // namespace

TEST_CASE("run() of an nn::lstm training step (a scan and its backward) allocates nothing", "[alloc][nn][lstm]") {
  auto step = cg::compile(seq_loss, cg::grad(seq_loss));
  auto params = cg::parameters_of(step);
  cg::init(params, 1);
  std::vector<float> in(20 * 32 * 64);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>((i * 37 % 101) / 101.0 - 0.5);
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    const float l0 = step.run(params, cg::feed<"xs">(in))[seq_loss];  // warm-up
    float l = 0;
    long n, m;
    {
      count_scope c;
      for (int r = 0; r < 3; ++r) l = step.run(params, cg::feed<"xs">(in))[seq_loss];
      n = news, m = mallocs;
    }
    INFO(threads << " threads");
    CHECK(n == 0);
    CHECK(m == 0);
    CHECK(l == l0);
  }
}
