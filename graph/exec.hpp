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

inline void run_scan(const exec_ctx& c, const plan_view& p, const scan_step& sc);

/// A kernel step: one shared function for all, reading its step description from the
/// plan (a constant table); the kernel behind it gets operand pointers and shapes.
inline void run_kernel(const exec_ctx& c, const plan_view& p, const kernel_step& k) {
  if (k.op == &scan_runtime) return run_scan(c, p, p.scans[k.a.i[0]]);
  auto call = [&]<class T>(T*) {
    T* out = resolve<T>(c, k.out);
    if (k.op->is_constant) {
      const T v = static_cast<T>(k.a.value());
      for (long i = 0; i < k.out_shape.size(); ++i) out[i] = v;
      return;
    }
    const void* in[max_kernel_operands];
    for (int j = 0; j < k.n_in; ++j) in[j] = resolve<const void>(c, p.in_locs[k.first_in + j]);
    void* outs[max_kernel_outputs];
    for (int j = 0; j < k.n_out; ++j) outs[j] = resolve<void>(c, p.in_locs[k.first_in + k.n_in + j]);
    const run_args<T> a{out, in, k.out_shape, p.in_shapes.data() + k.first_in, k.a, k.n_in, outs, k.n_out};
    if constexpr (std::is_same_v<T, float>)
      k.op->fwd_f32(a);
    else
      k.op->fwd_f64(a);
  };
  if (k.type == dtype::f64)
    call(static_cast<double*>(nullptr));
  else
    call(static_cast<float*>(nullptr));
}

/// A fused elementwise step: the loop runs over tiles of the output's rows; each
/// instruction fills a tile of stack scratch (L1-resident), the last writes the output.
template <class T>
void run_fused_tiles(const exec_ctx& c, const fused_step& f, long row_begin, long row_end) {
  constexpr long tile = 256;
  T scratch[max_fused][tile];
  T literal[max_sources];
  const T* src[max_sources];
  const shape& S = f.out_shape;
  const int r = S.rank;
  const long inner = r ? S.d[r - 1] : 1;
  for (int s = 0; s < f.n_src; ++s) {
    literal[s] = static_cast<T>(std::bit_cast<double>(f.src[s].bits));
    src[s] = f.src[s].l.sp == space::literal ? &literal[s] : resolve<const T>(c, f.src[s].l);
  }
  T* out = resolve<T>(c, f.out);
  for (long row = row_begin; row < row_end; ++row) {
    long base[max_sources] = {};
    long rem = row;
    for (int k = r - 2; k >= 0; --k) {
      const long ck = rem % S.d[k];
      rem /= S.d[k];
      for (int s = 0; s < f.n_src; ++s) base[s] += ck * f.src[s].stride[k];
    }
    for (long j0 = 0; j0 < inner; j0 += tile) {
      const long n = inner - j0 < tile ? inner - j0 : tile;
      for (int i = 0; i < f.n; ++i) {
        const ew_instr& in = f.code[i];
        const T* p[2];
        int st[2];
        for (int k = 0; k < 2; ++k) {
          const int o = k == 0 ? in.a : in.b;
          if (o >= 0) {
            p[k] = scratch[o], st[k] = 1;
          } else {
            const ew_source& es = f.src[-o - 1];
            const int is = r && es.l.sp != space::literal ? static_cast<int>(es.stride[r - 1]) : 0;
            p[k] = src[-o - 1] + (es.l.sp == space::literal ? 0 : base[-o - 1] + j0 * is), st[k] = is;
          }
        }
        T* dst = i == f.n - 1 ? out + row * inner + j0 : scratch[i];
        if constexpr (std::is_same_v<T, float>)
          in.op->array_f32(dst, p[0], st[0], p[1], st[1], n);
        else
          in.op->array_f64(dst, p[0], st[0], p[1], st[1], n);
      }
    }
  }
}

template <class T>
void run_fused(const exec_ctx& c, const fused_step& f) {
  const long inner = f.out_shape.rank ? f.out_shape.d[f.out_shape.rank - 1] : 1;
  const long rows = f.out_shape.size() / inner;
  // No parallel region for one thread: libgomp allocates a team for each, even of one.
  if (f.out_shape.size() >= (1 << 16) && rows > 1 && omp_get_max_threads() > 1 && !omp_in_parallel()) {
#pragma omp parallel
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      run_fused_tiles<T>(c, f, rows * t / nt, rows * (t + 1) / nt);
    }
  } else {
    run_fused_tiles<T>(c, f, 0, rows);
  }
}

/// Runs one step of a plan: a kernel call or a fused loop. The plan's tables come as spans:
/// indexed as a plan's std::arrays, once inlined into run_plan, g++ 12 warned of reads past
/// a plan's end (-Warray-bounds) in test programs with several plans.
inline void run_step(const exec_ctx& c, const plan_view& p, const order_entry& e) {
  if (!e.fused)
    run_kernel(c, p, p.kernels[e.index]);
  else if (p.fused[e.index].type == dtype::f64)
    run_fused<double>(c, p.fused[e.index]);
  else
    run_fused<float>(c, p.fused[e.index]);
}

/// A scan step: its cell's steps T times, over slices of its sequences, with its carries in
/// two buffers (the cell reads one while its next carries are copied into the other).
inline void run_scan(const exec_ctx& c, const plan_view& p, const scan_step& sc) {
  void* slots[max_scan_slots];
  const exec_ctx cell{c.arena + sc.body_arena, c.params, c.inputs, slots};
  auto at = [](const exec_ctx& x, loc l) { return resolve<std::byte>(x, l); };
  for (int i = 0; i < sc.n_inits; ++i) {
    const scan_copy& k = p.scan_copies[sc.first_init + i];
    std::memcpy(at(c, k.to), at(c, k.from), k.bytes);
  }
  for (int t = 0; t < sc.T; ++t) {
    const long tt = sc.reverse ? sc.T - 1 - t : t;
    for (int i = 0; i < sc.n_slots; ++i) {
      const scan_slot& s = p.scan_slots[sc.first_slot + i];
      slots[i] = at(c, s.base) + (s.mode == 1   ? (t % 2) * s.stride
                                  : s.mode == 3 ? ((t + 1) % 2) * s.stride
                                  : s.mode == 2 ? tt * s.stride
                                                : 0);
    }
    for (int i = sc.order_begin; i < sc.order_end; ++i) run_step(cell, p, p.body_order[i]);
    for (int i = 0; i < sc.n_copies; ++i) {
      const scan_copy& k = p.scan_copies[sc.first_copy + i];
      std::byte* to = at(c, k.to) + (k.mode == 1 ? ((t + 1) % 2) * k.stride : tt * k.stride);
      std::memcpy(to, at(cell, k.from), k.bytes);
    }
  }
  for (int i = 0; i < sc.n_finals; ++i) {
    const scan_copy& k = p.scan_copies[sc.first_final + i];
    std::memcpy(at(c, k.to), at(c, k.from) + (sc.T % 2) * k.stride, k.bytes);
  }
}

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
inline void leaves_of_step(const plan_view& p, int s, std::vector<char>& inputs, std::vector<char>& params) {
  inputs.assign(p.inputs.size(), 0);
  params.assign(p.params.size(), 0);
  std::vector<char> seen(p.order.size(), 0);
  std::vector<int> todo{s};
  seen[s] = 1;
  auto writes = [&](int t, loc l) {  // whether step t writes the buffer at l
    if (p.order[t].fused) return p.fused[p.order[t].index].out == l;
    const kernel_step& k = p.kernels[p.order[t].index];
    bool w = k.out == l;
    for (int j = 0; j < k.n_out; ++j) w |= p.in_locs[k.first_in + k.n_in + j] == l;
    return w;
  };
  while (!todo.empty()) {
    const int t = todo.back();
    todo.pop_back();
    const order_entry& e = p.order[t];
    auto visit = [&](loc l) {
      if (l.sp == space::input) inputs[l.off] = 1;
      if (l.sp == space::param) params[l.off] = 1;
      if (l.sp != space::arena) return;
      for (int u = t - 1; u >= 0; --u) {
        if (!writes(u, l)) continue;
        if (!seen[u]) seen[u] = 1, todo.push_back(u);
        break;
      }
    };
    if (e.fused) {
      const fused_step& f = p.fused[e.index];
      for (int k = 0; k < f.n_src; ++k) visit(f.src[k].l);
    } else {
      const kernel_step& k = p.kernels[e.index];
      for (int j = 0; j < k.n_in; ++j) visit(p.in_locs[k.first_in + j]);
    }
  }
}

}  // namespace ctgraph
