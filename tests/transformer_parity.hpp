// tests/transformer_parity.hpp: the transformer layers against torch (tests/torch/transformer_reference.py),
// one case at a time: the output and the gradients of every param (by torch's names) and input. Key masks
// come from int lengths, as the reference's key_padding_masks do (key j of sequence b padded at j >= length).
#pragma once
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "torch_reference.hpp"

namespace transformer_parity {
namespace cg = ctgraph;
namespace nn = ctgraph::nn;
using torch_reference::as;
using torch_reference::int_tensor;
using torch_reference::reference_case;
using torch_reference::tensor;
using torch_reference::worst;

constexpr int L = 5, S = 7, B = 3, E = 12, H = 3, FF = 16;  // transformer_reference.py's sizes

template <class T>
struct in {
  static constexpr auto x = cg::input<"x", T, L, B, E>;
  static constexpr auto mem = cg::input<"mem", T, S, B, E>;
  static constexpr auto w = cg::input<"w", T, L, B, E>;
  static constexpr auto x_lengths = cg::input<"x_lengths", int, B>;
  static constexpr auto mem_lengths = cg::input<"mem_lengths", int, B>;
  // [B, n] masks, 1 at j < length.
  static constexpr auto x_mask = cg::permute<1, 0>(cg::reshape<L, B>(cg::sequence_mask<L, T>(x_lengths)));
  static constexpr auto mem_mask = cg::permute<1, 0>(cg::reshape<S, B>(cg::sequence_mask<S, T>(mem_lengths)));
};

/// What a case's graph reads besides x and w.
struct reads {
  bool mem = false, x_lengths = false, mem_lengths = false;
};

/// Relative errors with a floor: double 1e-9 per element (floor 1e-3), float 1e-4 of each tensor's largest
/// magnitude (the float graph runs from params and inputs rounded to float, through the fused kernels).
template <class T, reads R, class Out>
void parity(const std::string& name, Out) {
  const auto f = reference_case(name);
  if (f.empty()) return;
  constexpr bool is_float = std::is_same_v<T, float>;
  const double tol = is_float ? 1e-4 : 1e-9, floor = is_float ? 1e-2 : 1e-3;
  INFO(name << " (" << (is_float ? "float" : "double") << ")");
  using I = in<T>;
  constexpr auto loss = cg::sum(Out{} * I::w);
  auto step = [&] {
    if constexpr (R.mem)
      return cg::compile(Out{}, cg::grad(loss), cg::grad(loss, I::x, I::mem));
    else
      return cg::compile(Out{}, cg::grad(loss), cg::grad(loss, I::x));
  }();
  auto params = cg::parameters_of(step);
  int loaded = 0;
  params.for_each([&](std::string_view n, auto span, const cg::shape& s) {
    const auto v = tensor(f, std::string(n), s);
    for (std::size_t i = 0; i < v.size(); ++i) span[i] = static_cast<typename decltype(span)::value_type>(v[i]);
    ++loaded;
  });
  CHECK(loaded == decltype(params)::count);
  const auto xs = as<T>(tensor(f, "x", cg::shape_of<decltype(I::x)>));
  const auto ws = as<T>(tensor(f, "w", cg::shape_of<decltype(I::w)>));
  const auto ms = R.mem ? as<T>(tensor(f, "mem", cg::shape_of<decltype(I::mem)>)) : std::vector<T>{};
  const auto xl = int_tensor(f, "x_lengths", B), ml = int_tensor(f, "mem_lengths", B);
  auto feeds = std::tuple_cat(
      std::tuple{cg::feed<"x">(xs), cg::feed<"w">(ws)},
      [&] {
        if constexpr (R.mem)
          return std::tuple{cg::feed<"mem">(ms)};
        else
          return std::tuple{};
      }(),
      [&] {
        if constexpr (R.x_lengths)
          return std::tuple{cg::feed<"x_lengths">(xl)};
        else
          return std::tuple{};
      }(),
      [&] {
        if constexpr (R.mem_lengths)
          return std::tuple{cg::feed<"mem_lengths">(ml)};
        else
          return std::tuple{};
      }());
  auto res = std::apply([&](auto... fd) { return step.run(params, fd...); }, feeds);
  auto check = [&](const std::string& what, auto got, const cg::shape& s) {
    INFO(what);
    CHECK(worst(got, tensor(f, what, s), floor, is_float) <= tol);
  };
  check("out", res[Out{}], cg::shape_of<Out>);
  using Params = decltype(params);
  [&]<std::size_t... K>(std::index_sequence<K...>) {
    (check(std::string("grad.") + Params::entries[K].name,
           res.template grad<cg::detail::name_of<Params::entries[K].name>()>(), Params::entries[K].s),
     ...);
  }
  (std::make_index_sequence<Params::count>{});
  check("grad.x", res[cg::grad(loss, I::x)], cg::shape_of<decltype(I::x)>);
  if constexpr (R.mem) check("grad.mem", res[cg::grad(loss, I::mem)], cg::shape_of<decltype(I::mem)>);
}

}  // namespace transformer_parity
