// ops/scan.hpp: cg::scan, a loop over a compile-time cell (jax.lax.scan's contract).
//   scan(cell, init, xs...): cell(carry, x_t...) -> {next carry, outputs}, run for t = 0..T-1
//   (T - 1..0 when reversed); the result holds the final carry and the outputs stacked
//   along a new leading time axis. Carry and outputs are one expression or a tuple of them.
//
// The cell is called once, at compile time, on placeholders of one step's shapes; its graph
// becomes the scan node's body (graph/node.hpp, scan_layout). What the cell reads that
// depends on neither the carry nor x_t (params, an encoder's outputs and their projections)
// is a free value: computed once, outside the loop, and read by every step.
//
// Backward is backpropagation through time: the VJP is a second scan, in the other
// direction, over the cell's adjoint (built once, by a reverse sweep over the body seeded
// with placeholders for the adjoints of the next carry and of the step's outputs). Its
// carries are the carry's adjoint and, for each free value, the sum of its adjoints so far.
// What the cell's adjoint reads of the forward step comes, by default, from values the
// forward scan keeps for every step (its saveable outputs, allocated only when read); with
// scan_options::remat, only the carries are kept and each step's cell runs again in the
// backward loop.
#pragma once
#include <tuple>

#include "../graph/scan.hpp"
#include "elementwise.hpp"
#include "matmul.hpp"
#include "reduce.hpp"
#include "shape_ops.hpp"

namespace ctgraph {

struct scan_op;
constexpr int make_scan_node(builder& b, const scan_spec& s);

/// The scan node. Its shape rule is never asked for more than a rank-0 placeholder shape:
/// its outputs are its projections (builder::outputs_of).
struct scan_op {
  static constexpr const char* name = "scan";
  static constexpr op_class cls = op_class::scan;
  static constexpr shape_result infer(const attr_t&, const shape*, int) { return {true, shape{}}; }
  // From flatten (the expression's operands are inits then sequences; its body the
  // placeholders, next carries and outputs): finds the free values, then the node.
  static constexpr int build(builder& b, const attr_t& a, const int* in, int, const int* body, int) {
    scan_spec s;
    const int C = a.i[0], S = a.i[1], Y = a.i[2];
    s.flags = a.i[3], s.T = a.i[4];
    for (int k = 0; k < C; ++k) s.inits.push_back(in[k]), s.carry_bound.push_back(body[k]);
    for (int k = 0; k < S; ++k) s.seqs.push_back(in[C + k]), s.step_bound.push_back(body[C + k]);
    for (int k = 0; k < C; ++k) s.next.push_back(body[C + S + k]);
    for (int k = 0; k < Y; ++k) s.outs.push_back(body[2 * C + S + k]);
    return make_scan_node(b, s);
  }
  static constexpr void vjp(vjp_ctx& c);
};

constexpr int make_scan_node(builder& b, const scan_spec& s) { return make_scan(b, s, &op_info_of<scan_op>); }

// Backpropagation through time (see the file's comment).
constexpr void scan_op::vjp(vjp_ctx& c) {
  builder& b = c.b;
  const int n = c.id;
  const node fwd = b[n];
  const scan_layout l = scan_layout_of(fwd);
  for (int k = 0; k < l.D; ++k)
    if (c.gs[l.C + l.Y + k] >= 0) throw "ctgraph: grad of grad through cg::scan is not supported";
  const std::uint64_t tag = hash_mix(fwd.hash, 0x5ca7bac1ull);
  std::vector<int> carry_bound, step_bound, frees;
  for (int k = 0; k < l.C; ++k) carry_bound.push_back(b.body(n, l.carry_bound(k)));
  for (int k = 0; k < l.S; ++k) step_bound.push_back(b.body(n, l.step_bound(k)));
  for (int k = 0; k < l.F; ++k) frees.push_back(b.in(n, l.C + l.S + k));
  // The cell's adjoint, seeded by placeholders: the next carry's adjoint (a carry of the
  // backward loop) and each read output's adjoint at this step (slices of its adjoint).
  scan_spec bw;
  bw.T = l.T;
  bw.flags = (l.reverse ? 0 : 1) | (l.remat ? 2 : 0);
  std::vector<int> ys, seeds;
  for (int k = 0; k < l.C; ++k) {
    const node ck = b[carry_bound[k]];
    const int g = placeholder(b, 2, k, tag, ck.out, ck.type);
    bw.carry_bound.push_back(g);
    bw.inits.push_back(c.gs[k] >= 0 ? c.gs[k] : b.constant(0.0, ck.out, ck.type));
    ys.push_back(b.body(n, l.next_carry(k)));
    seeds.push_back(g);
  }
  for (int k = 0; k < l.Y; ++k) {
    if (c.gs[l.C + k] < 0) continue;
    const node yk = b[b.body(n, l.output_root(k))];
    const int g = placeholder(b, 3, k, tag, yk.out, yk.type);
    bw.step_bound.push_back(g);
    bw.seqs.push_back(c.gs[l.C + k]);
    ys.push_back(b.body(n, l.output_root(k)));
    seeds.push_back(g);
  }
  std::vector<int> targets = carry_bound;
  targets.insert(targets.end(), step_bound.begin(), step_bound.end());
  targets.insert(targets.end(), frees.begin(), frees.end());
  const std::vector<char> cut(targets.size(), 1);
  const std::vector<int> adj = reverse_sweep(b, ys, seeds, targets, &op_info_of<add_op>, &cut);
  // Next carries: the carry's adjoint, then a running sum for each free value wanted. A term
  // of that sum that is a product over the rows of two per-step values (dW_hh = sum_t
  // dpre_t^T h_{t-1}), or a sum over a step's rows (db_hh), is left out of the loop: its
  // per-step values become outputs of the loop, stacked, and the sum over all steps is one
  // gemm (or one reduction) over their [T * B] rows after it, as cuDNN does.
  for (int k = 0; k < l.C; ++k) bw.next.push_back(adj[k]);
  std::vector<char> per_step(b.size(), 0);  // depends on a placeholder: a value of one step
  for (int m = 0; m < b.size(); ++m) {
    per_step[m] = b[m].op->cls == op_class::placeholder;
    for (int j = 0; j < b[m].n_in && !per_step[m]; ++j) per_step[m] = per_step[b.in(m, j)];
  }
  // Per-step value id over all steps, [T, ...]: what the forward scan keeps of it, or its
  // sequence, or else (encoded -2 - j) output j of the backward loop, added here.
  std::vector<int> kept_at(b.size(), -1);
  for (int k = 0; k < (l.remat ? l.C : l.D); ++k) kept_at[b.body(n, l.saveable(k))] = project(b, n, l.C + l.Y + k);
  for (int k = 0; k < l.S; ++k) kept_at[b.body(n, l.step_bound(k))] = b.in(n, l.C + k);
  for (std::size_t k = 0; k < bw.step_bound.size(); ++k) kept_at[bw.step_bound[k]] = bw.seqs[k];  // outputs' adjoints
  auto stacked_of = [&](int id) {
    if (id < static_cast<int>(kept_at.size()) && kept_at[id] >= 0) return kept_at[id];
    for (std::size_t j = 0; j < bw.outs.size(); ++j)
      if (bw.outs[j] == id) return -2 - static_cast<int>(j);
    bw.outs.push_back(id);
    return -1 - static_cast<int>(bw.outs.size());
  };
  struct deferred {
    int free, u, v;  // free value k; u and v over all steps (stacked_of; v == -1: a sum of u's rows)
  };
  std::vector<deferred> after;
  std::vector<int> acc_of(l.F, -1);
  for (int k = 0; k < l.F; ++k) {
    if (!c.wants[l.C + l.S + k]) continue;
    const node fk = b[frees[k]];
    std::vector<int> terms, rest, stack{adj[l.C + l.S + k]};
    while (!stack.empty()) {  // the terms of the adjoint's sum
      const int t = stack.back();
      stack.pop_back();
      const node& nt = b[t];
      if (nt.op == &op_info_of<add_op> && b[b.in(t, 0)].out == nt.out && b[b.in(t, 1)].out == nt.out)
        stack.push_back(b.in(t, 0)), stack.push_back(b.in(t, 1));
      else
        terms.push_back(t);
    }
    for (int t : terms) {
      const node nt = b[t];
      const int x = nt.n_in ? b.in(t, 0) : -1, y = nt.n_in > 1 ? b.in(t, 1) : -1;
      const bool rows2 = x >= 0 && per_step[x] && b[x].out.rank == 2;
      if (nt.op == &op_info_of<matmul_op> && nt.a.i[0] == 1 && nt.a.i[1] == 0 && rows2 && per_step[y] &&
          b[y].out.rank == 2) {
        after.push_back({k, stacked_of(x), stacked_of(y)});
      } else if (nt.op == &op_info_of<sum_op> && rows2 && nt.out.rank == 1 && sum_to(ref{&b, x}, nt.out).id == t) {
        after.push_back({k, stacked_of(x), -1});
      } else {
        rest.push_back(t);
      }
    }
    if (rest.empty()) continue;
    int sum = rest[0];
    for (std::size_t j = 1; j < rest.size(); ++j) sum = b.make(&op_info_of<add_op>, {}, {sum, rest[j]});
    const int acc = placeholder(b, 4, k, tag, fk.out, fk.type);
    acc_of[k] = static_cast<int>(bw.carry_bound.size());
    bw.carry_bound.push_back(acc);
    bw.inits.push_back(b.constant(0.0, fk.out, fk.type));
    bw.next.push_back(b.make(&op_info_of<add_op>, {}, {acc, sum}));
  }
  // Outputs: x_t's adjoint, for each sequence wanted.
  std::vector<int> out_of(l.S, -1);
  for (int k = 0; k < l.S; ++k) {
    if (!c.wants[l.C + k]) continue;
    out_of[k] = static_cast<int>(bw.outs.size());
    bw.outs.push_back(adj[l.C + k]);
  }
  // What the adjoint reads of the forward step: slices of kept values, or of the sequences.
  bind_forward_values(b, n, bw);
  const int bid = make_scan_node(b, bw);
  const int bc = static_cast<int>(bw.carry_bound.size());
  for (int k = 0; k < l.C; ++k)
    if (c.wants[k]) c.din[k] = project(b, bid, k);
  for (int k = 0; k < l.S; ++k)
    if (out_of[k] >= 0) c.din[l.C + k] = project(b, bid, bc + out_of[k]);
  for (int k = 0; k < l.F; ++k)
    if (acc_of[k] >= 0) c.din[l.C + l.S + k] = project(b, bid, acc_of[k]);
  auto rows = [&](int at) {  // a value over all steps (stacked_of), [T, B, M], as [T * B, M]
    const ref o{&b, at >= 0 ? at : project(b, bid, bc + (-2 - at))};
    shape r;
    r.rank = 2;
    r.d[0] = o.shape_of().d[0] * o.shape_of().d[1], r.d[1] = o.shape_of().d[2];
    return reshape(o, r);
  };
  for (const deferred& d : after) {
    const shape fs = b[frees[d.free]].out;
    const ref g = d.v != -1 ? matmul(rows(d.u), rows(d.v), true, false) : sum_to(rows(d.u), fs);
    int& din = c.din[l.C + l.S + d.free];
    din = din < 0 ? g.id : b.make(&op_info_of<add_op>, {}, {din, g.id});
  }
}

/// Options of cg::scan: the direction, and whether backpropagation through time keeps every
/// step's values (the default: more memory, no recomputation) or only the carries,
/// recomputing each step's cell in the backward loop (as jax.checkpoint on a scan's cell).
struct scan_options {
  bool reverse = false;
  bool remat = false;
};

namespace detail {
template <class T>
struct is_tuple : std::false_type {};
template <class... E>
struct is_tuple<std::tuple<E...>> : std::true_type {};

// One expression or a tuple of them, as a tuple.
template <class E>
constexpr auto as_tuple(E e) {
  if constexpr (is_tuple<E>::value)
    return e;
  else
    return std::tuple<E>{e};
}
template <class Tuple>
inline constexpr int tuple_size_v = static_cast<int>(std::tuple_size_v<Tuple>);

// A placeholder as an expression type.
template <dtype T, class Attr>
struct placeholder_expr {
  using value_type = value_type_t<T>;
  static constexpr node_desc desc =
      finish({&op_info_of<placeholder_op>, T, Attr::value.s, Attr::value, 0, nullptr, nullptr, 0});
};
template <int Role, int K, std::uint64_t Tag, shape S, dtype T>
constexpr auto placeholder_of() {
  constexpr attr_t a = [] {
    attr_t r;
    r.i[0] = Role, r.i[1] = K, r.s = S;
    r.vbits = static_cast<std::int64_t>(Tag);
    return r;
  }();
  return placeholder_expr<T, attr_of<a>>{};
}
template <shape S>
constexpr shape step_shape() {  // a sequence's shape without its time axis
  shape r;
  r.rank = S.rank - 1;
  for (int k = 1; k < S.rank; ++k) r.d[k - 1] = S.d[k];
  return r;
}

// The scan node as an expression: operands inits then sequences; body the placeholders,
// next carries and outputs.
template <class Attr, int NIn, const node_desc*... All>
struct scan_expr {
  static constexpr const node_desc* all[] = {All...};
  static constexpr dtype type = all[0]->type;
  using value_type = value_type_t<type>;
  static constexpr node_desc desc = finish({&op_info_of<scan_op>, type, shape{}, Attr::value, NIn, all, nullptr, 0,
                                            all + NIn, static_cast<int>(sizeof...(All)) - NIn});
};
template <std::size_t... I, class Tuple>
constexpr auto descs_of(std::index_sequence<I...>, Tuple) {
  return std::array<const node_desc*, sizeof...(I)>{&std::tuple_element_t<I, Tuple>::desc...};
}
template <class Tuple>
constexpr auto descs_of(Tuple t) {
  return descs_of(std::make_index_sequence<std::tuple_size_v<Tuple>>{}, t);
}
constexpr std::uint64_t tag_of(std::initializer_list<const node_desc*> ds) {
  std::uint64_t h = 0x5ca7;
  for (const node_desc* d : ds) h = hash_mix(h, d->hash);
  return h;
}
// Placeholders for a tuple of expressions (Role 0: carries, shapes as given; 1: x_t, a step of each).
template <int Role, std::uint64_t Tag, class Tuple, std::size_t... I>
constexpr auto placeholders(std::index_sequence<I...>) {
  return std::tuple{
      placeholder_of < Role, static_cast<int>(I), Tag,
      Role == 0 ? std::tuple_element_t<I, Tuple>::desc.out : step_shape<std::tuple_element_t<I, Tuple>::desc.out>(),
      std::tuple_element_t<I, Tuple>::desc.type > ()...};
}
/// A cell whose next carry k has another shape than carry k (the first error names both).
void scan_next_carry_shape_differs_from_carry(auto carry_index, auto carry_shape, auto next_carry_shape) = delete;
template <int K>
struct carry_index {};
template <class Carry, class Next, std::size_t... I>
constexpr bool check_next_carries(std::index_sequence<I...>) {
  constexpr bool same[] = {(std::tuple_element_t<I, Carry>::desc.out == std::tuple_element_t<I, Next>::desc.out &&
                            std::tuple_element_t<I, Carry>::desc.type == std::tuple_element_t<I, Next>::desc.type)...};
  (
      [&] {
        if constexpr (!same[I])
          scan_next_carry_shape_differs_from_carry(carry_index<I>{},
                                                   dims_of<std::tuple_element_t<I, Carry>::desc.out>(),
                                                   dims_of<std::tuple_element_t<I, Next>::desc.out>());
      }(),
      ...);
  return (same[I] && ...);
}
template <const node_desc* D, int K, shape S>
constexpr auto scan_projection() {
  constexpr attr_t a = [] {
    attr_t r;
    r.i[0] = K, r.s = S;
    return r;
  }();
  return make_node_of<project_op, a, D>();
}
}  // namespace detail

/// What cg::scan returns: the final carry and the outputs stacked along a new leading time
/// axis, each one expression or a tuple of them, as the cell returned them.
template <class Carry, class Outputs>
struct scan_result {
  Carry carry;
  Outputs outputs;
};

/// scan(cell, init, xs...): the loop of `cell` over the leading axis of the sequences xs,
/// jax.lax.scan's contract (see ops/scan.hpp). cell(carry, x_t...) returns
/// std::tuple{next_carry, outputs}; carry, next_carry and outputs are one expression or a
/// std::tuple of them (outputs may be std::tuple{} for none). The cell runs once, here, at
/// compile time; the loop runs at run time, and compile time does not depend on T.
/// `scan<cg::scan_options{.reverse = true}>(...)` runs t = T-1 down to 0 (outputs stay indexed
/// by t); `.remat = true` keeps only the carries for the backward and recomputes the cell.
template <scan_options O = scan_options{}, class Cell, class Init, expression X, expression... Xs>
constexpr auto scan(Cell cell, Init init, X x, Xs... xs) {
  using inits = decltype(detail::as_tuple(init));
  using seqs = std::tuple<X, Xs...>;
  constexpr int C = detail::tuple_size_v<inits>, S = 1 + sizeof...(Xs);
  constexpr int T = X::desc.out.rank >= 1 ? X::desc.out.d[0] : 0;
  static_assert(X::desc.out.rank >= 1 && ((Xs::desc.out.rank >= 1 && Xs::desc.out.d[0] == T) && ...),
                "ctgraph: cg::scan(cell, init, xs...): every sequence needs the same length T as its first axis");
  constexpr auto in_descs = detail::descs_of(inits{});
  constexpr std::uint64_t tag = [&] {
    std::uint64_t h = detail::tag_of({&X::desc, &Xs::desc...});
    for (const node_desc* d : in_descs) h = hash_mix(h, d->hash);
    return h;
  }();
  constexpr auto carry_ph = detail::placeholders<0, tag, inits>(std::make_index_sequence<C>{});
  constexpr auto x_ph = detail::placeholders<1, tag, seqs>(std::make_index_sequence<S>{});
  constexpr auto r = [&] {
    if constexpr (detail::is_tuple<Init>::value)
      return std::apply([&](auto... xp) { return cell(carry_ph, xp...); }, x_ph);
    else
      return std::apply([&](auto... xp) { return cell(std::get<0>(carry_ph), xp...); }, x_ph);
  }();
  (void)init, (void)x, ((void)xs, ...);
  using next_t = decltype(detail::as_tuple(std::get<0>(r)));
  using outs_t = decltype(detail::as_tuple(std::get<1>(r)));
  static_assert(detail::tuple_size_v<next_t> == C,
                "ctgraph: cg::scan: the cell returns another number of next carries than its carry holds");
  static_assert(detail::check_next_carries<inits, next_t>(std::make_index_sequence<C>{}));
  constexpr int Y = detail::tuple_size_v<outs_t>;
  constexpr attr_t a = attr_ints({C, S, Y, (O.reverse ? 1 : 0) | (O.remat ? 2 : 0), T});
  using node_t = decltype([]<std::size_t... I>(std::index_sequence<I...>) {
    constexpr auto all = [] {
      std::array<const node_desc*, 3 * C + 2 * S + Y> v{};
      auto put = [&v](int at, auto descs) {
        for (std::size_t k = 0; k < descs.size(); ++k) v[at + k] = descs[k];
      };
      put(0, detail::descs_of(inits{}));
      put(C, detail::descs_of(seqs{}));
      put(C + S, detail::descs_of(decltype(carry_ph){}));
      put(2 * C + S, detail::descs_of(decltype(x_ph){}));
      put(2 * C + 2 * S, detail::descs_of(next_t{}));
      put(3 * C + 2 * S, detail::descs_of(outs_t{}));
      return v;
    }();
    return detail::scan_expr<attr_of<a>, C + S, all[I]...>{};
  }(std::make_index_sequence<3 * C + 2 * S + Y>{}));
  constexpr const node_desc* d = &node_t::desc;
  auto carry = [&]<std::size_t... I>(std::index_sequence<I...>) {
    return std::tuple{detail::scan_projection<d, static_cast<int>(I), std::tuple_element_t<I, inits>::desc.out>()...};
  }
  (std::make_index_sequence<C>{});
  auto outs = [&]<std::size_t... I>(std::index_sequence<I...>) {
    return std::tuple{detail::scan_projection<d, C + static_cast<int>(I),
                                              stacked(std::tuple_element_t<I, outs_t>::desc.out, T)>()...};
  }
  (std::make_index_sequence<Y>{});
  auto unwrap = []<class Tuple, class Was>(Tuple t, Was) {
    if constexpr (detail::is_tuple<Was>::value)
      return t;
    else
      return std::get<0>(t);
  };
  return scan_result{unwrap(carry, init), unwrap(outs, std::get<1>(r))};
}

/// sequence_mask<T>(lengths): [T, B, 1], 1 where t < lengths[b], else 0: what a scan over
/// padded sequences multiplies by, so that padded steps change neither the outputs at real
/// positions nor the carry. lengths: int [B] with values in [0, T]. Its second operand, a
/// scalar constant, gives the element type.
struct sequence_mask_op {
  static constexpr const char* name = "sequence_mask";
  static constexpr op_class cls = op_class::kernel;
  static constexpr bool no_gradient = true;
  static constexpr double flops = 0;
  static constexpr shape_result infer(const attr_t& a, const shape* in, int) {
    shape s;
    s.rank = 3, s.d[0] = a.i[0], s.d[1] = in[0].d[0], s.d[2] = 1;
    return {in[0].rank == 1 && a.i[0] > 0, s};
  }
  static constexpr int int_bound(const attr_t& a, const shape*, int k) { return k == 0 ? a.i[0] + 1 : 0; }
  template <class T>
  static void forward(const run_args<T>& a) {
    const int steps = a.a.i[0], batch = a.in_shape[0].d[0];
    const int* len = a.template input<int>(0);
    for (int t = 0; t < steps; ++t)
      for (int b = 0; b < batch; ++b) a.out[t * batch + b] = t < len[b] ? T(1) : T(0);
  }
  static void shape_mismatch(auto...) = delete;
};
template <int Steps, class T = float, expression L>
constexpr auto sequence_mask(L lengths) {
  static_assert(std::is_same_v<value_of<L>, int> && shape_of<L>.rank == 1,
                "ctgraph: sequence_mask<T>(lengths): lengths is an int [B] (each sequence's length)");
  return make_node<sequence_mask_op, attr_ints({Steps})>(lengths, const_expr<dtype_of<T>(), 0>{});
}

}  // namespace ctgraph
