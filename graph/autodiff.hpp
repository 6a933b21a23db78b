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
    for (int k = d->n_body - 1; k >= 0; --k)
      if (!seen.find(d->body[k])) stack.push_back(d->body[k]), ready = false;
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
    if (d->n_body) {  // a scan: its builder finds what the cell reads from outside
      std::vector<int> body;
      for (int k = 0; k < d->n_body; ++k) body.push_back(*seen.find(d->body[k]));
      seen.put(d, d->op->build(b, d->a, ins.data(), d->n_in, body.data(), d->n_body));
      continue;
    }
    seen.put(d, b.emit(n, ins.data()));
  }
  return *seen.find(root);
}

/// One reverse sweep: the adjoint graph of roots `ys` seeded with adjoints `seeds` (node ids,
/// one per root), appended to b. Returns, for each target, the id of its adjoint (a zero
/// constant where no root depends on it). Only nodes on a path from a target to a root get
/// adjoints; fan-out adds them up. The adjoints of a multi-output node's projections reach
/// its rule together. Targets flagged in `cut` pass nothing on to their own operands (a
/// scan's cell: the adjoint of a value it reads from outside stops there).
constexpr std::vector<int> reverse_sweep(builder& b, const std::vector<int>& ys, const std::vector<int>& seeds,
                                         const std::vector<int>& targets, const op_info* add,
                                         const std::vector<char>* cut = nullptr) {
  int top = -1;
  for (int y : ys) top = y > top ? y : top;
  std::vector<char> dep(top + 1, 0), stop(top + 1, 0);
  for (std::size_t i = 0; i < targets.size(); ++i)
    if (targets[i] <= top) dep[targets[i]] = 1, stop[targets[i]] = cut && (*cut)[i];
  for (int n = 0; n <= top; ++n) {
    const node& nd = b[n];
    for (int k = 0; k < nd.n_in && !dep[n]; ++k) dep[n] = dep[b.in(n, k)];
    if (nd.type == dtype::i32) dep[n] = 0;
  }
  std::vector<int> adj(top + 1, -1);
  auto accumulate = [&](int n, int g) {
    int& a = adj[n];
    a = a < 0 ? g : b.make(add, {}, {a, g});
  };
  for (std::size_t i = 0; i < ys.size(); ++i)
    if (dep[ys[i]]) accumulate(ys[i], seeds[i]);
  std::vector<int> proj_of, proj_k, proj_adj;  // adjoints of projections, for their node's rule
  for (int n = top; n >= 0; --n) {
    if (adj[n] < 0 || !dep[n] || stop[n]) continue;
    const node nd = b[n];  // a copy: the vjp appends to b
    if (nd.op->cls == op_class::project) {
      const int t = b.in(n, 0);
      proj_of.push_back(t), proj_k.push_back(nd.a.i[0]), proj_adj.push_back(adj[n]);
      if (adj[t] < 0) adj[t] = adj[n];  // a mark: the rule below runs
      continue;
    }
    if (!nd.op->vjp) continue;
    vjp_ctx c{b, n, adj[n]};
    if (multi_output(nd)) {
      c.gs.assign(b.outputs_of(n).size(), -1);
      for (std::size_t i = 0; i < proj_of.size(); ++i)
        if (proj_of[i] == n) c.gs[proj_k[i]] = proj_adj[i];
      c.g = -1;
    }
    bool any = false;
    for (int k = 0; k < nd.n_in; ++k) any |= c.wants[k] = dep[b.in(n, k)];
    if (!any) continue;
    nd.op->vjp(c);
    for (int k = 0; k < nd.n_in; ++k)
      if (c.din[k] >= 0 && c.wants[k]) accumulate(b.in(n, k), c.din[k]);
  }
  std::vector<int> out;
  for (int t : targets) out.push_back(t <= top && adj[t] >= 0 ? adj[t] : b.constant(0.0, b[t].out, b[t].type));
  return out;
}
/// The sweep from scalar y, seeded with 1.
constexpr std::vector<int> reverse_sweep(builder& b, int y, const std::vector<int>& targets, const op_info* add) {
  return reverse_sweep(b, {y}, {b.constant(1.0, b[y].out, b[y].type)}, targets, add);
}

/// A rewrite of the graph as compile() rebuilds it: given node n of `in`, whose operands are built in b
/// (remap: ids of `in` -> ids of b), the id in b of what replaces it, or -1 to keep it. The ops define
/// their patterns (ops/all.hpp, rewrite_node); graph/ knows none.
using rewrite_fn = int (*)(builder& b, const builder& in, int n, const std::vector<int>& remap);

/// Replaces every grad(y, x) marker by its adjoint, rebuilding the graph in order so that
/// grad of a graph that contains gradients works. All markers of one y share one sweep.
/// When `swept` is given, each reverse sweep appends the range [first, last) of node ids it
/// created, as two ints (graph exports). `rewrite`, if given, may replace each node as it is
/// rebuilt, before any gradient reads it: gradients are those of the rewritten graph.
constexpr builder resolve_grads(const builder& in, std::vector<int>& remap, const op_info* add,
                                std::vector<int>* swept = nullptr, rewrite_fn rewrite = nullptr) {
  builder b;
  remap.assign(in.size(), -1);
  std::vector<int> swept_y, swept_x, swept_r;  // (y, x) -> adjoint, from sweeps so far
  std::vector<int> ins;
  for (int n = 0; n < in.size(); ++n) {
    node nd = in[n];
    ins.clear();
    for (int k = 0; k < nd.n_in + nd.n_body; ++k) ins.push_back(remap[in.in(n, k)]);
    if (nd.op->cls != op_class::grad) {
      const int r = rewrite ? rewrite(b, in, n, remap) : -1;
      remap[n] = r >= 0 ? r : b.emit(nd, ins.data());
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
