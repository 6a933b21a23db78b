// ops/shape_ops.hpp: ops that move elements without arithmetic.
//   reshape:  same elements, new shape (a.s).            VJP: reshape(g, shape(x))
//   permute:  axes reordered, out axis k = in axis a.i[k]. VJP: permute(g, inverse)
//   concat:   a ++ b along axis a.i[0].                  VJP: slices of g
//   slice:    x[begin:end) along axis a.i[0].            VJP: pad(g) with zeros
//   pad:      x placed at begin in zeros of length full. VJP: slice(g)
#pragma once
#include <cstring>

#include "fwd.hpp"

namespace ctgraph {

namespace detail {
// (outer, axis length, inner) view of a shape around one axis.
struct axis_view {
  long outer = 1, len = 1, inner = 1;
};
constexpr axis_view around(const shape& s, int axis) {
  axis_view v;
  for (int k = 0; k < s.rank; ++k) (k < axis ? v.outer : k == axis ? v.len : v.inner) *= s.d[k];
  return v;
}
}  // namespace detail

struct reshape_op {
  static constexpr const char* name = "reshape";
  static constexpr op_class cls = op_class::kernel;
  static constexpr double flops = 0;
  static constexpr shape_result infer(const attr_t& a, const shape* in, int) {
    return {in[0].size() == a.s.size(), a.s};
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    std::memcpy(a.out, a.input(0), sizeof(T) * a.out_shape.size());
  }
  static constexpr void vjp(vjp_ctx& c) { c.set(0, reshape(c.grad(), c.x(0).shape_of())); }
  static void shape_mismatch(auto...) = delete;
};

struct permute_op {
  static constexpr const char* name = "permute";
  static constexpr op_class cls = op_class::kernel;
  static constexpr double flops = 0;
  static constexpr shape_result infer(const attr_t& a, const shape* in, int) {
    shape s;
    s.rank = in[0].rank;
    int seen = 0;
    for (int k = 0; k < s.rank; ++k) {
      int p = a.i[k];
      if (p < 0 || p >= s.rank || (seen >> p & 1)) return {false, s};
      seen |= 1 << p;
      s.d[k] = in[0].d[p];
    }
    return {true, s};
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    const shape& is = a.in_shape[0];
    const int r = is.rank;
    long istr[max_rank], str[max_rank];
    long acc = 1;
    for (int k = r - 1; k >= 0; --k) istr[k] = acc, acc *= is.d[k];
    for (int k = 0; k < r; ++k) str[k] = istr[a.a.i[k]];  // input stride of output axis k
    const T* x = a.input(0);
    T* y = a.out;
    const shape& os = a.out_shape;
    const long inner = os.d[r - 1], s_in = str[r - 1], outer = os.size() / inner;
    int c[max_rank] = {};
    long o = 0;
    for (long row = 0; row < outer; ++row) {
      for (long j = 0; j < inner; ++j) y[row * inner + j] = x[o + j * s_in];
      for (int k = r - 2; k >= 0; --k) {
        o += str[k];
        if (++c[k] < os.d[k]) break;
        o -= str[k] * c[k];
        c[k] = 0;
      }
    }
  }
  static constexpr void vjp(vjp_ctx& c) {
    int inv[max_rank] = {};
    for (int k = 0; k < c.self().out.rank; ++k) inv[c.attr().i[k]] = k;
    c.set(0, permute(c.grad(), inv));
  }
  static void shape_mismatch(auto...) = delete;
};

struct concat_op {
  static constexpr const char* name = "concat";
  static constexpr op_class cls = op_class::kernel;
  static constexpr double flops = 0;
  static constexpr shape_result infer(const attr_t& a, const shape* in, int) {
    int ax = a.i[0];
    shape s = in[0];
    bool ok = in[0].rank == in[1].rank && ax >= 0 && ax < s.rank;
    for (int k = 0; ok && k < s.rank; ++k) ok = k == ax || in[0].d[k] == in[1].d[k];
    if (ok) s.d[ax] += in[1].d[ax];
    return {ok, s};
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    const int ax = a.a.i[0];
    auto va = detail::around(a.in_shape[0], ax), vb = detail::around(a.in_shape[1], ax);
    const long ca = va.len * va.inner, cb = vb.len * vb.inner;
    const T *x = a.input(0), *z = a.input(1);
    for (long o = 0; o < va.outer; ++o) {
      std::memcpy(a.out + o * (ca + cb), x + o * ca, sizeof(T) * ca);
      std::memcpy(a.out + o * (ca + cb) + ca, z + o * cb, sizeof(T) * cb);
    }
  }
  static constexpr void vjp(vjp_ctx& c) {
    const int ax = c.attr().i[0], na = c.x(0).shape_of().d[ax], n = c.self().out.d[ax];
    if (c.wants[0]) c.set(0, slice(c.grad(), ax, 0, na));
    if (c.wants[1]) c.set(1, slice(c.grad(), ax, na, n));
  }
  static void shape_mismatch(auto...) = delete;
};

struct slice_op {
  static constexpr const char* name = "slice";
  static constexpr op_class cls = op_class::kernel;
  static constexpr double flops = 0;
  static constexpr shape_result infer(const attr_t& a, const shape* in, int) {
    const int ax = a.i[0], b = a.i[1], e = a.i[2];
    shape s = in[0];
    bool ok = ax >= 0 && ax < s.rank && 0 <= b && b < e && e <= s.d[ax];
    if (ok) s.d[ax] = e - b;
    return {ok, s};
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    auto v = detail::around(a.in_shape[0], a.a.i[0]);
    const long n = (a.a.i[2] - a.a.i[1]) * v.inner, skip = a.a.i[1] * v.inner;
    for (long o = 0; o < v.outer; ++o)
      std::memcpy(a.out + o * n, a.input(0) + o * v.len * v.inner + skip, sizeof(T) * n);
  }
  static constexpr void vjp(vjp_ctx& c) {
    c.set(0, pad(c.grad(), c.attr().i[0], c.attr().i[1], c.x(0).shape_of().d[c.attr().i[0]]));
  }
  static void shape_mismatch(auto...) = delete;
};

struct pad_op {
  static constexpr const char* name = "pad";
  static constexpr op_class cls = op_class::kernel;
  static constexpr double flops = 0;
  static constexpr shape_result infer(const attr_t& a, const shape* in, int) {
    const int ax = a.i[0], b = a.i[1], full = a.i[2];
    shape s = in[0];
    bool ok = ax >= 0 && ax < s.rank && b >= 0 && b + s.d[ax] <= full;
    if (ok) s.d[ax] = full;
    return {ok, s};
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    auto v = detail::around(a.out_shape, a.a.i[0]);
    const long len = a.in_shape[0].d[a.a.i[0]] * v.inner, skip = a.a.i[1] * v.inner;
    for (long i = 0; i < a.out_shape.size(); ++i) a.out[i] = T(0);
    for (long o = 0; o < v.outer; ++o)
      std::memcpy(a.out + o * v.len * v.inner + skip, a.input(0) + o * len, sizeof(T) * len);
  }
  static constexpr void vjp(vjp_ctx& c) {
    const int ax = c.attr().i[0], b = c.attr().i[1];
    c.set(0, slice(c.grad(), ax, b, b + c.x(0).shape_of().d[ax]));
  }
};

constexpr ref reshape(ref x, const shape& to) {
  if (x.shape_of() == to) return x;
  return apply<reshape_op>(attr_shape(to), x);
}
constexpr ref permute(ref x, const int* perm) {
  attr_t a;
  for (int k = 0; k < x.shape_of().rank; ++k) a.i[k] = perm[k];
  return apply<permute_op>(a, x);
}
constexpr ref slice(ref x, int axis, int begin, int end) {
  if (begin == 0 && end == x.shape_of().d[axis]) return x;
  return apply<slice_op>(attr_ints({axis, begin, end}), x);
}
constexpr ref pad(ref x, int axis, int begin, int full) {
  if (begin == 0 && full == x.shape_of().d[axis]) return x;
  return apply<pad_op>(attr_ints({axis, begin, full}), x);
}

// ---- public API ----

/// reshape<dims...>(x): the same elements in a new shape of equal size.
template <int... D>
constexpr auto reshape(expression auto x) {
  return make_node<reshape_op, attr_shape(make_shape<D...>())>(x);
}
/// permute<p...>(x): output axis k is input axis p_k.
template <int... P>
constexpr auto permute(expression auto x) {
  static_assert(sizeof...(P) == shape_of<decltype(x)>.rank, "ctgraph: permute<p...>(x) needs one index per axis of x");
  return make_node<permute_op, attr_ints({P...})>(x);
}
namespace detail {
template <int R>
consteval attr_t swap_last_two() {
  attr_t a;
  for (int k = 0; k < R; ++k) a.i[k] = k;
  a.i[R - 2] = R - 1;
  a.i[R - 1] = R - 2;
  return a;
}
}  // namespace detail
/// transpose(x): swaps the last two axes (rank >= 2). Free when it feeds a matmul.
constexpr auto transpose(expression auto x) {
  constexpr int r = shape_of<decltype(x)>.rank;
  static_assert(r >= 2, "ctgraph: transpose(x) needs rank >= 2");
  return make_node<permute_op, detail::swap_last_two<r>()>(x);
}
/// concat<axis>(a, b, ...): joins along an axis; other dimensions must agree.
template <int Axis>
constexpr auto concat(expression auto a, expression auto b, expression auto... rest) {
  constexpr int r = shape_of<decltype(a)>.rank;
  auto ab = make_node<concat_op, attr_ints({Axis < 0 ? Axis + r : Axis})>(a, b);
  if constexpr (sizeof...(rest) == 0)
    return ab;
  else
    return concat<Axis>(ab, rest...);
}
/// slice<axis, begin, end>(x): elements [begin, end) along an axis.
template <int Axis, int Begin, int End>
constexpr auto slice(expression auto x) {
  constexpr int r = shape_of<decltype(x)>.rank;
  return make_node<slice_op, attr_ints({Axis < 0 ? Axis + r : Axis, Begin, End})>(x);
}

}  // namespace ctgraph
