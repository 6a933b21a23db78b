// ops/reduce.hpp: sum over chosen axes (mean is sum times 1/count) and its adjoint, expand.
//   sum:    y = sum of x over the axes in a.i[0] (a bit mask); a.s is y's shape, which
//           may keep the summed axes as 1 or drop them (same element order either way).
//   expand: the inverse mapping: repeats x along the masked axes of a.s.
//   VJPs:   sum -> expand(g),  expand -> sum(g): each is the other's transpose.
#pragma once
#include <ctgraph/kernels.hpp>

#include "elementwise.hpp"

namespace ctgraph {

namespace detail {
// Element strides of the compact (unmasked-axes-only) layout, 0 on masked axes.
constexpr int compact_strides(const shape& s, int mask, long* str) {
  long acc = 1;
  for (int k = s.rank - 1; k >= 0; --k) {
    if (mask >> k & 1) {
      str[k] = 0;
    } else {
      str[k] = acc;
      acc *= s.d[k];
    }
  }
  return static_cast<int>(acc);
}
constexpr long unmasked_size(const shape& s, int mask) {
  long n = 1;
  for (int k = 0; k < s.rank; ++k)
    if (!(mask >> k & 1)) n *= s.d[k];
  return n;
}
// Visits every element of shape s in row-major order as (flat index, compact index).
template <class F>
void for_each_compact(const shape& s, const long* str, F&& f) {
  const int r = s.rank;
  if (r == 0) return f(0L, 0L, 1L, 0L);
  const long inner = s.d[r - 1], istr = str[r - 1];
  int c[max_rank] = {};
  long outer = s.size() / inner, o = 0;
  for (long row = 0; row < outer; ++row) {
    f(row * inner, o, inner, istr);
    for (int k = r - 2; k >= 0; --k) {  // odometer over all axes but the last
      o += str[k];
      if (++c[k] < s.d[k]) break;
      o -= str[k] * c[k];
      c[k] = 0;
    }
  }
}
}  // namespace detail

struct sum_op {
  static constexpr const char* name = "sum";
  static constexpr op_class cls = op_class::kernel;
  static constexpr shape_result infer(const attr_t& a, const shape* in, int) {
    bool ok = (a.i[0] >> in[0].rank) == 0 && detail::unmasked_size(in[0], a.i[0]) == a.s.size();
    return {ok, a.s};
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    const shape& s = a.in_shape[0];
    const int mask = a.a.i[0], all = (1 << s.rank) - 1;
    // Summed axes that are all the leading ones (a bias gradient) or all the trailing ones (row sums):
    // the vectorised kernels. Others: the general walk.
    if (mask == all) return kernels::sum_rows(a.input(0), a.out, 1, s.size());
    long lead = 1;  // elements of the axes before k
    for (int k = 1; k < s.rank; ++k) {
      lead *= s.d[k - 1];
      if (mask == (1 << k) - 1) return kernels::sum_columns(a.input(0), a.out, lead, s.size() / lead);
      if (mask == (all & ~((1 << k) - 1))) return kernels::sum_rows(a.input(0), a.out, lead, s.size() / lead);
    }
    long str[max_rank];
    const int n = detail::compact_strides(s, mask, str);
    const T* x = a.input(0);
    T* y = a.out;
    for (int i = 0; i < n; ++i) y[i] = T(0);
    detail::for_each_compact(a.in_shape[0], str, [&](long i, long o, long len, long s) {
      if (s == 0) {
        T acc = 0;
        for (long j = 0; j < len; ++j) acc += x[i + j];
        y[o] += acc;
      } else {
        for (long j = 0; j < len; ++j) y[o + j] += x[i + j];
      }
    });
  }
  static constexpr void vjp(vjp_ctx& c) { c.set(0, expand(c.grad(), c.attr().i[0], c.x(0).shape_of())); }
  static void shape_mismatch(auto...) = delete;
};

struct expand_op {
  static constexpr const char* name = "expand";
  static constexpr op_class cls = op_class::kernel;
  static constexpr shape_result infer(const attr_t& a, const shape* in, int) {
    return {(a.i[0] >> a.s.rank) == 0 && detail::unmasked_size(a.s, a.i[0]) == in[0].size(), a.s};
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    long str[max_rank];
    detail::compact_strides(a.out_shape, a.a.i[0], str);
    const T* x = a.input(0);
    T* y = a.out;
    detail::for_each_compact(a.out_shape, str, [&](long i, long o, long len, long s) {
      for (long j = 0; j < len; ++j) y[i + j] = x[o + j * s];
    });
  }
  static constexpr void vjp(vjp_ctx& c) {
    attr_t a = attr_shape(c.x(0).shape_of());
    a.i[0] = c.attr().i[0];
    c.set(0, apply<sum_op>(a, c.grad()));
  }
};

constexpr ref expand(ref x, int mask, const shape& to) {
  attr_t a = attr_shape(to);
  a.i[0] = mask;
  return apply<expand_op>(a, x);
}
constexpr ref sum_to(ref x, const shape& target) {
  const shape& s = x.shape_of();
  if (s == target) return x;
  int mask = 0;
  for (int k = 0; k < s.rank; ++k) {
    int t = k - (s.rank - target.rank);
    if (t < 0 || (target.d[t] == 1 && s.d[k] != 1)) mask |= 1 << k;
  }
  attr_t a = attr_shape(target);
  a.i[0] = mask;
  if (mask == 0) return reshape(x, target);
  return apply<sum_op>(a, x);
}
constexpr ref sum_rows(ref x) {
  shape s = x.shape_of();
  s.d[s.rank - 1] = 1;
  attr_t a = attr_shape(s);
  a.i[0] = 1 << (s.rank - 1);
  return apply<sum_op>(a, x);
}

/// Requests keeping summed axes as size 1: `cg::sum<1>(x, cg::keepdim)`.
struct keepdim_t {};
inline constexpr keepdim_t keepdim{};

namespace detail {
template <shape S, bool Keep, int... Axes>
consteval attr_t reduce_attr() {
  attr_t a;
  int mask = 0;
  if constexpr (sizeof...(Axes) == 0) {
    mask = (1 << S.rank) - 1;
  } else {
    for (int ax : {Axes...}) {
      int k = ax < 0 ? ax + S.rank : ax;
      if (k < 0 || k >= S.rank) return attr_ints({-1});  // the shape rule rejects it
      mask |= 1 << k;
    }
  }
  a.i[0] = mask;
  for (int k = 0; k < S.rank; ++k) {
    if (!(mask >> k & 1))
      a.s.d[a.s.rank++] = S.d[k];
    else if (Keep)
      a.s.d[a.s.rank++] = 1;
  }
  return a;
}
// The operand's type is deduced, never spelled next to the Axes pack: g++ 12 compares an
// explicitly given type against the argument's type structurally when a pack follows it,
// which costs time exponential in the depth of a graph with fan-out.
template <bool Keep, int... Axes, class E>
constexpr auto sum_impl(E x) {
  return make_node<sum_op, reduce_attr<E::desc.out, Keep, Axes...>()>(x);
}
}  // namespace detail

/// sum<axes...>(x): sum over the given axes (all when none; negative counts from the end).
template <int... Axes>
constexpr auto sum(expression auto x) {
  return detail::sum_impl<false, Axes...>(x);
}
template <int... Axes>
constexpr auto sum(expression auto x, keepdim_t) {
  return detail::sum_impl<true, Axes...>(x);
}
/// mean<axes...>(x): sum divided by the number of summed elements.
template <int... Axes, class... K>
constexpr auto mean(expression auto x, K... k) {
  using E = decltype(x);
  constexpr attr_t a = detail::reduce_attr<E::desc.out, false, Axes...>();
  constexpr double count = static_cast<double>(E::desc.out.size()) / static_cast<double>(a.s.size());
  return sum<Axes...>(x, k...) * const_expr<E::desc.type, std::bit_cast<std::int64_t>(1.0 / count)>{};
}

}  // namespace ctgraph
