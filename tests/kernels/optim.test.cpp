// Tests of the optimizers' element loops (kernels::adam_update): random lengths (1 to past the threaded
// size), every combination of options (clipping, L2, decoupled decay, AMSGrad) and 1 or 2 threads, against
// a plain double loop of torch.optim's rule. Buffers are allocated to their exact length, so that
// AddressSanitizer catches a vector loop that runs past the end.
#include <omp.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "ctgraph/kernels.hpp"
#include "random_cases.hpp"
#include "thread_count.hpp"

namespace {
namespace k = ctgraph::kernels;
using ctgraph_test::env_or;
using ctgraph_test::uniform;
using ctgraph_test::uniform_real;

template <class T>
void check_adam(std::mt19937& rng, bool clip, bool l2, bool decay, bool ams) {
  const int n = uniform(rng, 0, 3) == 0 ? uniform(rng, 65536, 140000) : uniform(rng, 1, 300);
  k::adam_step<T> s;
  const double b1 = uniform_real(rng, 0.5, 0.99), b2 = uniform_real(rng, 0.9, 0.9999), lr = 1e-2;
  const int t = uniform(rng, 1, 50);
  s.b1 = T(b1), s.b2 = T(b2), s.a1 = T(1 - b1), s.a2 = T(1 - b2);
  s.step_size = T(lr / (1 - std::pow(b1, t))), s.bc2_sqrt = T(std::sqrt(1 - std::pow(b2, t))), s.eps = T(1e-8);
  if (clip) s.clip = T(0.37);
  if (l2) s.l2 = T(0.01);
  if (decay) s.decay = T(1 - lr * 0.1);
  std::vector<T> p(n), g(n), m(n), v(n), vmax(n);
  for (int i = 0; i < n; ++i) {
    p[i] = T(uniform_real(rng, -2, 2)), g[i] = T(uniform_real(rng, -1, 1));
    m[i] = T(uniform_real(rng, -0.1, 0.1)), v[i] = T(uniform_real(rng, 0, 0.01));
    vmax[i] = v[i] * T(uniform_real(rng, 0.5, 1.5));
  }
  // The reference, in double from the same inputs.
  std::vector<double> rp(n), rm(n), rv(n), rvmax(n);
  for (int i = 0; i < n; ++i) {
    double d = double(g[i]) * double(s.clip), pi = double(p[i]) * double(s.decay);
    d += double(s.l2) * pi;
    rm[i] = double(m[i]) * double(s.b1) + d * double(s.a1);
    rv[i] = double(v[i]) * double(s.b2) + double(s.a2) * d * d;
    double vv = rv[i];
    if (ams) vv = rvmax[i] = std::max(double(vmax[i]), vv);
    rp[i] = pi - double(s.step_size) * rm[i] / (std::sqrt(vv) / double(s.bc2_sqrt) + double(s.eps));
  }
  const int threads = uniform(rng, 1, 2);
  thread_count keep;
  omp_set_num_threads(threads);
  k::adam_update(s, static_cast<std::size_t>(n), p.data(), g.data(), m.data(), v.data(), ams ? vmax.data() : nullptr);
  INFO("n " << n << " clip " << clip << " l2 " << l2 << " decay " << decay << " amsgrad " << ams << " threads "
            << threads);
  const double tol = sizeof(T) == 4 ? 2e-6 : 1e-14;
  for (int i = 0; i < n; ++i) {
    INFO("element " << i);
    REQUIRE(std::abs(m[i] - rm[i]) <= tol * (1 + std::abs(rm[i])));
    REQUIRE(std::abs(v[i] - rv[i]) <= tol * (1 + std::abs(rv[i])));
    if (ams) REQUIRE(std::abs(vmax[i] - rvmax[i]) <= tol * (1 + rvmax[i]));
    // p moves by about lr; its error is relative to that step, not to p.
    REQUIRE(std::abs(p[i] - rp[i]) <= tol * (1 + std::abs(rp[i])) + (sizeof(T) == 4 ? 1e-7 : 0));
  }
}

}  // namespace

TEMPLATE_TEST_CASE("adam_update matches torch.optim's rule on random lengths and options", "[kernels][optim]", float,
                   double) {
  const long cases = env_or("CTGRAPH_RANDOM_CASES", 40), seed = env_or("CTGRAPH_RANDOM_SEED", 1);
  for (long c = 0; c < cases; ++c) {
    std::mt19937 rng(static_cast<unsigned>(seed + c));
    const int combo = static_cast<int>(c % 16);
    check_adam<TestType>(rng, combo & 1, combo & 2, combo & 4, combo & 8);
  }
}
