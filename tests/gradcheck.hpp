// tests/gradcheck.hpp: gradients against central finite differences, for any scalar
// double loss and any list of leaves (params and/or double inputs).
//
//   gradcheck("mul [4,1]*[1,5]", cg::sum(a * b * weight_like(a * b)), a, b);
//
// compiles `loss` together with grad(loss, leaves...), fills every param and input of the
// graph with seeded random values (int inputs: uniform in [0, bound), the bound the graph
// puts on them), and compares every element of every gradient with
//
//   n = (loss(v + h) - loss(v - h)) / (2 h)
//
// computed by re-running a forward-only step of `loss` over the same parameter set and
// feeds. The error measure is the relative error with a floor:
//
//   err = |a - n| / max(|a|, |n|, floor)          (floor = 1e-3 by default)
//
// and the check is max err <= tol (1e-6 by default) per leaf. On failure the report
// names the check, the leaf, its shape, the worst index and both values.
//
//   gradcheck_params("mlp", loss);
//
// does the same for cg::grad(loss): the gradient of every param in the loss's graph, each
// read from the results by the param's name, as the optimizers read them.
#pragma once
#include <fmt/format.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <ctgraph/ctgraph.hpp>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ctgraph_test {

namespace cg = ctgraph;

struct gradcheck_options {
  double lo = -1.0, hi = 1.0;  // double leaves drawn uniformly from [lo, hi] ...
  double min_abs = 0.0;        // ... rejecting values with |v| < min_abs (relu away from 0)
  double h = 1e-5;             // finite-difference step
  double tol = 1e-6;           // max relative error allowed
  double floor = 1e-3;         // denominator floor of the relative error
  std::uint64_t seed = 42;
};

/// A double input named "r" with the shape of `e`: probe(e) = sum(e * r) makes every
/// output element of e matter to a scalar loss.
template <cg::expression E>
constexpr auto weight_like(E) {
  return []<std::size_t... I>(std::index_sequence<I...>) { return cg::input<"r", double, cg::shape_of<E>.d[I]...>; }
  (std::make_index_sequence<cg::shape_of<E>.rank>{});
}
template <cg::expression E>
constexpr auto probe(E e) {
  return cg::sum(e * weight_like(e));
}

inline std::string unflatten(const cg::shape& s, long i) {
  int idx[cg::max_rank] = {};
  for (int k = s.rank - 1; k >= 0; --k) idx[k] = static_cast<int>(i % s.d[k]), i /= s.d[k];
  std::string r = "(";
  for (int k = 0; k < s.rank; ++k) r += fmt::format("{}{}", k ? "," : "", idx[k]);
  return r + ")";
}

/// Storage for every input a graph may read, by name; filled once with random values.
struct feed_store {
  struct entry {
    std::string name;
    cg::dtype type;
    std::vector<double> d;
    std::vector<int> i;
  };
  std::vector<entry> entries;
  entry& at(std::string_view n) {
    for (auto& e : entries)
      if (e.name == n) return e;
    FAIL("gradcheck: no storage for input " << n);
    return entries.front();
  }
};

inline double draw(std::mt19937_64& gen, const gradcheck_options& o) {
  std::uniform_real_distribution<double> u(o.lo, o.hi);
  for (;;) {
    double v = u(gen);
    if (std::abs(v) >= o.min_abs) return v;
  }
}

template <class Step>
void fill_inputs(feed_store& fs, std::mt19937_64& gen, const gradcheck_options& o) {
  for (std::size_t k = 0; k < Step::sizes.inputs; ++k) {
    const auto& e = Step::plan.inputs[k];
    auto& s = fs.entries.emplace_back(feed_store::entry{e.name, e.type, {}, {}});
    const long n = e.s.size();
    if (e.type == cg::dtype::i32) {
      REQUIRE(e.bound > 0);
      std::uniform_int_distribution<int> u(0, e.bound - 1);
      for (long j = 0; j < n; ++j) s.i.push_back(u(gen));
    } else {
      REQUIRE(e.type == cg::dtype::f64);
      for (long j = 0; j < n; ++j) s.d.push_back(draw(gen, o));
    }
  }
}

/// Runs `step` with every input it has fed from `fs` (by name).
template <class Step, class P>
auto run_fed(Step& step, cg::parameters<P>& params, feed_store& fs) {
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    return step.run(params, [&] {
      constexpr auto e = Step::plan.inputs[I];
      constexpr auto nm = cg::detail::name_of<Step::plan.inputs[I].name>();
      if constexpr (e.type == cg::dtype::i32)
        return cg::feed<nm>(std::span<const int>(fs.at(e.name).i));
      else
        return cg::feed<nm>(std::span<const double>(fs.at(e.name).d));
    }()...);
  }
  (std::make_index_sequence<Step::sizes.inputs>{});
}

/// The data finite differences perturb for leaf X: its param storage or its input feed.
template <class X, class P>
std::span<double> leaf_data(cg::parameters<P>& params, feed_store& fs) {
  static_assert(std::is_same_v<typename X::value_type, double>, "gradcheck: leaves must be double");
  if constexpr (X::desc.op == &cg::param_info)
    return params.template get<X::name>().span();
  else
    return std::span<double>(fs.at(X::name.data).d);
}

/// Compares the analytic gradient `a` of `loss` with respect to the data `v` of leaf `leaf`
/// (shape `s`) with central differences, re-running the forward-only step `fwd`.
template <class Fwd, class P, class Loss>
void check_leaf(std::string_view what, const gradcheck_options& o, std::string_view leaf, const cg::shape& s,
                const std::vector<double>& a, std::span<double> v, Fwd& fwd, cg::parameters<P>& params, feed_store& fs,
                Loss loss, double l0) {
  REQUIRE(a.size() == v.size());
  double worst = 0, wa = 0, wn = 0;
  long wi = -1;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double keep = v[i];
    v[i] = keep + o.h;
    const double lp = run_fed(fwd, params, fs)[loss];
    v[i] = keep - o.h;
    const double lm = run_fed(fwd, params, fs)[loss];
    v[i] = keep;
    const double n = (lp - lm) / (2 * o.h);
    const double err = std::abs(a[i] - n) / std::max({std::abs(a[i]), std::abs(n), o.floor});
    if (!(err <= worst)) worst = err, wa = a[i], wn = n, wi = static_cast<long>(i);
  }
  INFO("gradcheck " << what << ": d loss / d " << leaf << ", shape " << fmt::format("{}", s) << ", loss " << l0);
  INFO("worst element " << unflatten(s, wi) << " (flat " << wi << "): analytic " << wa << ", numeric " << wn
                        << ", rel. error " << worst << " (tol " << o.tol << ", floor " << o.floor << ", h " << o.h
                        << ")");
  CHECK(worst <= o.tol);
}

/// The random point of a check: every param of `params` and every input of Step, seeded.
template <class Step, class P>
feed_store fill_point(cg::parameters<P>& params, const gradcheck_options& o) {
  std::mt19937_64 gen(o.seed);
  params.for_each([&](std::string_view, auto data, const cg::shape&) {
    for (auto& v : data) v = draw(gen, o);
  });
  feed_store fs;
  fill_inputs<Step>(fs, gen, o);
  return fs;
}

template <class Loss, class... X>
void gradcheck(std::string_view what, const gradcheck_options& o, Loss loss, X... leaves) {
  static_assert(std::is_same_v<typename Loss::value_type, double>, "gradcheck: the loss must be double");
  static_assert(cg::shape_of<Loss>.rank == 0, "gradcheck: the loss must be a scalar");
  auto full = cg::compile(loss, cg::grad(loss, leaves)...);
  auto fwd = cg::compile(loss);
  auto params = cg::parameters_of(full);
  feed_store fs = fill_point<decltype(full)>(params, o);

  // Analytic gradients, copied out before the forward step perturbs anything.
  auto out = run_fed(full, params, fs);
  const double l0 = out[loss];
  std::vector<std::vector<double>> analytic;
  (
      [&] {
        auto g = out[cg::grad(loss, leaves)];
        analytic.emplace_back(g.begin(), g.end());
      }(),
      ...);
  // The forward-only step agrees with the full one at the unperturbed point.
  {
    auto f0 = run_fed(fwd, params, fs);
    CHECK(static_cast<double>(f0[loss]) == Approx(l0).epsilon(1e-12));
  }

  std::size_t li = 0;
  (check_leaf(what, o, X::name.data, cg::shape_of<X>, analytic[li++], leaf_data<X>(params, fs), fwd, params, fs, loss,
              l0),
   ...);
}

/// gradcheck of grad(loss): compiles `loss` with cg::grad(loss), requires a gradient in the
/// results for every param of the step (out.grad<name>(), as the optimizers find them), and
/// checks each against central differences, as gradcheck() does.
template <class Loss>
void gradcheck_params(std::string_view what, const gradcheck_options& o, Loss loss) {
  static_assert(std::is_same_v<typename Loss::value_type, double>, "gradcheck: the loss must be double");
  static_assert(cg::shape_of<Loss>.rank == 0, "gradcheck: the loss must be a scalar");
  auto full = cg::compile(loss, cg::grad(loss));
  auto fwd = cg::compile(loss);
  using Step = decltype(full);
  constexpr std::size_t n = Step::sizes.params;
  STATIC_REQUIRE(n > 0);
  STATIC_REQUIRE(Step::sizes.outputs == n + 1);  // the loss and one gradient per param
  auto params = cg::parameters_of(full);
  feed_store fs = fill_point<Step>(params, o);

  auto out = run_fed(full, params, fs);
  const double l0 = out[loss];
  std::vector<std::vector<double>> analytic(n);
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (
        [&] {
          constexpr auto name = cg::detail::name_of<Step::plan.params[I].name>();
          STATIC_REQUIRE(decltype(out)::template has_grad<name>);
          auto g = out.template grad<name>();
          analytic[I].assign(g.begin(), g.end());
        }(),
        ...);
  }
  (std::make_index_sequence<n>{});
  for (std::size_t k = 0; k < n; ++k) {
    const auto& e = Step::plan.params[k];
    REQUIRE(e.type == cg::dtype::f64);
    const std::span<double> v(static_cast<double*>(params.ptr(k)), static_cast<std::size_t>(e.s.size()));
    check_leaf(what, o, e.name, e.s, analytic[k], v, fwd, params, fs, loss, l0);
  }
}
template <cg::expression Loss>
void gradcheck_params(std::string_view what, Loss loss) {
  gradcheck_params(what, gradcheck_options{}, loss);
}

template <cg::expression Loss, cg::expression... X>
void gradcheck(std::string_view what, Loss loss, X... leaves) {
  gradcheck(what, gradcheck_options{}, loss, leaves...);
}

}  // namespace ctgraph_test
