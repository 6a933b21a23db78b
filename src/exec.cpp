// src/exec.cpp: the executor (graph/exec.hpp declares it): kernel calls, fused loops and scans,
// compiled once into the library. A program's run_plan walks its plan's order and calls
// run_step for each entry.
#include "graph/exec.hpp"

#include <omp.h>

#include <bit>
#include <cstring>

namespace ctgraph {

namespace {
void run_scan(const exec_ctx& c, const plan_view& p, const scan_step& sc);

/// A kernel step: one shared function for all, reading its step description from the
/// plan (a constant table); the kernel behind it gets operand pointers and shapes.
void run_kernel(const exec_ctx& c, const plan_view& p, const kernel_step& k) {
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
    const void* accs[max_kernel_outputs];
    for (int j = 0; j < accumulators_of(k); ++j)
      accs[j] = resolve<const void>(c, p.in_locs[k.first_in + k.n_in + k.n_out + j]);
    const run_args<T> a{out,    in,   k.out_shape, p.in_shapes.data() + k.first_in, k.a,
                        k.n_in, outs, k.n_out,     k.has_accs ? accs : nullptr};
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

}  // namespace

// The plan's tables come as spans: indexed as a plan's std::arrays, once inlined into
// run_plan, g++ 12 warned of reads past a plan's end (-Warray-bounds).
void run_step(const exec_ctx& c, const plan_view& p, const order_entry& e) {
  if (!e.fused)
    run_kernel(c, p, p.kernels[e.index]);
  else if (p.fused[e.index].type == dtype::f64)
    run_fused<double>(c, p.fused[e.index]);
  else
    run_fused<float>(c, p.fused[e.index]);
}

namespace {
/// A scan step: its cell's steps T times, over slices of its sequences, with its carries in
/// two buffers (the cell reads one while its next carries are copied into the other).
void run_scan(const exec_ctx& c, const plan_view& p, const scan_step& sc) {
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

}  // namespace

void leaves_of_step(const plan_view& p, int s, std::vector<char>& inputs, std::vector<char>& params) {
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
      for (int j = 0; j < accumulators_of(k); ++j)  // what it adds its results to is read too
        visit(p.in_locs[k.first_in + k.n_in + k.n_out + j]);
    }
  }
}

}  // namespace ctgraph
