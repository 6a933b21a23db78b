// graph/scan.hpp: building scan nodes on a builder. A scan's cell is a sub-graph of the same
// builder: its bound values (carries, x_t) are placeholder nodes, its roots the next carries
// and the step's outputs. make_scan finds what the cell reads from outside the loop (free
// values, computed once) and what it can keep for a backward (saveable values), and lays the
// node out as scan_layout says (graph/node.hpp). The op itself, its VJP and the public
// cg::scan are in ops/scan.hpp.
#pragma once
#include <algorithm>

#include "autodiff.hpp"

namespace ctgraph {

/// A scan cell's placeholder (a carry, x_t, or in a VJP's scan an adjoint): a value the
/// loop binds to a buffer at each step. a.i[0] role, a.i[1] index, a.vbits the scan's tag,
/// a.s the shape. Roles: 0 carry, 1 x_t, 2 and 3 adjoints of a carry and of an output,
/// 4 a free value's running adjoint sum, 5 a lifted value (lift_step_values).
struct placeholder_op {
  static constexpr const char* name = "placeholder";
  static constexpr op_class cls = op_class::placeholder;
  static constexpr bool no_gradient = true;
  static constexpr shape_result infer(const attr_t& a, const shape*, int) { return {true, a.s}; }
};

constexpr int placeholder(builder& b, int role, int k, std::uint64_t tag, const shape& s, dtype t) {
  node n;
  n.op = &op_info_of<placeholder_op>;
  n.type = t;
  n.out = s;
  n.a.i[0] = role, n.a.i[1] = k, n.a.s = s;
  n.a.vbits = static_cast<std::int64_t>(tag);
  return b.emit(n);
}

/// A scan to build: its cell's bound values and roots, by id, and what binds them.
struct scan_spec {
  std::vector<int> inits, seqs;              // carry k starts as inits[k]; x_t is slice t of seqs[k]
  std::vector<int> carry_bound, step_bound;  // the cell's carries and x_t (placeholders, or any node)
  std::vector<int> next, outs;               // the cell's roots: its next carries and outputs
  int T = 0, flags = 0;                      // steps; 1: reverse, 2: rematerialise in the backward
};

/// What of the cell depends on x_t but not on the carry, and leads to a matmul (an LSTM's
/// x_t W_ih^T + b_ih), runs for all steps at once before the loop: one [T * B, In] gemm
/// instead of T small ones, as cuDNN does. Its adjoint then comes out of the backward loop
/// stacked, so dW_ih is one gemm after it, too. Such a value (the frontier of what is lifted)
/// becomes a sequence of the scan, computed outside on the stacked x, and the cell reads its
/// slice t through a placeholder. Lifted: ops that declare `stacks` (elementwise ops, matmul:
/// on operands with a leading time axis they compute the stacked results) whose shape rule
/// agrees on the stacked shapes. x_t no longer read by the cell is dropped from the scan.
/// Nothing is lifted from a cell that holds a scan or that has no matmul to batch.
constexpr void lift_step_values(builder& b, scan_spec& s) {
  int top = 0;
  for (const std::vector<int>* v : {&s.carry_bound, &s.step_bound, &s.next, &s.outs})
    for (int id : *v) top = std::max(top, id);
  std::vector<char> cdep(top + 1, 0), sdep(top + 1, 0), bound(top + 1, 0), root(top + 1, 0), cell(top + 1, 0);
  std::vector<int> step_of(top + 1, -1);
  for (int id : s.carry_bound) cdep[id] = bound[id] = 1;
  for (std::size_t k = 0; k < s.step_bound.size(); ++k)
    sdep[s.step_bound[k]] = bound[s.step_bound[k]] = 1, step_of[s.step_bound[k]] = static_cast<int>(k);
  for (int n = 0; n <= top; ++n)
    for (int k = 0; k < b[n].n_in; ++k) cdep[n] |= cdep[b.in(n, k)], sdep[n] |= sdep[b.in(n, k)];
  for (const std::vector<int>* v : {&s.next, &s.outs})
    for (int id : *v) root[id] = 1;
  std::vector<int> stack = s.next;
  stack.insert(stack.end(), s.outs.begin(), s.outs.end());
  while (!stack.empty()) {  // the cell: what the roots reach through values that depend on a bound one
    const int n = stack.back();
    stack.pop_back();
    if (cell[n] || bound[n] || !(cdep[n] || sdep[n])) continue;
    if (b[n].op->cls == op_class::scan) return;
    cell[n] = 1;
    for (int k = 0; k < b[n].n_in; ++k) stack.push_back(b.in(n, k));
  }
  // Liftable: in the cell, x_t-only, stacking; `pays`: a matmul at or below it.
  std::vector<char> lift(top + 1, 0), pays(top + 1, 0);
  for (int n = 0; n <= top; ++n) {
    const node& nd = b[n];
    if (!cell[n] || cdep[n] || !nd.op->stacks || root[n]) continue;
    small_array<shape, 4> in(nd.n_in + 1);
    bool ok = true, any = false, gemm = nd.op->cls == op_class::kernel;
    for (int k = 0; k < nd.n_in && ok; ++k) {
      const int i = b.in(n, k);
      const bool st = step_of[i] >= 0 || lift[i];
      ok = st || !sdep[i];
      any |= st;
      gemm |= pays[i];
      in[k] = st ? stacked(b[i].out, s.T) : b[i].out;
    }
    if (!ok || !any) continue;
    const shape_result r = nd.op->infer(nd.a, in.data(), nd.n_in);
    if (!r.ok || !(r.s == stacked(nd.out, s.T))) continue;
    lift[n] = 1, pays[n] = gemm;
  }
  // The frontier: lifted values that pay, read by a cell node that is not lifted.
  std::vector<int> remap(top + 1, -1);
  std::vector<char> frontier(top + 1, 0);
  bool any = false;
  for (int n = 0; n <= top; ++n)
    if (cell[n] && !lift[n])
      for (int k = 0; k < b[n].n_in; ++k)
        if (const int i = b.in(n, k); lift[i] && pays[i]) frontier[i] = 1, any = true;
  if (!any) return;
  // Stacked values outside the loop, over the sequences; a placeholder for each in the cell.
  std::vector<int> outside(top + 1, -1), ins;
  for (std::size_t k = 0; k < s.step_bound.size(); ++k) outside[s.step_bound[k]] = s.seqs[k];
  for (int n = 0; n <= top; ++n) {
    if (!lift[n]) continue;
    const node nd = b[n];
    ins.clear();
    for (int k = 0; k < nd.n_in; ++k) ins.push_back(outside[b.in(n, k)] >= 0 ? outside[b.in(n, k)] : b.in(n, k));
    outside[n] = b.make(nd.op, nd.a, ins.data(), nd.n_in, static_cast<int>(nd.type));
    if (!frontier[n]) continue;
    remap[n] = placeholder(b, 5, static_cast<int>(s.seqs.size()), nd.hash, nd.out, nd.type);
    s.seqs.push_back(outside[n]);
    s.step_bound.push_back(remap[n]);
  }
  // The cell again, reading the placeholders; then its roots.
  for (int n = 0; n <= top; ++n) {
    if (!cell[n] || lift[n]) continue;
    node nd = b[n];
    ins.clear();
    bool changed = false;
    for (int k = 0; k < nd.n_in; ++k) {
      const int i = b.in(n, k);
      ins.push_back(remap[i] >= 0 ? remap[i] : i);
      changed |= remap[i] >= 0;
    }
    if (changed) remap[n] = b.emit(nd, ins.data());
  }
  for (std::vector<int>* v : {&s.next, &s.outs})
    for (int& id : *v) id = remap[id] >= 0 ? remap[id] : id;
  // Sequences whose x_t the cell no longer reads.
  std::vector<char> read(b.size(), 0);
  stack = s.next;
  stack.insert(stack.end(), s.outs.begin(), s.outs.end());
  std::vector<char> seen(b.size(), 0);
  while (!stack.empty()) {
    const int n = stack.back();
    stack.pop_back();
    if (seen[n] || (n <= top && !cdep[n] && !sdep[n])) continue;  // outside the cell
    seen[n] = read[n] = 1;
    for (int k = 0; k < b[n].n_in; ++k) stack.push_back(b.in(n, k));
  }
  std::vector<int> seqs, steps;
  for (std::size_t k = 0; k < s.seqs.size(); ++k)
    if (read[s.step_bound[k]]) seqs.push_back(s.seqs[k]), steps.push_back(s.step_bound[k]);
  s.seqs = seqs, s.step_bound = steps;
}

/// The scan node of `s` (an id of b), made with `scan_info`, after lift_step_values.
constexpr int make_scan(builder& b, scan_spec s, const op_info* scan_info) {
  const int C = static_cast<int>(s.inits.size()), S = static_cast<int>(s.seqs.size());
  const int Y = static_cast<int>(s.outs.size());
  if (static_cast<int>(s.carry_bound.size()) != C || static_cast<int>(s.next.size()) != C ||
      static_cast<int>(s.step_bound.size()) != S)
    throw "ctgraph internal error: a scan's carries, sequences and bound values do not pair up";
  if (s.T <= 0) throw "ctgraph: a scan needs at least one step";
  for (int k = 0; k < C; ++k)
    if (!(b[s.next[k]].out == b[s.inits[k]].out) || b[s.next[k]].type != b[s.inits[k]].type)
      throw "ctgraph: a scan's cell returns a next carry of another shape or type than its carry";
  for (int k = 0; k < S; ++k) {
    const shape& q = b[s.seqs[k]].out;
    if (q.rank < 1 || q.d[0] != s.T || !(stacked(b[s.step_bound[k]].out, s.T) == q))
      throw "ctgraph: a scan's sequences must all have the scan's length as their first axis";
  }
  lift_step_values(b, s);
  const int S1 = static_cast<int>(s.seqs.size());
  // What depends on the bound values; the cell is what the roots reach through it.
  int top = 0;
  for (const std::vector<int>* v : {&s.carry_bound, &s.step_bound, &s.next, &s.outs})
    for (int id : *v) top = std::max(top, id);
  std::vector<char> bound(top + 1, 0), dep(top + 1, 0), seen(top + 1, 0);
  for (int id : s.carry_bound) bound[id] = dep[id] = 1;
  for (int id : s.step_bound) bound[id] = dep[id] = 1;
  for (int n = 0; n <= top; ++n)
    for (int k = 0; k < b[n].n_in && !dep[n]; ++k) dep[n] = dep[b.in(n, k)];
  std::vector<int> stack = s.next, frees, saves;
  stack.insert(stack.end(), s.outs.begin(), s.outs.end());
  while (!stack.empty()) {
    const int n = stack.back();
    stack.pop_back();
    if (seen[n] || bound[n]) continue;
    seen[n] = 1;
    const node& nd = b[n];
    if (!dep[n]) {  // read from outside the loop; constants stay in the cell, inlined
      if (nd.op->cls != op_class::constant) frees.push_back(n);
      continue;
    }
    if (!nd.op->outputs && nd.op->cls != op_class::scan) saves.push_back(n);
    for (int k = 0; k < nd.n_in; ++k) stack.push_back(b.in(n, k));
    // Every output of a multi-output node, read by the cell or not: a VJP reads what the forward does not
    // (lstm_gates' act), and the backward would otherwise run the node again to get it. (Last: project()
    // may grow the builder, and nd is a reference into it.)
    if (nd.op->outputs && nd.op->cls != op_class::scan) {
      const int outs = static_cast<int>(b.outputs_of(n).size());
      for (int k = 0; k < outs; ++k) saves.push_back(project(b, n, k));
    }
  }
  std::sort(frees.begin(), frees.end());
  std::sort(saves.begin(), saves.end());
  saves.erase(std::unique(saves.begin(), saves.end()), saves.end());
  node n;
  n.op = scan_info;
  n.type = C ? b[s.inits[0]].type : b[s.outs[0]].type;
  n.a.i[0] = C, n.a.i[1] = S1, n.a.i[2] = Y, n.a.i[3] = s.flags, n.a.i[4] = s.T;
  std::vector<int> ins = s.inits;
  const std::vector<int>* parts[] = {&s.seqs, &frees,  &s.carry_bound, &s.step_bound,
                                     &s.next, &s.outs, &s.carry_bound, &saves};
  for (const std::vector<int>* v : parts) ins.insert(ins.end(), v->begin(), v->end());
  n.n_in = C + S1 + static_cast<int>(frees.size());
  n.n_body = static_cast<int>(ins.size()) - n.n_in;
  return b.emit(n, ins.data());
}

/// Binds what the cell's adjoint in `bw` (the VJP's scan of forward scan `fwd`) reads of the
/// forward step: a value the forward scan keeps becomes a step-bound value of bw over its
/// stack (only the carries when the forward rematerialises: the rest of the cell then runs
/// again in bw), an x_t one over its sequence.
constexpr void bind_forward_values(builder& b, int fwd, scan_spec& bw) {
  const scan_layout l = scan_layout_of(b[fwd]);
  const int N = b.size();
  std::vector<char> fdep(N, 0), seen(N, 0);
  std::vector<int> keep(N, -1), x_of(N, -1);
  for (int k = 0; k < l.C; ++k) fdep[b.body(fwd, l.carry_bound(k))] = 1;
  for (int k = 0; k < l.S; ++k) fdep[b.body(fwd, l.step_bound(k))] = 1, x_of[b.body(fwd, l.step_bound(k))] = k;
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < b[n].n_in && !fdep[n]; ++k) fdep[n] = fdep[b.in(n, k)];
  for (int k = 0; k < (l.remat ? l.C : l.D); ++k) keep[b.body(fwd, l.saveable(k))] = k;
  for (int id : bw.carry_bound) seen[id] = 1;
  for (int id : bw.step_bound) seen[id] = 1;
  std::vector<int> stack = bw.next;
  stack.insert(stack.end(), bw.outs.begin(), bw.outs.end());
  while (!stack.empty()) {
    const int n = stack.back();
    stack.pop_back();
    if (seen[n]) continue;
    seen[n] = 1;
    if (keep[n] >= 0) {
      bw.step_bound.push_back(n);
      bw.seqs.push_back(project(b, fwd, l.C + l.Y + keep[n]));
    } else if (x_of[n] >= 0) {
      bw.step_bound.push_back(n);
      bw.seqs.push_back(b.in(fwd, l.C + x_of[n]));
    } else if (fdep[n]) {
      for (int k = 0; k < b[n].n_in; ++k) stack.push_back(b.in(n, k));
    }
  }
}

}  // namespace ctgraph
