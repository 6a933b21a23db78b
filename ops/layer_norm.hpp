// ops/layer_norm.hpp: normalisation over the last axis (torch.nn.functional.layer_norm without its affine part,
// which nn::layer_norm adds as elementwise ops that fuse into one loop).
//   layer_norm(x) -> xhat, rstd      mean = sum_j x_j / N, var = sum_j (x_j - mean)^2 / N (biased, torch's),
//                                    rstd = 1 / sqrt(var + eps) [..., 1], xhat = (x - mean) rstd; a.value() eps
//   VJP, in graph ops (so that it differentiates again), with g the adjoint of xhat and gr that of rstd:
//     dx = rstd (g - mean_j(g) - xhat mean_j(g xhat)) - gr rstd^2 xhat / N
// One kernel pass per row computes both outputs; the forward the unfused graph needs is five.
#pragma once
#include <ctgraph/kernels.hpp>
#include <vector>

#include "elementwise.hpp"
#include "reduce.hpp"
#include "rnn.hpp"

namespace ctgraph {

/// layer_norm(x): outputs xhat (x's shape) and rstd ([..., 1]).
struct layer_norm_op {
  static constexpr const char* name = "layer_norm";
  static constexpr op_class cls = op_class::kernel;
  static constexpr double flops = 7;  // per element: the sums, the centring and the scaling
  static constexpr bool stacks = true;
  static constexpr bool outputs(const attr_t&, const shape* in, int n, std::vector<shape>& out) {
    if (n != 1 || in[0].rank < 1) return false;
    shape r = in[0];
    r.d[r.rank - 1] = 1;
    out = {in[0], r};
    return true;
  }
  static constexpr shape_result infer(const attr_t& a, const shape* in, int n) {
    return detail::first_output<layer_norm_op>(a, in, n);
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    const shape& s = a.in_shape[0];
    T* out[2] = {a.output(0), a.output(1)};
    detail::unread_to_scratch(out, {s.size(), s.rows()});
    kernels::layer_norm_rows(a.input(0), out[0], out[1], s.rows(), s.back(), T(a.a.value()));
  }
  static constexpr void vjp(vjp_ctx& c) {
    if (!c.wants[0]) return;
    ref xhat = c.out(0), rstd = c.out(1);
    const double n = xhat.shape_of().back();
    detail::term dx = detail::none(c.b);
    if (c.has_grad(0)) {
      ref g = c.grad(0);
      dx = rstd * (g - sum_rows(g) / n - xhat * (sum_rows(g * xhat) / n));
    }
    if (c.has_grad(1)) dx = dx - detail::term(c.grad(1) * rstd * rstd * xhat / n);
    if (dx.some()) c.set(0, dx.r);
  }
  static void shape_mismatch(auto...) = delete;
};

/// layer_norm<eps>(x): x normalised over its last axis, (x - mean) / sqrt(var + eps) with the biased variance
/// (torch.nn.functional.layer_norm without weight and bias). eps defaults to torch's 1e-5.
template <scalar_value Eps = scalar_value(1e-5), expression X>
constexpr auto layer_norm(X x) {
  static_assert(shape_of<X>.rank >= 1 && !std::is_same_v<value_of<X>, int>,
                "ctgraph: layer_norm(x): x is a float or double tensor of rank >= 1");
  return output<0>(make_node<layer_norm_op, attr_value(Eps.value())>(x));
}

}  // namespace ctgraph
