#!/usr/bin/env python3
"""Generates a model translation unit for the compile-time benchmark.

  gen.py mlp L   -> L layers h = tanh(matmul(h, W_i) + b_i), gradients of all params
  gen.py res L   -> L residual layers h = tanh(matmul(h, W_i) + b_i) + h (fan-out),
                    6 forward nodes per layer (170 layers ~ 1,000 nodes)
  gen.py lstm T  -> nn::lstm (In 64, H 128, B 32) over T steps, loss sum(output), grad(loss):
                    the same graph whatever T (a cg::scan), so the same compile time
The program compiles the loss and every gradient, runs one step and prints the loss.
"""
import sys

kind, layers = sys.argv[1], int(sys.argv[2])
if kind == 'lstm':
    print('\n'.join([
        '#include <ctgraph/ctgraph.hpp>', '#include <cstdio>', '#include <vector>',
        'namespace cg = ctgraph;', 'namespace nn = ctgraph::nn;',
        f'constexpr auto x = cg::input<"x", float, {layers}, 32, 64>;',
        'constexpr auto r = nn::lstm<"lstm", 128>(x);',
        'constexpr auto loss = cg::sum(r.output);',
        'int main() {',
        '  auto step = cg::compile(loss, cg::grad(loss));',
        '  auto params = cg::parameters_of(step);',
        '  cg::init(params, 1);',
        f'  std::vector<float> xs({layers} * 32 * 64, 0.1f);',
        '  auto out = step.run(params, cg::feed<"x">(xs));',
        '  std::printf("loss %f, %d graph nodes, %zu steps\\n", static_cast<float>(out[loss]), step.graph_nodes(), step.num_steps());',
        '}']))
    sys.exit(0)
out = ['#include <ctgraph/ctgraph.hpp>', '#include <cstdio>', '#include <vector>',
       'namespace cg = ctgraph;', 'constexpr auto h0 = cg::input<"x", float, 8, 16>;']
for i in range(layers):
    out.append(f'constexpr auto W{i} = cg::param<"W{i}", float, 16, 16>;')
    out.append(f'constexpr auto b{i} = cg::param<"b{i}", float, 16>;')
    body = f'cg::tanh(cg::matmul(h{i}, W{i}) + b{i})'
    out.append(f'constexpr auto h{i + 1} = {body}{" + h" + str(i) if kind == "res" else ""};')
out.append(f'constexpr auto loss = cg::mean(h{layers});')
grads = ', '.join(f'W{i}, b{i}' for i in range(layers))
out += ['int main() {',
        f'  auto step = cg::compile(loss, cg::grad(loss, {grads}));',
        '  auto params = cg::parameters_of(step);',
        '  cg::init(params, 1);',
        '  std::vector<float> xs(8 * 16, 0.1f);',
        '  auto out = step.run(params, cg::feed<"x">(xs));',
        '  std::printf("loss %f, %d graph nodes, %zu steps\\n", static_cast<float>(out[loss]), step.graph_nodes(), step.num_steps());',
        '}']
print('\n'.join(out))
