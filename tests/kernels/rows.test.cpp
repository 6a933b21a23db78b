// Tests of the row kernels (kernels::layer_norm_rows, softmax_rows, sum_rows, sum_columns, logsumexp): random
// shapes (rows and columns from 1, past a vector's width and past the threaded size), 1 or 2 threads, against
// plain double loops. Buffers are allocated to their exact length, so that AddressSanitizer catches a vector
// loop that runs past a row's end; masked (-inf) scores and NaN are checked to come out as the loops' do.
#include <omp.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
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

struct dims {
  long R, C;
};
// Mostly small shapes; one case in four is large enough to be split across threads.
dims random_dims(std::mt19937& rng) {
  if (uniform(rng, 0, 3) == 0) return {uniform(rng, 200, 700), uniform(rng, 100, 300)};
  return {uniform(rng, 1, 40), uniform(rng, 1, 70)};
}

template <class T>
std::vector<T> random_values(std::mt19937& rng, std::size_t n, double scale) {
  std::vector<T> v(n);
  for (T& x : v) x = T(uniform_real(rng, -scale, scale) + uniform_real(rng, -1, 1) * 0.1);
  return v;
}

template <class T>
double tolerance() {
  return sizeof(T) == 4 ? 2e-5 : 1e-12;
}

template <class T>
void check_case(std::mt19937& rng) {
  const auto [R, C] = random_dims(rng);
  const int threads = uniform(rng, 1, 2);
  thread_count keep;
  omp_set_num_threads(threads);
  INFO("R " << R << " C " << C << " threads " << threads);
  const std::size_t n = std::size_t(R * C);
  const std::vector<T> x = random_values<T>(rng, n, uniform_real(rng, 0.5, 20));
  const double tol = tolerance<T>();
  auto near = [&](double got, double want) { return std::abs(got - want) <= tol * (1 + std::abs(want)); };

  {  // layer_norm_rows, with an offset mean so that centring matters
    std::vector<T> xs(x), xhat(n), rstd(static_cast<std::size_t>(R));
    for (T& v : xs) v += T(3);
    const T eps = T(1e-5);
    k::layer_norm_rows(xs.data(), xhat.data(), rstd.data(), R, C, eps);
    for (long r = 0; r < R; ++r) {
      double mean = 0, var = 0;
      for (long j = 0; j < C; ++j) mean += double(xs[r * C + j]);
      mean /= double(C);
      for (long j = 0; j < C; ++j) var += (double(xs[r * C + j]) - mean) * (double(xs[r * C + j]) - mean);
      const double rs = 1 / std::sqrt(var / double(C) + double(eps));
      INFO("layer_norm row " << r);
      REQUIRE(near(rstd[r], rs));
      for (long j = 0; j < C; ++j) REQUIRE(near(xhat[r * C + j], (double(xs[r * C + j]) - mean) * rs));
    }
  }
  for (bool log : {false, true}) {  // softmax_rows and logsumexp
    std::vector<T> y(n);
    k::softmax_rows(y.data(), x.data(), R, C, log);
    for (long r = 0; r < R; ++r) {
      const T* xr = x.data() + r * C;
      double mx = double(xr[0]), s = 0;
      for (long j = 0; j < C; ++j) mx = std::max(mx, double(xr[j]));
      for (long j = 0; j < C; ++j) s += std::exp(double(xr[j]) - mx);
      INFO((log ? "log_softmax" : "softmax") << " row " << r);
      REQUIRE(near(k::logsumexp(xr, C), mx + std::log(s)));
      for (long j = 0; j < C; ++j) {
        const double p = std::exp(double(xr[j]) - mx) / s;
        REQUIRE(near(y[r * C + j], log ? std::log(p) : p));
      }
    }
  }
  {                                                                     // sum_rows and sum_columns
    std::vector<T> rows(static_cast<std::size_t>(R)), cols(static_cast<std::size_t>(C), T(123));  // sum_columns overwrites
    k::sum_rows(x.data(), rows.data(), R, C);
    k::sum_columns(x.data(), cols.data(), R, C);
    for (long r = 0; r < R; ++r) {
      double s = 0, a = 0;
      for (long j = 0; j < C; ++j) s += double(x[r * C + j]), a += std::abs(double(x[r * C + j]));
      INFO("row " << r);
      REQUIRE(std::abs(rows[r] - s) <= tol * (1 + a));
    }
    for (long j = 0; j < C; ++j) {
      double s = 0, a = 0;
      for (long r = 0; r < R; ++r) s += double(x[r * C + j]), a += std::abs(double(x[r * C + j]));
      INFO("column " << j);
      REQUIRE(std::abs(cols[j] - s) <= tol * (1 + a));
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("row kernels match double loops on random shapes and thread counts", "[kernels][rows]", float,
                   double) {
  const long cases = env_or("CTGRAPH_RANDOM_CASES", 40), seed = env_or("CTGRAPH_RANDOM_SEED", 1);
  for (long c = 0; c < cases; ++c) {
    std::mt19937 rng(static_cast<unsigned>(seed + c));
    check_case<TestType>(rng);
  }
}

TEMPLATE_TEST_CASE("softmax_rows: masked scores get 0, a NaN spreads over its row only", "[kernels][rows]", float,
                   double) {
  using T = TestType;
  constexpr T inf = std::numeric_limits<T>::infinity();
  for (long C : {3L, 17L, 40L}) {
    INFO("C " << C);
    std::vector<T> x(std::size_t(2 * C)), y(x.size());
    for (long j = 0; j < C; ++j) x[j] = j % 2 ? -inf : T(j) * T(0.25), x[C + j] = T(j);
    x[C + C / 2] = std::numeric_limits<T>::quiet_NaN();
    k::softmax_rows(y.data(), x.data(), 2, C, false);
    double s = 0;
    for (long j = 0; j < C; j += 2) s += std::exp((double(j) - double((C - 1) / 2 * 2)) * 0.25);
    for (long j = 0; j < C; ++j) {
      INFO("j " << j);
      if (j % 2) {
        REQUIRE(y[j] == T(0));
      } else {
        REQUIRE(std::abs(double(y[j]) - std::exp((double(j) - double((C - 1) / 2 * 2)) * 0.25) / s) <= 1e-6);
      }
      REQUIRE(std::isnan(y[C + j]));
    }
    REQUIRE(k::logsumexp(x.data() + 1, 1) == -inf);  // every element -inf
  }
}
