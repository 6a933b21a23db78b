// nn::lstm over padded batches against torch's packed sequences (tests/recurrent_parity.hpp).
#include "recurrent_parity.hpp"

using namespace recurrent_parity;

TEST_CASE("nn::lstm over a padded batch matches torch's packed sequences", "[.][torch_parity][lstm][padded]") {
  in_double<true, one, true>("lstm_l1_padded");
  in_double<true, two, true>("lstm_l2_padded");
  in_double<true, bi, true>("lstm_l1_bidir_padded");
  in_double<true, two_bi, true>("lstm_l2_bidir_padded");
  in_float<true, one, true>("lstm_l1_padded");
}
