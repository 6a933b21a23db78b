// ctgraph/optim.hpp: optimizers over a parameter set (SGD, Adam, AdamW with PyTorch's
// update rules and defaults), global gradient-norm clipping, learning-rate schedules.
//
//   auto step = cg::compile(loss, cg::grad(loss));  // the gradient of every param of loss
//   auto params = cg::parameters_of(step);
//   cg::adamw opt(params, {.lr = 3e-4});            // state allocated here, once
//   auto sched = cg::cosine_warmup_lr{.lr = 3e-4, .warmup_steps = 100, .total_steps = 10000};
//   for (long t = 0; t < 10000; ++t) {
//     auto out = step.run(params, cg::feed<"x">(xs));
//     opt.set_lr(sched.lr_at(t));
//     double norm = opt.step(params, out, {.max_grad_norm = 1.0});  // allocates nothing
//   }
//
// Gradients reach the optimizer through the step's results: a param named "W" is updated
// when the results hold `grad(y, W)` (W among the params of `grad(y)`, or among the x of
// `grad(y, x...)`), found at compile time by `out.grad<"W">()`; a param without a gradient
// is skipped (PyTorch's `grad is None`).
//
// Clipping: result views are read-only, so clip_grad_norm_ is an option of step():
// `{.max_grad_norm = m}` computes the total L2 norm of every gradient step() uses and scales
// each gradient by min(1, m / (norm + 1e-6)) as it is read, which is what
// torch.nn.utils.clip_grad_norm_(params, m) followed by optimizer.step() computes. The arena
// is never written.
//
// State: each optimizer lists its state as named tensors through for_each_state(f), with
// PyTorch's optimizer state_dict keys flattened under the param's name ("optimizer." + param
// name + "." + key, e.g. "optimizer.fc1.weight.exp_avg"); cg::save(params, opt, path) and
// cg::load(params, opt, path) (ctgraph/checkpoint.hpp) store it beside the params, so that a
// run resumed from a checkpoint continues bit for bit. Hyper-parameters (options(), lr())
// are not state: they are the caller's, as the schedule is.
#pragma once
#include <array>
#include <cmath>
#include <cstddef>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "compile.hpp"
#include "kernels.hpp"

namespace ctgraph {

/// Options of one optimizer step.
struct step_options {
  /// Clip the gradients to this total L2 norm (torch.nn.utils.clip_grad_norm_ semantics);
  /// 0 (the default) or a negative value: no clipping.
  double max_grad_norm = 0;
};

namespace detail {
// Calls f(k, T* param, const T* grad, n) for each param k of P whose gradient `out` holds.
template <class P, class Step, class F>
void for_each_grad(parameters<P>& params, const results<Step>& out, F&& f) {
  [&]<std::size_t... K>(std::index_sequence<K...>) {
    // A pack expanded into an array, not a fold: clang caps a fold at 256 operands.
    const int each[] = {
        (
            [&] {
              constexpr auto name = name_of<parameters<P>::entries[K].name>();
              if constexpr (results<Step>::template has_grad<name>) {
                constexpr leaf_entry e = parameters<P>::entries[K];
                constexpr output_entry o = Step::plan.outputs[Step::program::grad_index(e.name)];
                static_assert(o.s == e.s && o.type == e.type,
                              "ctgraph: optimizer step: a gradient's shape or element type differs from the param of "
                              "that name in the parameter set");
                using T = element_t<e.type>;
                const auto g = out.template grad<name>();
                f(K, static_cast<T*>(params.ptr(K)), g.data(), static_cast<std::size_t>(e.s.size()));
              }
            }(),
            0)...,
        0};
    (void)each;
  }
  (std::make_index_sequence<parameters<P>::count>{});
}

// The factor step() multiplies gradients by: min(1, max / (norm + 1e-6)), as clip_grad_norm_.
inline double clip_coefficient(double norm, double max_norm) {
  if (!(max_norm > 0)) return 1;
  const double c = max_norm / (norm + 1e-6);
  return c < 1 ? c : 1;
}

// Optimizer state laid out like the parameter set: one T per param element, or none (an option's state
// that is off). Not std::optional: g++ 12 falsely warns that an optional's unique_ptr may be uninitialized.
struct no_state_t {};
inline constexpr no_state_t no_state{};
template <class P>
class state_buffer {
 public:
  state_buffer() : data_(allocate(static_cast<std::size_t>(parameters<P>::total_bytes()))) {}
  explicit state_buffer(no_state_t) {}
  explicit operator bool() const { return data_ != nullptr; }
  template <class T>
  T* at(std::size_t k) {
    return reinterpret_cast<T*>(data_.get() + parameters<P>::offset(k));
  }
  void* raw(std::size_t k) const { return data_.get() + parameters<P>::offset(k); }

 private:
  aligned_bytes data_;
};

[[noreturn]] inline void bad_option(const char* optimizer, const char* what, double value) {
  throw std::invalid_argument(std::string("ctgraph: ") + optimizer + ": invalid " + what + ": " +
                              std::to_string(value));
}
inline void check_nonnegative(const char* optimizer, const char* what, double value) {
  if (!(value >= 0)) bad_option(optimizer, what, value);
}
inline void check_beta(const char* optimizer, const char* what, double value) {
  if (!(value >= 0 && value < 1)) bad_option(optimizer, what, value);
}

// The name of param k's state tensor `key`: "optimizer.<param name>.<key>".
template <class P>
std::string state_name(std::size_t k, std::string_view key) {
  std::string r = "optimizer.";
  r += parameters<P>::entries[k].name;
  r += '.';
  r += key;
  return r;
}
// The dims of param k.
template <class P>
std::span<const int> param_dims(std::size_t k) {
  const auto& e = parameters<P>::entries[k];
  return {e.s.d, static_cast<std::size_t>(e.s.rank)};
}
}  // namespace detail

/// The total L2 norm of the gradients `out` holds for the params of `params` (the norm that
/// clip_grad_norm_ computes and step() clips with). Allocates nothing.
/// @param params the parameter set whose params' gradients are measured
/// @param out    the results of a step run on `params`
template <class P, class Step>
double grad_norm(parameters<P>& params, const results<Step>& out) {
  double s = 0;
  detail::for_each_grad(params, out, [&](std::size_t, auto*, const auto* g, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(g[i]) * static_cast<double>(g[i]);
  });
  return std::sqrt(s);
}

// ---------------------------------------------------------------- SGD

/// Options of cg::sgd, torch.optim.SGD's defaults (lr = 1e-3 as in PyTorch >= 2.2; earlier
/// versions require it).
struct sgd_options {
  double lr = 1e-3;         ///< learning rate
  double momentum = 0;      ///< momentum factor
  double dampening = 0;     ///< dampening of the momentum
  double weight_decay = 0;  ///< L2 penalty added to the gradient
  bool nesterov = false;    ///< Nesterov momentum (needs momentum > 0 and dampening 0)
};

/// Stochastic gradient descent, torch.optim.SGD's update rule: with d = g + wd * p,
/// b = d on the first step and b = momentum * b + (1 - dampening) * d after, d = b (or
/// d + momentum * b with Nesterov) when momentum != 0, then p -= lr * d.
/// `cg::sgd opt(params, {.lr = 0.1, .momentum = 0.9});`
template <class P>
class sgd {
 public:
  /// Allocates the momentum buffers (when momentum != 0) for the params of `params`.
  /// @param params the parameter set to optimize (only its type is kept: any set of that type can be stepped)
  /// @param options hyper-parameters; invalid values throw std::invalid_argument
  explicit sgd([[maybe_unused]] parameters<P>& params, sgd_options options = {}) : o_(options) {
    detail::check_nonnegative("sgd", "learning rate", o_.lr);
    detail::check_nonnegative("sgd", "momentum", o_.momentum);
    detail::check_nonnegative("sgd", "weight_decay", o_.weight_decay);
    if (o_.nesterov && (o_.momentum <= 0 || o_.dampening != 0))
      throw std::invalid_argument("ctgraph: sgd: Nesterov momentum requires a momentum and zero dampening");
    if (o_.momentum != 0) buf_ = detail::state_buffer<P>();
  }

  /// Updates every param of `params` whose gradient `out` holds; allocates nothing.
  /// @param params the parameter set `out` was computed on
  /// @param out    the results of a step run, holding grad(loss, W) for params W to update
  /// @param so     clipping; see step_options
  /// @return the total gradient norm before clipping when so.max_grad_norm > 0, else 0 (not computed)
  template <class Step>
  double step(parameters<P>& params, const results<Step>& out, step_options so = {}) {
    const double norm = so.max_grad_norm > 0 ? grad_norm(params, out) : 0;
    const double coef = detail::clip_coefficient(norm, so.max_grad_norm);
    detail::for_each_grad(params, out, [&]<class T>(std::size_t k, T* p, const T* g, std::size_t n) {
      const T c = static_cast<T>(coef), lr = static_cast<T>(o_.lr), wd = static_cast<T>(o_.weight_decay);
      const T mom = static_cast<T>(o_.momentum), damp = static_cast<T>(1 - o_.dampening);
      T* b = buf_ ? buf_.template at<T>(k) : nullptr;
      const bool first = started_[k] == 0;
      for (std::size_t i = 0; i < n; ++i) {
        T d = coef != 1 ? g[i] * c : g[i];
        if (o_.weight_decay != 0) d = d + wd * p[i];
        if (b) {
          b[i] = first ? d : b[i] * mom + damp * d;
          d = o_.nesterov ? d + mom * b[i] : b[i];
        }
        p[i] = p[i] - lr * d;
      }
      started_[k] = 1;
    });
    return norm;
  }

  /// Lists the optimizer's state, the tensors a resumed run needs to continue bit for bit:
  /// with momentum != 0, per param p (in the set's order) "optimizer.<p>.momentum_buffer"
  /// (p's dtype and dims; torch.optim.SGD's state key) and "optimizer.<p>.has_momentum_buffer"
  /// (an I32 scalar, 1 once p has been stepped: PyTorch's buffer is None until then, and the
  /// first step sets it to the gradient instead of decaying it); with momentum == 0, nothing.
  /// @param f called as f(std::string name, dtype type, std::span<const int> dims, void* data),
  ///          `data` pointing at the state itself (read it to save, write it to load)
  template <class F>
  void for_each_state(F&& f) {
    visit_state(*this, f);
  }
  /// As for_each_state(F&&), with `data` a const void*.
  /// @param f called as f(std::string name, dtype type, std::span<const int> dims, const void* data)
  template <class F>
  void for_each_state(F&& f) const {
    visit_state(*this, f);
  }
  /// The learning rate the next step uses.
  double lr() const { return o_.lr; }
  /// Sets the learning rate of the following steps (e.g. from a schedule's lr_at()).
  /// @param lr the new learning rate
  void set_lr(double lr) { o_.lr = lr; }
  /// The hyper-parameters in use.
  const sgd_options& options() const { return o_; }

 private:
  template <class Self, class F>
  static void visit_state(Self& self, F& f) {
    using ptr = std::conditional_t<std::is_const_v<Self>, const void*, void*>;
    if (!self.buf_) return;
    for (std::size_t k = 0; k < parameters<P>::count; ++k) {
      f(detail::state_name<P>(k, "momentum_buffer"), parameters<P>::entries[k].type, detail::param_dims<P>(k),
        static_cast<ptr>(self.buf_.raw(k)));
      f(detail::state_name<P>(k, "has_momentum_buffer"), dtype::i32, std::span<const int>(),
        static_cast<ptr>(&self.started_[k]));
    }
  }

  sgd_options o_;
  detail::state_buffer<P> buf_{detail::no_state};
  std::array<int, parameters<P>::count + 1> started_{};  // int, not bool: saved as I32
};

// ---------------------------------------------------------------- Adam, AdamW

/// Options of cg::adam, torch.optim.Adam's defaults.
struct adam_options {
  double lr = 1e-3;                            ///< learning rate
  std::array<double, 2> betas = {0.9, 0.999};  ///< decay rates of the first and second moments
  double eps = 1e-8;                           ///< added to the denominator
  double weight_decay = 0;                     ///< L2 penalty added to the gradient
  bool amsgrad = false;                        ///< use the maximum of the second moments (AMSGrad)
};
/// Options of cg::adamw, torch.optim.AdamW's defaults.
struct adamw_options {
  double lr = 1e-3;                            ///< learning rate
  std::array<double, 2> betas = {0.9, 0.999};  ///< decay rates of the first and second moments
  double eps = 1e-8;                           ///< added to the denominator
  double weight_decay = 1e-2;                  ///< decoupled weight decay: p *= 1 - lr * weight_decay
  bool amsgrad = false;                        ///< use the maximum of the second moments (AMSGrad)
};

namespace detail {
// Adam and AdamW: one update rule, weight decay as L2 (Decoupled = false) or decoupled.
template <class P, class Options, bool Decoupled>
class adam_impl {
 public:
  adam_impl(const char* who, Options options) : o_(options) {
    check_nonnegative(who, "learning rate", o_.lr);
    check_nonnegative(who, "epsilon", o_.eps);
    check_beta(who, "beta parameter at index 0", o_.betas[0]);
    check_beta(who, "beta parameter at index 1", o_.betas[1]);
    check_nonnegative(who, "weight_decay", o_.weight_decay);
    if (o_.amsgrad) max_v_ = state_buffer<P>();
  }

  template <class Step>
  double step(parameters<P>& params, const results<Step>& out, step_options so) {
    const double norm = so.max_grad_norm > 0 ? grad_norm(params, out) : 0;
    const double coef = clip_coefficient(norm, so.max_grad_norm);
    const double b1 = o_.betas[0], b2 = o_.betas[1];
    for_each_grad(params, out, [&]<class T>(std::size_t k, T* p, const T* g, std::size_t n) {
      const double t = ++steps_[k];
      const double bc1 = 1 - std::pow(b1, t), bc2 = 1 - std::pow(b2, t);
      kernels::adam_step<T> s;
      s.clip = static_cast<T>(coef);
      if constexpr (Decoupled)
        s.decay = static_cast<T>(1 - o_.lr * o_.weight_decay);
      else
        s.l2 = static_cast<T>(o_.weight_decay);
      s.b1 = static_cast<T>(b1), s.b2 = static_cast<T>(b2), s.a1 = static_cast<T>(1 - b1),
      s.a2 = static_cast<T>(1 - b2);
      s.step_size = static_cast<T>(o_.lr / bc1), s.bc2_sqrt = static_cast<T>(std::sqrt(bc2));
      s.eps = static_cast<T>(o_.eps);
      kernels::adam_update(s, n, p, g, m_.template at<T>(k), v_.template at<T>(k),
                           max_v_ ? max_v_.template at<T>(k) : nullptr);
    });
    return norm;
  }

  template <class Self, class F>
  static void visit_state(Self& self, F& f) {
    using ptr = std::conditional_t<std::is_const_v<Self>, const void*, void*>;
    for (std::size_t k = 0; k < parameters<P>::count; ++k) {
      const dtype t = parameters<P>::entries[k].type;
      const auto dims = param_dims<P>(k);
      f(state_name<P>(k, "step"), dtype::f64, std::span<const int>(), static_cast<ptr>(&self.steps_[k]));
      f(state_name<P>(k, "exp_avg"), t, dims, static_cast<ptr>(self.m_.raw(k)));
      f(state_name<P>(k, "exp_avg_sq"), t, dims, static_cast<ptr>(self.v_.raw(k)));
      if (self.max_v_) f(state_name<P>(k, "max_exp_avg_sq"), t, dims, static_cast<ptr>(self.max_v_.raw(k)));
    }
  }

  Options o_;

 private:
  state_buffer<P> m_, v_;
  state_buffer<P> max_v_{no_state};
  // Steps taken per param, a double as PyTorch's "step" tensor (exact up to 2^53).
  std::array<double, parameters<P>::count + 1> steps_{};
};
}  // namespace detail

/// Adam, torch.optim.Adam's update rule: d = g + wd * p, m = b1 m + (1 - b1) d,
/// v = b2 v + (1 - b2) d^2, p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps),
/// t counted per param (a step without its gradient does not count). With amsgrad, v is
/// replaced by its running maximum in the denominator.
/// `cg::adam opt(params, {.lr = 1e-2});`
template <class P>
class adam {
 public:
  /// Allocates the moment buffers for the params of `params`.
  /// @param params the parameter set to optimize (only its type is kept: any set of that type can be stepped)
  /// @param options hyper-parameters; invalid values throw std::invalid_argument
  explicit adam([[maybe_unused]] parameters<P>& params, adam_options options = {}) : impl_("adam", options) {}
  /// Updates every param of `params` whose gradient `out` holds; allocates nothing.
  /// @param params the parameter set `out` was computed on
  /// @param out    the results of a step run, holding grad(loss, W) for params W to update
  /// @param so     clipping; see step_options
  /// @return the total gradient norm before clipping when so.max_grad_norm > 0, else 0 (not computed)
  template <class Step>
  double step(parameters<P>& params, const results<Step>& out, step_options so = {}) {
    return impl_.step(params, out, so);
  }
  /// The learning rate the next step uses.
  double lr() const { return impl_.o_.lr; }
  /// Sets the learning rate of the following steps (e.g. from a schedule's lr_at()).
  /// @param lr the new learning rate
  void set_lr(double lr) { impl_.o_.lr = lr; }
  /// The hyper-parameters in use.
  const adam_options& options() const { return impl_.o_; }

  /// Lists the optimizer's state, the tensors a resumed run needs to continue bit for bit:
  /// per param p (in the set's order), torch.optim.Adam's state keys "optimizer.<p>.step" (an
  /// F64 scalar, the steps p has taken: PyTorch's float "step" tensor), "optimizer.<p>.exp_avg"
  /// and "optimizer.<p>.exp_avg_sq" (p's dtype and dims), and with amsgrad
  /// "optimizer.<p>.max_exp_avg_sq".
  /// @param f called as f(std::string name, dtype type, std::span<const int> dims, void* data),
  ///          `data` pointing at the state itself (read it to save, write it to load)
  template <class F>
  void for_each_state(F&& f) {
    decltype(impl_)::visit_state(impl_, f);
  }
  /// As for_each_state(F&&), with `data` a const void*.
  /// @param f called as f(std::string name, dtype type, std::span<const int> dims, const void* data)
  template <class F>
  void for_each_state(F&& f) const {
    decltype(impl_)::visit_state(impl_, f);
  }

 private:
  detail::adam_impl<P, adam_options, false> impl_;
};

/// AdamW, torch.optim.AdamW's update rule: p *= 1 - lr * wd (decoupled weight decay), then
/// Adam's update without the L2 term. `cg::adamw opt(params, {.lr = 3e-4, .weight_decay = 0.1});`
template <class P>
class adamw {
 public:
  /// Allocates the moment buffers for the params of `params`.
  /// @param params the parameter set to optimize (only its type is kept: any set of that type can be stepped)
  /// @param options hyper-parameters; invalid values throw std::invalid_argument
  explicit adamw([[maybe_unused]] parameters<P>& params, adamw_options options = {}) : impl_("adamw", options) {}
  /// Updates every param of `params` whose gradient `out` holds; allocates nothing.
  /// @param params the parameter set `out` was computed on
  /// @param out    the results of a step run, holding grad(loss, W) for params W to update
  /// @param so     clipping; see step_options
  /// @return the total gradient norm before clipping when so.max_grad_norm > 0, else 0 (not computed)
  template <class Step>
  double step(parameters<P>& params, const results<Step>& out, step_options so = {}) {
    return impl_.step(params, out, so);
  }
  /// The learning rate the next step uses.
  double lr() const { return impl_.o_.lr; }
  /// Sets the learning rate of the following steps (e.g. from a schedule's lr_at()).
  /// @param lr the new learning rate
  void set_lr(double lr) { impl_.o_.lr = lr; }
  /// The hyper-parameters in use.
  const adamw_options& options() const { return impl_.o_; }

  /// Lists the optimizer's state, the tensors a resumed run needs to continue bit for bit:
  /// per param p (in the set's order), torch.optim.AdamW's state keys "optimizer.<p>.step" (an
  /// F64 scalar, the steps p has taken: PyTorch's float "step" tensor), "optimizer.<p>.exp_avg"
  /// and "optimizer.<p>.exp_avg_sq" (p's dtype and dims), and with amsgrad
  /// "optimizer.<p>.max_exp_avg_sq".
  /// @param f called as f(std::string name, dtype type, std::span<const int> dims, void* data),
  ///          `data` pointing at the state itself (read it to save, write it to load)
  template <class F>
  void for_each_state(F&& f) {
    decltype(impl_)::visit_state(impl_, f);
  }
  /// As for_each_state(F&&), with `data` a const void*.
  /// @param f called as f(std::string name, dtype type, std::span<const int> dims, const void* data)
  template <class F>
  void for_each_state(F&& f) const {
    decltype(impl_)::visit_state(impl_, f);
  }

 private:
  detail::adam_impl<P, adamw_options, true> impl_;
};

// ---------------------------------------------------------------- learning-rate schedules

/// A constant learning rate.
struct constant_lr {
  double lr = 1e-3;  ///< the learning rate
  /// The learning rate of step `step` (counted from 0).
  /// @param step the step index
  double lr_at([[maybe_unused]] long step) const { return lr; }
};

/// torch.optim.lr_scheduler.StepLR: lr * gamma^floor(step / step_size).
struct step_lr {
  double lr = 1e-3;    ///< the initial learning rate
  long step_size = 1;  ///< steps between decays
  double gamma = 0.1;  ///< decay factor
  /// The learning rate of step `step` (counted from 0).
  /// @param step the step index
  double lr_at(long step) const { return lr * std::pow(gamma, static_cast<double>(step / step_size)); }
};

/// Linear warm-up from 0, then cosine decay to min_lr: for step < warmup_steps,
/// lr * step / warmup_steps; then min_lr + (lr - min_lr) * (1 + cos(pi * s / S)) / 2 with
/// s = step - warmup_steps, S = total_steps - warmup_steps, which is
/// torch.optim.lr_scheduler.CosineAnnealingLR(T_max = S, eta_min = min_lr) at epoch s (and
/// transformers' get_cosine_with_min_lr_schedule_with_warmup). From total_steps on: min_lr.
struct cosine_warmup_lr {
  double lr = 1e-3;       ///< the peak learning rate, reached at warmup_steps
  long warmup_steps = 0;  ///< steps of the linear warm-up
  long total_steps = 1;   ///< steps until min_lr is reached
  double min_lr = 0;      ///< the final learning rate
  /// The learning rate of step `step` (counted from 0).
  /// @param step the step index
  double lr_at(long step) const {
    if (step < warmup_steps) return lr * static_cast<double>(step) / static_cast<double>(warmup_steps);
    if (step >= total_steps) return min_lr;
    const double s = static_cast<double>(step - warmup_steps), S = static_cast<double>(total_steps - warmup_steps);
    return min_lr + (lr - min_lr) * (1 + std::cos(3.14159265358979323846 * s / S)) / 2;
  }
};

}  // namespace ctgraph
