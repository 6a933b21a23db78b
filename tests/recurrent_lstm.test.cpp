// nn::lstm against torch.nn.LSTM: 1 and 2 layers, bidirectional (tests/recurrent_parity.hpp).
#include "recurrent_parity.hpp"

using namespace recurrent_parity;

TEST_CASE("nn::lstm matches torch.nn.LSTM: 1 and 2 layers, bidirectional", "[.][torch_parity][lstm]") {
  in_double<true, one, false>("lstm_l1");
  in_double<true, two, false>("lstm_l2");
  in_double<true, bi, false>("lstm_l1_bidir");
  in_double<true, two_bi, false>("lstm_l2_bidir");
  in_float<true, two_bi, false>("lstm_l2_bidir");
}
