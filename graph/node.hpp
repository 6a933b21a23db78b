// graph/node.hpp: the flat graph. A node is op + element type + shape + attributes +
// operand ids; a graph is a std::vector<node> built in constant evaluation, with
// structurally identical nodes hash-consed into one.
#pragma once
#include <vector>

#include "base.hpp"

namespace ctgraph {

enum class op_class : std::uint8_t {
  input,        // leaf fed at run time
  param,        // leaf held in a parameter set
  constant,     // a value filling a shape; inlined into elementwise loops
  elementwise,  // per-element scalar function, operands broadcast: fusible
  kernel,       // anything else: a forward function over whole buffers
  grad,         // grad(y, x) marker, replaced by the adjoint during compile
  project,      // output k of a multi-output node: a buffer that node's step writes
  placeholder,  // a scan cell's carry or x_t: bound to a buffer at each step of the loop
  scan          // a loop over a sub-graph, its body (graph/scan.hpp)
};

/// Operands a kernel step can have: the pointers to them live on the stack of the call.
/// Graph nodes have no such limit (their operands are a list in the builder's pool).
inline constexpr int max_kernel_operands = 8;
/// Outputs a multi-output kernel step can have, for the same reason.
inline constexpr int max_kernel_outputs = 8;

/// What a kernel sees: output pointer, operand pointers, their shapes and the node's attributes.
template <class T>
struct run_args {
  T* out;
  const void* const* in;  // n_in operand pointers
  shape out_shape;
  const shape* in_shape;  // their shapes
  attr_t a;
  int n_in = 0;
  void* const* outs = nullptr;  // multi-output ops: n_out outputs, nullptr where none is needed
  int n_out = 0;
  const void* const* accs = nullptr;  // per output, a buffer its result is added to, or nullptr (op_info::accumulates)
                                      // (their shapes follow the operands' in in_shape, after n_out output shapes)
  template <class U = T>
  const U* input(int k) const {
    return static_cast<const U*>(in[k]);
  }
  /// Output k of a multi-output op, or nullptr when the graph does not read it.
  template <class U = T>
  U* output(int k) const {
    return static_cast<U*>(outs[k]);
  }
  /// For an output in op_info::accumulates: the buffer the kernel adds output k's result to
  /// (output k = accumulator k + result), or nullptr: output k is the result alone.
  template <class U = T>
  const U* accumulator(int k) const {
    return accs ? static_cast<const U*>(accs[k]) : nullptr;
  }
  /// The shape of accumulator k: the output's, or (op_info::accumulates_rows) a row [N] or [1, N] added to
  /// every row of an [M, N] output.
  const shape& accumulator_shape(int k) const { return in_shape[n_in + n_out + k]; }
};

/// n values of T, held inline when n <= N: constant evaluation pays for every allocation,
/// and most nodes have few operands.
template <class T, int N>
struct small_array {
  T local[N] = {};
  std::vector<T> heap;
  int n = 0;
  constexpr explicit small_array(int count, T v = T{}) : n(count) {
    if (n > N)
      heap.assign(n, v);
    else
      for (int k = 0; k < n; ++k) local[k] = v;
  }
  constexpr T& operator[](int k) { return n > N ? heap[k] : local[k]; }
  constexpr const T& operator[](int k) const { return n > N ? heap[k] : local[k]; }
  constexpr T* data() { return n > N ? heap.data() : local; }
};

struct vjp_ctx;
struct builder;

/// What a step needs of its op at run time: the kernels. Plans point at these only, so
/// the compile-time parts below (shape rule, vector-Jacobian rule) are never emitted.
struct op_runtime {
  const char* name = "";
  bool is_constant = false;
  // Kernel ops.
  void (*fwd_f32)(const run_args<float>&) = nullptr;
  void (*fwd_f64)(const run_args<double>&) = nullptr;
  // Elementwise ops: out[i] = f(a[i * sa], b[i * sb]) over n elements (strides 0 or 1).
  void (*array_f32)(float*, const float*, int, const float*, int, long) = nullptr;
  void (*array_f64)(double*, const double*, int, const double*, int, long) = nullptr;
  double flops = 1;  // per output element, for summaries
  // Ops whose work is not per element (attention): FLOPs of one step over operands of these shapes.
  double (*step_flops)(const attr_t&, const shape*, int) = nullptr;
};

/// An op's behaviour, gathered from its struct (see ops/) into one constant table.
struct op_info {
  const char* name = "";
  op_class cls = op_class::kernel;
  shape_result (*infer)(const attr_t&, const shape*, int) = nullptr;
  // Multi-output ops: the shapes of the outputs (false when the operands do not fit).
  bool (*outputs)(const attr_t&, const shape*, int, std::vector<shape>&) = nullptr;
  // Ops with a body (scan): builds the node from its operands and its body's ids.
  int (*build)(builder&, const attr_t&, const int* in, int n_in, const int* body, int n_body) = nullptr;
  void (*vjp)(vjp_ctx&) = nullptr;                                 // nullptr: no gradient flows through
  int (*int_bound)(const attr_t&, const shape*, int k) = nullptr;  // operand k is int ids in [0, bound)
  // On operands with extra leading axes (those its shape rule accepts) it computes the
  // stacked results: what a scan may run for all steps at once (lift_step_values).
  bool stacks = false;
  // The outputs (bit k: output k; a single-output op's is bit 0) whose kernel can add its result to a
  // buffer it is given (run_args::accumulator), so that the planner folds `acc + output` into it.
  unsigned accumulates = 0;
  unsigned accumulates_rows = 0;  // of those, the outputs that take a row [N] added to each row of [M, N] too
  bool is_add = false;            // add: a + b, what such a fold removes
  const op_runtime* rt = nullptr;
};

/// A node of the flat graph. Its operands are a list in its builder's pool
/// (builder::operands[first_in, first_in + n_in)), so a node may have any number. A scan's
/// body (the ids of its cell's bound values and roots) follows them there: n_body ids that
/// are not operands, since the graph outside the loop computes none of them.
struct node {
  const op_info* op = nullptr;
  dtype type = dtype::f32;
  shape out;
  attr_t a;
  int n_in = 0;
  int first_in = 0;
  int n_body = 0;
  const char* name = nullptr;  // leaves only
  std::uint64_t hash = 0;

  // Equal but for the operands, which the builder compares.
  constexpr bool same_head(const node& o) const {
    if (op != o.op || type != o.type || !(out == o.out) || !(a == o.a) || n_in != o.n_in || n_body != o.n_body)
      return false;
    if ((name == nullptr) != (o.name == nullptr)) return false;
    return name == nullptr || str_eq(name, o.name);
  }
};

/// A node's hash from its head and its operands' hashes (h(k) for operand k).
template <class OperandHash>
constexpr std::uint64_t node_hash(const node& n, OperandHash h_of) {
  std::uint64_t h = hash_str(n.op->name);
  h = hash_mix(h, static_cast<std::uint64_t>(n.type));
  h = hash_shape(h, n.out);
  h = hash_attr(h, n.a);
  for (int k = 0; k < n.n_in + n.n_body; ++k) h = hash_mix(h, h_of(k));
  if (n.name) h = hash_mix(h, hash_str(n.name));
  return h;
}

// Graph-level ops: leaves, constants and the grad marker. Every other op lives in ops/.
inline constexpr op_info input_info{.name = "input", .cls = op_class::input};
inline constexpr op_info param_info{.name = "param", .cls = op_class::param};
inline constexpr op_runtime constant_runtime{.name = "constant", .is_constant = true};
inline constexpr op_info constant_info{.name = "constant", .cls = op_class::constant, .rt = &constant_runtime};
inline constexpr op_info grad_info{
    .name = "grad", .cls = op_class::grad, .infer = [](const attr_t&, const shape* in, int) {
      return shape_result{true, in[1]};
    }};
/// Output a.i[0] of a multi-output node (its one operand), of shape a.s. No step computes
/// it: it names a buffer that node's step writes. Its adjoint reaches that node's rule,
/// with those of the other outputs (reverse_sweep).
struct project_op {
  static constexpr const char* name = "project";
  static constexpr op_class cls = op_class::project;
  static constexpr bool no_gradient = true;
  static constexpr shape_result infer(const attr_t& a, const shape*, int) { return {true, a.s}; }
};
struct builder;
constexpr int project(builder& b, int id, int k);  // graph/expr.hpp

/// The graph under construction. emit() hash-conses: a node equal to an existing one
/// (same op, type, shape, attributes and operand ids) returns the existing id, so
/// node ids are always in topological order and every subexpression exists once.
struct builder {
  std::vector<node> nodes;
  std::vector<int> operands;                          // every node's operand list, end to end
  std::vector<int> table = std::vector<int>(64, -1);  // open addressing over node ids
  int used = 0;

  /// Operand k of node n, and the list of them.
  constexpr int in(int n, int k) const { return operands[nodes[n].first_in + k]; }
  constexpr const int* ins(int n) const { return operands.data() + nodes[n].first_in; }
  /// Body entry k of node n (a scan).
  constexpr int body(int n, int k) const { return operands[nodes[n].first_in + nodes[n].n_in + k]; }

  /// Adds node n over operands ins[0, n.n_in) (then its body's n.n_body ids), or returns the
  /// equal node that exists.
  constexpr int emit(node n, const int* ins) {
    n.hash = node_hash(n, [&](int k) { return nodes[ins[k]].hash; });
    if (2 * (used + 1) > static_cast<int>(table.size())) grow();
    std::size_t mask = table.size() - 1;
    for (std::size_t i = n.hash & mask;; i = (i + 1) & mask) {
      int id = table[i];
      if (id < 0) {
        table[i] = static_cast<int>(nodes.size());
        ++used;
        n.first_in = static_cast<int>(operands.size());
        for (int k = 0; k < n.n_in + n.n_body; ++k) operands.push_back(ins[k]);  // no insert(): dearer to evaluate
        nodes.push_back(n);
        return table[i];
      }
      if (nodes[id].hash == n.hash && nodes[id].same_head(n) && same_operands(id, ins)) return id;
    }
  }
  constexpr int emit(node n) { return emit(n, nullptr); }  // a leaf or a constant

  /// A node of `op` over `ins`, its shape from the op's shape rule. The element type is
  /// the first floating operand's unless given.
  constexpr int make(const op_info* op, attr_t a, const int* ins, int n_in, int type = -1) {
    node n;
    n.op = op;
    n.a = a;
    n.n_in = n_in;
    small_array<shape, 4> s(n_in + 1);
    bool typed = type >= 0;
    if (typed) n.type = static_cast<dtype>(type);
    for (int k = 0; k < n_in; ++k) {
      s[k] = nodes[ins[k]].out;
      if (!typed && nodes[ins[k]].type != dtype::i32) n.type = nodes[ins[k]].type, typed = true;
    }
    auto r = op->infer(a, s.data(), n_in);
    if (!r.ok) throw "ctgraph internal error: a derived node has operands of incompatible shapes";
    n.out = r.s;
    return emit(n, ins);
  }
  constexpr int make(const op_info* op, attr_t a, std::initializer_list<int> ins, int type = -1) {
    return make(op, a, ins.begin(), static_cast<int>(ins.size()), type);
  }
  constexpr int constant(double v, const shape& s, dtype t) {
    node n;
    n.op = &constant_info;
    n.type = t;
    n.out = s;
    n.a = attr_value(v);
    return emit(n);
  }
  /// The output shapes of multi-output node `id`.
  constexpr std::vector<shape> outputs_of(int id) const {
    if (nodes[id].op->cls == op_class::scan) return scan_outputs(id);
    std::vector<shape> in(nodes[id].n_in + 1), out;
    for (int j = 0; j < nodes[id].n_in; ++j) in[j] = nodes[this->in(id, j)].out;
    nodes[id].op->outputs(nodes[id].a, in.data(), nodes[id].n_in, out);
    return out;
  }
  constexpr const node& operator[](int id) const { return nodes[id]; }
  constexpr int size() const { return static_cast<int>(nodes.size()); }

 private:
  // A scan's outputs: its final carries, its outputs stacked over time, then the values of
  // its cell's steps it can keep for its backward (stacked too). See scan_layout.
  constexpr std::vector<shape> scan_outputs(int id) const;
  constexpr bool same_operands(int id, const int* ins) const {
    for (int k = 0; k < nodes[id].n_in + nodes[id].n_body; ++k)
      if (in(id, k) != ins[k]) return false;
    return true;
  }
  constexpr void grow() {
    table.assign(table.size() * 2, -1);
    std::size_t mask = table.size() - 1;
    for (int id = 0; id < static_cast<int>(nodes.size()); ++id) {
      std::size_t i = nodes[id].hash & mask;
      while (table[i] >= 0) i = (i + 1) & mask;
      table[i] = id;
    }
  }
};

/// How a scan node lays out its operands, body and outputs (graph/scan.hpp builds them):
///   operands: C carry inits, S sequences [T, ...], F free values (what the cell reads that
///             depends on neither carry nor x_t, computed once, outside the loop)
///   body:     C carry-bound ids, S step-bound ids (x_t: slice t of sequence s), C next-carry
///             roots, Y output roots, D saveable ids (the cell's values a backward may keep)
///   outputs:  C final carries, Y outputs stacked [T, ...], D saveable values stacked [T, ...]
///   attr:     i[0] C, i[1] S, i[2] Y, i[3] flags (1: reverse, 2: rematerialise), i[4] T
struct scan_layout {
  int C = 0, S = 0, F = 0, Y = 0, D = 0, T = 0;
  bool reverse = false, remat = false;
  constexpr int carry_bound(int k) const { return k; }
  constexpr int step_bound(int k) const { return C + k; }
  constexpr int next_carry(int k) const { return C + S + k; }
  constexpr int output_root(int k) const { return 2 * C + S + k; }
  constexpr int saveable(int k) const { return 2 * C + S + Y + k; }
};
constexpr scan_layout scan_layout_of(const node& n) {
  scan_layout l;
  l.C = n.a.i[0], l.S = n.a.i[1], l.Y = n.a.i[2], l.T = n.a.i[4];
  l.reverse = n.a.i[3] & 1, l.remat = n.a.i[3] & 2;
  l.F = n.n_in - l.C - l.S;
  l.D = n.n_body - 2 * l.C - l.S - l.Y;
  return l;
}
/// Whether a node has several outputs (a multi-output op or a scan): its projections name them.
constexpr bool multi_output(const node& n) { return n.op->outputs || n.op->cls == op_class::scan; }

/// `s` with a leading axis of length t.
constexpr shape stacked(const shape& s, int t) {
  shape r;
  r.rank = s.rank + 1;
  r.d[0] = t;
  for (int k = 0; k < s.rank; ++k) r.d[k + 1] = s.d[k];
  return r;
}
constexpr std::vector<shape> builder::scan_outputs(int id) const {
  const scan_layout l = scan_layout_of(nodes[id]);
  std::vector<shape> out;
  for (int k = 0; k < l.C; ++k) out.push_back(nodes[in(id, k)].out);
  for (int k = 0; k < l.Y; ++k) out.push_back(stacked(nodes[body(id, l.output_root(k))].out, l.T));
  for (int k = 0; k < l.D; ++k) out.push_back(stacked(nodes[body(id, l.saveable(k))].out, l.T));
  return out;
}

/// A node id inside a builder: the handle vector-Jacobian rules compute with
/// (operators and functions over refs live with their ops, in ops/).
struct ref {
  builder* b;
  int id;
  constexpr const node& get() const { return (*b)[id]; }
  constexpr ctgraph::shape shape_of() const { return get().out; }
};

/// What an op's vector-Jacobian rule sees: its node, the adjoint g of its output (of each
/// output, for a multi-output op: gs), and which operands need a gradient. It sets din(k)
/// for those.
struct vjp_ctx {
  builder& b;
  int id;
  int g;
  std::vector<int> gs = {};  // multi-output ops: the adjoint of output k, -1 where none flows
  small_array<char, 4> wants = small_array<char, 4>(b[id].n_in, 0);
  small_array<int, 4> din = small_array<int, 4>(b[id].n_in, -1);

  constexpr ref out() const { return {&b, id}; }
  constexpr ref x(int k) const { return {&b, b.in(id, k)}; }
  constexpr ref grad() const { return {&b, g}; }
  /// Multi-output ops: output k (a projection node) and its adjoint, if any flows.
  constexpr ref out(int k) const { return {&b, project(b, id, k)}; }
  constexpr bool has_grad(int k) const { return gs[k] >= 0; }
  constexpr ref grad(int k) const { return {&b, gs[k]}; }
  constexpr const attr_t& attr() const { return b[id].a; }
  constexpr const node& self() const { return b[id]; }
  constexpr void set(int k, ref r) { din[k] = r.id; }
};

}  // namespace ctgraph
