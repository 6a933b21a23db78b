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

#include "gradcheck.hpp"

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}

namespace {
std::atomic<bool> counting{false};
std::atomic<long> news{0}, mallocs{0};

void* counted_new(std::size_t n, std::size_t align = 0) {
  if (counting.load(std::memory_order_relaxed)) news.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  void* p = align > alignof(std::max_align_t) ? __libc_memalign(align, n) : __libc_malloc(n);
  if (!p) throw std::bad_alloc();
  return p;
}
void count_malloc() {
  if (counting.load(std::memory_order_relaxed)) mallocs.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

// ---- malloc family (interposed for the whole process, libgomp and libstdc++ included)
extern "C" {
void* malloc(std::size_t n) {
  count_malloc();
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t m) {
  count_malloc();
  return __libc_calloc(n, m);
}
void* realloc(void* p, std::size_t n) {
  count_malloc();
  return __libc_realloc(p, n);
}
void* aligned_alloc(std::size_t a, std::size_t n) {
  count_malloc();
  return __libc_memalign(a, n);
}
void* memalign(std::size_t a, std::size_t n) {
  count_malloc();
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, std::size_t a, std::size_t n) {
  count_malloc();
  void* p = __libc_memalign(a, n);
  if (!p) return 12;  // ENOMEM
  *out = p;
  return 0;
}
void free(void* p) { __libc_free(p); }
}

// ---- operator new / delete, every replaceable form
void* operator new(std::size_t n) { return counted_new(n); }
void* operator new[](std::size_t n) { return counted_new(n); }
void* operator new(std::size_t n, std::align_val_t a) { return counted_new(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_new(n, static_cast<std::size_t>(a)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n, static_cast<std::size_t>(a));
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n, static_cast<std::size_t>(a));
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { __libc_free(p); }
void operator delete[](void* p) noexcept { __libc_free(p); }
void operator delete(void* p, std::size_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::size_t) noexcept { __libc_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { __libc_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { __libc_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { __libc_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { __libc_free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { __libc_free(p); }

namespace cg = ctgraph;
using namespace cg::literals;

namespace {
struct count_scope {
  count_scope() {
    news = 0, mallocs = 0;
    counting = true;
  }
  ~count_scope() { counting = false; }
};
}  // namespace

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
  auto step = cg::compile(loss, cg::grad(loss, W1, b1, W2, b2), cg::softmax(logits));
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
    auto other = cg::compile(loss, cg::grad(loss, W1, b1, W2, b2), cg::softmax(logits));
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
