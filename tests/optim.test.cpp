// Optimizers, clipping and learning-rate schedules: hand-computed steps (always run) and
// 10-step trajectories against torch.optim (run when CMake found a python3 with torch:
// CTGRAPH_TORCH_PYTHON; tests/torch/optim_reference.py prints them).
#include <array>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "testing.hpp"

namespace cg = ctgraph;

namespace {
// The problem of tests/torch/optim_reference.py (see there).
template <class T>
struct problem {
  static constexpr auto x = cg::input<"x", T, 4, 3>;
  static constexpr auto t = cg::input<"t", T, 4, 2>;
  static constexpr auto W = cg::param<"fc.weight", T, 2, 3>;
  static constexpr auto b = cg::param<"fc.bias", T, 2>;
  static constexpr auto s = cg::param<"scale", T, 2>;
  static constexpr auto d = cg::tanh(cg::matmul(x, cg::transpose(W)) + b) * s - t;
  static constexpr auto loss = cg::mean(d * d);
};

template <class V>
void fill(V v, auto f) {
  for (std::size_t k = 0; k < v.size(); ++k) v[k] = static_cast<std::remove_reference_t<decltype(v[0])>>(f(k));
}
template <class Params>
void init_problem(Params& params) {
  fill(params.template get<"fc.weight">(), [](std::size_t k) { return 0.5 * std::sin(1.3 * k + 1.0); });
  fill(params.template get<"fc.bias">(), [](std::size_t k) { return 0.2 * std::cos(k + 0.5); });
  fill(params.template get<"scale">(), [](std::size_t k) { return 1.5 - 0.5 * k; });
}
template <class T>
std::vector<T> problem_x() {
  std::vector<T> r(12);
  for (std::size_t k = 0; k < r.size(); ++k) r[k] = static_cast<T>(std::sin(0.7 * k + 0.3));
  return r;
}
template <class T>
std::vector<T> problem_t() {
  std::vector<T> r(8);
  for (std::size_t k = 0; k < r.size(); ++k) r[k] = static_cast<T>(std::cos(1.1 * k));
  return r;
}

#ifndef CTGRAPH_TORCH_PYTHON
#define CTGRAPH_TORCH_PYTHON ""
#endif

// The reference JSON, computed once per process; null when no python with torch.
const nlohmann::json& torch_reference() {
  static const nlohmann::json ref = [] {
    const std::string py = CTGRAPH_TORCH_PYTHON;
    if (py.empty()) return nlohmann::json();
    const std::string cmd = "'" + py + "' '" CTGRAPH_TESTS_DIR "/torch/optim_reference.py'";
    std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
    REQUIRE(p);
    std::string text;
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p.get())) > 0;) text.append(buf, n);
    return nlohmann::json::parse(text);
  }();
  return ref;
}

// Runs 10 steps of `opt` on the problem, comparing W, b and the gradient norm with the
// reference trajectory `ref` after each step.
template <class T, class MakeOpt>
void check_trajectory(const nlohmann::json& ref, MakeOpt make, double max_norm, double tol) {
  using pb = problem<T>;
  auto step = cg::compile(pb::loss, cg::grad(pb::loss, pb::W, pb::b));
  auto params = cg::parameters_of(step);
  init_problem(params);
  const auto xs = problem_x<T>();
  const auto ts = problem_t<T>();
  auto opt = make(params);
  for (int k = 0; k < 10; ++k) {
    INFO("step " << k + 1);
    auto out = step.run(params, cg::feed<"x">(xs), cg::feed<"t">(ts));
    const double norm = opt.step(params, out, {.max_grad_norm = max_norm});
    if (max_norm > 0) CHECK(norm == Approx(ref["norm"][k].get<double>()).epsilon(tol).margin(tol));
    ctgraph_test::expect_values(params.template get<"fc.weight">(), ref["fc.weight"][k].get<std::vector<double>>(),
                                tol);
    ctgraph_test::expect_values(params.template get<"fc.bias">(), ref["fc.bias"][k].get<std::vector<double>>(), tol);
    ctgraph_test::expect_values(params.template get<"scale">(), {1.5, 1.0}, 0);  // no gradient: untouched
  }
}
}  // namespace

TEST_CASE("results::grad<Name>() finds a param's gradient among the outputs", "[optim][results]") {
  using pb = problem<double>;
  auto step = cg::compile(pb::loss, cg::grad(pb::loss, pb::b), cg::grad(pb::loss, pb::x, pb::W));
  using out_t = decltype(step.run(std::declval<cg::parameters<decltype(step)::program>&>(),
                                  cg::feed<"x">(std::vector<double>()), cg::feed<"t">(std::vector<double>())));
  STATIC_REQUIRE(out_t::has_grad<"fc.weight">);
  STATIC_REQUIRE(out_t::has_grad<"fc.bias">);
  STATIC_REQUIRE(!out_t::has_grad<"scale">);
  STATIC_REQUIRE(!out_t::has_grad<"x">);  // an input, not a param
  STATIC_REQUIRE(!out_t::has_grad<"nothing">);
  auto params = cg::parameters_of(step);
  init_problem(params);
  const auto xs = problem_x<double>();
  const auto ts = problem_t<double>();
  auto out = step.run(params, cg::feed<"x">(xs), cg::feed<"t">(ts));
  CHECK(out.grad<"fc.weight">().data() == out[cg::grad(pb::loss, pb::W)].data());
  CHECK(out.grad<"fc.bias">().data() == out[cg::grad(pb::loss, pb::b)].data());
  CHECK(out.grad<"fc.weight">().dims() == std::array<int, 2>{2, 3});
}

namespace {
// Three clipped Adam steps on the problem with `step`: every param's values, then each step's norm.
template <class Step>
std::vector<double> three_adam_steps(Step& step) {
  auto params = cg::parameters_of(step);
  init_problem(params);
  const auto xs = problem_x<double>();
  const auto ts = problem_t<double>();
  cg::adam opt(params, {.lr = 0.05});
  std::vector<double> norms, r;
  for (int k = 0; k < 3; ++k)
    norms.push_back(opt.step(params, step.run(params, cg::feed<"x">(xs), cg::feed<"t">(ts)), {.max_grad_norm = 0.5}));
  params.for_each([&](std::string_view, auto data, const cg::shape&) { r.insert(r.end(), data.begin(), data.end()); });
  r.insert(r.end(), norms.begin(), norms.end());
  return r;
}
}  // namespace

TEST_CASE("optimizers take a step compiled with grad(loss): every param, as when listed", "[optim][grad_all]") {
  using pb = problem<double>;
  auto all = cg::compile(pb::loss, cg::grad(pb::loss));
  auto listed = cg::compile(pb::loss, cg::grad(pb::loss, pb::s, pb::b, pb::W));
  using out_t = decltype(all.run(std::declval<cg::parameters<decltype(all)::program>&>(),
                                 cg::feed<"x">(std::vector<double>()), cg::feed<"t">(std::vector<double>())));
  STATIC_REQUIRE(out_t::has_grad<"fc.weight">);
  STATIC_REQUIRE(out_t::has_grad<"fc.bias">);
  STATIC_REQUIRE(out_t::has_grad<"scale">);
  STATIC_REQUIRE(!out_t::has_grad<"x">);
  const std::vector<double> a = three_adam_steps(all), l = three_adam_steps(listed);
  REQUIRE(a.size() == 6 + 2 + 2 + 3);
  CHECK(a == l);       // bit for bit: the same gradients, in the same order
  CHECK(a[8] != 1.5);  // scale (after fc.weight and fc.bias) moved: grad(loss) covers it
}

TEST_CASE("adam: two steps on a 2-element param, by hand", "[optim][adam]") {
  // loss = sum(p * p) / 2: the gradient is p itself.
  constexpr auto p = cg::param<"p", double, 2>;
  using namespace cg::literals;
  constexpr auto loss = 0.5_c * cg::sum(p * p);
  auto step = cg::compile(loss, cg::grad(loss, p));
  auto params = cg::parameters_of(step);
  params.get<"p">()[0] = 1.0;
  params.get<"p">()[1] = -2.0;
  cg::adam opt(params, {.lr = 0.1});
  CHECK(opt.lr() == 0.1);
  CHECK(opt.options().betas[1] == 0.999);
  opt.step(params, step.run(params));
  // step 1: m = 0.1 g, v = 0.001 g^2, m / (1 - 0.9) = g, v / (1 - 0.999) = g^2:
  // p1 = p0 - 0.1 g / (|g| + 1e-8)
  const double p1[2] = {1.0 - 0.1 * 1.0 / (1.0 + 1e-8), -2.0 + 0.1 * 2.0 / (2.0 + 1e-8)};
  ctgraph_test::expect_values(params.get<"p">(), {p1[0], p1[1]}, 1e-15);
  opt.step(params, step.run(params));
  // step 2: g = p1; m = 0.9 * 0.1 p0 + 0.1 p1, v = 0.999 * 0.001 p0^2 + 0.001 p1^2,
  // bias corrections 1 - 0.9^2 = 0.19 and 1 - 0.999^2 = 0.001999.
  const double p0[2] = {1.0, -2.0};
  double p2[2];
  for (int i = 0; i < 2; ++i) {
    const double m = 0.09 * p0[i] + 0.1 * p1[i], v = 0.000999 * p0[i] * p0[i] + 0.001 * p1[i] * p1[i];
    p2[i] = p1[i] - 0.1 / 0.19 * m / (std::sqrt(v) / std::sqrt(0.001999) + 1e-8);
  }
  ctgraph_test::expect_values(params.get<"p">(), {p2[0], p2[1]}, 1e-14);
  CHECK(p2[0] == Approx(0.8).margin(0.01));  // about lr per step along -sign(p)
}

TEST_CASE("sgd with momentum and adamw's decoupled decay, by hand", "[optim][sgd][adamw]") {
  constexpr auto p = cg::param<"p", float, 2>;
  constexpr auto c = cg::input<"c", float, 2>;
  constexpr auto loss = cg::sum(p * c);  // gradient: c
  auto step = cg::compile(loss, cg::grad(loss, p));
  auto params = cg::parameters_of(step);
  const std::array<float, 2> cs{0.5f, -1.0f};
  params.get<"p">()[0] = 1.0f;
  params.get<"p">()[1] = 2.0f;
  cg::sgd opt(params, {.lr = 0.1, .momentum = 0.9});
  opt.step(params, step.run(params, cg::feed<"c">(cs)));  // b = g: p -= 0.1 g
  ctgraph_test::expect_values(params.get<"p">(), {0.95, 2.1}, 1e-6);
  opt.step(params, step.run(params, cg::feed<"c">(cs)));  // b = 0.9 g + g = 1.9 g
  ctgraph_test::expect_values(params.get<"p">(), {0.95 - 0.095, 2.1 + 0.19}, 1e-6);
  opt.set_lr(0);
  opt.step(params, step.run(params, cg::feed<"c">(cs)));
  ctgraph_test::expect_values(params.get<"p">(), {0.855, 2.29}, 1e-6);

  params.get<"p">()[0] = 1.0f;
  params.get<"p">()[1] = 2.0f;
  cg::adamw w(params, {.lr = 0.1, .weight_decay = 0.5});
  CHECK(w.options().eps == 1e-8);
  w.step(params, step.run(params, cg::feed<"c">(cs)));
  // p * (1 - 0.1 * 0.5), then - 0.1 sign(g)
  ctgraph_test::expect_values(params.get<"p">(), {0.95 - 0.1, 1.9 + 0.1}, 1e-6);
}

TEST_CASE("clipping: the norm returned and the scaled step, by hand", "[optim][clip]") {
  constexpr auto p = cg::param<"p", double, 2>;
  constexpr auto c = cg::input<"c", double, 2>;
  constexpr auto loss = cg::sum(p * c);
  auto step = cg::compile(loss, cg::grad(loss, p));
  auto params = cg::parameters_of(step);
  const std::array<double, 2> cs{3.0, -4.0};  // norm 5
  cg::sgd opt(params, {.lr = 1.0});
  auto out = step.run(params, cg::feed<"c">(cs));
  CHECK(cg::grad_norm(params, out) == 5.0);
  CHECK(opt.step(params, out, {.max_grad_norm = 1.0}) == 5.0);
  const double k = 1.0 / (5.0 + 1e-6);
  ctgraph_test::expect_values(params.get<"p">(), {-3.0 * k, 4.0 * k}, 1e-15);
  out = step.run(params, cg::feed<"c">(cs));
  CHECK(opt.step(params, out, {.max_grad_norm = 10.0}) == 5.0);  // below the bound: unscaled
  ctgraph_test::expect_values(params.get<"p">(), {-3.0 * k - 3.0, 4.0 * k + 4.0}, 1e-14);
  CHECK(opt.step(params, out) == 0.0);  // no clipping asked: the norm is not computed
}

TEST_CASE("invalid hyper-parameters throw as in PyTorch", "[optim]") {
  constexpr auto p = cg::param<"p", double, 2>;
  auto step = cg::compile(cg::sum(p));
  auto params = cg::parameters_of(step);
  CHECK_THROWS_AS(cg::sgd(params, {.lr = -1}), std::invalid_argument);
  CHECK_THROWS_WITH(cg::sgd(params, {.lr = 0.1, .nesterov = true}), Catch::Contains("Nesterov"));
  CHECK_THROWS_WITH(cg::adam(params, {.betas = {0.9, 1.0}}), Catch::Contains("beta parameter at index 1"));
  CHECK_THROWS_AS(cg::adamw(params, {.eps = -1e-8}), std::invalid_argument);
  CHECK_NOTHROW(cg::adamw(params, {}));
}

TEST_CASE("schedules, by hand", "[optim][schedule]") {
  const cg::constant_lr c{.lr = 0.3};
  CHECK(c.lr_at(0) == 0.3);
  CHECK(c.lr_at(1000) == 0.3);
  const cg::step_lr s{.lr = 0.5, .step_size = 3, .gamma = 0.5};
  CHECK(s.lr_at(0) == 0.5);
  CHECK(s.lr_at(2) == 0.5);
  CHECK(s.lr_at(3) == 0.25);
  CHECK(s.lr_at(7) == 0.125);
  const cg::cosine_warmup_lr w{.lr = 0.5, .warmup_steps = 4, .total_steps = 14, .min_lr = 0.05};
  CHECK(w.lr_at(0) == 0.0);
  CHECK(w.lr_at(1) == 0.125);
  CHECK(w.lr_at(3) == 0.375);
  CHECK(w.lr_at(4) == 0.5);
  CHECK(w.lr_at(9) == Approx(0.275).epsilon(1e-15));  // half way: the mean of lr and min_lr
  CHECK(w.lr_at(14) == Approx(0.05).epsilon(1e-15));
  CHECK(w.lr_at(100) == 0.05);
}

TEST_CASE("optimizers match torch.optim over 10 steps (double, 1e-6)", "[optim][torch]") {
  const auto& ref = torch_reference();
  if (ref.is_null()) {
    WARN("skipped: no python3 with torch found at configure time (CTGRAPH_TORCH_PYTHON)");
    return;
  }
  const auto& r = ref["optim"];
  using P = typename decltype(cg::compile(
      problem<double>::loss, cg::grad(problem<double>::loss, problem<double>::W, problem<double>::b)))::program;
  using params_t = cg::parameters<P>;
  constexpr double tol = 1e-6;
  SECTION("sgd") {
    check_trajectory<double>(
        r["sgd"], [](params_t& p) { return cg::sgd(p, {.lr = 0.1}); }, 0, tol);
  }
  SECTION("sgd, momentum") {
    check_trajectory<double>(
        r["sgd_momentum"], [](params_t& p) { return cg::sgd(p, {.lr = 0.05, .momentum = 0.9}); }, 0, tol);
  }
  SECTION("sgd, nesterov") {
    check_trajectory<double>(
        r["sgd_nesterov"], [](params_t& p) { return cg::sgd(p, {.lr = 0.05, .momentum = 0.9, .nesterov = true}); }, 0,
        tol);
  }
  SECTION("sgd, weight decay and dampening") {
    check_trajectory<double>(
        r["sgd_weight_decay"],
        [](params_t& p) { return cg::sgd(p, {.lr = 0.1, .momentum = 0.5, .dampening = 0.1, .weight_decay = 0.01}); }, 0,
        tol);
  }
  SECTION("sgd, momentum, clipped") {
    check_trajectory<double>(
        r["sgd_momentum_clip"], [](params_t& p) { return cg::sgd(p, {.lr = 0.05, .momentum = 0.9}); }, 0.05, tol);
  }
  SECTION("adam") {
    check_trajectory<double>(
        r["adam"], [](params_t& p) { return cg::adam(p, {.lr = 0.01}); }, 0, tol);
  }
  SECTION("adam, L2 and amsgrad") {
    check_trajectory<double>(
        r["adam_l2_amsgrad"],
        [](params_t& p) { return cg::adam(p, {.lr = 0.01, .weight_decay = 0.1, .amsgrad = true}); }, 0, tol);
  }
  SECTION("adam, clipped") {
    check_trajectory<double>(
        r["adam_clip"], [](params_t& p) { return cg::adam(p, {.lr = 0.01}); }, 0.05, tol);
  }
  SECTION("adamw") {
    check_trajectory<double>(
        r["adamw"], [](params_t& p) { return cg::adamw(p, {.lr = 0.01}); }, 0, tol);
  }
  SECTION("adamw, amsgrad, clipped") {
    check_trajectory<double>(
        r["adamw_clip_amsgrad"],
        [](params_t& p) { return cg::adamw(p, {.lr = 0.01, .weight_decay = 0.1, .amsgrad = true}); }, 0.05, tol);
  }
}

TEST_CASE("float parameters follow torch.optim's double trajectory (adamw, clipped, to 1e-4)", "[optim][torch]") {
  const auto& ref = torch_reference();
  if (ref.is_null()) {
    WARN("skipped: no python3 with torch found at configure time (CTGRAPH_TORCH_PYTHON)");
    return;
  }
  check_trajectory<float>(
      ref["optim"]["adamw_clip_amsgrad"],
      [](auto& p) { return cg::adamw(p, {.lr = 0.01, .weight_decay = 0.1, .amsgrad = true}); }, 0.05, 1e-4);
}

TEST_CASE("schedules match torch.optim.lr_scheduler", "[optim][schedule][torch]") {
  const auto& ref = torch_reference();
  if (ref.is_null()) {
    WARN("skipped: no python3 with torch found at configure time (CTGRAPH_TORCH_PYTHON)");
    return;
  }
  const auto step = ref["schedules"]["step_lr"].get<std::vector<double>>();
  const cg::step_lr s{.lr = 0.5, .step_size = 3, .gamma = 0.5};
  for (std::size_t k = 0; k < step.size(); ++k) CHECK(s.lr_at(static_cast<long>(k)) == Approx(step[k]).epsilon(1e-12));
  const auto cosine = ref["schedules"]["cosine"].get<std::vector<double>>();
  const cg::cosine_warmup_lr w{.lr = 0.5, .warmup_steps = 4, .total_steps = 14, .min_lr = 0.05};
  for (std::size_t k = 0; k < cosine.size(); ++k) {
    INFO("epoch " << k);
    CHECK(w.lr_at(static_cast<long>(k) + 4) == Approx(cosine[k]).epsilon(1e-12));
  }
}
