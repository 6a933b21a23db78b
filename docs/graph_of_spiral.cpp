// docs/graph_of_spiral.cpp: writes the spiral MLP's graph as Graphviz text, for the
// documentation (target `docs`): <dir>/spiral_forward.dot (the loss alone) and
// <dir>/spiral_training.dot (loss, logits and every gradient, as the training step
// compiles them). The model is the one in examples/spiral.
#include <ctgraph/ctgraph.hpp>
#include <ctgraph/export.hpp>
#include <fstream>
#include <stdexcept>
#include <string>

namespace cg = ctgraph;

constexpr int classes = 3, n = 300, hidden = 64;

template <cg::fixed_string Name, int In, int Out>
constexpr auto linear(cg::expression auto x) {
  return cg::matmul(x, cg::transpose(cg::param<Name + ".weight", float, Out, In>)) +
         cg::param<Name + ".bias", float, Out>;
}

constexpr auto x = cg::input<"x", float, n, 2>;
constexpr auto y = cg::input<"y", int, n>;
constexpr auto h1 = cg::tanh(linear<"fc1", 2, hidden>(x));
constexpr auto h2 = cg::tanh(linear<"fc2", hidden, hidden>(h1));
constexpr auto logits = linear<"out", hidden, classes>(h2);
constexpr auto loss = cg::cross_entropy(logits, y);

static void write(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  if (!(f << text)) throw std::runtime_error("cannot write " + path);
}

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : ".";
  write(dir + "/spiral_forward.dot", cg::to_dot(loss));
  write(dir + "/spiral_training.dot", cg::to_dot(loss, logits, cg::grad(loss)));
  return 0;
}
