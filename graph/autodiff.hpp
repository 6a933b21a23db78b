// graph/autodiff.hpp: flattening expression types into the builder, and the reverse
// sweep. Both are loops over flat arrays; neither recurses over types.
#pragma once
#include "expr.hpp"

namespace ctgraph {

/// Maps node descriptions (one per expression type) to builder ids, by pointer.
struct desc_map {
  std::vector<const node_desc*> key = std::vector<const node_desc*>(64, nullptr);
  std::vector<int> val = std::vector<int>(64, -1);
  int used = 0;
  constexpr int* find(const node_desc* d) {
    std::size_t mask = key.size() - 1;
    for (std::size_t i = d->hash & mask; key[i]; i = (i + 1) & mask)
      if (key[i] == d) return &val[i];
    return nullptr;
  }
  constexpr void put(const node_desc* d, int id) {
    if (2 * (used + 1) > static_cast<int>(key.size())) {
      auto k = key;
      auto v = val;
      key.assign(k.size() * 2, nullptr);
      val.assign(k.size() * 2, -1);
      used = 0;
      for (std::size_t i = 0; i < k.size(); ++i)
        if (k[i]) put(k[i], v[i]);
    }
    std::size_t mask = key.size() - 1, i = d->hash & mask;
    while (key[i]) i = (i + 1) & mask;
    key[i] = d;
    val[i] = id;
    ++used;
  }
};

/// Emits the graph below `root` (each description once, operands first) and returns its id.
/// Iterative: graphs thousands of nodes deep stay within constexpr depth limits.
constexpr int flatten(builder& b, desc_map& seen, const node_desc* root) {
  if (int* id = seen.find(root)) return *id;
  std::vector<const node_desc*> stack{root};
  std::vector<int> ins;
  while (!stack.empty()) {
    const node_desc* d = stack.back();
    if (seen.find(d)) {
      stack.pop_back();
      continue;
    }
    bool ready = true;
    for (int k = d->n_in - 1; k >= 0; --k)
      if (!seen.find(d->in[k])) stack.push_back(d->in[k]), ready = false;
    if (!ready) continue;
    stack.pop_back();
    node n;
    n.op = d->op;
    n.type = d->type;
    n.out = d->out;
    n.a = d->a;
    n.n_in = d->n_in;
    n.name = d->name;
    ins.clear();
    for (int k = 0; k < d->n_in; ++k) ins.push_back(*seen.find(d->in[k]));
    seen.put(d, b.emit(n, ins.data()));
  }
  return *seen.find(root);
}

/// One reverse sweep from scalar y: appends the adjoint graph and returns, for each
/// target, the id of d y / d target (a zero constant where y does not depend on it).
/// Only nodes on a path from a target to y get adjoints; fan-out adds them up.
constexpr std::vector<int> reverse_sweep(builder& b, int y, const std::vector<int>& targets, const op_info* add) {
  std::vector<char> dep(y + 1, 0);
  for (int t : targets)
    if (t <= y) dep[t] = 1;
  for (int n = 0; n <= y; ++n) {
    const node& nd = b[n];
    for (int k = 0; k < nd.n_in && !dep[n]; ++k) dep[n] = dep[b.in(n, k)];
    if (nd.type == dtype::i32) dep[n] = 0;
  }
  std::vector<int> adj(y + 1, -1);
  if (dep[y]) adj[y] = b.constant(1.0, b[y].out, b[y].type);
  for (int n = y; n >= 0; --n) {
    if (adj[n] < 0 || !dep[n]) continue;
    const node nd = b[n];  // a copy: the vjp appends to b
    if (!nd.op->vjp) continue;
    vjp_ctx c{b, n, adj[n]};
    bool any = false;
    for (int k = 0; k < nd.n_in; ++k) any |= c.wants[k] = dep[b.in(n, k)];
    if (!any) continue;
    nd.op->vjp(c);
    for (int k = 0; k < nd.n_in; ++k) {
      if (c.din[k] < 0 || !c.wants[k]) continue;
      int& a = adj[b.in(n, k)];
      a = a < 0 ? c.din[k] : b.make(add, {}, {a, c.din[k]});
    }
  }
  std::vector<int> out;
  for (int t : targets) out.push_back(t <= y && adj[t] >= 0 ? adj[t] : b.constant(0.0, b[t].out, b[t].type));
  return out;
}

/// Replaces every grad(y, x) marker by its adjoint, rebuilding the graph in order so that
/// grad of a graph that contains gradients works. All markers of one y share one sweep.
/// When `swept` is given, each reverse sweep appends the range [first, last) of node ids it
/// created, as two ints (graph exports).
constexpr builder resolve_grads(const builder& in, std::vector<int>& remap, const op_info* add,
                                std::vector<int>* swept = nullptr) {
  builder b;
  remap.assign(in.size(), -1);
  std::vector<int> swept_y, swept_x, swept_r;  // (y, x) -> adjoint, from sweeps so far
  std::vector<int> ins;
  for (int n = 0; n < in.size(); ++n) {
    node nd = in[n];
    ins.clear();
    for (int k = 0; k < nd.n_in; ++k) ins.push_back(remap[in.in(n, k)]);
    if (nd.op->cls != op_class::grad) {
      remap[n] = b.emit(nd, ins.data());
      continue;
    }
    const int y = ins[0], x = ins[1];
    int found = -1;
    for (std::size_t i = 0; i < swept_y.size() && found < 0; ++i)
      if (swept_y[i] == y && swept_x[i] == x) found = swept_r[i];
    if (found < 0) {
      // Sweep once for every marker of the same y whose x is already built.
      std::vector<int> xs;
      for (int m = n; m < in.size(); ++m) {
        const node& o = in[m];
        if (o.op->cls == op_class::grad && remap[in.in(m, 0)] == y && remap[in.in(m, 1)] >= 0)
          xs.push_back(remap[in.in(m, 1)]);
      }
      if (swept) swept->push_back(b.size());
      auto r = reverse_sweep(b, y, xs, add);
      if (swept) swept->push_back(b.size());
      for (std::size_t i = 0; i < xs.size(); ++i) {
        swept_y.push_back(y);
        swept_x.push_back(xs[i]);
        swept_r.push_back(r[i]);
        if (xs[i] == x) found = r[i];
      }
    }
    remap[n] = found;
  }
  return b;
}

}  // namespace ctgraph
