// Fused attention forward/backward against the unfused reference (gemm + row softmax).
#include <omp.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <vector>

#include "ctgraph/kernels.hpp"
#include "rel_error.hpp"
#include "thread_count.hpp"

namespace {
namespace k = ctgraph::kernels;

template <class T>
std::vector<T> random_vec(std::size_t n, std::mt19937& rng, double amp = 1) {
  std::uniform_real_distribution<double> u(-amp, amp);
  std::vector<T> v(n);
  for (auto& x : v) x = T(u(rng));
  return v;
}

// Runs fused T against the double reference on the same (T-rounded) inputs.
template <class T>
void compare_with_reference(const k::attention_shape& s, const std::vector<T>& q, const std::vector<T>& kk,
                            const std::vector<T>& v, const std::vector<T>& dout, double tol, bool backward = true) {
  INFO("batch=" << s.batch << " heads=" << s.heads << " q_len=" << s.q_len << " kv_len=" << s.kv_len
                << " head_dim=" << s.head_dim << " causal=" << s.causal << " scale=" << s.scale
                << " T=" << (sizeof(T) == 4 ? "float" : "double"));
  const std::size_t nq = q.size(), nk = kk.size(), nl = std::size_t(s.batch) * s.heads * s.q_len;
  auto to_d = [](const std::vector<T>& x) { return std::vector<double>(x.begin(), x.end()); };
  const auto qd = to_d(q), kd = to_d(kk), vd = to_d(v), dod = to_d(dout);

  std::vector<double> o_ref(nq), lse_ref(nl), dq_ref(nq), dk_ref(nk), dv_ref(nk);
  k::attention_forward_reference(s, qd.data(), kd.data(), vd.data(), o_ref.data(), lse_ref.data());
  k::attention_backward_reference(s, qd.data(), kd.data(), vd.data(), o_ref.data(), lse_ref.data(), dod.data(),
                                  dq_ref.data(), dk_ref.data(), dv_ref.data());

  const T nan = std::numeric_limits<T>::quiet_NaN();  // outputs must be written, not accumulated
  std::vector<T> o(nq, nan), lse(nl, nan), dq(nq, nan), dk(nk, nan), dv(nk, nan);
  k::attention_forward(s, q.data(), kk.data(), v.data(), o.data(), lse.data());
  CHECK(rel_error(o, o_ref) <= tol);
  CHECK(rel_error(lse, lse_ref) <= tol);
  if (!backward) return;
  k::attention_backward(s, q.data(), kk.data(), v.data(), o.data(), lse.data(), dout.data(), dq.data(), dk.data(),
                        dv.data());
  CHECK(rel_error(dq, dq_ref) <= tol);
  CHECK(rel_error(dk, dk_ref) <= tol);
  CHECK(rel_error(dv, dv_ref) <= tol);
}

// Uniform random q, k in [-amp, amp], v and dout in [-1, 1].
template <class T>
void check_attention(k::attention_shape s, double tol, double amp = 1) {
  std::mt19937 rng(s.q_len * 7 + s.kv_len * 3 + s.head_dim + s.causal);
  const std::size_t nq = std::size_t(s.batch) * s.heads * s.q_len * s.head_dim;
  const std::size_t nk = std::size_t(s.batch) * s.heads * s.kv_len * s.head_dim;
  const auto q = random_vec<T>(nq, rng, amp), kk = random_vec<T>(nk, rng, amp), v = random_vec<T>(nk, rng);
  const auto dout = random_vec<T>(nq, rng);
  compare_with_reference(s, q, kk, v, dout, tol);
}

// Scores that climb along the keys by `slope` (natural log units per key), so that later key tiles
// beat the running max of the earlier ones by a lot: the forward's one-pass softmax must fall back.
template <class T>
void check_climbing_scores(k::attention_shape s, double slope, double tol, bool backward) {
  std::mt19937 rng(11);
  const std::size_t nq = std::size_t(s.batch) * s.heads * s.q_len * s.head_dim;
  const std::size_t nk = std::size_t(s.batch) * s.heads * s.kv_len * s.head_dim;
  auto q = random_vec<T>(nq, rng, 0.1), kk = random_vec<T>(nk, rng, 0.1);
  const auto v = random_vec<T>(nk, rng), dout = random_vec<T>(nq, rng);
  for (std::size_t i = 0; i < nq; i += s.head_dim) q[i] = T(1);
  const double top = slope > 0 ? slope * (s.kv_len - 1) : 0;  // the last key scores about 0: float stays accurate
  for (std::size_t j = 0; j < nk; j += s.head_dim) kk[j] = T(slope * double(j / s.head_dim % s.kv_len) - top);
  compare_with_reference(s, q, kk, v, dout, tol, backward);
}

}  // namespace

TEST_CASE("attention double: fused == reference to 1e-9", "[attention]") {
  const int dims[] = {32, 40, 64, 128, 256};
  const int lens[][2] = {{1, 1}, {37, 53}, {64, 64}, {100, 70}, {129, 200}};
  for (int d : dims)
    for (auto [L, N] : lens)
      for (bool causal : {false, true}) check_attention<double>({2, 2, L, N, d, causal}, 1e-9);
}

TEST_CASE("attention double: block edges, explicit scale, large scores", "[attention]") {
  for (bool causal : {false, true}) {
    check_attention<double>({1, 3, 257, 255, 64, causal}, 1e-9);
    check_attention<double>({1, 1, 65, 191, 48, causal, 0.3f}, 1e-9);
    check_attention<double>({2, 1, 96, 96, 16, causal, 0.f}, 1e-9, 8.0);  // sharp softmax
    check_attention<double>({1, 1, 3, 130, 8, causal}, 1e-9);
  }
}

TEST_CASE("attention: scores far above the running max of earlier key tiles", "[attention]") {
  for (bool causal : {false, true}) {
    // 0.7 per key: each 96-key tile beats the last by about 67 (97 in log2 units); 0.3: by 29 (within
    // the one-pass bound); -0.7: the first tile holds the max.
    for (double slope : {0.7, 0.3, -0.7}) {
      check_climbing_scores<double>({1, 2, 100, 300, 32, causal, 1.f}, slope, 1e-9, true);
      // float: forward only. Keys of norm ~200 make float gradients ill-conditioned (dq sums dS k, and
      // dS carries the ~1e-5 absolute rounding of scores that large), whatever the kernel.
      check_climbing_scores<float>({1, 2, 100, 300, 32, causal, 1.f}, slope, 1e-4, false);
    }
  }
}

TEST_CASE("attention double: causal with q_len > kv_len leaves rows that see no key", "[attention]") {
  check_attention<double>({1, 2, 90, 33, 32, true}, 1e-9);
}

TEST_CASE("attention float: fused == reference to 1e-4", "[attention]") {
  for (int d : {32, 40, 64, 128, 256})
    for (bool causal : {false, true}) {
      check_attention<float>({2, 2, 131, 77, d, causal}, 1e-4);
      check_attention<float>({1, 2, 200, 260, d, causal}, 1e-4);
    }
  check_attention<float>({1, 1, 80, 40, 64, true}, 1e-4);
}

TEST_CASE("attention: result does not depend on the thread count", "[attention]") {
  const k::attention_shape s{2, 3, 150, 170, 64, true};
  std::mt19937 rng(5);
  const std::size_t nq = 2 * 3 * 150 * 64, nk = 2 * 3 * 170 * 64, nl = 2 * 3 * 150;
  auto q = random_vec<float>(nq, rng), kk = random_vec<float>(nk, rng), v = random_vec<float>(nk, rng);
  auto dout = random_vec<float>(nq, rng);
  std::vector<float> o[2], lse[2], dq[2], dk[2], dv[2];
  const thread_count saved;
  for (int t = 0; t < 2; ++t) {
    omp_set_num_threads(t + 1);
    o[t].resize(nq);
    lse[t].resize(nl);
    dq[t].resize(nq);
    dk[t].resize(nk);
    dv[t].resize(nk);
    k::attention_forward(s, q.data(), kk.data(), v.data(), o[t].data(), lse[t].data());
    k::attention_backward(s, q.data(), kk.data(), v.data(), o[t].data(), lse[t].data(), dout.data(), dq[t].data(),
                          dk[t].data(), dv[t].data());
  }
  auto close = [](const std::vector<float>& a, const std::vector<float>& b) {
    for (std::size_t i = 0; i < a.size(); ++i)
      if (!(std::abs(a[i] - b[i]) <= 1e-5f * (1 + std::abs(b[i])))) return false;
    return true;
  };
  CHECK(close(o[0], o[1]));
  CHECK(close(lse[0], lse[1]));
  CHECK(close(dq[0], dq[1]));
  CHECK(close(dk[0], dk[1]));
  CHECK(close(dv[0], dv[1]));
}

// Many heads are handed out whole (dq has one writer); few heads share their key tiles between threads
// (dq summed from per-thread buffers). Both modes, against the reference, at 1 to 3 threads.
TEST_CASE("attention double: fused == reference at 1, 2 and 3 threads, few and many heads", "[attention]") {
  const thread_count saved;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    INFO("threads=" << threads);
    for (bool causal : {false, true}) {
      check_attention<double>({2, 3, 150, 170, 64, causal}, 1e-9);  // 6 heads: by head only at 1 thread
      check_attention<double>({3, 4, 100, 130, 40, causal}, 1e-9);  // 12 heads: by head at up to 3 threads
    }
  }
}
