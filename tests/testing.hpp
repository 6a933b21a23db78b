// tests/testing.hpp: small helpers for forward-value tests.
#pragma once
#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <ctgraph/ctgraph.hpp>
#include <initializer_list>
#include <vector>

namespace ctgraph_test {

/// Every element of `v` (row-major) equals `want` within `tol` (absolute, plus relative).
template <class V>
void expect_values(const V& v, std::initializer_list<double> want, double tol = 1e-12) {
  REQUIRE(v.size() == want.size());
  std::size_t i = 0;
  for (double w : want) {
    INFO("element " << i);
    CHECK(static_cast<double>(v.data()[i]) == Approx(w).margin(tol).epsilon(tol));
    ++i;
  }
}
template <class V>
void expect_values(const V& v, const std::vector<double>& want, double tol = 1e-12) {
  REQUIRE(v.size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i);
    CHECK(static_cast<double>(v.data()[i]) == Approx(want[i]).margin(tol).epsilon(tol));
  }
}

inline std::vector<double> iota_values(std::size_t n, double start = 0, double step = 1) {
  std::vector<double> r(n);
  for (std::size_t i = 0; i < n; ++i) r[i] = start + step * static_cast<double>(i);
  return r;
}

}  // namespace ctgraph_test
