// graph/plan.hpp: compile = plan. From the flat graph and its outputs: prune what the
// outputs do not need, fuse chains of elementwise nodes into single loops, order the
// steps and give every intermediate an arena offset, reusing memory after a buffer's
// last reader. All constexpr; the result becomes fixed-size arrays (fixed_plan).
#pragma once
#include <algorithm>
#include <array>

#include "autodiff.hpp"

namespace ctgraph {

/// Where a step's operand or result lives.
enum class space : std::uint8_t { none, arena, param, input, literal, slot };
struct loc {
  space sp = space::none;
  long off = 0;  // arena: byte offset; param / input: index in the step's tables; slot: a scan's slot
  constexpr bool operator==(const loc&) const = default;
};

/// A kernel call (or the fill of a materialised constant).
struct kernel_step {
  const op_runtime* op = nullptr;
  dtype type = dtype::f32;
  bool backward = false;  // computes a node of a reverse sweep (a gradient), for diagnostics
  attr_t a;
  loc out;
  shape out_shape;
  int n_in = 0;
  int first_in = 0;       // operands: the plan's in_locs and in_shapes [first_in, first_in + n_in)
  int n_out = 0;          // multi-output ops: their outputs follow the operands there (out unused);
                          // space::none where the graph reads none
  bool has_accs = false;  // then accumulators follow (run_args::accs): one per output (space::none for
                          // none) after the outputs, or a single-output op's one after its operands
};
/// How many accumulator locations follow a kernel step's operands and outputs.
constexpr int accumulators_of(const kernel_step& k) { return k.has_accs ? (k.n_out ? k.n_out : 1) : 0; }

inline constexpr int max_fused = 16;  // instructions per fused loop
inline constexpr int max_sources = 8;

/// One instruction of a fused elementwise loop; an operand k >= 0 is instruction k's
/// value, k < 0 is source -k-1.
struct ew_instr {
  const op_runtime* op = nullptr;
  int a = 0, b = 0;
};
struct ew_source {
  loc l;  // space::literal: the value's bits are `bits`
  std::int64_t bits = 0;
  long stride[max_rank] = {};  // element strides along the loop's axes; 0 where broadcast
};
/// A chain of elementwise nodes run as one loop over the output shape, no intermediate buffers.
struct fused_step {
  dtype type = dtype::f32;
  bool backward = false;  // its result is a node of a reverse sweep (a gradient), for diagnostics
  loc out;
  shape out_shape;
  int n = 0;
  ew_instr code[max_fused];
  int n_src = 0;
  ew_source src[max_sources];
};

struct leaf_entry {
  const char* name = "";  // points at the leaf type's static name
  dtype type = dtype::f32;
  shape s;
  int bound = 0;  // int inputs: values must lie in [0, bound)
  const char* bound_op = "";
};
struct output_entry {
  loc l;
  dtype type = dtype::f32;
  shape s;
};
struct order_entry {
  bool fused = false;
  int index = 0;
};

/// A scan step (a kernel step whose op is scan_runtime, a.i[0] its index in the plan's scans):
/// T runs of its cell's steps (body_order[order_begin, order_end)), which read their bound
/// values through slots and whose roots are copied out after each run.
struct scan_slot {
  loc base;         // in the scan's context
  long stride = 0;  // bytes
  int mode = 0;     // 0: base; 1: ping-pong carry, base + (t % 2) stride; 2: slice tt of a sequence;
                    // 3: the other buffer of a carry, base + ((t + 1) % 2) stride (a next carry written in place)
};
struct scan_copy {
  loc from, to;  // per-step copies: from in the cell's context, to in the scan's
  long bytes = 0, stride = 0;
  int mode = 0;  // to + ((t + 1) % 2) stride (1: next carry) or tt stride (2: a stacked output); 3: final
};
struct scan_step {
  int T = 0;
  bool reverse = false;
  long body_arena = 0;   // arena offset of the cell's arena
  long block_bytes = 0;  // the step's block: its carries (two buffers each) and the cell's arena
  int order_begin = 0, order_end = 0;
  int first_slot = 0, n_slots = 0;
  int first_copy = 0, n_copies = 0;   // after each run of the cell
  int first_init = 0, n_inits = 0;    // before the loop: initial carries into their buffers
  int first_final = 0, n_finals = 0;  // after it: the last carries out
};
inline constexpr op_runtime scan_runtime{.name = "scan", .flops = 0};
/// Slots a scan's cell can read (its carries, x_t and free values): a stack array per run.
inline constexpr int max_scan_slots = 64;

enum class plan_error { none, duplicate_name };

/// The plan while it is built: growable vectors.
struct dyn_plan {
  std::vector<kernel_step> kernels;
  std::vector<loc> in_locs;  // kernel steps' operands, end to end
  std::vector<shape> in_shapes;
  std::vector<fused_step> fused;
  std::vector<order_entry> order;
  std::vector<scan_step> scans;
  std::vector<order_entry> body_order;  // the steps of scans' cells
  std::vector<scan_slot> scan_slots;
  std::vector<scan_copy> scan_copies;
  std::vector<leaf_entry> inputs, params;
  std::vector<output_entry> outputs;
  long arena_bytes = 0, intermediate_bytes = 0;
  int graph_nodes = 0;
  plan_error error = plan_error::none;
};

struct plan_sizes {
  std::size_t kernels, fused, order, inputs, params, outputs, operands;
  std::size_t scans = 0, body_order = 0, scan_slots = 0, scan_copies = 0;
};

/// First-fit allocator over one arena: blocks kept sorted by offset, coalesced on free.
struct arena_allocator {
  std::vector<long> free_off, free_len;
  long top = 0, total = 0;
  static constexpr long align = 64;
  constexpr long alloc(long bytes) {
    bytes = (bytes + align - 1) / align * align;
    total += bytes;
    for (std::size_t i = 0; i < free_off.size(); ++i) {
      if (free_len[i] < bytes) continue;
      long off = free_off[i];
      free_off[i] += bytes;
      free_len[i] -= bytes;
      if (free_len[i] == 0) free_off.erase(free_off.begin() + i), free_len.erase(free_len.begin() + i);
      return off;
    }
    long off = top;
    top += bytes;
    return off;
  }
  constexpr void release(long off, long bytes) {
    bytes = (bytes + align - 1) / align * align;
    std::size_t i = 0;
    while (i < free_off.size() && free_off[i] < off) ++i;
    free_off.insert(free_off.begin() + i, off);
    free_len.insert(free_len.begin() + i, bytes);
    if (i + 1 < free_off.size() && free_off[i] + free_len[i] == free_off[i + 1]) {
      free_len[i] += free_len[i + 1];
      free_off.erase(free_off.begin() + i + 1), free_len.erase(free_len.begin() + i + 1);
    }
    if (i > 0 && free_off[i - 1] + free_len[i - 1] == free_off[i]) {
      free_len[i - 1] += free_len[i];
      free_off.erase(free_off.begin() + i), free_len.erase(free_len.begin() + i);
    }
  }
};

constexpr bool is_leaf(const node& n) { return n.op->cls == op_class::input || n.op->cls == op_class::param; }

/// What make_plan decided for each node of its graph, kept only when asked (graph exports):
/// compile() passes no trace and pays nothing for it.
struct plan_trace {
  std::vector<char> needed;  // an output depends on it (else pruned)
  std::vector<int> step;     // index in dyn_plan::order of the step computing it; -1: leaf or inlined constant
};

constexpr dyn_plan make_plan(const builder& b, const std::vector<int>& outs, plan_trace* trace,
                             const std::vector<int>* swept, const std::vector<int>* bound,
                             const std::vector<int>* placed);

/// The plan of scan node n's step, appended to p: its cell planned as a graph whose bound
/// values (carries, x_t, free values) are slots, and what the loop copies. The step's
/// carries (double-buffered) and the cell's arena are one block of the arena, held while
/// the step runs.
constexpr void plan_scan(dyn_plan& p, arena_allocator& mem, const builder& b, int n, const std::vector<loc>& where,
                         const std::vector<int>& proj_head, const std::vector<int>& proj_next,
                         const std::vector<int>* swept) {
  const node& nd = b[n];
  const scan_layout l = scan_layout_of(nd);
  const std::vector<shape> out_shapes = b.outputs_of(n);
  std::vector<loc> out_loc(out_shapes.size());  // where each needed output goes
  for (int m = proj_head[n]; m >= 0; m = proj_next[m]) out_loc[b[m].a.i[0]] = where[m];
  // The cell: bound values read from slots; roots are the next carries and what is read.
  std::vector<int> bound(b.size(), -1), roots, root_dest;  // root_dest: output index, or -1 - k for carry k
  for (int k = 0; k < l.C; ++k) bound[b.body(n, l.carry_bound(k))] = k;
  for (int k = 0; k < l.S; ++k) bound[b.body(n, l.step_bound(k))] = l.C + k;
  for (int k = 0; k < l.F; ++k) bound[b.in(n, l.C + l.S + k)] = l.C + l.S + k;
  if (2 * l.C + l.S + l.F > max_scan_slots) throw "ctgraph: a scan's cell reads more values than max_scan_slots";
  // A next carry the cell computes is written straight into the carry's other buffer (slot C + S + F + k).
  std::vector<int> placed(b.size(), -1);
  auto placeable = [&](int r) {  // computed by the cell and not placed yet
    return bound[r] < 0 && placed[r] < 0 && !is_leaf(b[r]) && b[r].op->cls != op_class::constant;
  };
  for (int k = 0; k < l.C; ++k) {
    const int r = b.body(n, l.next_carry(k));
    if (placeable(r)) placed[r] = l.C + l.S + l.F + k;
  }
  for (int k = 0; k < l.C; ++k) roots.push_back(b.body(n, l.next_carry(k))), root_dest.push_back(-1 - k);
  for (int k = 0; k < l.Y; ++k)
    if (out_loc[l.C + k].sp != space::none) roots.push_back(b.body(n, l.output_root(k))), root_dest.push_back(l.C + k);
  for (int k = 0; k < l.D; ++k)
    if (out_loc[l.C + l.Y + k].sp != space::none)
      roots.push_back(b.body(n, l.saveable(k))), root_dest.push_back(l.C + l.Y + k);
  // So is a per-step output or saveable, into its slice of the stacked output (slot 2C + S + F + j,
  // a sequence slot), while slots last: no copy after each run of the cell.
  std::vector<int> out_slot_root;  // per such slot, its root (index in roots)
  for (std::size_t r = 0; r < roots.size(); ++r) {
    const int m = roots[r];
    if (root_dest[r] >= 0 && placeable(m) &&
        2 * l.C + l.S + l.F + static_cast<int>(out_slot_root.size()) < max_scan_slots) {
      placed[m] = 2 * l.C + l.S + l.F + static_cast<int>(out_slot_root.size());
      out_slot_root.push_back(static_cast<int>(r));
    }
  }
  const dyn_plan cell = make_plan(b, roots, nullptr, swept, &bound, &placed);
  // The block: double-buffered carries, then the cell's arena.
  const long esz = static_cast<long>(dtype_size(nd.type));
  std::vector<long> carry_off(l.C), carry_bytes(l.C);
  long block = 0;
  for (int k = 0; k < l.C; ++k) {
    carry_bytes[k] = b[b.in(n, k)].out.size() * static_cast<long>(dtype_size(b[b.in(n, k)].type));
    carry_off[k] = block;
    block += 2 * ((carry_bytes[k] + arena_allocator::align - 1) / arena_allocator::align * arena_allocator::align);
  }
  const long cell_at = block;
  block += cell.arena_bytes;
  const long base = mem.alloc(block);
  mem.release(base, block);  // free again once the step has run: nothing else is placed meanwhile
  auto carry_loc = [&](int k) { return loc{space::arena, base + carry_off[k]}; };
  auto half = [&](int k) {
    return (carry_bytes[k] + arena_allocator::align - 1) / arena_allocator::align * arena_allocator::align;
  };
  scan_step sc;
  sc.T = l.T;
  sc.reverse = l.reverse;
  sc.body_arena = base + cell_at;
  sc.block_bytes = block;
  // Slots.
  sc.first_slot = static_cast<int>(p.scan_slots.size());
  for (int k = 0; k < l.C; ++k) p.scan_slots.push_back({carry_loc(k), half(k), 1});
  for (int k = 0; k < l.S; ++k) {
    const int s = b.in(n, l.C + k);
    p.scan_slots.push_back({where[s], b[s].out.size() / l.T * esz, 2});
  }
  for (int k = 0; k < l.F; ++k) p.scan_slots.push_back({where[b.in(n, l.C + l.S + k)], 0, 0});
  for (int k = 0; k < l.C; ++k) p.scan_slots.push_back({carry_loc(k), half(k), 3});
  for (const int r : out_slot_root)
    p.scan_slots.push_back(
        {out_loc[root_dest[r]], b[roots[r]].out.size() * static_cast<long>(dtype_size(b[roots[r]].type)), 2});
  sc.n_slots = static_cast<int>(p.scan_slots.size()) - sc.first_slot;
  // Copies: before the loop, after each run of the cell, after the loop.
  sc.first_init = static_cast<int>(p.scan_copies.size());
  for (int k = 0; k < l.C; ++k) p.scan_copies.push_back({where[b.in(n, k)], carry_loc(k), carry_bytes[k], 0, 0});
  sc.n_inits = l.C;
  sc.first_copy = static_cast<int>(p.scan_copies.size());
  for (std::size_t r = 0; r < roots.size(); ++r) {
    const loc from = cell.outputs[r].l;
    const long bytes = b[roots[r]].out.size() * static_cast<long>(dtype_size(b[roots[r]].type));
    if (root_dest[r] < 0 && placed[roots[r]] == l.C + l.S + l.F + (-1 - root_dest[r])) continue;  // written in place
    const int j = placed[roots[r]] - (2 * l.C + l.S + l.F);
    if (j >= 0 && out_slot_root[j] == static_cast<int>(r)) continue;  // written in its slice
    if (root_dest[r] < 0)
      p.scan_copies.push_back({from, carry_loc(-1 - root_dest[r]), bytes, half(-1 - root_dest[r]), 1});
    else
      p.scan_copies.push_back({from, out_loc[root_dest[r]], bytes, bytes, 2});
  }
  sc.n_copies = static_cast<int>(p.scan_copies.size()) - sc.first_copy;
  sc.first_final = static_cast<int>(p.scan_copies.size());
  for (int k = 0; k < l.C; ++k)
    if (out_loc[k].sp != space::none) p.scan_copies.push_back({carry_loc(k), out_loc[k], carry_bytes[k], half(k), 3});
  sc.n_finals = static_cast<int>(p.scan_copies.size()) - sc.first_final;
  // The cell's steps join the plan's tables; its order goes to body_order.
  const int kb = static_cast<int>(p.kernels.size()), fb = static_cast<int>(p.fused.size());
  const int lb = static_cast<int>(p.in_locs.size()), sb = static_cast<int>(p.scans.size()) + 1;  // +1: this one
  const int bb = static_cast<int>(p.body_order.size());
  const int slb = static_cast<int>(p.scan_slots.size()), cpb = static_cast<int>(p.scan_copies.size());
  for (kernel_step k : cell.kernels) {
    k.first_in += lb;
    if (k.op == &scan_runtime) k.a.i[0] += sb;
    p.kernels.push_back(k);
  }
  p.fused.insert(p.fused.end(), cell.fused.begin(), cell.fused.end());
  p.in_locs.insert(p.in_locs.end(), cell.in_locs.begin(), cell.in_locs.end());
  p.in_shapes.insert(p.in_shapes.end(), cell.in_shapes.begin(), cell.in_shapes.end());
  auto moved = [&](order_entry e) {
    e.index += e.fused ? fb : kb;
    return e;
  };
  for (const order_entry& e : cell.body_order) p.body_order.push_back(moved(e));
  sc.order_begin = static_cast<int>(p.body_order.size());
  for (const order_entry& e : cell.order) p.body_order.push_back(moved(e));
  sc.order_end = static_cast<int>(p.body_order.size());
  p.scans.push_back(sc);
  for (scan_step c : cell.scans) {  // nested scans
    c.order_begin += bb, c.order_end += bb;
    c.first_slot += slb, c.first_copy += cpb, c.first_init += cpb, c.first_final += cpb;
    p.scans.push_back(c);
  }
  p.scan_slots.insert(p.scan_slots.end(), cell.scan_slots.begin(), cell.scan_slots.end());
  p.scan_copies.insert(p.scan_copies.end(), cell.scan_copies.begin(), cell.scan_copies.end());
  p.intermediate_bytes += cell.intermediate_bytes;
}

/// Builds the plan for outputs `outs` of graph `b`; fills `trace` when given. `swept` holds
/// the [first, last) node ids of each reverse sweep (resolve_grads): steps computing such a
/// node are marked `backward`. `bound` (a scan's cell) maps node ids to slots: those nodes
/// are read from their slot, and nothing below them is planned.
constexpr dyn_plan make_plan(const builder& b, const std::vector<int>& outs, plan_trace* trace = nullptr,
                             const std::vector<int>* swept = nullptr, const std::vector<int>* bound = nullptr,
                             const std::vector<int>* placed = nullptr) {
  dyn_plan p;
  const int N = b.size();
  p.graph_nodes = N;
  auto slot_of = [&](int n) { return bound && n < static_cast<int>(bound->size()) ? (*bound)[n] : -1; };
  // 1. What the outputs need, and who reads what.
  std::vector<char> needed(N, 0), is_out(N, 0);
  for (int o : outs) needed[o] = is_out[o] = 1;
  std::vector<int> consumers(N, 0), only_consumer(N, -1);
  for (int n = N - 1; n >= 0; --n) {
    if (!needed[n] || slot_of(n) >= 0) continue;
    const node& nd = b[n];
    for (int k = 0; k < nd.n_in; ++k) {
      int i = b.in(n, k);
      bool first_use = true;
      for (int j = 0; j < k; ++j) first_use &= b.in(n, j) != i;
      if (!first_use) continue;
      needed[i] = 1;
      ++consumers[i];
      only_consumer[i] = n;
    }
  }
  // 2. Folds: acc + g, with g the output of a kernel that can add its result to a buffer it is given
  //    (op_info::accumulates: a matmul's gemm, a fused attention gradient) and read by nothing else, is
  //    no step of its own: g's kernel writes acc + result into the sum's buffer. acc must be ready by
  //    g's step: a slot, a leaf, or a buffer an earlier step writes. In a backward scan the running sum
  //    of a free value's adjoint then costs one pass per step, not three; a layer's bias, or the other
  //    gate product of an LSTM step, is added as its gemm writes its output.
  std::vector<int> folded_into(N, -1), acc_of(N, -1);  // per folded g: its sum, and the sum's other operand
  std::vector<int> folded(N, -1);                      // per sum folded away: its g
  auto producer = [&](int m) { return b[m].op->cls == op_class::project ? b.in(m, 0) : m; };
  for (int n = 0; n < N; ++n) {
    const node& nd = b[n];
    if (!needed[n] || !nd.op->is_add || nd.n_in != 2 || slot_of(n) >= 0) continue;
    for (int k = 0; k < 2 && folded[n] < 0; ++k) {
      const int g = b.in(n, k), acc = b.in(n, 1 - k), pg = producer(g);
      const node& ng = b[g];
      const int bit = ng.op->cls == op_class::project ? ng.a.i[0] : 0;
      if (g == acc || consumers[g] != 1 || is_out[g] || slot_of(g) >= 0 || slot_of(pg) >= 0 || folded_into[g] >= 0)
        continue;
      if (b[pg].op->cls != op_class::kernel || (pg == g && multi_output(b[g])) ||
          !((b[pg].op->accumulates >> bit) & 1u))
        continue;
      const shape& sa = b[acc].out;
      const bool rows = nd.out.rank == 2 && ((sa.rank == 1 && sa.d[0] == nd.out.d[1]) ||
                                             (sa.rank == 2 && sa.d[0] == 1 && sa.d[1] == nd.out.d[1]));
      if (!(ng.out == nd.out) || !(sa == nd.out || (rows && ((b[pg].op->accumulates_rows >> bit) & 1u))) ||
          ng.type != nd.type || b[acc].type != nd.type)
        continue;
      const node& na = b[acc];
      const int acc_step = folded[acc] >= 0 ? producer(folded[acc]) : producer(acc);  // the node whose step writes it
      const bool ready = slot_of(acc) >= 0 || is_leaf(na) ||
                         (na.op->cls != op_class::constant && acc_step < pg &&
                          (na.op->cls != op_class::elementwise || consumers[acc] > 1 || folded[acc] >= 0));
      if (!ready) continue;
      folded_into[g] = n, acc_of[g] = acc, folded[n] = g;
    }
  }
  // 3. Fusion: an elementwise node with one consumer, an elementwise node of the same
  //    shape and type, runs inside that consumer's loop.
  std::vector<char> inlined(N, 0);
  std::vector<int> instrs(N, 0), sources(N, 0);
  auto ew = [&](int n) { return b[n].op->cls == op_class::elementwise && slot_of(n) < 0 && folded[n] < 0; };
  for (int n = 0; n < N; ++n) {
    if (!needed[n] || !ew(n)) continue;
    const node& nd = b[n];
    instrs[n] = 1;
    for (int k = 0; k < nd.n_in; ++k) {
      int i = b.in(n, k);
      bool fuse = ew(i) && consumers[i] == 1 && !is_out[i] && b[i].out == nd.out && b[i].type == nd.type &&
                  instrs[n] + instrs[i] <= max_fused && sources[n] + sources[i] + (nd.n_in - k) <= max_sources;
      bool dup = false;
      for (int j = 0; j < k; ++j) dup |= b.in(n, j) == i;
      if (dup) continue;
      if (fuse) {
        inlined[i] = 1;
        instrs[n] += instrs[i];
        sources[n] += sources[i];
      } else {
        sources[n] += 1;
      }
    }
  }
  // 4. Leaves: tables of inputs and params, names checked for clashes.
  std::vector<loc> where(N);
  p.inputs.reserve(64);
  p.params.reserve(256);
  auto add_leaf = [](std::vector<leaf_entry>& v, const node& nd) {
    v.push_back({nd.name, nd.type, nd.out});
    return static_cast<long>(v.size() - 1);
  };
  std::vector<int> leaves;  // needed leaves, to check names for clashes
  for (int n = 0; n < N; ++n) {
    if (needed[n] && slot_of(n) >= 0) where[n] = {space::slot, slot_of(n)};
    if (!needed[n] || !is_leaf(b[n]) || slot_of(n) >= 0) continue;
    for (int m : leaves)
      if (str_eq(b[m].name, b[n].name)) p.error = plan_error::duplicate_name;
    leaves.push_back(n);
    bool in = b[n].op->cls == op_class::input;
    where[n] = {in ? space::input : space::param, add_leaf(in ? p.inputs : p.params, b[n])};
  }
  // Int inputs: the tightest bound any consumer puts on their values.
  for (int n = 0; n < N; ++n) {
    if (!needed[n]) continue;
    const node& nd = b[n];
    if (!nd.op->int_bound) continue;
    std::vector<shape> s(nd.n_in + 1);
    for (int k = 0; k < nd.n_in; ++k) s[k] = b[b.in(n, k)].out;
    for (int k = 0; k < nd.n_in; ++k) {
      const node& o = b[b.in(n, k)];
      if (o.type != dtype::i32 || where[b.in(n, k)].sp != space::input) continue;
      leaf_entry& e = p.inputs[where[b.in(n, k)].off];
      int bound = nd.op->int_bound(nd.a, s.data(), k);
      if (e.bound == 0 || bound < e.bound) e.bound = bound, e.bound_op = nd.op->name;
    }
  }
  // 5. Steps in topological (id) order; constants inline unless something needs a buffer.
  std::vector<char> materialise(N, 0);
  for (int n = 0; n < N; ++n) {
    if (!needed[n]) continue;
    const node& nd = b[n];
    if (is_out[n]) materialise[n] = 1;
    if (nd.op->cls != op_class::elementwise || folded[n] >= 0)
      for (int k = 0; k < nd.n_in; ++k) materialise[b.in(n, k)] = 1;
  }
  std::vector<int> step_node;
  std::vector<int> proj_head(N, -1), proj_next(N, -1);  // per multi-output node, its needed projections
  for (int n = 0; n < N; ++n) {
    if (!needed[n] || is_leaf(b[n]) || inlined[n] || slot_of(n) >= 0 || folded[n] >= 0) continue;
    if (b[n].op->cls == op_class::constant && !materialise[n]) continue;
    if (b[n].op->cls == op_class::project) {
      proj_next[n] = proj_head[b.in(n, 0)];
      proj_head[b.in(n, 0)] = n;
      continue;
    }
    if (multi_output(b[n]) && is_out[n]) throw "ctgraph: a multi-output node is an output: ask for its projections";
    step_node.push_back(n);
  }
  // 6. Lifetimes: the last step reading each node (outputs live to the end).
  const int S = static_cast<int>(step_node.size());
  std::vector<int> last_use(N, -1), root_of(N, -1);
  for (int s = 0; s < S; ++s) root_of[step_node[s]] = s;
  for (int n = N - 1; n >= 0; --n)  // an inlined node is read where its consumer's loop runs
    if (inlined[n]) root_of[n] = root_of[only_consumer[n]];
  for (int n = 0; n < N; ++n)  // a folded sum is computed by the kernel of its g
    if (folded[n] >= 0) root_of[n] = root_of[producer(folded[n])];
  for (int n = 0; n < N; ++n) {
    if (!needed[n] || root_of[n] < 0) continue;
    const node& nd = b[n];
    for (int k = 0; k < nd.n_in; ++k) last_use[b.in(n, k)] = std::max(last_use[b.in(n, k)], root_of[n]);
  }
  for (int o : outs) last_use[o] = S;
  for (int n = 0; n < N; ++n)  // g's buffer is the sum's: it lives as long
    if (folded[n] >= 0) last_use[folded[n]] = std::max(last_use[folded[n]], last_use[n]);
  // 7. Memory plan, then the steps themselves.
  arena_allocator mem;
  std::vector<int> free_head(S + 1, -1), free_next(N, -1);  // per step, the buffers whose last reader it is
  p.kernels.reserve(S);
  p.fused.reserve(S);
  p.order.reserve(S);
  for (int s = 0; s < S; ++s) {
    const int n = step_node[s];
    const node& nd = b[n];
    auto place = [&](int m) {             // a buffer for node m, freed after its last reader
      if (placed && (*placed)[m] >= 0) {  // a scan's next carry, written into its slot
        where[m] = {space::slot, (*placed)[m]};
        return;
      }
      if (folded_into[m] >= 0 && placed && (*placed)[folded_into[m]] >= 0) {  // the sum's slot
        where[m] = where[folded_into[m]] = {space::slot, (*placed)[folded_into[m]]};
        return;
      }
      where[m] = {space::arena, mem.alloc(b[m].out.size() * static_cast<long>(dtype_size(b[m].type)))};
      if (folded_into[m] >= 0) where[folded_into[m]] = where[m];
      if (last_use[m] < 0) last_use[m] = s;  // computed but unread (cannot happen for needed nodes)
      free_next[m] = free_head[last_use[m]];
      free_head[last_use[m]] = m;
    };
    const bool multi = multi_output(nd);
    if (multi)
      for (int m = proj_head[n]; m >= 0; m = proj_next[m]) place(m);
    else
      place(n);
    bool backward = false;
    if (swept)
      for (std::size_t k = 0; k + 1 < swept->size(); k += 2) backward |= (*swept)[k] <= n && n < (*swept)[k + 1];
    if (nd.op->cls == op_class::elementwise) {
      p.order.push_back({true, static_cast<int>(p.fused.size())});
      fused_step& f = p.fused.emplace_back();
      f.type = nd.type;
      f.backward = backward;
      f.out = where[n];
      f.out_shape = nd.out;
      // Post-order over the inlined tree below n: operands first.
      std::vector<int> ids;
      std::vector<int> stack{n};
      std::vector<int> code_of(0);
      while (!stack.empty()) {
        int m = stack.back();
        bool ready = true;
        const node& md = b[m];
        for (int k = md.n_in - 1; k >= 0; --k) {
          int i = b.in(m, k);
          if (!inlined[i]) continue;
          bool done = false;
          for (int x : ids) done |= x == i;
          if (!done) stack.push_back(i), ready = false;
        }
        if (!ready) continue;
        stack.pop_back();
        bool done = false;
        for (int x : ids) done |= x == m;
        if (done) continue;
        ew_instr ins;
        ins.op = md.op->rt;
        int opnd[2] = {0, 0};
        for (int k = 0; k < md.n_in && k < 2; ++k) {
          int i = b.in(m, k);
          int ref = 0;
          if (inlined[i]) {
            for (std::size_t x = 0; x < ids.size(); ++x)
              if (ids[x] == i) ref = static_cast<int>(x);
          } else {
            int src = -1;
            for (int x = 0; x < f.n_src; ++x)
              if (code_of.size() > static_cast<std::size_t>(x) && code_of[x] == i) src = x;
            if (src < 0) {
              src = f.n_src++;
              code_of.push_back(i);
              ew_source& es = f.src[src];
              const shape& si = b[i].out;
              long acc = 1;
              for (int ax = nd.out.rank - 1; ax >= 0; --ax) {
                int as = ax - (nd.out.rank - si.rank);
                if (as < 0) continue;
                es.stride[ax] = si.d[as] == 1 ? 0 : acc;
                acc *= si.d[as];
              }
              if (b[i].op->cls == op_class::constant && !materialise[i]) {
                es.l = {space::literal, 0};
                es.bits = b[i].a.vbits;
              } else {
                es.l = where[i];
              }
            }
            ref = -src - 1;
          }
          opnd[k] = ref;
        }
        ins.a = opnd[0];
        ins.b = md.n_in > 1 ? opnd[1] : opnd[0];
        f.code[f.n++] = ins;
        ids.push_back(m);
      }
    } else {
      p.order.push_back({false, static_cast<int>(p.kernels.size())});
      kernel_step& k = p.kernels.emplace_back();
      k.op = nd.op->rt;
      k.type = nd.type;
      k.backward = backward;
      k.a = nd.a;
      k.out = where[n];
      k.out_shape = nd.out;
      const bool scan = nd.op->cls == op_class::scan;  // no kernel call: no limits of one
      if (nd.n_in > max_kernel_operands && !scan)
        throw "ctgraph: a kernel step has more operands than max_kernel_operands";
      k.n_in = nd.n_in;
      k.first_in = static_cast<int>(p.in_locs.size());
      for (int j = 0; j < nd.n_in; ++j)
        p.in_locs.push_back(where[b.in(n, j)]), p.in_shapes.push_back(b[b.in(n, j)].out);
      if (multi) {
        const std::vector<shape> outs = b.outputs_of(n);
        if (static_cast<int>(outs.size()) > max_kernel_outputs && !scan)
          throw "ctgraph: a kernel step has more outputs than max_kernel_outputs";
        k.n_out = static_cast<int>(outs.size());
        k.out = {};
        for (int j = 0; j < k.n_out; ++j) p.in_locs.push_back({}), p.in_shapes.push_back(outs[j]);
        for (int m = proj_head[n]; m >= 0; m = proj_next[m]) p.in_locs[k.first_in + nd.n_in + b[m].a.i[0]] = where[m];
        for (int m = proj_head[n]; m >= 0; m = proj_next[m]) k.has_accs |= folded_into[m] >= 0;
        if (k.has_accs) {
          for (int j = 0; j < k.n_out; ++j) p.in_locs.push_back({}), p.in_shapes.push_back(outs[j]);
          for (int m = proj_head[n]; m >= 0; m = proj_next[m])
            if (folded_into[m] >= 0) {
              p.in_locs[k.first_in + nd.n_in + k.n_out + b[m].a.i[0]] = where[acc_of[m]];
              p.in_shapes[k.first_in + nd.n_in + k.n_out + b[m].a.i[0]] = b[acc_of[m]].out;
            }
        }
      } else if (folded_into[n] >= 0) {  // one output: its accumulator follows the operands
        k.has_accs = true;
        p.in_locs.push_back(where[acc_of[n]]), p.in_shapes.push_back(b[acc_of[n]].out);
      }
      if (scan) {
        k.op = &scan_runtime;
        k.a = {};
        k.a.i[0] = static_cast<int>(p.scans.size());
        plan_scan(p, mem, b, n, where, proj_head, proj_next, swept);
      }
    }
    for (int m = free_head[s]; m >= 0; m = free_next[m])
      mem.release(where[m].off, b[m].out.size() * static_cast<long>(dtype_size(b[m].type)));
  }
  p.arena_bytes = mem.top;
  p.intermediate_bytes = mem.total;
  for (int o : outs) p.outputs.push_back({where[o], b[o].type, b[o].out});
  if (trace) {
    trace->needed.swap(needed);
    trace->step.swap(root_of);
  }
  return p;
}

/// The plan as fixed-size arrays: a constant the executor takes its steps from.
template <plan_sizes Z>
struct fixed_plan {
  std::array<kernel_step, Z.kernels + 1> kernels{};  // +1: never empty
  std::array<loc, Z.operands + 1> in_locs{};
  std::array<shape, Z.operands + 1> in_shapes{};
  std::array<scan_step, Z.scans + 1> scans{};
  std::array<order_entry, Z.body_order + 1> body_order{};
  std::array<scan_slot, Z.scan_slots + 1> scan_slots{};
  std::array<scan_copy, Z.scan_copies + 1> scan_copies{};
  std::array<fused_step, Z.fused + 1> fused{};
  std::array<order_entry, Z.order> order{};
  std::array<leaf_entry, Z.inputs + 1> inputs{};
  std::array<leaf_entry, Z.params + 1> params{};
  std::array<output_entry, Z.outputs> outputs{};
  long arena_bytes = 0, intermediate_bytes = 0;
  int graph_nodes = 0;
  plan_error error = plan_error::none;
};

/// The sizes of a plan's tables.
constexpr plan_sizes sizes_of(const dyn_plan& p) {
  return {p.kernels.size(),    p.fused.size(),      p.order.size(),      p.inputs.size(),
          p.params.size(),     p.outputs.size(),    p.in_locs.size(),    p.scans.size(),
          p.body_order.size(), p.scan_slots.size(), p.scan_copies.size()};
}
/// Whether tables of sizes `z` fit in arrays of sizes `cap`.
constexpr bool fits_within(const plan_sizes& z, const plan_sizes& cap) {
  return z.kernels <= cap.kernels && z.fused <= cap.fused && z.order <= cap.order && z.inputs <= cap.inputs &&
         z.params <= cap.params && z.outputs <= cap.outputs && z.operands <= cap.operands && z.scans <= cap.scans &&
         z.body_order <= cap.body_order && z.scan_slots <= cap.scan_slots && z.scan_copies <= cap.scan_copies;
}

/// Plan p's tables (a dyn_plan, or a fixed_plan at least as large), of sizes `n` <= Z, in tables of sizes Z.
template <plan_sizes Z, class P>
constexpr fixed_plan<Z> fix(const P& p, const plan_sizes& n = Z) {
  fixed_plan<Z> f;
  std::copy_n(p.kernels.begin(), n.kernels, f.kernels.begin());
  std::copy_n(p.in_locs.begin(), n.operands, f.in_locs.begin());
  std::copy_n(p.in_shapes.begin(), n.operands, f.in_shapes.begin());
  std::copy_n(p.scans.begin(), n.scans, f.scans.begin());
  std::copy_n(p.body_order.begin(), n.body_order, f.body_order.begin());
  std::copy_n(p.scan_slots.begin(), n.scan_slots, f.scan_slots.begin());
  std::copy_n(p.scan_copies.begin(), n.scan_copies, f.scan_copies.begin());
  std::copy_n(p.fused.begin(), n.fused, f.fused.begin());
  std::copy_n(p.order.begin(), n.order, f.order.begin());
  std::copy_n(p.inputs.begin(), n.inputs, f.inputs.begin());
  std::copy_n(p.params.begin(), n.params, f.params.begin());
  std::copy_n(p.outputs.begin(), n.outputs, f.outputs.begin());
  f.arena_bytes = p.arena_bytes;
  f.intermediate_bytes = p.intermediate_bytes;
  f.graph_nodes = p.graph_nodes;
  f.error = p.error;
  return f;
}

/// A plan in tables of sizes Cap, with the sizes it uses: what one analysis gives when its
/// sizes are not known before it ran (program, include/ctgraph/program.hpp).
template <plan_sizes Cap>
struct bounded_plan {
  fixed_plan<Cap> plan;  ///< the plan, when it fits
  plan_sizes used{};     ///< the sizes of its tables
  bool fits = false;     ///< else `plan` is empty: the tables needed more than Cap
};
template <plan_sizes Cap>
constexpr bounded_plan<Cap> fix_within(const dyn_plan& p) {
  bounded_plan<Cap> r;
  r.used = sizes_of(p);
  r.fits = fits_within(r.used, Cap);
  if (r.fits) r.plan = fix<Cap>(p, r.used);
  return r;
}

/// What compile() does after flattening: gradients resolved, then the plan.
constexpr dyn_plan plan_graph(const builder& b0, const std::vector<int>& outs0, const op_info* add,
                              rewrite_fn rewrite = nullptr) {
  std::vector<int> remap, swept;
  builder b = resolve_grads(b0, remap, add, &swept, rewrite);
  std::vector<int> outs;
  for (int o : outs0) outs.push_back(remap[o]);
  return make_plan(b, outs, nullptr, &swept);
}

}  // namespace ctgraph
