// tests/kernels/thread_count.hpp: restores OpenMP's thread count when a test that changes it ends,
// however it ends (a failed REQUIRE throws).
#pragma once

#include <omp.h>

struct thread_count {
  int saved = omp_get_max_threads();
  ~thread_count() { omp_set_num_threads(saved); }
};
