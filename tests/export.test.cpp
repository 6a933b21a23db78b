// Graph export: to_dot's nodes, edges and fused clusters on a small MLP and its gradient;
// the node table behind it (forward / backward, fused loops, outputs); summary's counts,
// bytes and FLOPs against numbers worked out by hand; how shapes print.
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "testing.hpp"

namespace cg = ctgraph;

namespace {
// x [8, 4] -> fc1 (16) -> tanh -> out (3) -> cross_entropy.
constexpr int B = 8, In = 4, H = 16, C = 3;
constexpr auto x = cg::input<"x", float, B, In>;
constexpr auto y = cg::input<"y", int, B>;
constexpr auto W1 = cg::param<"fc1.weight", float, H, In>;
constexpr auto b1 = cg::param<"fc1.bias", float, H>;
constexpr auto W2 = cg::param<"out.weight", float, C, H>;
constexpr auto b2 = cg::param<"out.bias", float, C>;
constexpr auto h = cg::tanh(cg::matmul(x, cg::transpose(W1)) + b1);
constexpr auto logits = cg::matmul(h, cg::transpose(W2)) + b2;
constexpr auto loss = cg::cross_entropy(logits, y);
constexpr auto grads = cg::grad(loss);  // fc1.weight, fc1.bias, out.weight, out.bias

// The dot text's nodes (id -> label) and edges (labels of both ends).
struct parsed_dot {
  std::map<std::string, std::string> label;  // "n3" -> "matmul [8, 16]\nB transposed"
  std::set<std::pair<std::string, std::string>> edges;
  std::vector<std::string> clusters;  // cluster labels
  std::map<std::string, std::string> line;
};
parsed_dot parse(const std::string& dot) {
  parsed_dot p;
  std::regex node_re(R"re(^\s*(n\d+) \[label="((?:[^"\\]|\\.)*)")re");
  std::regex edge_re(R"re(^\s*(n\d+) -> (n\d+))re");
  std::regex cluster_re(R"re(^\s*subgraph cluster_\w+ \{)re");
  std::regex cluster_label_re(R"re(^\s*label="([^"]*)"; style=)re");
  std::vector<std::pair<std::string, std::string>> raw_edges;
  std::size_t start = 0;
  while (start < dot.size()) {
    std::size_t end = dot.find('\n', start);
    if (end == std::string::npos) end = dot.size();
    std::string l = dot.substr(start, end - start);
    start = end + 1;
    std::smatch m;
    if (std::regex_search(l, m, node_re)) {
      std::string lab = m[2];
      p.label[m[1]] = std::regex_replace(lab, std::regex(R"(\\n)"), "\n");
      p.line[m[1]] = l;
    } else if (std::regex_search(l, m, edge_re)) {
      raw_edges.emplace_back(m[1], m[2]);
    } else if (std::regex_search(l, m, cluster_label_re)) {
      p.clusters.push_back(m[1]);
    }
  }
  for (auto& [a, b] : raw_edges) p.edges.emplace(p.label.at(a), p.label.at(b));
  return p;
}
bool has_edge(const parsed_dot& p, std::string_view from, std::string_view to) {
  for (auto& [a, b] : p.edges)
    if (a.starts_with(from) && b.starts_with(to)) return true;
  return false;
}
int count_labels(const parsed_dot& p, std::string_view prefix) {
  int n = 0;
  for (auto& [id, l] : p.label) n += l.starts_with(prefix);
  return n;
}
}  // namespace

TEST_CASE("to_dot: the forward graph of an MLP", "[export][dot]") {
  const std::string dot = cg::to_dot(logits);
  INFO(dot);
  CHECK(dot.starts_with("digraph ctgraph {"));
  CHECK(dot.ends_with("}\n"));
  const parsed_dot p = parse(dot);
  // x, W1, b1, matmul, add, tanh, W2, b2, matmul, add: transposes fold into the matmuls.
  CHECK(p.label.size() == 10);
  CHECK(count_labels(p, "x\ninput [8, 4]") == 1);
  CHECK(count_labels(p, "fc1.weight\nparam [16, 4]") == 1);
  CHECK(count_labels(p, "out.bias\nparam [3]") == 1);
  CHECK(count_labels(p, "matmul [8, 16]\nB transposed") == 1);
  CHECK(count_labels(p, "matmul [8, 3]\nB transposed") == 1);
  CHECK(count_labels(p, "tanh [8, 16]") == 1);
  CHECK(count_labels(p, "permute") == 0);
  CHECK(has_edge(p, "x\n", "matmul [8, 16]"));
  CHECK(has_edge(p, "fc1.weight\n", "matmul [8, 16]"));
  CHECK(has_edge(p, "matmul [8, 16]", "add [8, 16]"));
  CHECK(has_edge(p, "fc1.bias\n", "add [8, 16]"));
  CHECK(has_edge(p, "add [8, 16]", "tanh [8, 16]"));
  CHECK(has_edge(p, "tanh [8, 16]", "matmul [8, 3]"));
  CHECK(has_edge(p, "matmul [8, 3]", "add [8, 3]"));
  CHECK(p.edges.size() == 9);
  // Each bias add is folded into its matmul's step (the gemm adds the bias as it writes C), and tanh is a
  // loop of its own: no fused loop of several nodes. Steps: matmul (+ bias) 0, tanh 1, matmul (+ bias) 2.
  CHECK(p.clusters.empty());
  CHECK(count_labels(p, "add [8, 16]\nstep 0") == 1);
  CHECK(count_labels(p, "tanh [8, 16]\nstep 1") == 1);
  CHECK(count_labels(p, "add [8, 3]\nstep 2\noutput 0") == 1);
  CHECK(count_labels(p, "matmul [8, 16]\nB transposed\nstep 0") == 1);
  CHECK(count_labels(p, "matmul [8, 3]\nB transposed\nstep 2") == 1);
  // No gradient nodes.
  CHECK(dot.find("#f9d2b4") == std::string::npos);
}

TEST_CASE("to_dot: forward and backward, gradient nodes marked", "[export][dot]") {
  const std::string dot = cg::to_dot(loss, grads);
  INFO(dot);
  const parsed_dot p = parse(dot);
  CHECK(count_labels(p, "cross_entropy []\nstep") == 1);
  CHECK(count_labels(p, "cross_entropy []") == 1);
  // y is an int input.
  CHECK(count_labels(p, "y\ninput [8] int") == 1);
  // Outputs 0 (loss) to 4 (the gradients): a double border each.
  for (int k = 0; k <= 4; ++k) {
    INFO("output " << k);
    int n = 0;
    for (auto& [id, l] : p.label)
      if (l.ends_with("output " + std::to_string(k))) {
        ++n;
        CHECK(p.line.at(id).find("peripheries=2") != std::string::npos);
      }
    CHECK(n == 1);
  }
  // The gradient of out.weight is a matmul of the logits' adjoint with h, [3, 16]; it is a
  // gradient node, orange; the forward matmuls stay blue.
  int grad_matmuls = 0;
  for (auto& [id, l] : p.label) {
    if (!l.starts_with("matmul")) continue;
    const bool orange = p.line.at(id).find("#f9d2b4") != std::string::npos;
    if (l.starts_with("matmul [8, 16]\nB transposed") || l.starts_with("matmul [8, 3]\nB transposed")) {
      CHECK_FALSE(orange);
    } else {
      CHECK(orange);
      ++grad_matmuls;
    }
  }
  CHECK(grad_matmuls == 3);  // d h [8, 16], d out.weight [3, 16], d fc1.weight [16, 4]
  CHECK(count_labels(p, "matmul [3, 16]") == 1);
  CHECK(count_labels(p, "matmul [16, 4]") == 1);
  CHECK(has_edge(p, "tanh [8, 16]", "matmul [3, 16]"));
  CHECK(has_edge(p, "x\n", "matmul [16, 4]"));
  // Fused loops exist in the backward graph too (tanh's VJP: g * (1 - t * t)).
  CHECK(p.clusters.size() >= 2);
  for (const auto& c : p.clusters) CHECK(c.starts_with("fused loop "));
}

TEST_CASE("export_graph: the node table behind to_dot", "[export]") {
  constexpr const auto& g = cg::export_graph(loss, grads);
  auto s = cg::compile(loss, grads);
  static_assert(g.outputs == 5);
  CHECK(g.steps == static_cast<int>(s.num_steps()));
  CHECK(g.loops == static_cast<int>(s.num_fused_steps()));
  CHECK(g.count <= s.graph_nodes());
  int leaves = 0, backward = 0, steps_seen = 0;
  std::set<int> steps;
  for (int i = 0; i < g.count; ++i) {
    const cg::export_node& e = g.nodes[i];
    for (int k = 0; k < e.n_in; ++k) CHECK(g.in(i, k) < i);  // topological order
    if (e.cls == cg::op_class::param || e.cls == cg::op_class::input) {
      ++leaves;
      CHECK_FALSE(e.backward);
      CHECK(e.step == -1);
    }
    backward += e.backward;
    if (e.step >= 0) steps.insert(e.step), ++steps_seen;
    if (e.output >= 1) CHECK(e.backward);  // the gradients
    if (e.output == 0) CHECK_FALSE(e.backward);
  }
  CHECK(leaves == 6);
  CHECK(backward > 0);
  CHECK(static_cast<int>(steps.size()) == g.steps);  // every step computes some node
}

TEST_CASE("summary: params, memory, steps and FLOPs of a forward MLP", "[export][summary]") {
  auto s = cg::compile(logits);
  const cg::step_summary r = cg::summary(s);
  REQUIRE(r.params.size() == 4);
  CHECK(r.params[0].name == "fc1.weight");
  CHECK(r.params[0].count == H * In);
  CHECK(r.params[0].s == cg::make_shape<H, In>());
  CHECK(r.params[1].name == "fc1.bias");
  CHECK(r.params[2].name == "out.weight");
  CHECK(r.params[3].name == "out.bias");
  CHECK(r.param_count == H * In + H + C * H + C);  // 131
  CHECK(r.param_count == 131);
  CHECK(r.param_bytes == 131 * 4);
  CHECK(r.steps == 3);  // matmul (+ bias), loop (tanh), matmul (+ bias): the bias adds are folded into the gemms
  CHECK(r.kernel_steps == 2);
  CHECK(r.fused_loops == 1);
  CHECK(r.arena_bytes == s.arena_bytes());
  CHECK(r.intermediate_bytes == s.intermediate_bytes());
  // matmuls: 2 * 8 * 16 * 4 + 2 * 8 * 3 * 16 = 1024 + 768.
  CHECK(r.matmul_flops == 1792);
  // add + tanh over [8, 16]: (1 + 20) * 128; add over [8, 3]: 24 (folded adds count where they run).
  CHECK(r.other_flops == 21 * 128 + 24);
  CHECK(r.flops() == 1792 + 2712);
  const std::string t = r.table();
  INFO(t);
  CHECK(t.find("fc1.weight") != std::string::npos);
  CHECK(t.find("[16, 4]") != std::string::npos);
  CHECK(t.find("131") != std::string::npos);
  CHECK(t.find("FLOPs per run: 4.50 k (matmul 1.79 k, other 2.71 k)") != std::string::npos);
}

TEST_CASE("summary: a training step counts the backward matmuls", "[export][summary]") {
  auto s = cg::compile(loss, grads);
  const cg::step_summary r = cg::summary(s);
  CHECK(r.param_count == 131);
  CHECK(r.steps == r.kernel_steps + r.fused_loops);
  // Forward 1792; backward: d logits x out.weight -> d h (2*8*16*3 = 768), d out.weight
  // (2*3*16*8 = 768), d fc1.weight (2*16*4*8 = 1024); no d x (x is an input).
  CHECK(r.matmul_flops == 1792 + 768 + 768 + 1024);
  CHECK(r.other_flops > 0);
}

TEST_CASE("shapes print as [32, 64], a scalar as []", "[export][format]") {
  CHECK(fmt::format("{}", cg::make_shape<32, 64>()) == "[32, 64]");
  CHECK(fmt::format("{}", cg::make_shape<7>()) == "[7]");
  CHECK(fmt::format("{}", cg::shape{}) == "[]");
  CHECK(fmt::format("{}", cg::shape_of<decltype(logits)>) == "[8, 3]");
  CHECK(fmt::format(fmt::runtime("{} and {}"), cg::make_shape<2, 3>(), cg::shape{}) == "[2, 3] and []");
  std::string dims;
  cg::detail::format_dims(std::back_inserter(dims), std::vector<std::uint64_t>{3, 4, 5});  // a checkpoint's dims
  CHECK(dims == "[3, 4, 5]");
}

TEST_CASE("to_dot: writes the MLP's graph for `dot -Tsvg` (CTest fixture)", "[.][dot_file]") {
  const char* path = std::getenv("CTGRAPH_EXPORT_DOT");
  REQUIRE(path != nullptr);
  std::ofstream(path) << cg::to_dot(loss, grads);
  CHECK(std::ifstream(path).good());
}

TEST_CASE("to_dot: a scan, its cell as a cluster, its block of the arena", "[export][dot][scan]") {
  constexpr auto xs = cg::input<"xs", float, 5, 2, 3>;
  constexpr auto h0 = cg::input<"h0", float, 2, 4>;
  constexpr auto U = cg::param<"U", float, 4, 4>;
  constexpr auto Wx = cg::param<"Wx", float, 3, 4>;
  constexpr auto r = cg::scan(
      [](auto hc, auto xt) {
        auto n = cg::tanh(cg::matmul(xt, Wx) + cg::matmul(hc, U));
        return std::tuple{n, n};
      },
      h0, xs);
  constexpr auto l = cg::sum(r.outputs);
  constexpr const auto& g = cg::export_graph(l, cg::grad(l));
  int scans = 0, in_cell = 0, roots = 0;
  for (int i = 0; i < g.count; ++i) {
    const cg::export_node& e = g.nodes[i];
    for (int k = 0; k < e.n_in; ++k) CHECK(g.in(i, k) < i);
    if (e.cls == cg::op_class::scan) {
      ++scans;
      CHECK(e.block > 0);
    }
    if (e.cell >= 0) {
      ++in_cell, roots += e.root;
      CHECK(g.nodes[e.cell].cls == cg::op_class::scan);
    }
  }
  CHECK(scans == 2);  // the forward loop and its backpropagation through time
  CHECK(in_cell > 4);
  CHECK(roots >= 2);
  const std::string dot = cg::to_dot(l, cg::grad(l));
  INFO(dot);
  const parsed_dot p = parse(dot);
  int cells = 0;
  for (const auto& c : p.clusters) cells += c.starts_with("cell of scan n");
  CHECK(cells == 2);
  CHECK(count_labels(p, "scan, 5 steps\nblock of") == 1);
  CHECK(count_labels(p, "scan, 5 steps, reverse\nblock of") == 1);
  CHECK(count_labels(p, "carry 0\n[2, 4]") >= 1);
  CHECK(count_labels(p, "lifted x_t") >= 1);   // xs Wx, for all steps before the loop
  CHECK(has_edge(p, "U\n", "matmul [2, 4]"));  // a free value read inside the cell
}
