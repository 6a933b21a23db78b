// ctgraph/init.hpp: cg::init(params, seed), initial values of every param. A plain cg::param gets
// Glorot-uniform weights and zero biases; a param declared with cg::init_param (the layers of ctgraph/nn.hpp)
// carries its own rule (PyTorch's), stored in its leaf's attributes, which init() finds in the step's graph.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <string_view>
#include <vector>

#include "parameters.hpp"

namespace ctgraph {

/// How cg::init fills a param.
enum class init_kind : int {
  standard = 0,     ///< Glorot (Xavier) uniform for rank >= 2, zeros for rank 0 and 1: what a plain cg::param gets
  uniform_fan = 1,  ///< U(-1/sqrt(fan), 1/sqrt(fan)): PyTorch's nn.Linear (weight and bias) and recurrent layers
  normal = 2,       ///< N(0, 1): PyTorch's nn.Embedding
  zeros = 3,        ///< all zero
  ones = 4,         ///< all one: PyTorch's nn.LayerNorm weight
};

/// A param's initialisation: a kind and, for init_kind::uniform_fan, the fan that sets the bound. Integers only,
/// so that it is a template argument every compiler takes (clang 14 takes no floating-point ones).
struct init_rule {
  init_kind kind = init_kind::standard;  ///< how
  int fan = 0;                           ///< init_kind::uniform_fan: the bound is 1/sqrt(fan)
  /// U(-1/sqrt(fan), 1/sqrt(fan)).
  static constexpr init_rule uniform(int fan) { return {init_kind::uniform_fan, fan}; }
  /// N(0, 1).
  static constexpr init_rule normal() { return {init_kind::normal, 0}; }
  /// Zeros.
  static constexpr init_rule zeros() { return {init_kind::zeros, 0}; }
  /// Ones.
  static constexpr init_rule ones() { return {init_kind::ones, 0}; }
  /// Equal kind and fan.
  constexpr bool operator==(const init_rule&) const = default;
};

/// A param leaf that carries its initialisation rule R: what cg::init_param names. Otherwise as cg::param
/// (the rule sits in the node's attributes, so two leaves of one name and different rules are two leaves,
/// which compile() refuses).
template <class Name, class T, init_rule R, int... D>
struct init_param_expr {
  using value_type = T;                                                 ///< element type
  static constexpr fixed_string<sizeof(Name::data)> name = Name::data;  ///< the param's name
  /// The leaf's node.
  static constexpr node_desc desc =
      detail::finish({&param_info, dtype_of<T>(), make_shape<D...>(), attr_ints({static_cast<int>(R.kind), R.fan}), 0,
                      nullptr, Name::data, 0});
};

/// `cg::init_param<"fc.weight", float, cg::init_rule::uniform(64), 10, 64>`: a trainable [10, 64] param that
/// cg::init fills by its rule.
template <fixed_string Name, class T, init_rule R, int... D>
requires(!std::is_same_v<T, int>) inline constexpr init_param_expr<decltype(detail::chars_of<Name>()), T, R,
                                                                   D...> init_param{};

namespace detail {
// The roots of one compile() argument's graph.
template <class O>
constexpr void roots_of(std::vector<const node_desc*>& r) {
  if constexpr (is_grads<O>::value) {
    [&]<class Y, class... X>(grads<Y, X...>*) {
      r.push_back(&Y::desc);
      (r.push_back(&X::desc), ...);
    }(static_cast<O*>(nullptr));
  } else if constexpr (is_param_grads<O>::value) {
    [&]<class Y>(param_grads<Y>*) { r.push_back(&Y::desc); }(static_cast<O*>(nullptr));
  } else {
    r.push_back(&O::desc);
  }
}
// The rule of each param of a program (in its parameter set's order), read off the param leaves of its graph.
template <class Program>
struct init_rules {
  static constexpr std::array<init_rule, Program::sizes.params + 1> value{};
};
template <class... Outs>
struct init_rules<program<Outs...>> {
  using P = program<Outs...>;
  static constexpr std::array<init_rule, P::sizes.params + 1> value = [] {
    std::array<init_rule, P::sizes.params + 1> rules{};
    std::vector<const node_desc*> roots;
    (roots_of<Outs>(roots), ...);
    std::vector<const node_desc*> walked;
    for (const node_desc* root : roots) {
      if (std::find(walked.begin(), walked.end(), root) != walked.end()) continue;
      walked.push_back(root);
      for (const node_desc* p : params_below(root))
        for (std::size_t k = 0; k < P::sizes.params; ++k)
          if (str_eq(P::plan.params[k].name, p->name)) rules[k] = {static_cast<init_kind>(p->a.i[0]), p->a.i[1]};
    }
    return rules;
  }();
};
// Uniform in [0, 1) from 53 random bits.
inline double unit(std::mt19937_64& gen) { return static_cast<double>(gen() >> 11) * 0x1.0p-53; }
}  // namespace detail

/// Initialises every param by its rule (see init_kind). Plain cg::param leaves: Glorot (Xavier)
/// uniform for rank >= 2, U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), fan_in = d1 * r,
/// fan_out = d0 * r, r the product of the trailing dims (PyTorch's convention for [Out, In, ...]
/// weights); zeros for rank 0 and 1 (biases). Params declared with cg::init_param (the layers of
/// ctgraph/nn.hpp): their rule, PyTorch's default for the layer. Each param draws from its own stream
/// seeded by (seed, name), so adding a param does not change the others.
template <class P>
void init(parameters<P>& params, std::uint64_t seed) {
  constexpr const auto& rules = detail::init_rules<P>::value;
  std::size_t k = 0;
  params.for_each([&](std::string_view name, auto data, const shape& s) {
    using T = typename decltype(data)::element_type;
    const init_rule rule = rules[k++];
    std::uint64_t h = seed * 0x9e3779b97f4a7c15ull;
    for (char c : name) h = hash_mix(h, static_cast<unsigned char>(c));
    std::mt19937_64 gen(h);
    if (rule.kind == init_kind::zeros || (rule.kind == init_kind::standard && s.rank < 2)) {
      std::fill(data.begin(), data.end(), T(0));
    } else if (rule.kind == init_kind::ones) {
      std::fill(data.begin(), data.end(), T(1));
    } else if (rule.kind == init_kind::normal) {  // Box-Muller, both values of each pair
      for (std::size_t i = 0; i < data.size(); i += 2) {
        const double r = std::sqrt(-2.0 * std::log(1.0 - detail::unit(gen))),
                     t = 2 * std::numbers::pi * detail::unit(gen);
        data[i] = static_cast<T>(r * std::cos(t));
        if (i + 1 < data.size()) data[i + 1] = static_cast<T>(r * std::sin(t));
      }
    } else {
      double a = 1 / std::sqrt(static_cast<double>(rule.fan));
      if (rule.kind == init_kind::standard) {
        double r = 1;
        for (int j = 2; j < s.rank; ++j) r *= s.d[j];
        a = std::sqrt(6.0 / (s.d[1] * r + s.d[0] * r));
      }
      for (T& v : data) v = static_cast<T>(a * (2.0 * detail::unit(gen) - 1.0));
    }
  });
}

}  // namespace ctgraph
