// tests/kernels/random_cases.hpp: what the randomized kernel tests draw their cases with: the case count and
// seed from the environment (CTGRAPH_RANDOM_CASES, CTGRAPH_RANDOM_SEED), uniform ints and reals.
#pragma once
#include <cstdlib>
#include <random>

namespace ctgraph_test {

/// The integer in environment variable `name`, or `fallback` when it is unset or empty.
inline long env_or(const char* name, long fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtol(v, nullptr, 10) : fallback;
}
/// A uniform int in [lo, hi].
inline int uniform(std::mt19937& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
/// A uniform real in [lo, hi).
inline double uniform_real(std::mt19937& rng, double lo, double hi) {
  return std::uniform_real_distribution<double>(lo, hi)(rng);
}

}  // namespace ctgraph_test
