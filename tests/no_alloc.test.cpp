// step.run() allocates nothing: this executable replaces the global operator new/delete
// (every form) and interposes malloc & co with counting versions; after a warm-up run,
// several runs of a compiled training step (forward + all gradients, big enough for
// the threaded gemm path) must count zero allocations of either kind.
#include <malloc.h>
#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "alloc_counting.hpp"
#include "gradcheck.hpp"

namespace cg = ctgraph;
using namespace cg::literals;

TEST_CASE("the counters see allocations", "[alloc]") {
  long n, m;
  {
    count_scope c;
    static std::vector<int>* volatile v;  // volatile: the compiler may not elide the pairs
    static void* volatile p;
    v = new std::vector<int>(100);  // two operator new: the vector and its buffer
    p = std::malloc(10);
    std::free(p);
    p = std::aligned_alloc(64, 128);
    std::free(p);
    delete v;
    n = news, m = mallocs;
  }
  CHECK(n == 2);
  CHECK(m == 2);  // operator new goes to __libc_malloc directly
}

TEST_CASE("run() of a training step allocates nothing", "[alloc]") {
  constexpr int B = 64, In = 96, H = 128, C = 10;
  constexpr auto x = cg::input<"x", float, B, In>;
  constexpr auto y = cg::input<"y", int, B>;
  constexpr auto W1 = cg::param<"W1", float, H, In>;
  constexpr auto b1 = cg::param<"b1", float, H>;
  constexpr auto W2 = cg::param<"W2", float, C, H>;
  constexpr auto b2 = cg::param<"b2", float, C>;
  constexpr auto h = cg::tanh(cg::matmul(x, cg::transpose(W1)) + b1);
  constexpr auto logits = cg::matmul(h, cg::transpose(W2)) + b2;
  constexpr auto loss = cg::cross_entropy(logits, y) + 1e-4_c * cg::sum(W1 * W1);
  auto step = cg::compile(loss, cg::grad(loss), cg::softmax(logits));
  auto params = cg::parameters_of(step);
  cg::init(params, 1);
  std::vector<float> xs(B * In);
  std::vector<int> ys(B);
  for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>((i * 37 % 101) / 101.0 - 0.5);
  for (int i = 0; i < B; ++i) ys[i] = i % C;
  omp_set_num_threads(2);
  long m;

  {  // what is counted below would see the arena's allocation
    count_scope c;
    auto other = cg::compile(loss, cg::grad(loss), cg::softmax(logits));
    m = mallocs;
  }
  CHECK(m >= 1);

  auto first = step.run(params, cg::feed<"x">(xs), cg::feed<"y">(ys));  // warm-up (thread pool, ...)
  const float l0 = first[loss];
  float l = 0, g = 0;
  long n;
  {
    count_scope c;
    for (int r = 0; r < 5; ++r) {
      auto out = step.run(params, cg::feed<"x">(xs), cg::feed<"y">(ys));
      l = out[loss];
      g = out[cg::grad(loss, W1)](3, 5);
    }
    n = news, m = mallocs;
  }
  CHECK(n == 0);
  CHECK(m == 0);
  CHECK(l == l0);
  CHECK(std::isfinite(g));
  CHECK(l > 0);
}
