// bench/train.cpp: training-step benchmarks (Google Benchmark), at OMP_NUM_THREADS threads (default: all
// cores); bench/run_train_bench.sh runs them under tcmalloc at 1 and 2 threads.
//   lstm/<impl>: one LSTM layer, In=64, H=128, input [T=20, B=32, 64] float; loss = output.sum(),
//     backward, one Adam step (lr 1e-3). Counters: params (4H (In + H) + 8H = 99,328), GFLOPS.
//   seq2seq/<impl>, seq2seq/<impl>/forward: issue 12's encoder-decoder (309,536 params): Embedding(32, 64)
//     for source and target, an LSTM(64, 128) encoder over [S=20, B=32], an LSTMCell(64 + 128, 128) decoder
//     over T=20 steps with Bahdanau attention (Wh, Ws, v), Linear(256, 32) on [h; context], cross-entropy
//     with ignore_index 0; a training step (Adam, lr 1e-3) and the forward alone. GFLOPS count the gemms
//     of the forward (seq2seq_forward_flops) and, for a training step, three times that.
//   tlm/<impl>, tlm/<impl>/forward: issue 13's decoder-only transformer (421,184 params): Embedding(64, 128)
//     for tokens plus a learned Embedding(64, 128) for positions, 2 x TransformerEncoderLayer(128, 4 heads, FF
//     512, dropout 0, post-norm, ReLU) under a causal mask, Linear(128, 64), cross-entropy over [S=64, B=32];
//     tlm_long/<impl>: the same with one layer at S=4096, B=1 (the fused attention keeps its arena O(S d)).
//     GFLOPS count the forward's gemms and attention products (tlm_model::forward_flops), a step three times.
//   lstm_gates/ctgraph/{forward,backward}, gru_gates/ctgraph/{forward,backward}: the fused gate kernels
//     of one step at B=32, H=128 (a T=20 sequence costs 20 of them), with the bytes they move.
//
// FLOPs of an lstm step: the gemms only (gates, loss and Adam are elementwise and not counted):
//   forward   2 T B 4H (In + H)    x W_ih^T and h W_hh^T over T steps
//   backward  2 T B 4H (In + 2H)   dW_ih += dpre^T x, dW_hh += dpre^T h, dh = dpre W_hh;
//                                  no dx = dpre W_ih: x is data, it needs no gradient
//   at T=20, B=32, In=64, H=128: 125.8 + 209.7 = 335.5 MFLOP per step.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "common.hpp"
#include "ctgraph/ctgraph.hpp"
#include "ctgraph/recurrent.hpp"
#include "ctgraph/rnn_kernels.hpp"
#ifdef CTGRAPH_HAVE_TORCH
#include "torch_lstm_peer.hpp"
#endif

namespace {
namespace cb = ctgraph::bench;
namespace k = ctgraph::kernels;

constexpr int T = 20, B = 32, In = 64, H = 128;
constexpr long long lstm_params = 4LL * H * (In + H) + 8LL * H;  // W_ih, W_hh, b_ih, b_hh: 99,328

double lstm_step_flops() { return 2.0 * T * B * 4 * H * (In + H) + 2.0 * T * B * 4 * H * (In + 2 * H); }

// Registers `name`: `setup` builds the case once and returns the closure timed per iteration.
// flops and bytes are one iteration's (0: no counter); params is reported as is (0: no counter).
void register_case(const std::string& name, int threads, double flops, double bytes, double params,
                   std::function<std::function<void()>()> setup) {
  benchmark::RegisterBenchmark(name.c_str(),
                               [=](benchmark::State& state) {
                                 cb::set_threads(threads);
                                 auto body = setup();
                                 body();  // warm-up: first-touch pages, optimizer state, allocator caches
                                 for (auto _ : state) body();
                                 state.counters["threads"] = threads;
                                 if (params > 0) state.counters["params"] = params;
                                 if (flops > 0)
                                   state.counters["GFLOPS"] =
                                       benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate,
                                                          benchmark::Counter::kIs1000);
                                 if (bytes > 0) state.SetBytesProcessed(std::int64_t(bytes) * state.iterations());
                               })
      ->UseRealTime()
      ->MinTime(0.5);
}

std::vector<float> random_values(std::size_t n, unsigned seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = g(rng);
  return v;
}

// Buffers of one B x H step of each kernel, with plausible values (pre-activations of spread ~2).
struct gate_buffers {
  std::vector<float> pre = random_values(std::size_t(B) * 4 * H, 1, 2.f), c = random_values(std::size_t(B) * H, 2, 1.f);
  std::vector<float> dh = random_values(std::size_t(B) * H, 3, 1.f), dc = random_values(std::size_t(B) * H, 4, 1.f);
  std::vector<float> h_next = std::vector<float>(std::size_t(B) * H), c_next = h_next, dc_out = h_next;
  std::vector<float> act = std::vector<float>(std::size_t(B) * k::lstm_saved * H);
  std::vector<float> dpre = std::vector<float>(std::size_t(B) * 4 * H);
  std::vector<float> gx = random_values(std::size_t(B) * 3 * H, 5, 2.f),
                     gh = random_values(std::size_t(B) * 3 * H, 6, 2.f);
  std::vector<float> gact = std::vector<float>(std::size_t(B) * k::gru_saved * H);
  std::vector<float> dgx = std::vector<float>(std::size_t(B) * 3 * H), dgh = dgx;
};

void add_gate_benches(int threads) {
  const k::rnn_shape s{B, H};
  const double row = 4.0 * B * H;  // bytes of one [B, H] float buffer
  // Bytes read and written: LSTM forward pre 4, c 1 -> h' 1, c' 1, act 5; backward act 5, c 1, dh' 1, dc' 1 -> dpre 4,
  // dc 1.
  register_case("lstm_gates/ctgraph/forward", threads, 0, 12 * row, 0, [s] {
    auto b = std::make_shared<gate_buffers>();
    return [s, b] {
      k::lstm_gates_forward<float>(s, b->pre.data(), b->c.data(), b->h_next.data(), b->c_next.data(), b->act.data());
      benchmark::ClobberMemory();
    };
  });
  register_case("lstm_gates/ctgraph/backward", threads, 0, 13 * row, 0, [s] {
    auto b = std::make_shared<gate_buffers>();
    k::lstm_gates_forward<float>(s, b->pre.data(), b->c.data(), b->h_next.data(), b->c_next.data(), b->act.data());
    return [s, b] {
      k::lstm_gates_backward<float>(s, b->act.data(), b->c.data(), b->dh.data(), b->dc.data(), b->dpre.data(),
                                    b->dc_out.data());
      benchmark::ClobberMemory();
    };
  });
  // GRU forward gx 3, gh 3, h 1 -> h' 1, act 4; backward act 4, h 1, dh' 1 -> dgx 3, dgh 3, dh 1.
  register_case("gru_gates/ctgraph/forward", threads, 0, 12 * row, 0, [s] {
    auto b = std::make_shared<gate_buffers>();
    return [s, b] {
      k::gru_gates_forward<float>(s, b->gx.data(), b->gh.data(), b->c.data(), b->h_next.data(), b->gact.data());
      benchmark::ClobberMemory();
    };
  });
  register_case("gru_gates/ctgraph/backward", threads, 0, 13 * row, 0, [s] {
    auto b = std::make_shared<gate_buffers>();
    k::gru_gates_forward<float>(s, b->gx.data(), b->gh.data(), b->c.data(), b->h_next.data(), b->gact.data());
    return [s, b] {
      k::gru_gates_backward<float>(s, b->gact.data(), b->c.data(), b->dh.data(), b->dgx.data(), b->dgh.data(),
                                   b->dc_out.data());
      benchmark::ClobberMemory();
    };
  });
}

// lstm/ctgraph: nn::lstm (a cg::scan of nn::lstm_cell), its gradient and Adam: the same problem as libtorch's.
namespace lstm_model {
namespace cg = ctgraph;
constexpr auto x = cg::input<"x", float, T, B, In>;
constexpr auto r = ctgraph::nn::lstm<"lstm", H>(x);
constexpr auto loss = cg::sum(r.output);
constexpr auto grads = cg::grad(loss);
struct state {
  decltype(cg::compile(loss, grads)) step = cg::compile(loss, grads);
  decltype(cg::parameters_of(step)) params = cg::parameters_of(step);
  decltype(cg::adam(params)) opt{params, cg::adam_options{.lr = 1e-3}};
  std::vector<float> xs = std::vector<float>(T * B * In);
};
std::function<void()> make() {
  auto s = std::make_shared<state>();
  cg::init(s->params, 1);
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> u(-1, 1);
  for (float& v : s->xs) v = u(gen);
  long count = 0;
  s->params.for_each([&](auto, auto span, const auto&) { count += static_cast<long>(span.size()); });
  if (count != lstm_params) std::fprintf(stderr, "lstm/ctgraph: %ld params\n", count);
  return [s] {
    auto out = s->step.run(s->params, cg::feed<"x">(s->xs));
    s->opt.step(s->params, out);
  };
}
}  // namespace lstm_model

// seq2seq/ctgraph: the encoder-decoder of tests/seq2seq.test.cpp at issue 12's sizes.
namespace seq2seq_model {
namespace cg = ctgraph;
namespace nn = ctgraph::nn;
constexpr int S = 20, T = 20, B = 32, V = 32, E = 64, H = 128;
constexpr long long params = 309536;
double forward_flops() {
  const double enc = 2.0 * S * B * 4 * H * (E + H), keys = 2.0 * S * B * H * H;
  const double step = 2.0 * B * H * H + 4.0 * S * B * H + 2.0 * B * 4 * H * (E + 2 * H) + 2.0 * B * V * 2 * H;
  return enc + keys + T * step;
}
constexpr auto src = cg::input<"src", int, S, B>;
constexpr auto tgt_in = cg::input<"tgt_in", int, T, B>;
constexpr auto tgt_out = cg::input<"tgt_out", int, T, B>;
constexpr auto enc = nn::lstm<"enc", H>(nn::embedding<"src_emb", V, E>(src));
constexpr auto dec = cg::scan(
    [](auto carry, auto y_prev) {
      auto [h, c] = carry;
      auto a = nn::additive_attention<"attn", H>(h, enc.output);
      auto st = nn::lstm_cell<"dec", H>(cg::concat<1>(y_prev, a.context), h, c);
      return std::tuple{std::tuple{st.h, st.c}, nn::linear<"out", V>(cg::concat<1>(st.h, a.context))};
    },
    std::tuple{cg::reshape<B, H>(enc.h), cg::reshape<B, H>(enc.c)}, nn::embedding<"tgt_emb", V, E>(tgt_in));
constexpr auto loss = cg::cross_entropy(dec.outputs, tgt_out, cg::ignore_index<0>);
constexpr auto grads = cg::grad(loss);
std::vector<int> tokens(int n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> u(1, V - 1);
  std::vector<int> v(static_cast<std::size_t>(n));
  for (int& t : v) t = u(gen);
  return v;
}
struct data {
  std::vector<int> src = tokens(S * B, 1), tgt_in = tokens(T * B, 2), tgt_out = tokens(T * B, 3);
};
struct train_state : data {
  decltype(cg::compile(loss, grads)) step = cg::compile(loss, grads);
  decltype(cg::parameters_of(step)) params = cg::parameters_of(step);
  decltype(cg::adam(params)) opt{params, cg::adam_options{.lr = 1e-3}};
};
struct forward_state : data {
  decltype(cg::compile(loss)) step = cg::compile(loss);
  decltype(cg::parameters_of(step)) params = cg::parameters_of(step);
};
template <class P>
void check_params(P& p) {
  long count = 0;
  p.for_each([&](auto, auto span, const auto&) { count += static_cast<long>(span.size()); });
  if (count != params) std::fprintf(stderr, "seq2seq/ctgraph: %ld params\n", count);
}
std::function<void()> make_train() {
  auto s = std::make_shared<train_state>();
  cg::init(s->params, 1);
  check_params(s->params);
  std::fprintf(stderr, "seq2seq/ctgraph: arena %ld bytes\n", decltype(s->step)::arena_bytes());
  return [s] {
    auto out =
        s->step.run(s->params, cg::feed<"src">(s->src), cg::feed<"tgt_in">(s->tgt_in), cg::feed<"tgt_out">(s->tgt_out));
    s->opt.step(s->params, out);
  };
}
std::function<void()> make_forward() {
  auto s = std::make_shared<forward_state>();
  cg::init(s->params, 1);
  return [s] {
    s->step.run(s->params, cg::feed<"src">(s->src), cg::feed<"tgt_in">(s->tgt_in), cg::feed<"tgt_out">(s->tgt_out));
  };
}
}  // namespace seq2seq_model

// tlm/ctgraph: issue 13's decoder-only transformer (421,184 params). tlm_long/ctgraph: one layer at S = 4096, B = 1.
namespace tlm_model {
namespace cg = ctgraph;
namespace nn = ctgraph::nn;
constexpr int V = 64, E = 128, Heads = 4, FF = 512;
// Forward FLOPs: per layer the q, k, v and output projections, the feed-forward and attention's two products
// over the visible (causal) pairs; then the head. A training step counts three times that.
double forward_flops(int S, int B, int layers) {
  const double rows = double(S) * B, pairs = double(S) * (S + 1) / 2 * B;
  const double layer = 2 * rows * E * 4 * E + 4 * rows * E * FF + 4 * pairs * E;
  return layers * layer + 2 * rows * E * V;
}
template <int S, int B, int Layers>
struct model {
  static constexpr auto tokens = cg::input<"tokens", int, S, B>;
  static constexpr auto targets = cg::input<"targets", int, S, B>;
  static constexpr auto pos = cg::init_param<"pos.weight", float, cg::init_rule::normal(), S, E>;
  static constexpr auto x0 = nn::embedding<"tok", V, E>(tokens) + cg::reshape<S, 1, E>(pos);
  static constexpr auto body = [] {
    constexpr auto x1 = nn::transformer_encoder_layer<"layers.0", Heads, FF>(x0, cg::causal);
    if constexpr (Layers == 1)
      return x1;
    else
      return nn::transformer_encoder_layer<"layers.1", Heads, FF>(x1, cg::causal);
  }();
  static constexpr auto loss = cg::cross_entropy(nn::linear<"head", V>(body), targets);
  static constexpr auto grads = cg::grad(loss);
  static std::vector<int> ids(unsigned seed) {
    std::mt19937 gen(seed);
    std::uniform_int_distribution<int> u(0, V - 1);
    std::vector<int> v(static_cast<std::size_t>(S) * B);
    for (int& t : v) t = u(gen);
    return v;
  }
  struct data {
    std::vector<int> tokens = ids(1), targets = ids(2);
  };
  struct train_state : data {
    decltype(cg::compile(loss, grads)) step = cg::compile(loss, grads);
    decltype(cg::parameters_of(step)) params = cg::parameters_of(step);
    decltype(cg::adam(params)) opt{params, cg::adam_options{.lr = 1e-3}};
  };
  struct forward_state : data {
    decltype(cg::compile(loss)) step = cg::compile(loss);
    decltype(cg::parameters_of(step)) params = cg::parameters_of(step);
  };
  static std::function<void()> make(bool forward_only, const char* name) {
    if (forward_only) {
      auto s = std::make_shared<forward_state>();
      cg::init(s->params, 1);
      return [s] { s->step.run(s->params, cg::feed<"tokens">(s->tokens), cg::feed<"targets">(s->targets)); };
    }
    auto s = std::make_shared<train_state>();
    cg::init(s->params, 1);
    long count = 0;
    s->params.for_each([&](auto, auto span, const auto&) { count += static_cast<long>(span.size()); });
    std::fprintf(stderr, "%s: %ld params, arena %ld bytes\n", name, count, decltype(s->step)::arena_bytes());
    return [s] {
      auto out = s->step.run(s->params, cg::feed<"tokens">(s->tokens), cg::feed<"targets">(s->targets));
      s->opt.step(s->params, out);
    };
  }
  // The slowest steps of a training step (forward, backward; no optimizer), over `runs` runs after a warm-up.
  static void profile(int runs) {
    auto s = std::make_shared<train_state>();
    cg::init(s->params, 1);
    cg::step_times times;
    for (int r = 0; r <= runs; ++r) {
      if (r == 1) times.clear();  // the first run pages the arena in
      s->step.run(s->params, cg::feed<"tokens">(s->tokens), cg::feed<"targets">(s->targets), cg::profile(times));
    }
    std::printf("%s", cg::profile_table(times, s->step, 400).c_str());
  }
};
using tlm = model<64, 32, 2>;
using tlm_long = model<4096, 1, 1>;
constexpr long long params = 421184;
}  // namespace tlm_model

}  // namespace

int main(int argc, char** argv) {
  const int threads = omp_get_max_threads();  // OMP_NUM_THREADS, or all cores

  register_case("lstm/ctgraph", threads, lstm_step_flops(), 0, double(lstm_params), lstm_model::make);
  namespace sm = seq2seq_model;
  register_case("seq2seq/ctgraph", threads, 3 * sm::forward_flops(), 0, double(sm::params), sm::make_train);
  register_case("seq2seq/ctgraph/forward", threads, sm::forward_flops(), 0, double(sm::params), sm::make_forward);
  namespace tm = tlm_model;
  for (bool fwd : {false, true}) {
    const double f = (fwd ? 1 : 3) * tm::forward_flops(64, 32, 2), fl = (fwd ? 1 : 3) * tm::forward_flops(4096, 1, 1);
    register_case(fwd ? "tlm/ctgraph/forward" : "tlm/ctgraph", threads, f, 0, double(tm::params),
                  [fwd] { return tm::tlm::make(fwd, "tlm/ctgraph"); });
    register_case(fwd ? "tlm_long/ctgraph/forward" : "tlm_long/ctgraph", threads, fl, 0, 0,
                  [fwd] { return tm::tlm_long::make(fwd, "tlm_long/ctgraph"); });
  }

#ifdef CTGRAPH_HAVE_TORCH
  namespace tp = cb::torch_lstm_peer;
  cb::set_threads_hook([](int t) { tp::set_threads(t); });
  register_case("lstm/libtorch", threads, lstm_step_flops(), 0, double(lstm_params), [] {
    tp::lstm_step step = tp::make_lstm_step({T, B, In, H, 1e-3});
    if (step.params != lstm_params) std::fprintf(stderr, "lstm/libtorch: %lld params\n", step.params);
    return step.run;
  });
  for (bool fwd : {false, true})
    register_case(fwd ? "seq2seq/libtorch/forward" : "seq2seq/libtorch", threads, (fwd ? 1 : 3) * sm::forward_flops(),
                  0, double(sm::params), [fwd] {
                    tp::lstm_step step = tp::make_seq2seq_step({sm::S, sm::T, sm::B, sm::V, 64, 128, 1e-3}, fwd);
                    if (step.params != sm::params) std::fprintf(stderr, "seq2seq/libtorch: %lld params\n", step.params);
                    return step.run;
                  });
  for (bool fwd : {false, true}) {
    const double f = (fwd ? 1 : 3) * tm::forward_flops(64, 32, 2), fl = (fwd ? 1 : 3) * tm::forward_flops(4096, 1, 1);
    register_case(fwd ? "tlm/libtorch/forward" : "tlm/libtorch", threads, f, 0, double(tm::params), [fwd] {
      tp::lstm_step step = tp::make_tlm_step({64, 32, tm::V, tm::E, tm::Heads, tm::FF, 2, 1e-3}, fwd);
      if (step.params != tm::params) std::fprintf(stderr, "tlm/libtorch: %lld params\n", step.params);
      return step.run;
    });
    register_case(fwd ? "tlm_long/libtorch/forward" : "tlm_long/libtorch", threads, fl, 0, 0, [fwd] {
      return tp::make_tlm_step({4096, 1, tm::V, tm::E, tm::Heads, tm::FF, 1, 1e-3}, fwd).run;
    });
  }
  std::printf("libtorch %s\n", tp::version().c_str());
#endif
  add_gate_benches(threads);

  // --profile: the tlm step's slowest steps (cg::profile), instead of the benchmarks.
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--profile") {
      tm::tlm::profile(50);
      return 0;
    }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  std::printf("threads: %d (OMP_NUM_THREADS)\n", threads);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
