// nn::gru against torch.nn.GRU, padded batches too (tests/recurrent_parity.hpp).
#include "recurrent_parity.hpp"

using namespace recurrent_parity;

TEST_CASE("nn::gru matches torch.nn.GRU, padded batches too", "[.][torch_parity][gru]") {
  in_double<false, one, false>("gru_l1");
  in_double<false, two_bi, false>("gru_l2_bidir");
  in_double<false, one, true>("gru_l1_padded");
  in_double<false, two_bi, true>("gru_l2_bidir_padded");
  in_float<false, two_bi, true>("gru_l2_bidir_padded");
}
