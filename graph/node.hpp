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
  grad          // grad(y, x) marker, replaced by the adjoint during compile
};

/// What a kernel sees: output pointer, operand pointers, their shapes and the node's attributes.
template <class T>
struct run_args {
  T* out;
  const void* in[3];
  shape out_shape;
  shape in_shape[3];
  attr_t a;
  template <class U = T>
  const U* input(int k) const {
    return static_cast<const U*>(in[k]);
  }
};

struct vjp_ctx;

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
};

/// An op's behaviour, gathered from its struct (see ops/) into one constant table.
struct op_info {
  const char* name = "";
  op_class cls = op_class::kernel;
  shape_result (*infer)(const attr_t&, const shape*, int) = nullptr;
  void (*vjp)(vjp_ctx&) = nullptr;                                 // nullptr: no gradient flows through
  int (*int_bound)(const attr_t&, const shape*, int k) = nullptr;  // operand k is int ids in [0, bound)
  const op_runtime* rt = nullptr;
};

struct node {
  const op_info* op = nullptr;
  dtype type = dtype::f32;
  shape out;
  attr_t a;
  int n_in = 0;
  int in[3] = {-1, -1, -1};
  const char* name = nullptr;  // leaves only
  std::uint64_t hash = 0;

  constexpr bool same(const node& o) const {
    if (op != o.op || type != o.type || !(out == o.out) || !(a == o.a) || n_in != o.n_in) return false;
    for (int k = 0; k < n_in; ++k)
      if (in[k] != o.in[k]) return false;
    if ((name == nullptr) != (o.name == nullptr)) return false;
    return name == nullptr || str_eq(name, o.name);
  }
};

constexpr std::uint64_t node_hash(const node& n, const std::uint64_t* operand_hash) {
  std::uint64_t h = hash_str(n.op->name);
  h = hash_mix(h, static_cast<std::uint64_t>(n.type));
  h = hash_shape(h, n.out);
  h = hash_attr(h, n.a);
  for (int k = 0; k < n.n_in; ++k) h = hash_mix(h, operand_hash[k]);
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

/// The graph under construction. emit() hash-conses: a node equal to an existing one
/// (same op, type, shape, attributes and operand ids) returns the existing id, so
/// node ids are always in topological order and every subexpression exists once.
struct builder {
  std::vector<node> nodes;
  std::vector<int> table = std::vector<int>(64, -1);  // open addressing over node ids
  int used = 0;

  constexpr int emit(node n) {
    std::uint64_t oh[3] = {};
    for (int k = 0; k < n.n_in; ++k) oh[k] = nodes[n.in[k]].hash;
    n.hash = node_hash(n, oh);
    if (2 * (used + 1) > static_cast<int>(table.size())) grow();
    std::size_t mask = table.size() - 1;
    for (std::size_t i = n.hash & mask;; i = (i + 1) & mask) {
      int id = table[i];
      if (id < 0) {
        table[i] = static_cast<int>(nodes.size());
        ++used;
        nodes.push_back(n);
        return table[i];
      }
      if (nodes[id].hash == n.hash && nodes[id].same(n)) return id;
    }
  }

  /// A node of `op` over `ins`, its shape from the op's shape rule. The element type is
  /// the first floating operand's unless given.
  constexpr int make(const op_info* op, attr_t a, std::initializer_list<int> ins, int type = -1) {
    node n;
    n.op = op;
    n.a = a;
    shape s[3];
    bool typed = type >= 0;
    if (typed) n.type = static_cast<dtype>(type);
    for (int id : ins) {
      s[n.n_in] = nodes[id].out;
      n.in[n.n_in++] = id;
      if (!typed && nodes[id].type != dtype::i32) n.type = nodes[id].type, typed = true;
    }
    auto r = op->infer(a, s, n.n_in);
    if (!r.ok) throw "ctgraph internal error: a derived node has operands of incompatible shapes";
    n.out = r.s;
    return emit(n);
  }
  constexpr int constant(double v, const shape& s, dtype t) {
    node n;
    n.op = &constant_info;
    n.type = t;
    n.out = s;
    n.a = attr_value(v);
    return emit(n);
  }
  constexpr const node& operator[](int id) const { return nodes[id]; }
  constexpr int size() const { return static_cast<int>(nodes.size()); }

 private:
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

/// A node id inside a builder: the handle vector-Jacobian rules compute with
/// (operators and functions over refs live with their ops, in ops/).
struct ref {
  builder* b;
  int id;
  constexpr const node& get() const { return (*b)[id]; }
  constexpr ctgraph::shape shape_of() const { return get().out; }
};

/// What an op's vector-Jacobian rule sees: its node, the adjoint g of its output, and
/// which operands need a gradient. It sets din(k) for those.
struct vjp_ctx {
  builder& b;
  int id;
  int g;
  bool wants[3] = {};
  int din[3] = {-1, -1, -1};

  constexpr ref out() const { return {&b, id}; }
  constexpr ref x(int k) const { return {&b, b[id].in[k]}; }
  constexpr ref grad() const { return {&b, g}; }
  constexpr const attr_t& attr() const { return b[id].a; }
  constexpr const node& self() const { return b[id]; }
  constexpr void set(int k, ref r) { din[k] = r.id; }
};

}  // namespace ctgraph
