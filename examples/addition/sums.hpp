// examples/addition/sums.hpp: the addition example's data, generated, never downloaded.
//
// A problem is two operands of at most D digits and their sum. The model reads it as tokens: each
// operand zero-padded to D digits, '+' between them and '=' after ("437+589=" for D = 3, "005+012="
// for 5 + 12), and writes the sum's D + 1 digits least significant first, then the end token
// ("6201" then end for 1026). Writing the sum backwards lets each digit follow from the digits it
// depends on (the operands' digits at its place and the carry from the digit written before it);
// read_sum() turns it back into the sum as people write it. Operands are drawn with a digit count
// uniform in 1..D, so short operands are as common as long ones.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sums {

// Tokens: the digits 0-9 are themselves, then '+', '=', the end of the sum, and the target the loss
// skips (the prompt's next tokens, which nothing predicts; never an input).
constexpr int plus = 10, equals = 11, end = 12, ignore = 13, vocab = 14;
constexpr int max_digits = 9;  // operands below 10^9: sums fit a long with room to spare

struct problem {
  long a = 0, b = 0;
};

// The prompt of a problem with D-digit operands: 2D + 2 tokens.
std::vector<int> prompt(problem p, int digits);
// What the model writes after it: the sum's D + 1 digits, least significant first, then end.
std::vector<int> answer(problem p, int digits);
// The sum as people write it, read from what the model wrote (answer()'s tokens without the end
// token), or "" when that is not D + 1 digits.
std::string read_sum(const std::vector<int>& written, int digits);
// Tokens as text ("6201" for digits, '+', '=', '$' for the end), for showing what a model wrote.
std::string show(const std::vector<int>& tokens);

// Held-out problems: a hash of the unordered pair {a, b} puts one pair in 50 out of training, so
// a held-out problem was never trained on in either order.
bool held_out(problem p);
// The index-th problem of a stream (0: training, 1: held-out) of a seed: held-out streams draw
// held-out pairs only, training streams the others.
problem draw(std::uint64_t seed, int stream, std::uint64_t index, int digits);

// A line people type: "437+589", "437 + 589 =", spaces anywhere, a trailing '=' optional.
struct parsed {
  problem p;
  std::string error;  // empty when p is the line's problem
};
parsed parse(std::string_view line, int digits);

}  // namespace sums
