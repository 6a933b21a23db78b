// ops/rnn.hpp: the fused LSTM and GRU gate ops, what a torch.nn.LSTMCell / GRUCell step does after its gemms,
// over the kernels of <ctgraph/rnn_kernels.hpp>. Gates along the last axis: i, f, g, o (LSTM); r, z, n (GRU).
//   lstm_gates(pre [B,4H], c [B,H]) -> h' [B,H], c' [B,H], act [B,5H] = i, f, g, o, tanh(c') (saved for the VJP)
//     i, f, o = sigmoid(pre_i, pre_f, pre_o), g = tanh(pre_g);  c' = f c + i g;  h' = o tanh(c')
//     VJP: one lstm_gates_grad node (act, c, dh', dc') -> dpre [B,4H], dc [B,H]
//   gru_gates(gx [B,3H], gh [B,3H], h [B,H]) -> h' [B,H], act [B,4H] = r, z, n, gh_n (saved)
//     r, z = sigmoid(gx + gh) (their parts), n = tanh(gx_n + r gh_n);  h' = (1 - z) n + z h
//     VJP: one gru_gates_grad node (act, h, dh') -> dgx, dgh [B,3H], dh [B,H] (the direct part; the part
//     through gh belongs to gh's gemm)
//   The state operand (c, h) may be left out: zero, as torch takes a missing state.
//   Grad of grad: the grad ops' own VJPs are composed from elementwise ops, slices and concats over act; an
//   adjoint reaching act (from them) flows back through the forward op's rule into pre (gx, gh) and c.
#pragma once
#include <ctgraph/rnn_kernels.hpp>
#include <vector>

#include "fwd.hpp"
#include "shape_ops.hpp"

namespace ctgraph {

namespace detail {
constexpr shape matrix(int rows, int cols) {
  shape s;
  s.rank = 2;
  s.d[0] = rows;
  s.d[1] = cols;
  return s;
}

// A multi-output op's infer: its outputs() check, and the first output's shape (what a node's type records).
template <class Op>
constexpr shape_result first_output(const attr_t& a, const shape* in, int n) {
  std::vector<shape> out;
  const bool ok = Op::outputs(a, in, n, out);
  return {ok, ok ? out[0] : shape{}};
}

// The kernels write every output; the graph may read fewer (inference reads h' alone, and no VJP reads c').
// Those outputs go to a per-thread buffer, grown on first use, so later runs allocate nothing.
template <class T, std::size_t N>
void unread_to_scratch(T* (&out)[N], const long (&len)[N]) {
  long need = 0;
  for (std::size_t k = 0; k < N; ++k) need += out[k] ? 0 : len[k];
  if (need == 0) return;
  thread_local std::vector<T> scratch;
  if (static_cast<long>(scratch.size()) < need) scratch.resize(need);
  T* p = scratch.data();
  for (std::size_t k = 0; k < N; ++k)
    if (!out[k]) out[k] = p, p += len[k];
}

// A term of a rule that may be absent (zero): sums and products with absent terms simplify, so the rules
// below read as their formulas whichever adjoints flow.
struct term {
  ref r;
  constexpr term(ref x) : r(x) {}
  constexpr bool some() const { return r.id >= 0; }
};
constexpr term none(builder& b) { return ref{&b, -1}; }
constexpr term operator+(term a, term b) { return !a.some() ? b : !b.some() ? a : term(a.r + b.r); }
constexpr term operator-(term a) { return a.some() ? term(-a.r) : a; }
constexpr term operator-(term a, term b) { return !b.some() ? a : !a.some() ? -b : term(a.r - b.r); }
constexpr term operator*(term a, term b) { return a.some() && b.some() ? term(a.r * b.r) : term({a.r.b, -1}); }
constexpr term operator*(double k, term a) { return a.some() ? term(k * a.r) : a; }
// Columns [k H, (k + 1) H) of x [B, n H]: gate k.
constexpr term gate(term x, int k, int H) { return x.some() ? term(slice(x.r, 1, k * H, (k + 1) * H)) : x; }
// The gates side by side: [B, n H], absent ones zero; absent when all are.
constexpr term gates(builder& b, std::initializer_list<term> g, const shape& one, dtype t) {
  bool any = false;
  for (term x : g) any |= x.some();
  if (!any) return none(b);
  ref r{&b, -1};
  for (term x : g) {
    ref v = x.some() ? x.r : ref{&b, b.constant(0.0, one, t)};
    r = r.id < 0 ? v : apply<concat_op>(attr_ints({1}), r, v);
  }
  return r;
}
// A node of op over the present operands, and its outputs as refs.
template <class Op>
constexpr int make_over(builder& b, attr_t a, std::initializer_list<term> ins) {
  std::vector<int> ids;
  for (term x : ins)
    if (x.some()) ids.push_back(x.r.id);
  return b.make(&op_info_of<Op>, a, ids.data(), static_cast<int>(ids.size()));
}
constexpr ref output_ref(builder& b, int id, int k) { return {&b, project(b, id, k)}; }
constexpr term grad_or_none(vjp_ctx& c, int k) { return c.has_grad(k) ? term(c.grad(k)) : none(c.b); }
}  // namespace detail

/// Gradient of lstm_gates: operands act [B,5H], c [B,H] (if a.i[0]), dh' [B,H], dc' [B,H] (if a.i[1]);
/// outputs dpre [B,4H], dc [B,H].
struct lstm_gates_grad_op {
  static constexpr const char* name = "lstm_gates_grad";
  static constexpr op_class cls = op_class::kernel;
  static constexpr double flops = 5;  // per element of act (summaries): a rough count of the backward formulas
  static constexpr bool outputs(const attr_t& a, const shape* in, int n, std::vector<shape>& out) {
    const bool has_c = a.i[0], has_dc = a.i[1];
    if (n != 2 + has_c + has_dc || in[0].rank != 2 || in[0].d[1] % kernels::lstm_saved) return false;
    const int B = in[0].d[0], H = in[0].d[1] / kernels::lstm_saved;
    for (int k = 1; k < n; ++k)
      if (!(in[k] == detail::matrix(B, H))) return false;
    out = {detail::matrix(B, 4 * H), detail::matrix(B, H)};
    return true;
  }
  static constexpr shape_result infer(const attr_t& a, const shape* in, int n) {
    return detail::first_output<lstm_gates_grad_op>(a, in, n);
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    const bool has_c = a.a.i[0], has_dc = a.a.i[1];
    const int B = a.in_shape[0].d[0], H = a.in_shape[0].d[1] / kernels::lstm_saved;
    T* out[1] = {a.output(0)};
    detail::unread_to_scratch(out, {4L * B * H});
    int k = 1;
    const T* c = has_c ? a.input(k++) : nullptr;
    const T* dh = a.input(k++);
    const T* dc_next = has_dc ? a.input(k++) : nullptr;
    kernels::lstm_gates_backward<T>({B, H}, a.input(0), c, dh, dc_next, out[0], a.output(1));
  }
  // d/d(act, c, dh', dc') of <G, dpre> + <Gc, dc>, from the kernel's formulas (rnn_kernels.hpp).
  static constexpr void vjp(vjp_ctx& c) {
    using detail::gate, detail::term;
    builder& b = c.b;
    const bool has_c = c.attr().i[0], has_dc = c.attr().i[1];
    const shape one = c.x(1).shape_of();
    const int H = one.d[1];
    const dtype t = c.self().type;
    ref act = c.x(0);
    int k = 1;
    term cc = has_c ? term(c.x(k++)) : detail::none(b);
    const int k_dh = k;
    ref dh = c.x(k++);
    const int k_dc = has_dc ? k : -1;
    term dcn = has_dc ? term(c.x(k)) : detail::none(b);
    ref i = slice(act, 1, 0, H), f = slice(act, 1, H, 2 * H), g = slice(act, 1, 2 * H, 3 * H);
    ref o = slice(act, 1, 3 * H, 4 * H), tc = slice(act, 1, 4 * H, 5 * H);
    term G = detail::grad_or_none(c, 0), Gc = detail::grad_or_none(c, 1);
    term Gi = gate(G, 0, H), Gf = gate(G, 1, H), Gg = gate(G, 2, H), Go = gate(G, 3, H);
    ref si = i * (1.0 - i), sf = f * (1.0 - f), so = o * (1.0 - o), sg = 1.0 - g * g, st = 1.0 - tc * tc;
    ref dct = (term(dh * o * st) + dcn).r;
    term gdct = Gi * g * si + Gf * cc * sf + Gg * i * sg + Gc * f;
    term d_dh = gdct * (o * st) + Go * (tc * so);
    term d_i = Gi * (dct * g * (1.0 - 2.0 * i)) + Gg * (dct * sg);
    term d_f = Gf * (dct * (1.0 - 2.0 * f)) * cc + Gc * dct;
    term d_g = Gi * (dct * si) - 2.0 * (Gg * (dct * i * g));
    term d_o = gdct * (dh * st) + Go * (dh * tc * (1.0 - 2.0 * o));
    term d_tc = -2.0 * (gdct * (dh * o * tc)) + Go * (dh * so);
    if (c.wants[0]) {
      term d_act = detail::gates(b, {d_i, d_f, d_g, d_o, d_tc}, one, t);
      if (d_act.some()) c.set(0, d_act.r);
    }
    if (has_c && c.wants[1]) {
      term d_c = Gf * (dct * sf);
      if (d_c.some()) c.set(1, d_c.r);
    }
    if (c.wants[k_dh] && d_dh.some()) c.set(k_dh, d_dh.r);
    if (k_dc >= 0 && c.wants[k_dc] && gdct.some()) c.set(k_dc, gdct.r);
  }
  static void shape_mismatch(auto...) = delete;
};

/// lstm_gates(pre, c): operands pre [B,4H] and c [B,H] (absent: zero); outputs h', c' [B,H] and act [B,5H].
struct lstm_gates_op {
  static constexpr const char* name = "lstm_gates";
  static constexpr op_class cls = op_class::kernel;
  static constexpr double flops = 12;  // per element of pre (summaries): a sigmoid or tanh each, and the update
  static constexpr bool outputs(const attr_t&, const shape* in, int n, std::vector<shape>& out) {
    if (n < 1 || n > 2 || in[0].rank != 2 || in[0].d[1] % 4) return false;
    const int B = in[0].d[0], H = in[0].d[1] / 4;
    if (n == 2 && !(in[1] == detail::matrix(B, H))) return false;
    out = {detail::matrix(B, H), detail::matrix(B, H), detail::matrix(B, kernels::lstm_saved * H)};
    return true;
  }
  static constexpr shape_result infer(const attr_t& a, const shape* in, int n) {
    return detail::first_output<lstm_gates_op>(a, in, n);
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    const int B = a.in_shape[0].d[0], H = a.in_shape[0].d[1] / 4;
    T* out[3] = {a.output(0), a.output(1), a.output(2)};
    detail::unread_to_scratch(out, {long(B) * H, long(B) * H, long(kernels::lstm_saved) * B * H});
    kernels::lstm_gates_forward<T>({B, H}, a.input(0), a.n_in > 1 ? a.input(1) : nullptr, out[0], out[1], out[2]);
  }
  static constexpr void vjp(vjp_ctx& c) {
    using detail::gate, detail::term;
    builder& b = c.b;
    const bool has_c = c.self().n_in > 1;
    const shape one = c.out(0).shape_of();
    const int H = one.d[1];
    const dtype t = c.self().type;
    ref act = c.out(2);
    term dh = detail::grad_or_none(c, 0), dcn = detail::grad_or_none(c, 1), dpre = detail::none(b);
    if (c.has_grad(2)) {  // grad of grad: act's adjoint, through act's own dependence on pre and c'
      ref Ga = c.grad(2);
      ref i = slice(act, 1, 0, H), f = slice(act, 1, H, 2 * H), g = slice(act, 1, 2 * H, 3 * H);
      ref o = slice(act, 1, 3 * H, 4 * H), tc = slice(act, 1, 4 * H, 5 * H);
      dcn = dcn + term(slice(Ga, 1, 4 * H, 5 * H) * (1.0 - tc * tc));
      dpre = detail::gates(b,
                           {slice(Ga, 1, 0, H) * i * (1.0 - i), slice(Ga, 1, H, 2 * H) * f * (1.0 - f),
                            slice(Ga, 1, 2 * H, 3 * H) * (1.0 - g * g), slice(Ga, 1, 3 * H, 4 * H) * o * (1.0 - o)},
                           one, t);
    }
    if (dh.some() || dcn.some()) {
      if (!dh.some()) dh = ref{&b, b.constant(0.0, one, t)};  // the kernel reads dh'
      const term cc = has_c ? term(c.x(1)) : detail::none(b);
      const int grad = detail::make_over<lstm_gates_grad_op>(b, attr_ints({has_c, dcn.some()}), {act, cc, dh, dcn});
      dpre = dpre + term(detail::output_ref(b, grad, 0));
      if (has_c && c.wants[1]) c.set(1, detail::output_ref(b, grad, 1));
    }
    if (c.wants[0] && dpre.some()) c.set(0, dpre.r);
  }
  static void shape_mismatch(auto...) = delete;
};

/// Gradient of gru_gates: operands act [B,4H], h [B,H] (if a.i[0]), dh' [B,H]; outputs dgx, dgh [B,3H] and
/// dh [B,H], the direct part of h's adjoint.
struct gru_gates_grad_op {
  static constexpr const char* name = "gru_gates_grad";
  static constexpr op_class cls = op_class::kernel;
  static constexpr double flops = 5;  // per element of act (summaries): a rough count of the backward formulas
  static constexpr bool outputs(const attr_t& a, const shape* in, int n, std::vector<shape>& out) {
    const bool has_h = a.i[0];
    if (n != 2 + has_h || in[0].rank != 2 || in[0].d[1] % kernels::gru_saved) return false;
    const int B = in[0].d[0], H = in[0].d[1] / kernels::gru_saved;
    for (int k = 1; k < n; ++k)
      if (!(in[k] == detail::matrix(B, H))) return false;
    out = {detail::matrix(B, 3 * H), detail::matrix(B, 3 * H), detail::matrix(B, H)};
    return true;
  }
  static constexpr shape_result infer(const attr_t& a, const shape* in, int n) {
    return detail::first_output<gru_gates_grad_op>(a, in, n);
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    const bool has_h = a.a.i[0];
    const int B = a.in_shape[0].d[0], H = a.in_shape[0].d[1] / kernels::gru_saved;
    T* out[2] = {a.output(0), a.output(1)};
    detail::unread_to_scratch(out, {3L * B * H, 3L * B * H});
    const T* h = has_h ? a.input(1) : nullptr;
    kernels::gru_gates_backward<T>({B, H}, a.input(0), h, a.input(1 + has_h), out[0], out[1], a.output(2));
  }
  // d/d(act, h, dh') of <Gx, dgx> + <Gh, dgh> + <Gd, dh>, from the kernel's formulas (rnn_kernels.hpp).
  static constexpr void vjp(vjp_ctx& c) {
    using detail::gate, detail::term;
    builder& b = c.b;
    const bool has_h = c.attr().i[0];
    const int k_dh = 1 + has_h;
    ref d = c.x(k_dh);
    const shape one = d.shape_of();
    const int H = one.d[1];
    ref act = c.x(0);
    term hh = has_h ? term(c.x(1)) : detail::none(b);
    ref r = slice(act, 1, 0, H), z = slice(act, 1, H, 2 * H), n = slice(act, 1, 2 * H, 3 * H);
    ref ghn = slice(act, 1, 3 * H, 4 * H);
    term Gx = detail::grad_or_none(c, 0), Gh = detail::grad_or_none(c, 1), Gd = detail::grad_or_none(c, 2);
    ref sr = r * (1.0 - r), sz = z * (1.0 - z), sn = 1.0 - n * n;
    ref dn = d * (1.0 - z) * sn;
    term h_minus_n = hh - term(n);
    term gdr = gate(Gx, 0, H) + gate(Gh, 0, H), gdz = gate(Gx, 1, H) + gate(Gh, 1, H);
    term Ghn = gate(Gh, 2, H);
    term gdn = gate(Gx, 2, H) + Ghn * r + gdr * (ghn * sr);
    term d_r = Ghn * dn + gdr * (dn * ghn * (1.0 - 2.0 * r));
    term d_ghn = gdr * (dn * sr);
    term d_d = gdn * ((1.0 - z) * sn) + gdz * h_minus_n * sz + Gd * z;
    term d_z = gdz * h_minus_n * (d * (1.0 - 2.0 * z)) + Gd * d - gdn * (d * sn);
    term d_n = -2.0 * (gdn * (d * (1.0 - z) * n)) - gdz * (d * sz);
    if (c.wants[0]) {
      term d_act = detail::gates(b, {d_r, d_z, d_n, d_ghn}, one, c.self().type);
      if (d_act.some()) c.set(0, d_act.r);
    }
    if (has_h && c.wants[1]) {
      term d_h = gdz * (d * sz);
      if (d_h.some()) c.set(1, d_h.r);
    }
    if (c.wants[k_dh] && d_d.some()) c.set(k_dh, d_d.r);
  }
  static void shape_mismatch(auto...) = delete;
};

/// gru_gates(gx, gh, h): operands gx, gh [B,3H] and h [B,H] (absent: zero); outputs h' [B,H] and act [B,4H].
struct gru_gates_op {
  static constexpr const char* name = "gru_gates";
  static constexpr op_class cls = op_class::kernel;
  static constexpr double flops = 12;  // per element of gx (summaries): a sigmoid or tanh each, and the update
  static constexpr bool outputs(const attr_t&, const shape* in, int n, std::vector<shape>& out) {
    if (n < 2 || n > 3 || in[0].rank != 2 || in[0].d[1] % 3 || !(in[1] == in[0])) return false;
    const int B = in[0].d[0], H = in[0].d[1] / 3;
    if (n == 3 && !(in[2] == detail::matrix(B, H))) return false;
    out = {detail::matrix(B, H), detail::matrix(B, kernels::gru_saved * H)};
    return true;
  }
  static constexpr shape_result infer(const attr_t& a, const shape* in, int n) {
    return detail::first_output<gru_gates_op>(a, in, n);
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    const int B = a.in_shape[0].d[0], H = a.in_shape[0].d[1] / 3;
    T* out[2] = {a.output(0), a.output(1)};
    detail::unread_to_scratch(out, {long(B) * H, long(kernels::gru_saved) * B * H});
    kernels::gru_gates_forward<T>({B, H}, a.input(0), a.input(1), a.n_in > 2 ? a.input(2) : nullptr, out[0], out[1]);
  }
  static constexpr void vjp(vjp_ctx& c) {
    using detail::gate, detail::term;
    builder& b = c.b;
    const bool has_h = c.self().n_in > 2;
    const shape one = c.out(0).shape_of();
    const int H = one.d[1];
    const dtype t = c.self().type;
    ref act = c.out(1);
    term dgx = detail::none(b), dgh = detail::none(b);
    if (c.has_grad(1)) {  // grad of grad: act's adjoint, through act's own dependence on gx and gh
      ref Ga = c.grad(1);
      ref r = slice(act, 1, 0, H), z = slice(act, 1, H, 2 * H), n = slice(act, 1, 2 * H, 3 * H);
      ref ghn = slice(act, 1, 3 * H, 4 * H);
      ref a_n = slice(Ga, 1, 2 * H, 3 * H) * (1.0 - n * n);
      ref a_r = (slice(Ga, 1, 0, H) + a_n * ghn) * r * (1.0 - r);
      ref a_z = slice(Ga, 1, H, 2 * H) * z * (1.0 - z);
      dgx = detail::gates(b, {a_r, a_z, a_n}, one, t);
      dgh = detail::gates(b, {a_r, a_z, a_n * r + slice(Ga, 1, 3 * H, 4 * H)}, one, t);
    }
    if (c.has_grad(0)) {
      const term hh = has_h ? term(c.x(2)) : detail::none(b);
      const int grad = detail::make_over<gru_gates_grad_op>(b, attr_ints({has_h}), {act, hh, c.grad(0)});
      dgx = dgx + term(detail::output_ref(b, grad, 0));
      dgh = dgh + term(detail::output_ref(b, grad, 1));
      if (has_h && c.wants[2]) c.set(2, detail::output_ref(b, grad, 2));
    }
    if (c.wants[0] && dgx.some()) c.set(0, dgx.r);
    if (c.wants[1] && dgh.some()) c.set(1, dgh.r);
  }
  static void shape_mismatch(auto...) = delete;
};

/// h' and c' of an LSTM step: what cg::lstm_gates and nn::lstm_cell return.
template <class Hs, class Cs>
struct lstm_state {
  Hs h;  ///< h' [B, H]
  Cs c;  ///< c' [B, H]
};

namespace detail {
template <class A, class... B>
constexpr bool same_value_types = (std::is_same_v<value_of<A>, value_of<B>> && ...);
}  // namespace detail

/// lstm_gates(pre, c): an LSTM step after its gemms (torch.nn.LSTMCell), in one fused kernel.
/// pre [B, 4H] = x W_ih^T + b_ih + h W_hh^T + b_hh with gates i, f, g, o; c [B, H]; returns {h', c'}.
template <expression P, expression C>
constexpr auto lstm_gates(P, C) {
  static_assert(detail::same_value_types<P, C>, "ctgraph: lstm_gates(pre, c): pre and c need one element type");
  constexpr auto t = make_node<lstm_gates_op>(P{}, C{});
  return lstm_state<decltype(output<0>(t)), decltype(output<1>(t))>{output<0>(t), output<1>(t)};
}
/// lstm_gates(pre): the step from a zero cell state.
template <expression P>
constexpr auto lstm_gates(P) {
  constexpr auto t = make_node<lstm_gates_op>(P{});
  return lstm_state<decltype(output<0>(t)), decltype(output<1>(t))>{output<0>(t), output<1>(t)};
}
/// gru_gates(gx, gh, h): a GRU step after its gemms (torch.nn.GRUCell), in one fused kernel.
/// gx = x W_ih^T + b_ih, gh = h W_hh^T + b_hh [B, 3H] with gates r, z, n; h [B, H]; returns h' [B, H].
template <expression GX, expression GH, expression Hs>
constexpr auto gru_gates(GX, GH, Hs) {
  static_assert(detail::same_value_types<GX, GH, Hs>, "ctgraph: gru_gates(gx, gh, h): one element type for all");
  return output<0>(make_node<gru_gates_op>(GX{}, GH{}, Hs{}));
}
/// gru_gates(gx, gh): the step from a zero state (gh is then b_hh, broadcast).
template <expression GX, expression GH>
constexpr auto gru_gates(GX, GH) {
  static_assert(detail::same_value_types<GX, GH>, "ctgraph: gru_gates(gx, gh): gx and gh need one element type");
  return output<0>(make_node<gru_gates_op>(GX{}, GH{}));
}

}  // namespace ctgraph
