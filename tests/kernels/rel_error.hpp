// tests/kernels/rel_error.hpp: how the attention tests compare a kernel's output with a double reference.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

/// max |got - want| / max(1, max |want|); -inf entries must match exactly, and a NaN is an infinite error.
template <class T>
double rel_error(const std::vector<T>& got, const std::vector<double>& want) {
  double err = 0, scale = 1;
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (std::isinf(want[i])) {
      if (double(got[i]) != want[i]) return std::numeric_limits<double>::infinity();
      continue;
    }
    scale = std::max(scale, std::abs(want[i]));
    const double e = std::abs(double(got[i]) - want[i]);
    if (!(e <= err)) err = std::isnan(e) ? std::numeric_limits<double>::infinity() : e;
  }
  return err / scale;
}
