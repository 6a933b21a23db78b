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

/// A scan to build: its cell's bound values and roots, by id, and what binds them.
struct scan_spec {
  std::vector<int> inits, seqs;              // carry k starts as inits[k]; x_t is slice t of seqs[k]
  std::vector<int> carry_bound, step_bound;  // the cell's carries and x_t (placeholders, or any node)
  std::vector<int> next, outs;               // the cell's roots: its next carries and outputs
  int T = 0, flags = 0;                      // steps; 1: reverse, 2: rematerialise in the backward
};

/// The scan node of `s` (an id of b), made with `scan_info`.
constexpr int make_scan(builder& b, const scan_spec& s, const op_info* scan_info) {
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
  }
  std::sort(frees.begin(), frees.end());
  std::sort(saves.begin(), saves.end());
  node n;
  n.op = scan_info;
  n.type = C ? b[s.inits[0]].type : b[s.outs[0]].type;
  n.a.i[0] = C, n.a.i[1] = S, n.a.i[2] = Y, n.a.i[3] = s.flags, n.a.i[4] = s.T;
  std::vector<int> ins = s.inits;
  const std::vector<int>* parts[] = {&s.seqs, &frees,  &s.carry_bound, &s.step_bound,
                                     &s.next, &s.outs, &s.carry_bound, &saves};
  for (const std::vector<int>* v : parts) ins.insert(ins.end(), v->begin(), v->end());
  n.n_in = C + S + static_cast<int>(frees.size());
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
