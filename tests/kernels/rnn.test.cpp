// Tests of the fused LSTM and GRU gate kernels (<ctgraph/rnn_kernels.hpp>):
//   - sigmoid and tanh accuracy, in ulps, over a sweep of inputs and special values (through the saved gates);
//   - forward on random shapes against a plain double reference (float and double);
//   - backward of the double kernels against central finite differences of the double forward, and of both
//     against an analytic double reference;
//   - null optional pointers, strided rows, NaN propagation, and the threaded path against one thread;
//   - the additive attention step (forward and backward) on random shapes and masks against double loops.
// Random cases: B 1-40, H 1-150, random row strides and null pointers. ctest runs a fixed seed; a long run sets
//   CTGRAPH_RANDOM_CASES=N   cases per test case (default 40)
//   CTGRAPH_RANDOM_SEED=S    the first case's seed (default 1); case i uses seed S + i
// Buffers end exactly with their last row's last element, so that AddressSanitizer catches a read past them;
// the gaps of strided rows hold a sentinel that must come back bit for bit from the outputs.
#include <omp.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "ctgraph/rnn_kernels.hpp"
#include "random_cases.hpp"
#include "thread_count.hpp"

namespace {
namespace k = ctgraph::kernels;
using ctgraph_test::env_or;
using ctgraph_test::uniform;
using ctgraph_test::uniform_real;

template <class T>
const char* type_name() {
  return sizeof(T) == 4 ? "float" : "double";
}

// B rows of `width` values, `ld` apart. The allocation ends with the last value; gaps hold a sentinel.
template <class T>
struct rows {
  static constexpr T sentinel = T(-7.25);
  int B, width, ld;
  std::vector<T> v;
  rows(int b, int w, int stride) : B(b), width(w), ld(stride), v(b ? std::size_t(b - 1) * stride + w : 0, sentinel) {}
  T& operator()(int b, int j) { return v[std::size_t(b) * ld + j]; }
  T operator()(int b, int j) const { return v[std::size_t(b) * ld + j]; }
  T* data() { return v.data(); }
  void fill(std::mt19937& rng, double lo, double hi) {
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < width; ++j) (*this)(b, j) = T(uniform_real(rng, lo, hi));
  }
  bool gaps_intact() const {
    for (std::size_t i = 0; i < v.size(); ++i)
      if (int(i % ld) >= width && !(v[i] == sentinel)) return false;
    return true;
  }
};

// Largest |got - want| / bound over the checked elements (NaN counts as infinite), and where it was.
struct worst_error {
  double ratio = 0;
  std::string where = "-";
  void check(double got, double want, double bound, const char* what, int b, int j) {
    const double r = std::abs(got - want) / bound;
    if (!(r <= ratio)) {
      ratio = std::isnan(r) ? std::numeric_limits<double>::infinity() : r;
      where = std::string(what) + "[" + std::to_string(b) + ", " + std::to_string(j) + "]: got " + std::to_string(got) +
              ", want " + std::to_string(want);
    }
  }
};

// Hidden sizes biased to vector-width edges (float 8 / double 4 lanes with AVX2, 16 / 8 with AVX-512).
int random_hidden(std::mt19937& rng) {
  static const int edges[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 150};
  if (uniform(rng, 0, 2) == 0) return edges[uniform(rng, 0, int(std::size(edges)) - 1)];
  return uniform(rng, 1, 150);
}
// A row stride for rows `width` wide: 0 (dense), a few elements more, or twice (one half of a pair).
int random_ld(std::mt19937& rng, int width) {
  switch (uniform(rng, 0, 3)) {
    case 0:
      return width + uniform(rng, 1, 9);
    case 1:
      return 2 * width;
    default:
      return 0;
  }
}
int dense_or(int ld, int width) { return ld > 0 ? ld : width; }

double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

// ---- references in double -----------------------------------------------------------------------------

struct lstm_ref {
  double i, f, g, o, c_next, tc, h_next;
};
lstm_ref lstm_point(double pi, double pf, double pg, double po, double c) {
  lstm_ref r{sigmoid(pi), sigmoid(pf), std::tanh(pg), sigmoid(po), 0, 0, 0};
  r.c_next = r.f * c + r.i * r.g;
  r.tc = std::tanh(r.c_next);
  r.h_next = r.o * r.tc;
  return r;
}

struct gru_ref {
  double r, z, n, h_next;
};
gru_ref gru_point(double xr, double xz, double xn, double hr, double hz, double hn, double h) {
  gru_ref g{sigmoid(xr + hr), sigmoid(xz + hz), 0, 0};
  g.n = std::tanh(xn + g.r * hn);
  g.h_next = (1 - g.z) * g.n + g.z * h;
  return g;
}

template <class T>
constexpr double eps = std::numeric_limits<T>::epsilon();

// ---- LSTM ---------------------------------------------------------------------------------------------

template <class T>
void lstm_case(unsigned seed) {
  std::mt19937 rng(seed);
  const int B = uniform(rng, 1, 40), H = random_hidden(rng);
  const int ld_gates = random_ld(rng, 4 * H), ld_h = random_ld(rng, H), ld_dh = random_ld(rng, H);
  const bool has_c = uniform(rng, 0, 3) != 0, has_dc_next = uniform(rng, 0, 2) != 0, want_dc = uniform(rng, 0, 3) != 0;
  const double spread = uniform(rng, 0, 3) == 0 ? 10.0 : 3.0;  // sometimes deep into saturation
  INFO("seed=" << seed << " T=" << type_name<T>() << " B=" << B << " H=" << H << " ld_gates=" << ld_gates
               << " ld_h=" << ld_h << " ld_dh=" << ld_dh << " c=" << has_c << " dc'=" << has_dc_next
               << " dc=" << want_dc << " spread=" << spread);
  const k::rnn_shape s{B, H, ld_h, ld_dh, ld_gates};
  const int ldg = dense_or(ld_gates, 4 * H), ldh = dense_or(ld_h, H), lddh = dense_or(ld_dh, H);

  rows<T> pre(B, 4 * H, ldg), c(B, H, H), h_next(B, H, ldh), c_next(B, H, H),
      act(B, k::lstm_saved * H, k::lstm_saved * H);
  pre.fill(rng, -spread, spread);
  c.fill(rng, -2, 2);
  k::lstm_gates_forward<T>(s, pre.data(), has_c ? c.data() : nullptr, h_next.data(), c_next.data(), act.data());

  std::vector<lstm_ref> ref(std::size_t(B) * H);
  worst_error fwd;
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < H; ++j) {
      const double cv = has_c ? c(b, j) : 0;
      const lstm_ref r = lstm_point(pre(b, j), pre(b, H + j), pre(b, 2 * H + j), pre(b, 3 * H + j), cv);
      ref[std::size_t(b) * H + j] = r;
      const double gates[] = {r.i, r.f, r.g, r.o, r.tc};
      const double mag = std::abs(r.f * cv) + std::abs(r.i * r.g);
      for (int q = 0; q < k::lstm_saved; ++q) {  // each one sigmoid or tanh; tanh(c') also of c' rounded
        const double bound = 4 * eps<T> * std::abs(gates[q]) + (q == 4 ? 6 * eps<T> * mag * (1 - r.tc * r.tc) : 0);
        fwd.check(act(b, q * H + j), gates[q], bound + 1e-300, "act", b, q * H + j);
      }
      fwd.check(c_next(b, j), r.c_next, 6 * eps<T> * mag + 1e-300, "c'", b, j);
      fwd.check(h_next(b, j), r.h_next, 8 * eps<T> * (std::abs(r.h_next) + std::abs(r.o) * mag) + 1e-300, "h'", b, j);
    }
  INFO("forward: worst error / bound " << fwd.ratio << " at " << fwd.where);
  CHECK(fwd.ratio <= 1);
  CHECK(h_next.gaps_intact());

  rows<T> dh_next(B, H, lddh), dc_next(B, H, H), dpre(B, 4 * H, ldg), dc(B, H, H);
  dh_next.fill(rng, -1, 1);
  dc_next.fill(rng, -1, 1);
  k::lstm_gates_backward<T>(s, act.data(), has_c ? c.data() : nullptr, dh_next.data(),
                            has_dc_next ? dc_next.data() : nullptr, dpre.data(), want_dc ? dc.data() : nullptr);

  // Analytic reference from the double gates. Its terms are O(1): errors are bounded relative to max(1, |want|).
  worst_error bwd;
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < H; ++j) {
      const lstm_ref& r = ref[std::size_t(b) * H + j];
      const double dh = dh_next(b, j), cv = has_c ? c(b, j) : 0;
      const double dct = dh * r.o * (1 - r.tc * r.tc) + (has_dc_next ? dc_next(b, j) : 0.0);
      const double want[] = {dct * r.g * r.i * (1 - r.i), dct * cv * r.f * (1 - r.f), dct * r.i * (1 - r.g * r.g),
                             dh * r.tc * r.o * (1 - r.o)};
      for (int q = 0; q < 4; ++q)
        bwd.check(dpre(b, q * H + j), want[q], 8 * eps<T> * std::max(1.0, std::abs(want[q])), "dpre", b, q * H + j);
      if (!has_c) CHECK(dpre(b, H + j) == T(0));
      if (want_dc) bwd.check(dc(b, j), dct * r.f, 8 * eps<T> * std::max(1.0, std::abs(dct * r.f)), "dc", b, j);
    }
  INFO("backward vs analytic: worst error / bound " << bwd.ratio << " at " << bwd.where);
  CHECK(bwd.ratio <= 1);
  CHECK(dpre.gaps_intact());
  if (!want_dc) CHECK(std::all_of(dc.v.begin(), dc.v.end(), [](T v) { return v == rows<T>::sentinel; }));

  if constexpr (sizeof(T) == 8) {
    // Central differences of the kernel's own forward, of the loss sum(dh' h' + dc' c'). Each (b, j)
    // depends only on its own gates and c, so one input block moved as a whole gives every element's
    // difference at once, from the per-element terms of the loss.
    const double delta = 1e-5;
    auto local_loss = [&](const rows<T>& p, const rows<T>& cc) {
      rows<T> hn(B, H, ldh), cn(B, H, H), a(B, k::lstm_saved * H, k::lstm_saved * H);
      k::lstm_gates_forward<T>(s, p.v.data(), has_c ? cc.v.data() : nullptr, hn.data(), cn.data(), a.data());
      std::vector<double> l(std::size_t(B) * H);
      for (int b = 0; b < B; ++b)
        for (int j = 0; j < H; ++j)
          l[std::size_t(b) * H + j] = dh_next(b, j) * hn(b, j) + (has_dc_next ? dc_next(b, j) * cn(b, j) : 0.0);
      return l;
    };
    worst_error fd;
    for (int q = 0; q < 4; ++q) {
      rows<T> up = pre, down = pre;
      for (int b = 0; b < B; ++b)
        for (int j = 0; j < H; ++j) up(b, q * H + j) += delta, down(b, q * H + j) -= delta;
      const auto lu = local_loss(up, c), ld = local_loss(down, c);
      for (int b = 0; b < B; ++b)
        for (int j = 0; j < H; ++j) {
          const double num = (lu[std::size_t(b) * H + j] - ld[std::size_t(b) * H + j]) / (2 * delta);
          fd.check(dpre(b, q * H + j), num, 1e-9 * std::max(1.0, std::abs(num)), "dpre (fd)", b, q * H + j);
        }
    }
    if (has_c && want_dc) {
      rows<T> up = c, down = c;
      for (auto& v : up.v) v += delta;
      for (auto& v : down.v) v -= delta;
      const auto lu = local_loss(pre, up), ld = local_loss(pre, down);
      for (int b = 0; b < B; ++b)
        for (int j = 0; j < H; ++j) {
          const double num = (lu[std::size_t(b) * H + j] - ld[std::size_t(b) * H + j]) / (2 * delta);
          fd.check(dc(b, j), num, 1e-9 * std::max(1.0, std::abs(num)), "dc (fd)", b, j);
        }
    }
    INFO("backward vs finite differences: worst error / bound " << fd.ratio << " at " << fd.where);
    CHECK(fd.ratio <= 1);
  }
}

// ---- GRU ----------------------------------------------------------------------------------------------

template <class T>
void gru_case(unsigned seed) {
  std::mt19937 rng(seed);
  const int B = uniform(rng, 1, 40), H = random_hidden(rng);
  const int ld_gates = random_ld(rng, 3 * H), ld_h = random_ld(rng, H), ld_dh = random_ld(rng, H);
  const bool has_h = uniform(rng, 0, 3) != 0, want_dh = uniform(rng, 0, 3) != 0;
  const double spread = uniform(rng, 0, 3) == 0 ? 10.0 : 2.0;
  INFO("seed=" << seed << " T=" << type_name<T>() << " B=" << B << " H=" << H << " ld_gates=" << ld_gates << " ld_h="
               << ld_h << " ld_dh=" << ld_dh << " h=" << has_h << " dh=" << want_dh << " spread=" << spread);
  const k::rnn_shape s{B, H, ld_h, ld_dh, ld_gates};
  const int ldg = dense_or(ld_gates, 3 * H), ldh = dense_or(ld_h, H), lddh = dense_or(ld_dh, H);

  rows<T> gx(B, 3 * H, ldg), gh(B, 3 * H, ldg), h(B, H, ldh), h_next(B, H, ldh);
  rows<T> act(B, k::gru_saved * H, k::gru_saved * H);
  gx.fill(rng, -spread, spread);
  gh.fill(rng, -spread, spread);
  h.fill(rng, -1, 1);
  k::gru_gates_forward<T>(s, gx.data(), gh.data(), has_h ? h.data() : nullptr, h_next.data(), act.data());

  std::vector<gru_ref> ref(std::size_t(B) * H);
  worst_error fwd;
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < H; ++j) {
      const double hv = has_h ? h(b, j) : 0;
      const gru_ref r =
          gru_point(gx(b, j), gx(b, H + j), gx(b, 2 * H + j), gh(b, j), gh(b, H + j), gh(b, 2 * H + j), hv);
      ref[std::size_t(b) * H + j] = r;
      // r, z: one sigmoid of a rounded sum; n: tanh of xn + r hn, whose rounding tanh' <= 1 passes on.
      const double pre_n = std::abs(double(gx(b, 2 * H + j))) + std::abs(r.r * gh(b, 2 * H + j));
      fwd.check(act(b, j), r.r,
                4 * eps<T> * r.r +
                    2 * eps<T> * r.r * (1 - r.r) * (std::abs(double(gx(b, j))) + std::abs(double(gh(b, j)))) + 1e-300,
                "r", b, j);
      fwd.check(act(b, H + j), r.z,
                4 * eps<T> * r.z +
                    2 * eps<T> * r.z * (1 - r.z) * (std::abs(double(gx(b, H + j))) + std::abs(double(gh(b, H + j)))) +
                    1e-300,
                "z", b, j);
      fwd.check(act(b, 2 * H + j), r.n, 4 * eps<T> * std::abs(r.n) + 8 * eps<T> * pre_n * (1 - r.n * r.n) + 1e-300, "n",
                b, j);
      CHECK(act(b, 3 * H + j) == gh(b, 2 * H + j));
      const double mag = std::abs((1 - r.z) * r.n) + std::abs(r.z * hv);
      fwd.check(h_next(b, j), r.h_next, 16 * eps<T> * (mag + pre_n) + 1e-300, "h'", b, j);
    }
  INFO("forward: worst error / bound " << fwd.ratio << " at " << fwd.where);
  CHECK(fwd.ratio <= 1);
  CHECK(h_next.gaps_intact());

  rows<T> dh_next(B, H, lddh), dgx(B, 3 * H, ldg), dgh(B, 3 * H, ldg), dh(B, H, lddh);
  dh_next.fill(rng, -1, 1);
  k::gru_gates_backward<T>(s, act.data(), has_h ? h.data() : nullptr, dh_next.data(), dgx.data(), dgh.data(),
                           want_dh ? dh.data() : nullptr);

  worst_error bwd;
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < H; ++j) {
      const gru_ref& r = ref[std::size_t(b) * H + j];
      const double d = dh_next(b, j), hv = has_h ? h(b, j) : 0;
      const double dn = d * (1 - r.z) * (1 - r.n * r.n), dz = d * (hv - r.n) * r.z * (1 - r.z);
      const double dr = dn * gh(b, 2 * H + j) * r.r * (1 - r.r);
      const double want_x[] = {dr, dz, dn}, want_h[] = {dr, dz, dn * r.r};
      const double scale = 64 * eps<T> * (1 + spread);  // gh_n enters dr, and spread rounds n
      for (int q = 0; q < 3; ++q) {
        bwd.check(dgx(b, q * H + j), want_x[q], scale * std::max(1.0, std::abs(want_x[q])), "dgx", b, q * H + j);
        bwd.check(dgh(b, q * H + j), want_h[q], scale * std::max(1.0, std::abs(want_h[q])), "dgh", b, q * H + j);
      }
      if (want_dh) bwd.check(dh(b, j), d * r.z, 4 * eps<T>, "dh", b, j);
    }
  INFO("backward vs analytic: worst error / bound " << bwd.ratio << " at " << bwd.where);
  CHECK(bwd.ratio <= 1);
  CHECK(dgx.gaps_intact());
  CHECK(dgh.gaps_intact());
  CHECK(dh.gaps_intact());
  if (!want_dh) CHECK(std::all_of(dh.v.begin(), dh.v.end(), [](T v) { return v == rows<T>::sentinel; }));

  if constexpr (sizeof(T) == 8) {
    // Central differences of the forward, of the loss sum(dh' h'), one input block moved at a time
    // (see lstm_case). Moving h with gh held fixed gives the direct part of dh, which is what the kernel returns.
    const double delta = 1e-5;
    auto local_loss = [&](const rows<T>& x, const rows<T>& y, const rows<T>& hh) {
      rows<T> hn(B, H, ldh), a(B, k::gru_saved * H, k::gru_saved * H);
      k::gru_gates_forward<T>(s, x.v.data(), y.v.data(), has_h ? hh.v.data() : nullptr, hn.data(), a.data());
      std::vector<double> l(std::size_t(B) * H);
      for (int b = 0; b < B; ++b)
        for (int j = 0; j < H; ++j) l[std::size_t(b) * H + j] = dh_next(b, j) * hn(b, j);
      return l;
    };
    worst_error fd;
    auto compare = [&](const std::vector<double>& lu, const std::vector<double>& ld, const rows<T>& got, int q,
                       const char* what) {
      for (int b = 0; b < B; ++b)
        for (int j = 0; j < H; ++j) {
          const double num = (lu[std::size_t(b) * H + j] - ld[std::size_t(b) * H + j]) / (2 * delta);
          fd.check(got(b, q * H + j), num, 1e-9 * std::max(1.0, std::abs(num)), what, b, q * H + j);
        }
    };
    for (int q = 0; q < 3; ++q) {
      rows<T> xu = gx, xd = gx, yu = gh, yd = gh;
      for (int b = 0; b < B; ++b)
        for (int j = 0; j < H; ++j) {
          xu(b, q * H + j) += delta, xd(b, q * H + j) -= delta;
          yu(b, q * H + j) += delta, yd(b, q * H + j) -= delta;
        }
      compare(local_loss(xu, gh, h), local_loss(xd, gh, h), dgx, q, "dgx (fd)");
      compare(local_loss(gx, yu, h), local_loss(gx, yd, h), dgh, q, "dgh (fd)");
    }
    if (has_h && want_dh) {
      rows<T> hu = h, hd = h;
      for (int b = 0; b < B; ++b)
        for (int j = 0; j < H; ++j) hu(b, j) += delta, hd(b, j) -= delta;
      compare(local_loss(gx, gh, hu), local_loss(gx, gh, hd), dh, 0, "dh (fd)");
    }
    INFO("backward vs finite differences: worst error / bound " << fd.ratio << " at " << fd.where);
    CHECK(fd.ratio <= 1);
  }
}

template <class F>
void for_random_cases(F&& run_case) {
  const long cases = env_or("CTGRAPH_RANDOM_CASES", 40), first = env_or("CTGRAPH_RANDOM_SEED", 1);
  for (long i = 0; i < cases; ++i) run_case(unsigned(first + i));
}

// ---- additive attention -------------------------------------------------------------------------------

// The step in double loops: t, scores (masked as the kernel's contract says), weights, context; and the
// backward from dc and dw.
struct attention_reference {
  std::vector<double> t, w, c, dpk, dpq, dv, dkeys;
};
attention_reference attention_loops(int S, int B, int A, int H, const std::vector<double>& pk,
                                    const std::vector<double>& pq, const std::vector<double>& v,
                                    const std::vector<double>& keys, const std::vector<double>* mask,
                                    const std::vector<double>* dc, const std::vector<double>* dw) {
  attention_reference r{std::vector<double>(std::size_t(S) * B * A),  std::vector<double>(std::size_t(B) * S),
                        std::vector<double>(std::size_t(B) * H, 0.0), std::vector<double>(std::size_t(S) * B * A),
                        std::vector<double>(std::size_t(B) * A, 0.0), std::vector<double>(std::size_t(A), 0.0),
                        std::vector<double>(std::size_t(S) * B * H)};
  for (int b = 0; b < B; ++b) {
    std::vector<double> e(S);
    for (int j = 0; j < S; ++j) {
      double sum = 0;
      for (int a = 0; a < A; ++a) {
        const std::size_t i = (std::size_t(j) * B + b) * A + a;
        r.t[i] = std::tanh(pk[i] + pq[std::size_t(b) * A + a]);
        sum += v[a] * r.t[i];
      }
      const double m = mask ? (*mask)[std::size_t(j) * B + b] : 1.0;
      e[j] = sum * m + (m - 1) * 1e9;
    }
    const double mx = *std::max_element(e.begin(), e.end());
    double z = 0;
    for (int j = 0; j < S; ++j) z += std::exp(e[j] - mx);
    std::vector<double> g(S, 0.0);
    double wg = 0;
    for (int j = 0; j < S; ++j) {
      const double w = std::exp(e[j] - mx) / z;
      r.w[std::size_t(b) * S + j] = w;
      for (int h = 0; h < H; ++h) {
        const double key = keys[(std::size_t(j) * B + b) * H + h];
        r.c[std::size_t(b) * H + h] += w * key;
        if (dc) g[j] += (*dc)[std::size_t(b) * H + h] * key;
      }
      if (dw) g[j] += (*dw)[std::size_t(b) * S + j];
      wg += w * g[j];
    }
    for (int j = 0; j < S; ++j) {
      const double w = r.w[std::size_t(b) * S + j];
      const double de = w * (g[j] - wg) * (mask ? (*mask)[std::size_t(j) * B + b] : 1.0);
      for (int a = 0; a < A; ++a) {
        const std::size_t i = (std::size_t(j) * B + b) * A + a;
        r.dpk[i] = de * v[a] * (1 - r.t[i] * r.t[i]);
        r.dpq[std::size_t(b) * A + a] += r.dpk[i];
        r.dv[a] += de * r.t[i];
      }
      for (int h = 0; h < H; ++h)
        r.dkeys[(std::size_t(j) * B + b) * H + h] = dc ? w * (*dc)[std::size_t(b) * H + h] : 0.0;
    }
  }
  return r;
}

template <class T>
double max_rel(const std::vector<T>& got, const std::vector<double>& want) {
  double err = 0, scale = 1;
  for (double x : want) scale = std::max(scale, std::abs(x));
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double e = std::abs(double(got[i]) - want[i]);
    err = std::isnan(e) ? std::numeric_limits<double>::infinity() : std::max(err, e);
  }
  return err / scale;
}

// Buffers are exactly their size (ASan sees a read past any of them); S crosses 64, the sizes vector
// edges; masks are random, some rows fully masked (uniform weights), and dc or dw may be absent.
template <class T>
void attention_case(unsigned seed) {
  std::mt19937 rng(seed);
  const int S = uniform(rng, 0, 3) == 0 ? uniform(rng, 60, 70) : uniform(rng, 1, 24), B = uniform(rng, 1, 9);
  const int A = random_hidden(rng) % 70 + 1, H = random_hidden(rng) % 70 + 1;
  const bool masked = uniform(rng, 0, 1), has_dc = uniform(rng, 0, 3) != 0, has_dw = !has_dc || uniform(rng, 0, 1);
  auto draw = [&](std::size_t n, double lo, double hi) {
    std::vector<double> x(n);
    for (double& e : x) e = uniform_real(rng, lo, hi);
    return x;
  };
  const auto pk = draw(std::size_t(S) * B * A, -2, 2), pq = draw(std::size_t(B) * A, -2, 2), v = draw(A, -1, 1);
  const auto keys = draw(std::size_t(S) * B * H, -1, 1), dc = draw(std::size_t(B) * H, -1, 1);
  const auto dw = draw(std::size_t(B) * S, -1, 1);
  std::vector<double> mask(std::size_t(S) * B);
  for (int b = 0; b < B; ++b) {
    const int len = uniform(rng, 0, S);  // 0: every position padded
    for (int j = 0; j < S; ++j) mask[std::size_t(j) * B + b] = j < len ? 1.0 : 0.0;
  }
  const attention_reference want = attention_loops(S, B, A, H, pk, pq, v, keys, masked ? &mask : nullptr,
                                                   has_dc ? &dc : nullptr, has_dw ? &dw : nullptr);
  auto as_t = [](const std::vector<double>& x) { return std::vector<T>(x.begin(), x.end()); };
  const auto tpk = as_t(pk), tpq = as_t(pq), tv = as_t(v), tkeys = as_t(keys), tmask = as_t(mask), tdc = as_t(dc),
             tdw = as_t(dw);
  std::vector<T> c(std::size_t(B) * H), w(std::size_t(B) * S), t(std::size_t(S) * B * A);
  const k::additive_attention_shape shape{S, B, A, H};
  k::additive_attention_forward<T>(shape, tpk.data(), tpq.data(), tv.data(), tkeys.data(),
                                   masked ? tmask.data() : nullptr, c.data(), w.data(), t.data());
  std::vector<T> dpk(t.size()), dpq(pq.size()), dv(v.size()), dkeys(keys.size());
  k::additive_attention_backward<T>(shape, t.data(), tv.data(), tkeys.data(), w.data(), masked ? tmask.data() : nullptr,
                                    has_dc ? tdc.data() : nullptr, has_dw ? tdw.data() : nullptr, dpk.data(),
                                    dpq.data(), dv.data(), dkeys.data());
  const double tol = sizeof(T) == 4 ? 2e-5 : 1e-12;
  INFO(type_name<T>() << " seed " << seed << ": S " << S << " B " << B << " A " << A << " H " << H << " masked "
                      << masked << " dc " << has_dc << " dw " << has_dw);
  CHECK(max_rel(t, want.t) < tol);
  CHECK(max_rel(w, want.w) < tol);
  CHECK(max_rel(c, want.c) < tol);
  CHECK(max_rel(dpk, want.dpk) < tol * S);
  CHECK(max_rel(dpq, want.dpq) < tol * S);
  CHECK(max_rel(dv, want.dv) < tol * S * B);
  CHECK(max_rel(dkeys, want.dkeys) < tol);
  if (masked)  // a padded position in a row with a real one weighs exactly 0; a row without, 1/S everywhere
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < S; ++j) {
        if (mask[std::size_t(j) * B + b] == 0 && mask[b] == 1) CHECK(w[std::size_t(b) * S + j] == T(0));
        if (mask[b] == 0) CHECK(std::abs(double(w[std::size_t(b) * S + j]) - 1.0 / S) < tol);
      }
  // With running sums given (what a backward scan folds its adds into): dpk and dkeys are sum + gradient,
  // either alone; dpq and dv as before (to rounding: the loop that computes them is another).
  const int which = uniform(rng, 1, 3);  // bit 0: acc_dpk, bit 1: acc_dkeys
  const auto acc_pk = as_t(draw(dpk.size(), -3, 3)), acc_keys = as_t(draw(dkeys.size(), -3, 3));
  std::vector<T> dpk2(t.size()), dpq2(pq.size()), dv2(v.size()), dkeys2(keys.size());
  k::additive_attention_backward<T>(shape, t.data(), tv.data(), tkeys.data(), w.data(), masked ? tmask.data() : nullptr,
                                    has_dc ? tdc.data() : nullptr, has_dw ? tdw.data() : nullptr, dpk2.data(),
                                    dpq2.data(), dv2.data(), dkeys2.data(), which & 1 ? acc_pk.data() : nullptr,
                                    which & 2 ? acc_keys.data() : nullptr);
  INFO("accumulators " << which);
  // The sum may be rounded once (a fused multiply-add) where sum + gradient rounds twice.
  auto near = [](T got, T acc, T g) { return std::abs(got - (acc + g)) <= 2 * eps<T> * (std::abs(acc) + std::abs(g)); };
  for (std::size_t i = 0; i < dpk.size(); ++i) REQUIRE(near(dpk2[i], which & 1 ? acc_pk[i] : T(0), dpk[i]));
  for (std::size_t i = 0; i < dkeys.size(); ++i) REQUIRE(near(dkeys2[i], which & 2 ? acc_keys[i] : T(0), dkeys[i]));
  CHECK(max_rel(dpq2, want.dpq) < tol * S);
  CHECK(max_rel(dv2, want.dv) < tol * S * B);
}

// ---- accuracy of sigmoid and tanh ---------------------------------------------------------------------

// Error in units of T's epsilon relative to |want| (ulps, within a factor 2); results below T's normal
// range may be flushed to zero, so they are only checked to be that small.
template <class T>
double ulps(T got, long double want) {
  const long double tiny = std::numeric_limits<T>::min();
  if (std::abs(want) < tiny) return std::abs(got) <= tiny ? 0 : std::numeric_limits<double>::infinity();
  const double e = double(std::abs((long double)got - want) / std::abs(want) / eps<T>);
  return std::isnan(e) ? std::numeric_limits<double>::infinity() : e;
}

template <class T>
void accuracy_sweep() {
  std::vector<T> xs;
  for (double x = -30; x <= 30; x += 1.0 / 512) xs.push_back(T(x + 1.0 / 4096));
  for (int e = -300; e <= 3; ++e) {  // magnitudes 10^e, both signs, where T has them
    const long double m = std::pow(10.0L, e);
    if (m < std::numeric_limits<T>::denorm_min() || m > 1e3L) continue;
    for (double f : {1.0, 2.7, 7.3}) xs.push_back(T(f * m)), xs.push_back(T(-f * m));
  }
  for (T x :
       {T(0), T(-0.0), std::numeric_limits<T>::denorm_min(), std::numeric_limits<T>::min(), T(87), T(-87), T(88.5),
        T(-88.5), T(100), T(-100), T(710), T(-710), T(1e30), T(-1e30), std::numeric_limits<T>::max(),
        std::numeric_limits<T>::lowest(), std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity()})
    xs.push_back(x);
  const int N = int(xs.size());
  std::vector<T> pre(4 * std::size_t(N)), h(N), c(N), act(std::size_t(k::lstm_saved) * N);
  for (int q = 0; q < 4; ++q) std::copy(xs.begin(), xs.end(), pre.begin() + std::ptrdiff_t(q) * N);
  k::lstm_gates_forward<T>({1, N}, pre.data(), nullptr, h.data(), c.data(), act.data());
  double worst_sig = 0, worst_tanh = 0;
  T at_sig = 0, at_tanh = 0;
  for (int j = 0; j < N; ++j) {
    const long double x = xs[j];
    const long double sig = 1 / (1 + std::exp(-x)), th = std::tanh(x);
    for (int q : {0, 1, 3})
      if (const double u = ulps(act[std::size_t(q) * N + j], sig); !(u <= worst_sig)) worst_sig = u, at_sig = xs[j];
    if (const double u = ulps(act[2 * std::size_t(N) + j], th); !(u <= worst_tanh)) worst_tanh = u, at_tanh = xs[j];
  }
  INFO(type_name<T>() << ": " << N << " inputs; sigmoid worst " << worst_sig << " eps at x=" << at_sig
                      << ", tanh worst " << worst_tanh << " eps at x=" << at_tanh);
  CHECK(worst_sig <= 2);
  CHECK(worst_tanh <= 2);
  // Signs and limits exactly.
  const auto at = [&](T x) { return int(std::find(xs.begin(), xs.end(), x) - xs.begin()); };
  const T inf = std::numeric_limits<T>::infinity();
  CHECK(act[at(inf)] == T(1));
  CHECK(act[at(-inf)] == T(0));
  CHECK(act[2 * std::size_t(N) + at(inf)] == T(1));
  CHECK(act[2 * std::size_t(N) + at(-inf)] == T(-1));
  CHECK(act[at(T(0))] == T(0.5));
  const int neg_zero =
      int(std::find_if(xs.begin(), xs.end(), [](T x) { return x == 0 && std::signbit(x); }) - xs.begin());
  CHECK(std::signbit(act[2 * std::size_t(N) + neg_zero]));
  // The array forms the graph's tanh and sigmoid ops run on: the same values, over every prefix length up to
  // 40 (the vector loop's remainders) and the whole sweep; nothing past n is written.
  for (int n : {0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 40, N}) {
    std::vector<T> th(std::size_t(n) + 1, T(7)), sg(std::size_t(n) + 1, T(7));
    k::tanh_array<T>(xs.data(), th.data(), n);
    k::sigmoid_array<T>(xs.data(), sg.data(), n);
    for (int j = 0; j < n; ++j) {
      INFO(type_name<T>() << ": x = " << xs[j]);
      CHECK(th[j] == act[2 * std::size_t(N) + j]);
      CHECK(sg[j] == act[j]);
    }
    CHECK(th[n] == T(7));
    CHECK(sg[n] == T(7));
  }
}

}  // namespace

TEST_CASE("rnn: sigmoid and tanh are accurate to a few ulps (float and double)", "[kernels][rnn]") {
  accuracy_sweep<float>();
  accuracy_sweep<double>();
}

TEST_CASE("rnn: lstm gates, random shapes, against double references and finite differences", "[kernels][rnn]") {
  for_random_cases([](unsigned seed) {
    lstm_case<float>(seed);
    lstm_case<double>(seed);
  });
}

TEST_CASE("rnn: gru gates, random shapes, against double references and finite differences", "[kernels][rnn]") {
  for_random_cases([](unsigned seed) {
    gru_case<float>(seed);
    gru_case<double>(seed);
  });
}

TEST_CASE("rnn: additive attention step, random shapes and masks, against double loops", "[kernels][rnn]") {
  for_random_cases([](unsigned seed) {
    attention_case<float>(seed);
    attention_case<double>(seed);
  });
}

TEST_CASE("rnn: a NaN gate input reaches only its own outputs", "[kernels][rnn]") {
  const int B = 2, H = 9;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> pre(4 * B * H, 0.25f), c(B * H, 0.5f), h(B * H), cn(B * H), act(k::lstm_saved * B * H);
  pre[4 * H + 2 * H + 5] = nan;  // row 1, gate g, column 5
  k::lstm_gates_forward<float>({B, H}, pre.data(), c.data(), h.data(), cn.data(), act.data());
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < H; ++j) CHECK(std::isnan(h[b * H + j]) == (b == 1 && j == 5));

  std::vector<float> gx(3 * B * H, 0.25f), gh(3 * B * H, -0.5f), hg(B * H, 0.5f), hn(B * H), ga(k::gru_saved * B * H);
  gh[3 * H + H + 7] = nan;  // row 1, gate z, column 7
  k::gru_gates_forward<float>({B, H}, gx.data(), gh.data(), hg.data(), hn.data(), ga.data());
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < H; ++j) CHECK(std::isnan(hn[b * H + j]) == (b == 1 && j == 7));
}

TEST_CASE("rnn: large steps split over threads give the one-thread result bit for bit", "[kernels][rnn]") {
  const int B = 256, H = 160;  // B H >= 2^15: the threaded path
  const k::rnn_shape s{B, H};
  std::mt19937 rng(7);
  std::vector<float> pre(4 * B * H), c(B * H), dh(B * H), dc(B * H), gx(3 * B * H), gh(3 * B * H);
  for (auto* v : {&pre, &c, &dh, &dc, &gx, &gh})
    for (auto& x : *v) x = float(uniform_real(rng, -3, 3));
  struct results {
    std::vector<float> h, cn, act, dpre, dcp, gh_next, gact, dgx, dgh, dhp;
  };
  auto run = [&](int threads) {
    const thread_count saved;
    omp_set_num_threads(threads);
    results r{std::vector<float>(B * H),     std::vector<float>(B * H),     std::vector<float>(5 * B * H),
              std::vector<float>(4 * B * H), std::vector<float>(B * H),     std::vector<float>(B * H),
              std::vector<float>(4 * B * H), std::vector<float>(3 * B * H), std::vector<float>(3 * B * H),
              std::vector<float>(B * H)};
    k::lstm_gates_forward<float>(s, pre.data(), c.data(), r.h.data(), r.cn.data(), r.act.data());
    k::lstm_gates_backward<float>(s, r.act.data(), c.data(), dh.data(), dc.data(), r.dpre.data(), r.dcp.data());
    k::gru_gates_forward<float>(s, gx.data(), gh.data(), c.data(), r.gh_next.data(), r.gact.data());
    k::gru_gates_backward<float>(s, r.gact.data(), c.data(), dh.data(), r.dgx.data(), r.dgh.data(), r.dhp.data());
    return r;
  };
  const results one = run(1), three = run(3);
  CHECK(one.h == three.h);
  CHECK(one.cn == three.cn);
  CHECK(one.act == three.act);
  CHECK(one.dpre == three.dpre);
  CHECK(one.dcp == three.dcp);
  CHECK(one.gh_next == three.gh_next);
  CHECK(one.gact == three.gact);
  CHECK(one.dgx == three.dgx);
  CHECK(one.dgh == three.dgh);
  CHECK(one.dhp == three.dhp);
}
