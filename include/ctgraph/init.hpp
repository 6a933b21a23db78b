// ctgraph/init.hpp: cg::init(params, seed), initial values of every param: Glorot-uniform weights, zero biases.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string_view>

#include "parameters.hpp"

namespace ctgraph {

/// Initialises every param: Glorot (Xavier) uniform for rank >= 2, U(-a, a) with
/// a = sqrt(6 / (fan_in + fan_out)), fan_in = d1 * r, fan_out = d0 * r, r the product
/// of the trailing dims (PyTorch's convention for [Out, In, ...] weights); zeros for
/// rank 0 and 1 (biases). Each param draws from its own stream seeded by (seed, name),
/// so adding a param does not change the others.
template <class P>
void init(parameters<P>& params, std::uint64_t seed) {
  params.for_each([&](std::string_view name, auto data, const shape& s) {
    using T = typename decltype(data)::element_type;
    if (s.rank < 2) {
      std::fill(data.begin(), data.end(), T(0));
      return;
    }
    double r = 1;
    for (int k = 2; k < s.rank; ++k) r *= s.d[k];
    const double a = std::sqrt(6.0 / (s.d[1] * r + s.d[0] * r));
    std::uint64_t h = seed * 0x9e3779b97f4a7c15ull;
    for (char c : name) h = hash_mix(h, static_cast<unsigned char>(c));
    std::mt19937_64 gen(h);
    for (T& v : data) v = static_cast<T>(a * (2.0 * (static_cast<double>(gen() >> 11) * 0x1.0p-53) - 1.0));
  });
}

}  // namespace ctgraph
