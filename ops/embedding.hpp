// ops/embedding.hpp: embedding lookup (gather) and its adjoint (scatter-add).
//   embedding(ids int [...], table [V, D]) -> [..., D]: row ids[i] of the table.
//   VJP (table): scatter_add(ids, g, V): row ids[i] += g[i]. Ids checked in [0, V) at run time.
//   scatter_add's VJP (g): embedding(ids, gg).
#pragma once
#include <cmath>
#include <cstring>

#include "fwd.hpp"

namespace ctgraph {

struct embedding_op {
  static constexpr const char* name = "embedding";
  static constexpr op_class cls = op_class::kernel;
  static constexpr double flops = 0;
  static constexpr shape_result infer(const attr_t&, const shape* in, int) {
    shape s = in[0];
    if (in[1].rank != 2 || s.rank >= max_rank) return {};
    s.d[s.rank++] = in[1].d[1];
    return {true, s};
  }
  static constexpr int int_bound(const attr_t&, const shape* in, int k) { return k == 0 ? in[1].d[0] : 0; }
  template <class T>
  static void forward(const run_args<T>& a) {
    const long n = a.in_shape[0].size(), D = a.in_shape[1].d[1];
    const int* ids = a.template input<int>(0);
    for (long i = 0; i < n; ++i) std::memcpy(a.out + i * D, a.input(1) + ids[i] * D, sizeof(T) * D);
  }
  static constexpr void vjp(vjp_ctx& c) {
    if (c.wants[1]) c.set(1, scatter_add(c.x(0), c.grad(), c.x(1).shape_of().d[0]));
  }
  static void shape_mismatch(auto...) = delete;
};

struct scatter_add_op {
  static constexpr const char* name = "scatter_add";
  static constexpr op_class cls = op_class::kernel;
  static constexpr double flops = 1;
  static constexpr shape_result infer(const attr_t& a, const shape* in, int) {
    const shape &ids = in[0], &g = in[1];
    bool ok = g.rank == ids.rank + 1;
    for (int k = 0; ok && k < ids.rank; ++k) ok = ids.d[k] == g.d[k];
    shape s;
    s.rank = 2;
    s.d[0] = a.i[0];
    s.d[1] = g.back();
    return {ok, s};
  }
  static constexpr int int_bound(const attr_t& a, const shape*, int k) { return k == 0 ? a.i[0] : 0; }
  template <class T>
  static void forward(const run_args<T>& a) {
    const long n = a.in_shape[0].size(), D = a.out_shape.d[1];
    const int* ids = a.template input<int>(0);
    const T* g = a.input(1);
    for (long i = 0; i < a.out_shape.size(); ++i) a.out[i] = T(0);
    for (long i = 0; i < n; ++i)
      for (long j = 0; j < D; ++j) a.out[ids[i] * D + j] += g[i * D + j];
  }
  static constexpr void vjp(vjp_ctx& c) {
    if (c.wants[1]) c.set(1, embedding(c.x(0), c.grad()));
  }
};

constexpr ref embedding(ref ids, ref table) { return apply<embedding_op>(ids, table); }
constexpr ref scatter_add(ref ids, ref g, int rows) { return apply<scatter_add_op>(attr_ints({rows}), ids, g); }

/// embedding(ids, table): rows of table [V, D] picked by int ids [...] -> [..., D].
constexpr auto embedding(expression auto ids, expression auto table) {
  static_assert(std::is_same_v<value_of<decltype(ids)>, int>,
                "ctgraph: embedding(ids, table): ids must be an int input");
  return make_node<embedding_op>(ids, table);
}

/// sinusoidal_positions: the [S, E] table of "Attention Is All You Need", PE[p, 2i] = sin(p / 10000^(2i / E)),
/// PE[p, 2i + 1] = cos(p / 10000^(2i / E)); a.i[0] S, a.i[1] E; its operand, a scalar constant, gives the type.
struct sinusoidal_positions_op {
  static constexpr const char* name = "sinusoidal_positions";
  static constexpr op_class cls = op_class::kernel;
  static constexpr bool no_gradient = true;
  static constexpr double flops = 0;
  static constexpr shape_result infer(const attr_t& a, const shape*, int) {
    shape s;
    s.rank = 2, s.d[0] = a.i[0], s.d[1] = a.i[1];
    return {a.i[0] > 0 && a.i[1] > 0, s};
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    const int S = a.a.i[0], E = a.a.i[1];
    for (int p = 0; p < S; ++p)
      for (int j = 0; j < E; ++j) {
        const double angle = p / std::pow(10000.0, double(j - j % 2) / E);
        a.out[long(p) * E + j] = T(j % 2 ? std::cos(angle) : std::sin(angle));
      }
  }
  static void shape_mismatch(auto...) = delete;
};
/// sinusoidal_positions<S, E, T>(): the fixed sinusoidal position table [S, E] (no params, no gradient).
template <int S, int E, class T = float>
constexpr auto sinusoidal_positions() {
  return make_node<sinusoidal_positions_op, attr_ints({S, E})>(const_expr<dtype_of<T>(), 0>{});
}

}  // namespace ctgraph
