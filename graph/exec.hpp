// graph/exec.hpp: runs a plan. Every step is a function instantiated on its own
// constant description (offsets, shapes, op), so a compiled step is a straight list of
// calls with immediate arguments: no tape, no dispatch, no allocation.
#pragma once
#include <omp.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "plan.hpp"

namespace ctgraph {

/// Base pointers a run resolves locations against.
struct exec_ctx {
  std::byte* arena;
  void* const* params;
  const void* const* inputs;
  void* const* slots = nullptr;  // inside a scan's cell: its bound values
};

template <class T>
inline T* resolve(const exec_ctx& c, loc l) {
  switch (l.sp) {
    case space::arena:
      return reinterpret_cast<T*>(c.arena + l.off);
    case space::param:
      return static_cast<T*>(c.params[l.off]);
    case space::input:
      return static_cast<T*>(const_cast<void*>(c.inputs[l.off]));
    case space::slot:
      return static_cast<T*>(c.slots[l.off]);
    default:
      return nullptr;
  }
}

template <dtype D>
using element_t = std::conditional_t<D == dtype::f32, float, std::conditional_t<D == dtype::f64, double, int>>;

/// A plan's tables as spans, whatever its sizes: what the executor and diagnostics read.
struct plan_view {
  std::span<const kernel_step> kernels;
  std::span<const fused_step> fused;
  std::span<const order_entry> order;
  std::span<const leaf_entry> inputs, params;
  std::span<const loc> in_locs;  // kernel steps' operands
  std::span<const shape> in_shapes;
  std::span<const scan_step> scans;
  std::span<const order_entry> body_order;
  std::span<const scan_slot> scan_slots;
  std::span<const scan_copy> scan_copies;
};
template <class Plan>
plan_view view_of(const Plan& p) {
  return {p.kernels,
          p.fused,
          p.order,
          {p.inputs.data(), p.inputs.size() - 1},
          {p.params.data(), p.params.size() - 1},
          p.in_locs,
          p.in_shapes,
          p.scans,
          p.body_order,
          p.scan_slots,
          p.scan_copies};
}

/// Runs one step of a plan: a kernel call, a fused loop or a scan (src/exec.cpp: the executor
/// is compiled once, into the library, not in every program that runs a plan).
void run_step(const exec_ctx& c, const plan_view& p, const order_entry& e);

/// Runs every step of a plan in order. Never inlined: inlined into a caller that holds the
/// plan as a constant, clang 14 at -O2 unrolls the loop over every step and spends
/// minutes optimising the result (a 16-layer residual net: over 200 s instead of 9 s).
template <class Plan>
[[gnu::noinline]] void run_plan(const exec_ctx& c, const Plan& p) {
  const plan_view v = view_of(p);
  for (const order_entry& e : p.order) run_step(c, v, e);
}

// ---------------------------------------------------------------- finite checks

/// Index of the first NaN or infinity among n values of type T (float, double), or -1.
/// Reads the bits, so -ffast-math cannot fold the test away: a value is NaN or infinite when
/// its magnitude bits are at least those of +inf. Blocks of 1024 take the maximum magnitude
/// (a vectorised reduction, about 0.1 ns per float); only a bad block is searched.
template <class T>
long first_non_finite(const T* p, long n) {
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  constexpr U inf_bits = sizeof(T) == 4 ? U(0x7f800000u) : U(0x7ff0000000000000ull);
  constexpr U magnitude = ~(U(1) << (8 * sizeof(T) - 1));
  constexpr long block = 1024;
  for (long b0 = 0; b0 < n; b0 += block) {
    const long b1 = n - b0 < block ? n : b0 + block;
    U m = 0;
    for (long i = b0; i < b1; ++i) {
      const U a = std::bit_cast<U>(p[i]) & magnitude;
      m = a > m ? a : m;
    }
    if (m < inf_bits) continue;
    for (long i = b0; i < b1; ++i)
      if ((std::bit_cast<U>(p[i]) & magnitude) >= inf_bits) return i;
  }
  return -1;
}
/// The same over a buffer of element type `t`; int buffers hold no NaN (-1).
inline long first_non_finite(dtype t, const void* p, long n) {
  if (t == dtype::f32) return first_non_finite(static_cast<const float*>(p), n);
  if (t == dtype::f64) return first_non_finite(static_cast<const double*>(p), n);
  return -1;
}
/// Element `i` of a float or double buffer, as a double (NaN and infinities kept).
inline double element_as_double(dtype t, const void* p, long i) {
  return t == dtype::f64 ? static_cast<const double*>(p)[i] : static_cast<const float*>(p)[i];
}

/// Where a checked run found its first NaN or infinity: the step in run order, the element
/// of its output and the value; step < 0: none.
struct non_finite_at {
  int step = -1;
  long element = -1;
  double value = 0;
  int output = -1;  // a multi-output step's output
};

/// Runs a plan like run_plan, scanning each step's output after it runs; stops at the first
/// output holding a NaN or an infinity and says where. Float and double outputs only.
template <class Plan>
[[gnu::noinline]] non_finite_at run_plan_checked(const exec_ctx& c, const Plan& p) {
  const plan_view v = view_of(p);
  for (std::size_t s = 0; s < p.order.size(); ++s) {
    const order_entry& e = p.order[s];
    run_step(c, v, e);
    const dtype t = e.fused ? p.fused[e.index].type : p.kernels[e.index].type;
    auto check = [&](loc out, long n, int k) -> non_finite_at {
      const void* data = resolve<const void>(c, out);
      if (const long i = data ? first_non_finite(t, data, n) : -1; i >= 0)
        return {static_cast<int>(s), i, element_as_double(t, data, i), k};
      return {};
    };
    non_finite_at bad;
    if (e.fused) {
      bad = check(p.fused[e.index].out, p.fused[e.index].out_shape.size(), -1);
    } else if (const kernel_step& k = p.kernels[e.index]; k.n_out == 0) {
      bad = check(k.out, k.out_shape.size(), -1);
    } else {
      for (int j = 0; j < k.n_out && bad.step < 0; ++j)
        bad = check(v.in_locs[k.first_in + k.n_in + j], v.in_shapes[k.first_in + k.n_in + j].size(), j);
    }
    if (bad.step >= 0) return bad;
  }
  return {};
}

/// The inputs and params step `s` of plan `p` depends on, directly or through earlier
/// steps: flags indexed like p.inputs and p.params. The producer of an arena operand is the
/// latest earlier step whose output starts at that offset (a buffer's memory is reused only
/// after its last reader). Allocates: for error messages only.
void leaves_of_step(const plan_view& p, int s, std::vector<char>& inputs, std::vector<char>& params);

}  // namespace ctgraph
