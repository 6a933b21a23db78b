// graph/exec.hpp: runs a plan. Every step is a function instantiated on its own
// constant description (offsets, shapes, op), so a compiled step is a straight list of
// calls with immediate arguments: no tape, no dispatch, no allocation.
#pragma once
#include <omp.h>

#include <cstring>

#include "plan.hpp"

namespace ctgraph {

/// Base pointers a run resolves locations against.
struct exec_ctx {
  std::byte* arena;
  void* const* params;
  const void* const* inputs;
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
    default:
      return nullptr;
  }
}

template <dtype D>
using element_t = std::conditional_t<D == dtype::f32, float, std::conditional_t<D == dtype::f64, double, int>>;

/// A kernel step: one shared function for all, reading its step description from the
/// plan (a constant table); the kernel behind it gets operand pointers and shapes.
inline void run_kernel(const exec_ctx& c, const kernel_step& k) {
  auto call = [&]<class T>(T*) {
    T* out = resolve<T>(c, k.out);
    if (k.op->is_constant) {
      const T v = static_cast<T>(k.a.value());
      for (long i = 0; i < k.out_shape.size(); ++i) out[i] = v;
      return;
    }
    run_args<T> a{out, {}, k.out_shape, {k.in_shape[0], k.in_shape[1], k.in_shape[2]}, k.a};
    for (int j = 0; j < k.n_in; ++j) a.in[j] = resolve<const void>(c, k.in[j]);
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
  if (f.out_shape.size() >= (1 << 16) && rows > 1) {
#pragma omp parallel
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      run_fused_tiles<T>(c, f, rows * t / nt, rows * (t + 1) / nt);
    }
  } else {
    run_fused_tiles<T>(c, f, 0, rows);
  }
}

/// Runs every step of a plan in order. Never inlined: inlined into a caller that holds the
/// plan as a constant, clang 14 at -O2 unrolls the loop over every step and spends
/// minutes optimising the result (a 16-layer residual net: over 200 s instead of 9 s).
template <class Plan>
[[gnu::noinline]] void run_plan(const exec_ctx& c, const Plan& p) {
  for (const order_entry& e : p.order) {
    if (!e.fused)
      run_kernel(c, p.kernels[e.index]);
    else if (p.fused[e.index].type == dtype::f64)
      run_fused<double>(c, p.fused[e.index]);
    else
      run_fused<float>(c, p.fused[e.index]);
  }
}

}  // namespace ctgraph
