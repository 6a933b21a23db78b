// ops/dropout.hpp: dropout, x * mask with mask 0 (probability p) or 1 / (1 - p), drawn from the run's seed.
//   dropout_mask(seed int [2]; p, salt, shape) -> [shape]: a counter-based hash of (seed, salt, element index),
//   so that a run is a function of its seed, each dropout (its salt) draws its own mask, and nothing is kept
//   between runs. dropout<p, salt>(x) = x * dropout_mask: the product fuses with its neighbours, and its VJP is
//   g * mask, the same mask (it is a value of the forward graph, kept for the backward as torch keeps its own).
// Dropout is active in training steps only: in a program that computes no gradient, compile() rewrites
// x * dropout_mask into x (rewrite_dropout), so that an evaluation step applies none and needs no seed.
// The seed is the input detail::seed_input_name (include/ctgraph/feed.hpp) that run() binds to cg::seed(s).
#pragma once
#include <cstdint>
#include <ctgraph/feed.hpp>
#include <vector>

#include "elementwise.hpp"

namespace ctgraph {

namespace detail {
// splitmix64's finaliser: a bijection of 64 bits whose outputs pass BigCrush as a counter's hash.
constexpr std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
// A salt from a dropout's name (FNV-1a), so that two dropouts of one graph draw independent masks.
template <std::size_t N>
constexpr int salt_of(const fixed_string<N>& name) {
  std::uint32_t h = 2166136261u;
  for (std::size_t i = 0; i + 1 < N; ++i) h = (h ^ static_cast<unsigned char>(name.data[i])) * 16777619u;
  return static_cast<int>(h & 0x7fffffffu);
}
}  // namespace detail

/// The run's seed, an int input [2] (the low and high 32 bits of cg::seed(s)).
inline constexpr auto seed_input = input<detail::seed_input_name, int, 2>;

/// dropout_mask: operands seed [2] (int) and a scalar constant giving the element type; a.value() p, a.i[0] the
/// salt, a.s the shape. Each element is 0 with probability p, else 1 / (1 - p) (all 0 when p is 1).
struct dropout_mask_op {
  static constexpr const char* name = "dropout_mask";
  static constexpr op_class cls = op_class::kernel;
  static constexpr bool no_gradient = true;
  static constexpr double flops = 1;
  static constexpr shape_result infer(const attr_t& a, const shape* in, int n) {
    const double p = a.value();
    return {n == 2 && in[0].rank == 1 && in[0].d[0] == 2 && p >= 0 && p <= 1, a.s};
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    const int* s = a.template input<int>(0);
    const std::uint64_t seed = static_cast<std::uint32_t>(s[0]) | std::uint64_t(static_cast<std::uint32_t>(s[1])) << 32;
    const std::uint64_t key = detail::mix64(seed ^ detail::mix64(static_cast<std::uint64_t>(a.a.i[0]) + 1));
    const double p = a.a.value();
    // 16 bits per element, four elements per hash: element i is dropped when its bits fall below p * 2^16.
    const std::uint32_t cut = static_cast<std::uint32_t>(p * 65536.0 + 0.5);
    const T keep = p < 1 ? T(1 / (1 - p)) : T(0);
    const long n = a.out_shape.size();
    for (long i0 = 0; i0 < n; i0 += 4) {
      const std::uint64_t h = detail::mix64(key + static_cast<std::uint64_t>(i0 >> 2) * 0x9e3779b97f4a7c15ull);
      for (long i = i0; i < i0 + 4 && i < n; ++i)
        a.out[i] = static_cast<std::uint32_t>(h >> (16 * (i - i0)) & 0xffffu) < cut ? T(0) : keep;
    }
  }
  static void shape_mismatch(auto...) = delete;
};

/// dropout<p, salt>(x): x * mask, each element zeroed with probability p and the rest scaled by 1 / (1 - p)
/// (torch.nn.functional.dropout in training), its mask a function of the run's seed and of `salt`; x itself
/// when p is 0. Active only in programs that compute a gradient (training steps): elsewhere compile() removes
/// it. A step that applies it is run with cg::seed(s). nn::dropout<"name", p> names the salt.
template <scalar_value P, int Salt, expression X>
constexpr auto dropout(X x) {
  static_assert(!std::is_same_v<value_of<X>, int>, "ctgraph: dropout(x): x is a float or double tensor");
  static_assert(P.value() >= 0 && P.value() <= 1, "ctgraph: dropout<p>: p is a probability, in [0, 1]");
  if constexpr (P.value() == 0) {
    return x;
  } else {
    constexpr attr_t a = [] {
      attr_t r = attr_value(P.value());
      r.i[0] = Salt;
      r.s = shape_of<X>;
      return r;
    }();
    return x * make_node<dropout_mask_op, a>(seed_input, const_expr<dtype_of<value_of<X>>(), 0>{});
  }
}

/// The rewrite (compile(), ops/all.hpp): in a program with no grad(), x * dropout_mask (either side) becomes x.
constexpr int rewrite_dropout(builder&, const builder& in, int n, const std::vector<int>& remap) {
  const node& m = in[n];
  if (m.op != &op_info_of<mul_op>) return -1;
  const int l = in.in(n, 0), r = in.in(n, 1);
  const bool right = in[r].op == &op_info_of<dropout_mask_op>, left = in[l].op == &op_info_of<dropout_mask_op>;
  if (right == left) return -1;
  for (int k = 0; k < in.size(); ++k)
    if (in[k].op->cls == op_class::grad) return -1;  // a training step: dropout applies
  return remap[right ? l : r];
}

}  // namespace ctgraph
