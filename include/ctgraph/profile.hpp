// ctgraph/profile.hpp: cg::profile(times), the run option that times each step of a run, and profile_table().
#pragma once
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "format.hpp"
#include "graph/exec.hpp"

namespace ctgraph {

/// Seconds spent in each step of a compiled step's plan, summed over the runs that were timed.
struct step_times {
  std::vector<double> seconds;  ///< One per step, in run order (as in to_dot() and cg::non_finite_error).
  long runs = 0;                ///< Runs timed.
  /// Forgets what was timed.
  void clear() {
    seconds.clear();
    runs = 0;
  }
};

/// The type of cg::profile(times).
struct profile_t {
  step_times* times;  ///< Where the run adds its steps' seconds.
};
/// Passed among the feeds of step.run (in any position), times each step of the run and adds its seconds to
/// `times` (a clock read between steps: about 40 ns each, so a profiled run is a little slower than a plain
/// one). cg::profile_table(times, step) tabulates them.
inline profile_t profile(step_times& times) { return {&times}; }

namespace detail {
template <class F>
struct is_profile : std::is_same<F, profile_t> {};

// The times of the cg::profile among a run's arguments.
template <class... A>
step_times* profile_times(const A&... a) {
  step_times* t = nullptr;
  (
      [&](const auto& x) {
        if constexpr (is_profile<std::decay_t<decltype(x)>>::value) t = x.times;
      }(a),
      ...);
  return t;
}

template <class Plan>
[[gnu::noinline]] void run_plan_timed(const exec_ctx& c, const Plan& p, step_times& t) {
  const plan_view v = view_of(p);
  if (t.seconds.size() != p.order.size()) t.clear(), t.seconds.assign(p.order.size(), 0.0);
  using clock = std::chrono::steady_clock;
  auto last = clock::now();
  for (std::size_t s = 0; s < p.order.size(); ++s) {
    run_step(c, v, p.order[s]);
    const auto now = clock::now();
    t.seconds[s] += std::chrono::duration<double>(now - last).count();
    last = now;
  }
  ++t.runs;
}

// What step s of a plan computes, as cg::non_finite_error and profile_table() name it: its op (a fused
// loop's last), the loop's ops (" (fused loop: add, sqrt, mul, sub)"; empty for a loop of one op or a
// kernel), its output's shape, and whether the reverse sweep made it (a gradient).
struct step_description {
  std::string op, loop;
  shape s;
  bool backward = false;
};
template <class PV>
step_description describe_step(const PV& p, std::size_t s) {
  const order_entry& e = p.order[s];
  step_description d;
  if (e.fused) {
    const fused_step& f = p.fused[e.index];
    d.op = f.code[f.n - 1].op->name;
    for (int k = 0; k < f.n && f.n > 1; ++k) d.loop += (k ? ", " : " (fused loop: ") + std::string(f.code[k].op->name);
    if (f.n > 1) d.loop += ")";
    d.s = f.out_shape, d.backward = f.backward;
  } else {
    const kernel_step& k = p.kernels[e.index];
    d.op = k.op->name, d.s = k.out_shape, d.backward = k.backward;
  }
  return d;
}
}  // namespace detail

/// The `top` slowest steps of `times` (taken from runs of `Step`), slowest first: step number, forward or
/// gradient, op (a fused loop's ops), output shape, milliseconds per run and share of the run; then the
/// forward and gradient totals. Throws std::invalid_argument when `times` holds no run of a plan this size.
template <class Step>
std::string profile_table(const step_times& times, const Step&, int top = 20) {
  const plan_view p = view_of(Step::plan);
  if (times.runs == 0 || times.seconds.size() != p.order.size())
    throw std::invalid_argument(
        fmt::format("ctgraph: profile_table: the times hold {} runs of {} steps, this step "
                    "has {} steps",
                    times.runs, times.seconds.size(), p.order.size()));
  std::vector<std::size_t> by(times.seconds.size());
  double total = 0, grad = 0;
  std::vector<detail::step_description> what(by.size());
  for (std::size_t s = 0; s < by.size(); ++s) {
    by[s] = s, total += times.seconds[s], what[s] = detail::describe_step(p, s);
    if (what[s].backward) grad += times.seconds[s];
  }
  std::stable_sort(by.begin(), by.end(), [&](auto a, auto b) { return times.seconds[a] > times.seconds[b]; });
  const double per = 1e3 / double(times.runs);
  std::string r = fmt::format("| step | what | ms | share |\n|---:|---|---:|---:|\n");
  for (std::size_t i = 0; i < by.size() && i < static_cast<std::size_t>(std::max(top, 0)); ++i) {
    const detail::step_description& d = what[by[i]];
    r += fmt::format("| {} | {} {} {}{} | {:.3f} | {:.1f}% |\n", by[i], d.backward ? "gradient" : "forward", d.op, d.s,
                     d.loop, times.seconds[by[i]] * per, 100 * times.seconds[by[i]] / total);
  }
  r += fmt::format("| | all {} steps (forward {:.3f}, gradient {:.3f}) | {:.3f} | 100% |\n", by.size(),
                   (total - grad) * per, grad * per, total * per);
  return r;
}

}  // namespace ctgraph
