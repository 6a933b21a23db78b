// ctgraph/export.hpp: a compiled graph, shown. to_dot() writes the forward and backward
// graph as Graphviz text, fused loops as dashed clusters; summary() tabulates params,
// memory, steps and FLOPs per run.
//
// Cost: compile() keeps no per-node data. The export's node table is one more constant
// evaluation of the planner (graph_export_of<Outs...>), instantiated only by to_dot() and
// export_graph(); summary() reads the step's own plan.
#pragma once
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "compile.hpp"
#include "format.hpp"

namespace ctgraph {

/// One node of an exported graph: the planner's node plus what the planner decided about it.
struct export_node {
  const char* op = "";              ///< op name: "matmul", "tanh", "param", "input", "constant", ...
  op_class cls = op_class::kernel;  ///< leaf (input, param), constant, elementwise or kernel
  dtype type = dtype::f32;          ///< element type
  shape s;                          ///< output shape
  attr_t a;                         ///< attributes (a constant's value, matmul's transpose flags, ...)
  int n_in = 0;                     ///< number of operands
  int first_in = 0;                 ///< its operands: graph_export::operands[first_in, first_in + n_in)
  const char* name = nullptr;       ///< leaves: the input's or param's name
  bool backward = false;            ///< created by the reverse sweep of a grad(): a gradient node
  int step = -1;                    ///< index of the step computing it, in run order; -1: leaf or inlined constant
  int fused = -1;                   ///< index of the elementwise loop it runs in; -1: kernel step, leaf or constant
  int output = -1;                  ///< first position among compile()'s outputs; -1: not an output
  int cell = -1;                    ///< a node of a scan's cell: the index (in nodes) of that scan; -1: not in a cell
  bool root = false;                ///< in a cell: a next carry or an output of each step
  long block = 0;  ///< a scan: the bytes of its block of the arena (its carries' buffers and its cell's arena)
};

/// A compiled graph as a flat table, for exports: the nodes a step computes (after pruning
/// and common-subexpression merging), in topological order, operands first.
/// @tparam N capacity: the planner's node count before pruning
/// @tparam M capacity of the operand lists: the planner's operand count before pruning
template <std::size_t N, std::size_t M>
struct graph_export {
  std::array<export_node, N + 1> nodes{};  ///< the first `count` are in use
  std::array<int, M + 1> operands{};       ///< every node's operands (indices into nodes), end to end
  int count = 0;                           ///< nodes in use
  /// Operand k of node i, an index into nodes.
  constexpr int in(int i, int k) const { return operands[nodes[i].first_in + k]; }
  int steps = 0;    ///< steps of a run (kernel calls and elementwise loops)
  int loops = 0;    ///< elementwise loops among the steps
  int outputs = 0;  ///< outputs of the step (each grad counts once)
};

namespace detail {
// Nodes and operands of compile(Outs{}...)'s graph once gradients are resolved, before
// planning: the export table's capacity, without instantiating (and planning) that program.
template <class... Outs>
constexpr std::array<std::size_t, 2> resolved_size() {
  builder b0;
  desc_map seen;
  std::vector<int> outs0;
  (flatten_output<Outs>(b0, seen, outs0), ...);
  std::vector<int> remap;
  const builder b = resolve_grads(b0, remap, &op_info_of<add_op>, nullptr, &rewrite_node);
  return {static_cast<std::size_t>(b.size()), b.operands.size()};
}

template <std::array<std::size_t, 2> Z, class... Outs>
constexpr graph_export<Z[0], Z[1]> make_graph_export() {
  builder b0;
  desc_map seen;
  std::vector<int> outs0;
  (flatten_output<Outs>(b0, seen, outs0), ...);
  // What plan_graph() does, keeping the resolved graph, the nodes the reverse sweeps
  // created and the planner's trace.
  std::vector<int> remap, outs;
  std::vector<int> swept;  // [first, last) node ids of each reverse sweep
  const builder b = resolve_grads(b0, remap, &op_info_of<add_op>, &swept, &rewrite_node);
  for (int o : outs0) outs.push_back(remap[o]);
  plan_trace trace;
  const dyn_plan plan = make_plan(b, outs, &trace);
  graph_export<Z[0], Z[1]> g;
  std::vector<int> id(b.size(), -1);
  int used = 0;
  for (int n = 0; n < b.size(); ++n) {
    if (!trace.needed[n]) continue;
    const node& nd = b[n];
    id[n] = g.count;
    export_node& e = g.nodes[g.count++];
    e.op = nd.op->name;
    e.cls = nd.op->cls;
    e.type = nd.type;
    e.s = nd.out;
    e.a = nd.a;
    e.n_in = nd.n_in;
    e.first_in = used;
    for (int k = 0; k < nd.n_in; ++k) g.operands[used++] = id[b.in(n, k)];
    e.name = nd.name;
    for (std::size_t k = 0; k + 1 < swept.size(); k += 2) e.backward |= swept[k] <= n && n < swept[k + 1];
    e.step = trace.step[n];
    if (e.step >= 0 && plan.order[e.step].fused) e.fused = plan.order[e.step].index;
  }
  // Each scan's cell: what its roots reach down to its bound values (placeholders, shown in
  // the cell) and to its operands (the free values, outside).
  for (int n = 0; n < b.size(); ++n) {
    if (id[n] < 0 || b[n].op->cls != op_class::scan) continue;
    const scan_layout l = scan_layout_of(b[n]);
    const int scan = id[n];
    if (const int st = g.nodes[scan].step; st >= 0 && !plan.order[st].fused)
      g.nodes[scan].block = plan.scans[plan.kernels[plan.order[st].index].a.i[0]].block_bytes;
    std::vector<int> stack;
    for (int k = 0; k < l.C + l.Y; ++k) stack.push_back(b.body(n, l.next_carry(0) + k));
    std::vector<char> outside(b.size(), 0);
    for (int k = 0; k < b[n].n_in; ++k) outside[b.in(n, k)] = 1;
    std::vector<int> cell;
    while (!stack.empty()) {
      const int m = stack.back();
      stack.pop_back();
      if (id[m] != -1 || outside[m]) continue;
      id[m] = -2;  // seen; numbered below, operands first
      cell.push_back(m);
      if (b[m].op->cls == op_class::placeholder) continue;
      for (int k = 0; k < b[m].n_in; ++k) stack.push_back(b.in(m, k));
    }
    std::sort(cell.begin(), cell.end());
    std::vector<char> root(b.size(), 0);
    for (int k = 0; k < l.C + l.Y; ++k) root[b.body(n, l.next_carry(0) + k)] = 1;
    for (int m : cell) {
      const node& nd = b[m];
      id[m] = g.count;
      export_node& e = g.nodes[g.count++];
      e.op = nd.op->name;
      e.cls = nd.op->cls;
      e.type = nd.type;
      e.s = nd.out;
      e.a = nd.a;
      e.n_in = nd.n_in;
      e.first_in = used;
      for (int k = 0; k < nd.n_in; ++k) g.operands[used++] = id[b.in(m, k)];
      e.cell = scan;
      e.root = root[m];
      for (std::size_t k = 0; k + 1 < swept.size(); k += 2) e.backward |= swept[k] <= m && m < swept[k + 1];
    }
  }
  for (std::size_t k = 0; k < outs.size(); ++k) {
    export_node& e = g.nodes[id[outs[k]]];
    if (e.output < 0) e.output = static_cast<int>(k);
  }
  g.steps = static_cast<int>(plan.order.size());
  g.loops = static_cast<int>(plan.fused.size());
  g.outputs = static_cast<int>(outs.size());
  return g;
}
}  // namespace detail

/// The node table of compile(Outs{}...)'s graph, forward and backward. Computed at compile
/// time, and only where named (to_dot(), export_graph()), never by compile() itself.
template <class... Outs>
inline constexpr auto graph_export_of = detail::make_graph_export<detail::resolved_size<Outs...>(), Outs...>();

/// The node table of the graph compile(e...) would plan: the same arguments (expressions
/// and what grad(y) and grad(y, x1, x2, ...) return).
template <class... O>
constexpr const auto& export_graph(O...) {
  static_assert((detail::is_output<O> && ...),
                "ctgraph: export_graph(outputs...) takes what compile() takes: expressions and results of grad()");
  return graph_export_of<O...>;
}

namespace detail {
// fmt::format with a format string checked at run time: g++ spends ~50 ms on each
// compile-time check, and every string here is exercised by the tests.
template <class... A>
std::string format_rt(std::string_view f, const A&... a) {
  return fmt::vformat(f, fmt::make_format_args(a...));
}
// The helpers below take their arguments as template parameters, so that their fmt calls
// are dependent: a translation unit that includes this header but calls none of them
// instantiates no fmt code (g++ checks a non-dependent format string where it is written).
// Escapes a string for a double-quoted Graphviz label.
template <class Str>
std::string dot_escape(const Str& s) {
  std::string r;
  for (char c : s) {
    if (c == '"' || c == '\\') r += '\\';
    r += c;
  }
  return r;
}
// 1234567 -> "1,234,567".
template <class Int>
std::string grouped(Int v) {
  std::string d = std::to_string(v < 0 ? -v : v), r;
  for (std::size_t i = 0; i < d.size(); ++i) {
    if (i && (d.size() - i) % 3 == 0) r += ',';
    r += d[i];
  }
  return v < 0 ? "-" + r : r;
}
// 6100000 -> "6.10 M".
template <class Real>
std::string si(Real v) {
  const char* unit[] = {"", " k", " M", " G", " T"};
  int u = 0;
  while (v >= 1000 && u < 4) v /= 1000, ++u;
  return u ? format_rt("{:.2f}{}", v, unit[u]) : format_rt("{:.0f}", v);
}

template <std::size_t N, std::size_t M>
std::string dot_text(const graph_export<N, M>& g) {
  std::string s;
  s += "digraph ctgraph {\n";
  s += format_rt(
      "  graph [rankdir=TB, fontname=\"Helvetica\", fontsize=10, labelloc=t, label=\"ctgraph: {} nodes, {} steps ({} "
      "elementwise loops)\\lblue: forward, orange: gradient (reverse sweep), gold: params, green: inputs\\l"
      "dashed box: nodes fused into one loop; purple box: a scan's cell, run at each step; double border: an "
      "output\\l\"];\n",
      g.count, g.steps, g.loops);
  s += "  node [fontname=\"Helvetica\", fontsize=10, shape=box, style=\"rounded,filled\", color=\"#4a6f8a\"];\n";
  s += "  edge [color=\"#555555\", arrowsize=0.6];\n";
  // Nodes of an elementwise loop with more than one node: a dashed cluster.
  std::vector<int> members(static_cast<std::size_t>(g.loops) + 1, 0);
  for (int i = 0; i < g.count; ++i)
    if (g.nodes[i].fused >= 0) ++members[g.nodes[i].fused];
  auto clustered = [&](const auto& e) { return (e.fused >= 0 && members[e.fused] > 1) || e.cell >= 0; };
  auto node_line = [&](int i) {
    const auto& e = g.nodes[i];  // auto: dependent, see above
    std::string label, extra;
    const char* fill = e.backward ? "#f9d2b4" : "#d6e6f5";
    if (e.cls == op_class::param || e.cls == op_class::input) {
      const bool p = e.cls == op_class::param;
      label = format_rt("{}\\n{} {}", dot_escape(std::string_view(e.name ? e.name : "")), e.op, e.s);
      fill = p ? "#f7e08b" : "#c9ecc9";
      extra = p ? ", shape=box" : ", shape=ellipse";
    } else if (e.cls == op_class::constant) {
      label = format_rt("{} {}", e.a.value(), e.s);
      fill = "#eeeeee";
      extra = ", shape=plaintext, style=\"\", fontsize=9";
    } else if (e.cls == op_class::placeholder) {
      const char* role[] = {"carry", "x_t", "carry's adjoint", "output's adjoint", "running sum", "lifted x_t"};
      label = format_rt("{} {}\\n{}", role[e.a.i[0] >= 0 && e.a.i[0] < 6 ? e.a.i[0] : 0], e.a.i[1], e.s);
      fill = "#e8e0f5";
      extra = ", shape=ellipse";
    } else if (e.cls == op_class::scan) {
      label = format_rt("scan, {} steps{}\\nblock of {} bytes", e.a.i[4], e.a.i[3] & 1 ? ", reverse" : "",
                        grouped(e.block));
      if (e.step >= 0) label += format_rt("\\nstep {}", e.step);
    } else {
      label = format_rt("{} {}", e.op, e.s);
      if (std::string_view(e.op) == "matmul" && (e.a.i[0] || e.a.i[1]))
        label += e.a.i[0] && e.a.i[1] ? "\\nA, B transposed" : e.a.i[0] ? "\\nA transposed" : "\\nB transposed";
      if (e.step >= 0 && !clustered(e)) label += format_rt("\\nstep {}", e.step);
    }
    if (e.type != dtype::f32) label += format_rt(" {}", dtype_name(e.type));
    if (e.output >= 0) {
      label += format_rt("\\noutput {}", e.output);
      extra += ", peripheries=2";
    }
    return format_rt("n{} [label=\"{}\", fillcolor=\"{}\"{}];\n", i, label, fill, extra);
  };
  for (int f = 0; f < g.loops; ++f) {
    if (members[f] < 2) continue;
    int step = -1;
    for (int i = 0; i < g.count; ++i)
      if (g.nodes[i].fused == f) step = g.nodes[i].step;
    s += format_rt(
        "  subgraph cluster_fused_{} {{\n    label=\"fused loop {} (step {})\"; style=dashed; color=\"#888888\"; "
        "fontcolor=\"#555555\";\n",
        f, f, step);
    for (int i = 0; i < g.count; ++i)
      if (g.nodes[i].fused == f) s += "    " + node_line(i);
    s += "  }\n";
  }
  for (int c = 0; c < g.count; ++c) {  // each scan's cell: a cluster
    if (g.nodes[c].cls != op_class::scan) continue;
    s += format_rt(
        "  subgraph cluster_cell_{} {{\n    label=\"cell of scan n{} (run {} times)\"; style=\"rounded\"; "
        "color=\"#7a5fa8\"; fontcolor=\"#7a5fa8\";\n",
        c, c, g.nodes[c].a.i[4]);
    for (int i = 0; i < g.count; ++i)
      if (g.nodes[i].cell == c) s += "    " + node_line(i);
    s += "  }\n";
  }
  for (int i = 0; i < g.count; ++i)
    if (!clustered(g.nodes[i])) s += "  " + node_line(i);
  for (int i = 0; i < g.count; ++i) {
    const auto& e = g.nodes[i];  // auto: dependent, see above
    for (int k = 0; k < e.n_in; ++k) {
      bool again = false;  // x * x: one edge
      for (int j = 0; j < k; ++j) again |= g.in(i, j) == g.in(i, k);
      if (again) continue;
      s += format_rt("  n{} -> n{}{};\n", g.in(i, k), i, e.backward ? " [color=\"#c0642a\"]" : "");
    }
    if (e.root) s += format_rt("  n{} -> n{} [style=dashed, color=\"#7a5fa8\"];\n", i, e.cell);
  }
  s += "}\n";
  return s;
}
}  // namespace detail

/// Graphviz text of the graph compile(e...) plans, forward and backward: one node per graph
/// node ("matmul [300, 64]"; leaves show their name), an edge from each operand to its
/// consumer, gradient nodes (made by the reverse sweep) in orange, params in gold, inputs
/// in green, outputs with a double border, each elementwise loop that runs several
/// nodes as a dashed cluster "fused loop k", and each scan's cell as a purple cluster "cell of
/// scan nK" (its placeholders: the carries and x_t a step binds; dashed edges from its next
/// carries and outputs to the scan, whose label gives its steps and its block of the arena). Render with `dot -Tsvg
/// graph.dot -o graph.svg`.
/// @param e what compile() takes: expressions and what grad(y) and grad(y, x1, x2, ...) return
template <class... O>
std::string to_dot(O... e) {
  return detail::dot_text(export_graph(e...));
}

namespace detail {
template <class Summary>
std::string summary_table(const Summary& s) {
  auto w = decltype(s.params.size())(12);  // dependent: see above
  for (const auto& p : s.params) w = std::max(w, p.name.size());
  std::string r = format_rt("{:<{}}  {:<16}  {:>12}\n", "param", w, "shape", "count");
  r += std::string(w + 32, '-') + "\n";
  for (const auto& p : s.params)
    r += format_rt("{:<{}}  {:<16}  {:>12}\n", p.name, w, format_rt("{}{}", p.s, p.type == dtype::f64 ? " f64" : ""),
                   grouped(p.count));
  r += std::string(w + 32, '-') + "\n";
  r += format_rt("{:<{}}  {:<16}  {:>12}\n", "total", w, format_rt("{} params", s.params.size()),
                 grouped(s.param_count));
  r += format_rt("param bytes:   {}\n", grouped(s.param_bytes));
  r += format_rt("arena bytes:   {} (intermediates without reuse: {})\n", grouped(s.arena_bytes),
                 grouped(s.intermediate_bytes));
  r += format_rt("steps per run: {} ({} kernel calls, {} elementwise loops), from {} graph nodes\n", s.steps,
                 s.kernel_steps, s.fused_loops, s.graph_nodes);
  r += format_rt("FLOPs per run: {} (matmul {}, other {})\n", si(s.flops()), si(s.matmul_flops), si(s.other_flops));
  for (std::size_t k = 0; k < s.scans.size(); ++k) {
    const auto& c = s.scans[k];
    r += format_rt("scan {}: {} steps{}, cell of {} steps per step, block of {} bytes (carries and cell arena)\n", k,
                   c.T, c.reverse ? " (reverse)" : "", c.cell_steps, grouped(c.block_bytes));
  }
  return r;
}
}  // namespace detail

/// One parameter in a summary.
struct summary_param {
  std::string name;         ///< "fc1.weight"
  shape s;                  ///< its shape
  long count = 0;           ///< elements
  dtype type = dtype::f32;  ///< element type
};

/// One scan loop in a summary (forward scans and the backward scans of their gradients).
struct summary_scan {
  int T = 0;             ///< steps of the loop
  bool reverse = false;  ///< runs t = T-1 down to 0
  int cell_steps = 0;    ///< kernel calls and elementwise loops of one run of its cell
  long block_bytes = 0;  ///< arena bytes it holds while it runs: its carries and its cell's arena
};

/// What a compiled step holds and costs per run; see summary().
struct step_summary {
  std::vector<summary_scan> scans;    ///< its scan loops, in run order
  std::vector<summary_param> params;  ///< one row per param, in the step's order
  long param_count = 0;               ///< elements of all params
  long param_bytes = 0;               ///< bytes of all params
  long arena_bytes = 0;               ///< bytes of the step's arena, after buffer reuse
  long intermediate_bytes = 0;        ///< bytes all intermediates would take without reuse
  std::size_t steps = 0;              ///< steps of a run: kernel calls plus elementwise loops
  std::size_t kernel_steps = 0;       ///< kernel calls (matmul, reductions, softmax, ...)
  std::size_t fused_loops = 0;        ///< elementwise loops (each runs one or more fused nodes)
  int graph_nodes = 0;                ///< nodes the planner saw, forward and backward, before pruning
  double matmul_flops = 0;            ///< 2 * M * N * K per product, times the batch
  double other_flops = 0;             ///< every other step: op_runtime::flops per element
  /// Floating-point operations of one run.
  double flops() const { return matmul_flops + other_flops; }
  /// The summary as a text table (what print_summary() prints).
  template <class Self = step_summary>
  std::string table() const {
    return detail::summary_table(static_cast<const Self&>(*this));
  }
};

/// FLOPs of one kernel step: 2 * M * N * K * batch for a matmul; 0 for a constant fill; else
/// op_runtime::flops per element of the larger of its output and first operand (a reduction
/// does its work per input element).
/// `in_shapes` is the plan's table of operand shapes.
template <int = 0>
constexpr double kernel_flops(const kernel_step& k, const shape* in_shapes) {
  if (k.op->is_constant) return 0;
  const shape* in_shape = in_shapes + k.first_in;
  if (std::string_view(k.op->name) == matmul_op::name) {
    // matmul_rows_op (also "matmul") counts its operand as the matrix it sees it as.
    const bool rows = k.op == op_info_of<matmul_rows_op>.rt;
    const shape x = rows ? matmul_rows_op::as_matrix(in_shape[0]) : in_shape[0], &o = k.out_shape;
    const double M = o.d[o.rank - 2], N = o.d[o.rank - 1], K = x.d[x.rank - (k.a.i[0] ? 2 : 1)];
    return 2 * M * N * K * static_cast<double>(o.size() / (o.d[o.rank - 2] * static_cast<long>(o.d[o.rank - 1])));
  }
  if (k.op->step_flops) return k.op->step_flops(k.a, in_shape, k.n_in);
  const double n = static_cast<double>(std::max(k.out_shape.size(), k.n_in ? in_shape[0].size() : 0));
  return k.op->flops * n;
}
/// FLOPs of one elementwise loop: each instruction's op_runtime::flops per output element.
template <int = 0>
constexpr double loop_flops(const fused_step& f) {
  double per = 0;
  for (int i = 0; i < f.n; ++i) per += f.code[i].op->flops;
  return per * static_cast<double>(f.out_shape.size());
}

/// A compiled step's params (name, shape, count), memory, steps and FLOPs per run.
template <class P>
step_summary summary(const step<P>&) {
  using S = step<P>;
  constexpr const auto& plan = S::plan;
  step_summary r;
  for (std::size_t k = 0; k < S::sizes.params; ++k) {
    const leaf_entry& e = plan.params[k];
    r.params.push_back({e.name, e.s, static_cast<long>(e.s.size()), e.type});
    r.param_count += static_cast<long>(e.s.size());
    r.param_bytes += static_cast<long>(e.s.size() * static_cast<long>(dtype_size(e.type)));
  }
  r.arena_bytes = S::arena_bytes();
  r.intermediate_bytes = S::intermediate_bytes();
  r.steps = S::num_steps();
  r.kernel_steps = S::num_kernel_steps();
  r.fused_loops = S::num_fused_steps();
  r.graph_nodes = S::graph_nodes();
  // FLOPs along the run order: a scan's cell counts T times.
  const plan_view v = view_of(plan);
  auto count = [&](auto& self, std::span<const order_entry> order, double times) -> void {
    for (const order_entry& e : order) {
      if (e.fused) {
        r.other_flops += times * loop_flops(v.fused[e.index]);
        continue;
      }
      const kernel_step& k = v.kernels[e.index];
      if (k.op == &scan_runtime) {
        const scan_step& sc = v.scans[k.a.i[0]];
        r.scans.push_back({sc.T, sc.reverse, sc.order_end - sc.order_begin, sc.block_bytes});
        self(self, v.body_order.subspan(sc.order_begin, sc.order_end - sc.order_begin), times * sc.T);
        continue;
      }
      (std::string_view(k.op->name) == matmul_op::name ? r.matmul_flops : r.other_flops) +=
          times * kernel_flops(k, v.in_shapes.data());
      for (int j = 0; j < accumulators_of(k); ++j)  // the sums folded into it: an add per element of their outputs
        if (v.in_locs[k.first_in + k.n_in + k.n_out + j].sp != space::none)
          r.other_flops +=
              times * static_cast<double>(k.n_out ? v.in_shapes[k.first_in + k.n_in + j].size() : k.out_shape.size());
    }
  };
  count(count, v.order, 1.0);
  return r;
}

/// Prints summary(s).table() to stdout.
template <class P>
void print_summary(const step<P>& s) {
  fmt::print("{}", summary(s).table());
}

}  // namespace ctgraph
