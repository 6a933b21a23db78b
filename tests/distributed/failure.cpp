// A rank that fails ends the whole job with a message naming it and the cause, never a hang
// (ctgraph/distributed.hpp, cg::run_or_abort), run by mpirun on 2 ranks (ctest -L distributed):
//   failure throw      rank 1 throws before its 4th step, while rank 0 waits for it in the allreduce
//   failure bad-file   rank 1 resumes from a checkpoint file that does not exist (cg::load(comm, ...))
// The test passes when the output holds "rank 1: " and the cause, within the test's timeout.
// Rank 0 prints "rank 0 finished" if it ever gets out of training, which it must not.
#include <cstdio>
#include <ctgraph/ctgraph.hpp>
#include <ctgraph/distributed.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace cg = ctgraph;

constexpr auto x = cg::input<"x", float, 8, 3>;
constexpr auto w = cg::param<"w", float, 3, 2>;
constexpr auto loss = cg::mean(cg::matmul(x, w) * cg::matmul(x, w));
constexpr auto grads = cg::grad(loss);

int main(int argc, char** argv) {
  cg::communicator comm(argc, argv);
  const std::string mode = argc > 1 ? argv[1] : "throw";
  return cg::run_or_abort(comm, [&] {
    auto step = cg::compile(loss, grads);
    auto params = cg::parameters_of(step);
    cg::init(params, 3);
    cg::adam opt(params, {.lr = 0.1});
    if (mode == "bad-file") {
      const std::string path = comm.rank() == 1 ? "no-such-dir/checkpoint.safetensors" : "";
      if (comm.rank() == 1)
        cg::load(comm, params, opt, path);
      else
        cg::broadcast(comm, params);  // rank 0 waits for rank 1 in the broadcast
    }
    std::vector<float> xs(8 * 3, 0.5f);
    for (int s = 0; s < 1000000; ++s) {
      if (mode == "throw" && comm.rank() == 1 && s == 3) throw std::runtime_error("injected failure at step 3");
      auto r = step.run(params, cg::feed<"x">(xs));
      cg::average_grads(comm, params, r);
      opt.step(params, r);
    }
    std::printf("rank %d finished\n", comm.rank());
    return 0;
  });
}
