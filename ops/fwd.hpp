// ops/fwd.hpp: the graph-building functions vector-Jacobian rules are written with.
// Each works on builder refs and is defined beside its op; declaring them here lets
// a rule use an op from another file (matmul's rule sums over broadcast batch axes).
#pragma once
#include "../graph/expr.hpp"

namespace ctgraph {

constexpr ref operator+(ref a, ref b);
constexpr ref operator-(ref a, ref b);
constexpr ref operator*(ref a, ref b);
constexpr ref operator/(ref a, ref b);
constexpr ref operator-(ref a);
constexpr ref operator+(double a, ref b);
constexpr ref operator-(double a, ref b);
constexpr ref operator*(double a, ref b);
constexpr ref operator/(ref a, double b);
constexpr ref exp(ref x);
constexpr ref log(ref x);
constexpr ref tanh(ref x);
constexpr ref sigmoid(ref x);
constexpr ref relu(ref x);
constexpr ref sqrt(ref x);
constexpr ref erf(ref x);
constexpr ref heaviside(ref x);                          // 1 where x > 0, else 0
constexpr ref sum_to(ref x, const shape& target);        // sums broadcast axes away: the adjoint of broadcasting
constexpr ref sum_rows(ref x);                           // sums the last axis, keeping it as size 1
constexpr ref expand(ref x, int mask, const shape& to);  // inverse of sum over `mask` axes
constexpr ref reshape(ref x, const shape& to);
constexpr ref permute(ref x, const int* perm);
constexpr ref slice(ref x, int axis, int begin, int end);
constexpr ref pad(ref x, int axis, int begin, int full);
constexpr ref matmul(ref a, ref b, bool ta, bool tb);
constexpr ref matmul_rows(ref a, ref b);  // a^T b over rows (ops/matmul.hpp)
constexpr ref softmax(ref x);
constexpr ref one_hot(ref ids, int classes, dtype t);
constexpr ref embedding(ref ids, ref table);
constexpr ref scatter_add(ref ids, ref g, int rows);

/// For ops whose operands broadcast: the adjoint of operand k is r summed back to its shape.
constexpr void set_unbroadcast(vjp_ctx& c, int k, ref r) {
  if (c.wants[k]) c.set(k, sum_to(r, c.x(k).shape_of()));
}

}  // namespace ctgraph
