// <ctgraph/recurrent.hpp>: nn::lstm and nn::gru (torch.nn.LSTM, torch.nn.GRU), part of <ctgraph/nn.hpp>.
// A layer is a cg::scan of its cell over [T, B, features], per layer and direction, with torch's param names
// (weight_ih_l0, ..., weight_hh_l1_reverse), layouts and gate orders. Padded batches take each sequence's length
// (nn::lengths): a padded step changes neither the outputs at real positions (its own output is zero, as
// torch's pad_packed_sequence gives) nor the state, so a reverse direction starts at each sequence's true end
// and the final h is torch's: the state after the last real step, in either direction.
#pragma once
#include "nn.hpp"

namespace ctgraph::nn {

/// Options of nn::lstm and nn::gru (torch's num_layers and bidirectional), and how backpropagation through
/// time keeps the steps: every step's values (the default), or only the carries, each step's cell recomputed
/// in the backward loop (remat: less memory).
struct rnn_options {
  int layers = 1;              ///< stacked layers (torch's num_layers), 1 to 9
  bool bidirectional = false;  ///< a reverse direction per layer; outputs concatenated [.., 2H]
  bool remat = false;          ///< keep only the carries for the backward (cg::scan_options::remat)
};
using lstm_options = rnn_options;  ///< nn::lstm's options
using gru_options = rnn_options;   ///< nn::gru's options

/// Each sequence's length, for a padded batch: nn::lengths(len) with len an int [B] in [0, T].
template <class L>
struct lengths_of {
  L len;  ///< the lengths, an int [B] expression
};
/// Marks an int [B] expression as the lengths of a padded batch's sequences.
template <expression L>
constexpr lengths_of<L> lengths(L len) {
  static_assert(std::is_same_v<value_of<L>, int> && shape_of<L>.rank == 1,
                "ctgraph::nn::lengths(len): len is an int [B], each sequence's length");
  return {len};
}

/// What nn::lstm returns: output [T, B, dirs * H] (the last layer's h at every step), h and c [layers * dirs, B,
/// H] (the final states, torch's h_n and c_n, layer-major: layer 0 forward, layer 0 reverse, layer 1, ...).
template <class O, class Hs, class Cs>
struct lstm_result {
  O output;  ///< [T, B, dirs * H]
  Hs h;      ///< [layers * dirs, B, H]
  Cs c;      ///< [layers * dirs, B, H]
};
/// What nn::gru returns: output [T, B, dirs * H] and h [layers * dirs, B, H] (torch's h_n).
template <class O, class Hs>
struct gru_result {
  O output;  ///< [T, B, dirs * H]
  Hs h;      ///< [layers * dirs, B, H]
};

namespace detail {
// torch's suffix of layer L's params: "_l0", "_l1_reverse".
template <int L, bool Rev>
constexpr auto layer_suffix() {
  static_assert(L >= 0 && L < 10, "ctgraph::nn: recurrent layers have at most 9 stacked layers");
  fixed_string<4> s;
  s.data[0] = '_', s.data[1] = 'l', s.data[2] = static_cast<char>('0' + L);
  if constexpr (Rev)
    return s + "_reverse";
  else
    return s;
}
// A layer's params (G gates of H), torch's names; all U(-1/sqrt(H), 1/sqrt(H)).
template <fixed_string Name, fixed_string Suffix, class T, int G, int H, int In>
struct layer_params {
  static constexpr init_rule rule = init_rule::uniform(H);
  static constexpr auto weight_ih = init_param<param_name<Name, "weight_ih">() + Suffix, T, rule, G * H, In>;
  static constexpr auto weight_hh = init_param<param_name<Name, "weight_hh">() + Suffix, T, rule, G * H, H>;
  static constexpr auto bias_ih = init_param<param_name<Name, "bias_ih">() + Suffix, T, rule, G * H>;
  static constexpr auto bias_hh = init_param<param_name<Name, "bias_hh">() + Suffix, T, rule, G * H>;
};
template <class T, int B, int H>
constexpr auto zeros() {
  return broadcast_to<B, H>(const_expr<dtype_of<T>(), 0>{});
}
// Carry k of a stacked state [L*D, B, H]: a [B, H].
template <int K, expression S>
constexpr auto state_at(S s) {
  constexpr shape q = shape_of<S>;
  return reshape<q.d[1], q.d[2]>(slice<0, K, K + 1>(s));
}
// The finals [B, H]... stacked as [n, B, H].
template <class... E>
constexpr auto stack_states(E... e) {
  constexpr shape q = shape_of<std::tuple_element_t<0, std::tuple<E...>>>;
  if constexpr (sizeof...(E) == 1)
    return reshape<1, q.d[0], q.d[1]>(e...);
  else
    return concat<0>(reshape<1, q.d[0], q.d[1]>(e)...);
}

// One LSTM step of layer params P. Padded batches scan a mask m [B, 1] (1 at real steps) too: a padded step
// keeps the state and outputs zero.
template <class P>
constexpr auto lstm_pre(auto x, auto h) {
  return matmul(x, transpose(P::weight_ih)) + P::bias_ih + matmul(h, transpose(P::weight_hh)) + P::bias_hh;
}
template <class P>
constexpr auto lstm_step = [](auto carry, auto x) {
  auto [h, c] = carry;
  auto s = lstm_gates(lstm_pre<P>(x, h), c);
  return std::tuple{std::tuple{s.h, s.c}, s.h};
};
template <class P>
constexpr auto lstm_masked_step = [](auto carry, auto x, auto m) {
  using namespace ctgraph::literals;
  auto [h, c] = carry;
  auto s = lstm_gates(lstm_pre<P>(x, h), c);
  auto out = m * s.h;
  return std::tuple{std::tuple{out + h * (1.0_c - m), m * s.c + c * (1.0_c - m)}, out};
};
template <class P>
constexpr auto gru_next(auto x, auto h) {
  return gru_gates(matmul(x, transpose(P::weight_ih)) + P::bias_ih, matmul(h, transpose(P::weight_hh)) + P::bias_hh, h);
}
template <class P>
constexpr auto gru_step = [](auto h, auto x) {
  auto n = gru_next<P>(x, h);
  return std::tuple{n, n};
};
template <class P>
constexpr auto gru_masked_step = [](auto h, auto x, auto m) {
  using namespace ctgraph::literals;
  auto out = m * gru_next<P>(x, h);
  return std::tuple{out + h * (1.0_c - m), out};
};

// One direction of one layer: a scan of its cell. Returns the scan's result.
template <bool Lstm, fixed_string Name, int H, int L, bool Rev, rnn_options O, class X, class Init, class... M>
constexpr auto direction(X x, Init init, M... mask) {
  constexpr int In = shape_of<X>.d[2];
  using P = layer_params<Name, layer_suffix<L, Rev>(), value_of<X>, Lstm ? 4 : 3, H, In>;
  constexpr scan_options so{.reverse = Rev, .remat = O.remat};
  constexpr bool masked = sizeof...(M) != 0;
  if constexpr (Lstm && masked)
    return scan<so>(lstm_masked_step<P>, init, x, mask...);
  else if constexpr (Lstm)
    return scan<so>(lstm_step<P>, init, x);
  else if constexpr (masked)
    return scan<so>(gru_masked_step<P>, init, x, mask...);
  else
    return scan<so>(gru_step<P>, init, x);
}

// Layers L.. of the stack over input x; Init(k) gives direction k's initial carry. Returns the last output
// and the tuple of every direction's final carry, layer-major.
template <bool Lstm, fixed_string Name, int H, rnn_options O, int L, class X, class States, class... M>
constexpr auto layers(X x, States states, M... mask) {
  constexpr int D = O.bidirectional ? 2 : 1;
  auto fwd = direction<Lstm, Name, H, L, false, O>(x, states.template at<L * D>(), mask...);
  auto out_and_finals = [&] {
    if constexpr (D == 2) {
      auto bwd = direction<Lstm, Name, H, L, true, O>(x, states.template at<L * D + 1>(), mask...);
      return std::pair{concat<2>(fwd.outputs, bwd.outputs), std::tuple{fwd.carry, bwd.carry}};
    } else {
      return std::pair{fwd.outputs, std::make_tuple(fwd.carry)};  // not tuple{t}: that copies t
    }
  }();
  if constexpr (L + 1 == O.layers) {
    return out_and_finals;
  } else {
    auto rest = layers<Lstm, Name, H, O, L + 1>(out_and_finals.first, states, mask...);
    return std::pair{rest.first, std::tuple_cat(out_and_finals.second, rest.second)};
  }
}

// Initial states: zeros, or slices of given [L*D, B, H] states.
template <bool Lstm, class T, int B, int H, class... S>
struct initial_states {
  std::tuple<S...> s;
  template <int K>
  constexpr auto at() const {
    if constexpr (sizeof...(S) == 0) {
      if constexpr (Lstm)
        return std::tuple{zeros<T, B, H>(), zeros<T, B, H>()};
      else
        return zeros<T, B, H>();
    } else if constexpr (Lstm) {
      return std::tuple{state_at<K>(std::get<0>(s)), state_at<K>(std::get<1>(s))};
    } else {
      return state_at<K>(std::get<0>(s));
    }
  }
};

}  // namespace detail
/// nn::lstm's and nn::gru's shape error: x must be [T, B, In], states [layers*dirs, B, H]. Deleted: the first
/// error line names the layer, H and the shapes.
void recurrent_shape_mismatch(auto layer_name, auto hidden_size, auto x_dims, auto... state_dims) = delete;
namespace detail {

constexpr shape states_shape(int n, int b, int h) {
  shape q;
  q.rank = 3, q.d[0] = n, q.d[1] = b, q.d[2] = h;
  return q;
}
template <bool Lstm, fixed_string Name, int H, rnn_options O, class X, class... S>
constexpr auto check_shapes() {
  constexpr shape sx = shape_of<X>;
  constexpr int D = O.bidirectional ? 2 : 1;
  [[maybe_unused]] constexpr shape want = states_shape(O.layers * D, sx.rank == 3 ? sx.d[1] : 0, H);
  constexpr bool ok = sx.rank == 3 && ((shape_of<S> == want) && ...);
  if constexpr (!ok) {
    if constexpr (sizeof...(S) == 0)
      recurrent_shape_mismatch(name<Name>{}, hidden<H>{}, dims_of<sx>(), dims<>{});
    else
      recurrent_shape_mismatch(name<Name>{}, hidden<H>{}, dims_of<sx>(), dims_of<shape_of<S>>()...);
  }
  return ok;
}

template <bool Lstm, fixed_string Name, int H, rnn_options O, class X, class Lens, class... S>
constexpr auto recurrent(X x, Lens lens, S... states) {
  require_floating<X>();
  static_assert(O.layers >= 1, "ctgraph::nn: a recurrent layer needs layers >= 1");
  if constexpr (check_shapes<Lstm, Name, H, O, X, S...>()) {
    constexpr shape sx = shape_of<X>;
    using T = value_of<X>;
    const initial_states<Lstm, T, sx.d[1], H, S...> init{{states...}};
    auto run = [&](auto... mask) { return layers<Lstm, Name, H, O, 0>(x, init, mask...); };
    auto r = [&] {
      if constexpr (std::is_same_v<Lens, std::nullptr_t>)
        return run();
      else
        return run(sequence_mask<sx.d[0], T>(lens.len));
    }();
    if constexpr (Lstm) {
      auto hs = std::apply([](auto... f) { return stack_states(std::get<0>(f)...); }, r.second);
      auto cs = std::apply([](auto... f) { return stack_states(std::get<1>(f)...); }, r.second);
      return lstm_result<decltype(r.first), decltype(hs), decltype(cs)>{r.first, hs, cs};
    } else {
      auto hs = std::apply([](auto... f) { return stack_states(f...); }, r.second);
      return gru_result<decltype(r.first), decltype(hs)>{r.first, hs};
    }
  }
}
}  // namespace detail

/// nn::lstm<"enc", H, nn::lstm_options{...}>(x): torch.nn.LSTM over x [T, B, In], from zero states. Returns
/// {.output [T, B, dirs*H], .h, .c [layers*dirs, B, H]}. Params per layer l (and direction, suffix _reverse):
/// enc.weight_ih_l{l} [4H, In_l], enc.weight_hh_l{l} [4H, H], enc.bias_ih_l{l}, enc.bias_hh_l{l} [4H]; In_0 = In,
/// In_l = dirs*H above. Gates i, f, g, o. Init (PyTorch's): all U(-1/sqrt(H), 1/sqrt(H)). Each layer and
/// direction is a cg::scan of the cell (two gemms and one fused gate kernel per step).
template <fixed_string Name, int H, rnn_options O = rnn_options{}, expression X>
constexpr auto lstm(X x) {
  return detail::recurrent<true, Name, H, O>(x, nullptr);
}
/// nn::lstm(x, h0, c0): from given states h0, c0 [layers*dirs, B, H].
template <fixed_string Name, int H, rnn_options O = rnn_options{}, expression X, expression H0, expression C0>
constexpr auto lstm(X x, H0 h0, C0 c0) {
  return detail::recurrent<true, Name, H, O>(x, nullptr, h0, c0);
}
/// nn::lstm(x, nn::lengths(len)): a padded batch, len [B] each sequence's length (torch's packed sequences).
template <fixed_string Name, int H, rnn_options O = rnn_options{}, expression X, class L>
constexpr auto lstm(X x, lengths_of<L> len) {
  return detail::recurrent<true, Name, H, O>(x, len);
}
/// nn::lstm(x, h0, c0, nn::lengths(len)): a padded batch from given states.
template <fixed_string Name, int H, rnn_options O = rnn_options{}, expression X, expression H0, expression C0, class L>
constexpr auto lstm(X x, H0 h0, C0 c0, lengths_of<L> len) {
  return detail::recurrent<true, Name, H, O>(x, len, h0, c0);
}

/// nn::gru<"g", H, nn::gru_options{...}>(x): torch.nn.GRU over x [T, B, In], from a zero state. Returns
/// {.output [T, B, dirs*H], .h [layers*dirs, B, H]}. Params as nn::lstm's with 3H rows (gates r, z, n).
/// Init (PyTorch's): all U(-1/sqrt(H), 1/sqrt(H)).
template <fixed_string Name, int H, rnn_options O = rnn_options{}, expression X>
constexpr auto gru(X x) {
  return detail::recurrent<false, Name, H, O>(x, nullptr);
}
/// nn::gru(x, h0): from a given state h0 [layers*dirs, B, H].
template <fixed_string Name, int H, rnn_options O = rnn_options{}, expression X, expression H0>
constexpr auto gru(X x, H0 h0) {
  return detail::recurrent<false, Name, H, O>(x, nullptr, h0);
}
/// nn::gru(x, nn::lengths(len)): a padded batch.
template <fixed_string Name, int H, rnn_options O = rnn_options{}, expression X, class L>
constexpr auto gru(X x, lengths_of<L> len) {
  return detail::recurrent<false, Name, H, O>(x, len);
}
/// nn::gru(x, h0, nn::lengths(len)): a padded batch from a given state.
template <fixed_string Name, int H, rnn_options O = rnn_options{}, expression X, expression H0, class L>
constexpr auto gru(X x, H0 h0, lengths_of<L> len) {
  return detail::recurrent<false, Name, H, O>(x, len, h0);
}

}  // namespace ctgraph::nn
