// <ctgraph/nn.hpp>: layers, namespace ctgraph::nn. A layer is a constexpr function over expressions; its params
// take the element type of its input, and their names, layouts and initialisation are PyTorch's (torch.nn), under
// the layer's name: nn::linear<"fc", 10>(x) reads fc.weight [10, In] and fc.bias [10], so a state_dict saved as
// safetensors loads either way. An empty name gives torch's unprefixed names (weight_ih for an LSTMCell itself).
//
//   namespace nn = ctgraph::nn;
//   constexpr auto y = nn::linear<"fc", 10>(x);                 // x [..., In] -> [..., 10]
//   constexpr auto e = nn::embedding<"emb", 100, 16>(ids);      // int ids [...] -> [..., 16]
//   constexpr auto s = nn::lstm_cell<"dec", 32>(x, h, c);       // s.h, s.c [B, 32]
//   constexpr auto h1 = nn::gru_cell<"g", 32>(x, h);            // [B, 32]
//
// A shape error is a compile error whose first line names the layer, its name and the shapes
// (nn::linear_shape_mismatch, nn::lstm_cell_shape_mismatch, nn::gru_cell_shape_mismatch).
#pragma once
#include <type_traits>

#include "init.hpp"

namespace ctgraph::nn {

/// The hidden size of a recurrent layer, as a type, so that shape errors print it: hidden<32>.
template <int H>
struct hidden {};

/// nn::linear's shape error: x [...] does not fit a weight [Out, In] (x of rank 0, or its last axis not the
/// linear_options::in asked for). Deleted, so that the first error line names the layer and both shapes.
void linear_shape_mismatch(auto layer_name, auto x_dims, auto weight_dims) = delete;
/// nn::lstm_cell's shape error: x must be [B, In], h and c [B, H]. Deleted: the first error line names the
/// layer, H and the three shapes.
void lstm_cell_shape_mismatch(auto layer_name, auto hidden_size, auto x_dims, auto h_dims, auto c_dims) = delete;
/// nn::gru_cell's shape error: x must be [B, In], h [B, H]. Deleted: the first error line names the layer, H and
/// both shapes.
void gru_cell_shape_mismatch(auto layer_name, auto hidden_size, auto x_dims, auto h_dims) = delete;

namespace detail {
using ctgraph::detail::matrix;
// "layer.param", or "param" for an unnamed layer (torch's names for a bare module).
template <fixed_string Layer, fixed_string Param>
constexpr auto param_name() {
  if constexpr (Layer.size() == 0)
    return Param;
  else
    return Layer + "." + Param;
}
template <class X>
constexpr void require_floating() {
  static_assert(std::is_floating_point_v<value_of<X>>,
                "ctgraph::nn: a layer's input must be float or double (its params take that type)");
}
// The params of a recurrent cell with G gates, as torch.nn.LSTMCell / GRUCell name them; PyTorch initialises all
// of them U(-1/sqrt(H), 1/sqrt(H)).
template <fixed_string Name, class T, int G, int H, int In>
struct cell_params {
  static constexpr init_rule rule = init_rule::uniform(H);
  static constexpr auto weight_ih = init_param<param_name<Name, "weight_ih">(), T, rule, G * H, In>;
  static constexpr auto weight_hh = init_param<param_name<Name, "weight_hh">(), T, rule, G * H, H>;
  static constexpr auto bias_ih = init_param<param_name<Name, "bias_ih">(), T, rule, G * H>;
  static constexpr auto bias_hh = init_param<param_name<Name, "bias_hh">(), T, rule, G * H>;
};
// S with its last axis Last.
template <shape S, int Last>
constexpr shape with_last() {
  shape s = S;
  s.d[s.rank - 1] = Last;
  return s;
}
// A rank-1 x [In] as [1, In], the gemm's A. Higher ranks go as they are: a matmul of [..., M, In] by a matrix is
// one gemm over all rows.
template <int In, class X>
constexpr auto as_rows(X x) {
  if constexpr (shape_of<X>.rank >= 2)
    return x;
  else
    return make_node<reshape_op, attr_shape(matrix(1, In))>(x);
}
template <fixed_string Name, class T, int In, int Out, bool Bias, class Y>
constexpr auto plus_bias(Y y) {
  if constexpr (Bias)
    return y + init_param<param_name<Name, "bias">(), T, init_rule::uniform(In), Out>;
  else
    return y;
}
}  // namespace detail

/// Options of nn::linear.
struct linear_options {
  bool bias = true;  ///< false: no bias param (torch's bias=False)
  int in = 0;        ///< the input width the layer expects (0: any, taken from x); checked at compile time
};

/// nn::linear<"fc", Out>(x): torch.nn.Linear, y = x W^T + b.
/// x [..., In] (rank >= 1) -> [..., Out]; params fc.weight [Out, In] and fc.bias [Out] (none with
/// linear_options{.bias = false}), of x's element type. Init (PyTorch's): weight and bias U(-1/sqrt(In),
/// 1/sqrt(In)) (kaiming_uniform_ with a = sqrt(5) is that bound). The transpose is the gemm's flag, and the
/// leading axes are the gemm's rows: one gemm, whatever the rank.
template <fixed_string Name, int Out, linear_options O = linear_options{}, expression X>
constexpr auto linear(X) {
  detail::require_floating<X>();
  using T = value_of<X>;
  constexpr shape s = shape_of<X>;
  if constexpr (s.rank < 1 || (O.in != 0 && s.back() != O.in)) {
    linear_shape_mismatch(name<Name>{}, dims_of<s>(), dims<Out, (O.in ? O.in : s.back())>{});
  } else {
    constexpr int In = s.back();
    constexpr auto W = init_param<detail::param_name<Name, "weight">(), T, init_rule::uniform(In), Out, In>;
    auto y = detail::plus_bias<Name, T, In, Out, O.bias>(matmul(detail::as_rows<In>(X{}), transpose(W)));
    if constexpr (s.rank >= 2)
      return y;
    else
      return make_node<reshape_op, attr_shape(detail::with_last<s, Out>())>(y);
  }
}

/// nn::dropout<"drop", p>(x): torch.nn.Dropout(p) in training: each element zeroed with probability p, the others
/// scaled by 1 / (1 - p); its mask drawn from the run's seed (step.run(..., cg::seed(s))) and its name, so two
/// dropouts draw independent masks and the same seed the same ones. Applied in programs that compute a gradient
/// (training steps) only: an evaluation program's compile() removes it (torch's eval()). No params.
template <fixed_string Name, scalar_value P, expression X>
constexpr auto dropout(X x) {
  return ctgraph::dropout<P, ctgraph::detail::salt_of(Name)>(x);
}

/// nn::embedding<"emb", Num, Dim>(ids): torch.nn.Embedding, rows of emb.weight [Num, Dim] picked by int ids
/// [...] -> [..., Dim] (ids outside [0, Num) are a run-time error). T is the table's element type. Init
/// (PyTorch's): N(0, 1).
template <fixed_string Name, int Num, int Dim, class T = float, expression Ids>
constexpr auto embedding(Ids ids) {
  static_assert(std::is_same_v<value_of<Ids>, int>, "ctgraph::nn::embedding: ids must be an int input");
  return ctgraph::embedding(ids, init_param<detail::param_name<Name, "weight">(), T, init_rule::normal(), Num, Dim>);
}

/// What nn::lstm_cell returns: h' and c' [B, H] (`auto [h, c] = s;` works too).
template <class Hs, class Cs>
using lstm_cell_state = lstm_state<Hs, Cs>;

/// nn::lstm_cell<"dec", H>(x, h, c): torch.nn.LSTMCell, one step; returns {.h, .c}, each [B, H].
/// x [B, In], h and c [B, H], one element type. Params, torch's names and layouts, gates i, f, g, o:
/// dec.weight_ih [4H, In], dec.weight_hh [4H, H], dec.bias_ih [4H], dec.bias_hh [4H]. Init (PyTorch's): all
/// U(-1/sqrt(H), 1/sqrt(H)). Computed as two gemms and one fused add, pre = x W_ih^T + b_ih + h W_hh^T + b_hh,
/// then one fused gate kernel (cg::lstm_gates); its gradient is one fused kernel too, and differentiable again.
template <fixed_string Name, int H, expression X, expression Hs, expression Cs>
constexpr auto lstm_cell(X, Hs, Cs) {
  detail::require_floating<X>();
  constexpr shape sx = shape_of<X>;
  constexpr int B = sx.rank == 2 ? sx.d[0] : 0;
  if constexpr (sx.rank != 2 || !(shape_of<Hs> == detail::matrix(B, H)) || !(shape_of<Cs> == detail::matrix(B, H))) {
    lstm_cell_shape_mismatch(name<Name>{}, hidden<H>{}, dims_of<sx>(), dims_of<shape_of<Hs>>(),
                             dims_of<shape_of<Cs>>());
  } else {
    static_assert(ctgraph::detail::same_value_types<X, Hs, Cs>,
                  "ctgraph::nn::lstm_cell: x, h and c need one element type");
    using P = detail::cell_params<Name, value_of<X>, 4, H, sx.d[1]>;
    constexpr auto pre =
        matmul(X{}, transpose(P::weight_ih)) + P::bias_ih + matmul(Hs{}, transpose(P::weight_hh)) + P::bias_hh;
    return lstm_gates(pre, Cs{});
  }
}
/// nn::lstm_cell<"dec", H>(x): the step from zero h and c (torch's missing state). dec.weight_hh is not read, so
/// it is not among the step's params (load a state_dict with load_options::allow_extra_tensors).
template <fixed_string Name, int H, expression X>
constexpr auto lstm_cell(X) {
  detail::require_floating<X>();
  constexpr shape sx = shape_of<X>;
  if constexpr (sx.rank != 2) {
    lstm_cell_shape_mismatch(name<Name>{}, hidden<H>{}, dims_of<sx>(), dims<>{}, dims<>{});
  } else {
    using P = detail::cell_params<Name, value_of<X>, 4, H, sx.d[1]>;
    return lstm_gates(matmul(X{}, transpose(P::weight_ih)) + P::bias_ih + P::bias_hh);
  }
}

/// nn::gru_cell<"g", H>(x, h): torch.nn.GRUCell, one step; returns h' [B, H].
/// x [B, In], h [B, H], one element type. Params, torch's names and layouts, gates r, z, n: g.weight_ih [3H, In],
/// g.weight_hh [3H, H], g.bias_ih [3H], g.bias_hh [3H]. Init (PyTorch's): all U(-1/sqrt(H), 1/sqrt(H)).
/// Computed as gx = x W_ih^T + b_ih and gh = h W_hh^T + b_hh (gemms), then one fused gate kernel
/// (cg::gru_gates); its gradient is one fused kernel too, and differentiable again.
template <fixed_string Name, int H, expression X, expression Hs>
constexpr auto gru_cell(X, Hs) {
  detail::require_floating<X>();
  constexpr shape sx = shape_of<X>;
  constexpr int B = sx.rank == 2 ? sx.d[0] : 0;
  if constexpr (sx.rank != 2 || !(shape_of<Hs> == detail::matrix(B, H))) {
    gru_cell_shape_mismatch(name<Name>{}, hidden<H>{}, dims_of<sx>(), dims_of<shape_of<Hs>>());
  } else {
    static_assert(ctgraph::detail::same_value_types<X, Hs>, "ctgraph::nn::gru_cell: x and h need one element type");
    using P = detail::cell_params<Name, value_of<X>, 3, H, sx.d[1]>;
    return gru_gates(matmul(X{}, transpose(P::weight_ih)) + P::bias_ih,
                     matmul(Hs{}, transpose(P::weight_hh)) + P::bias_hh, Hs{});
  }
}
/// nn::gru_cell<"g", H>(x): the step from a zero h (gh is then g.bias_hh; g.weight_hh is not read, so it is not
/// among the step's params).
template <fixed_string Name, int H, expression X>
constexpr auto gru_cell(X) {
  detail::require_floating<X>();
  constexpr shape sx = shape_of<X>;
  if constexpr (sx.rank != 2) {
    gru_cell_shape_mismatch(name<Name>{}, hidden<H>{}, dims_of<sx>(), dims<>{});
  } else {
    using P = detail::cell_params<Name, value_of<X>, 3, H, sx.d[1]>;
    return gru_gates(matmul(X{}, transpose(P::weight_ih)) + P::bias_ih, broadcast_to<sx.d[0], 3 * H>(P::bias_hh));
  }
}

}  // namespace ctgraph::nn

// nn::lstm and nn::gru: scans of the cells above, over [T, B, features].
#include "recurrent.hpp"
#include "rnn_attention.hpp"
#include "transformer.hpp"
