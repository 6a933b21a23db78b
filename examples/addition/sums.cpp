// examples/addition/sums.cpp: problems, their tokens, and the lines people type.
#include "sums.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

namespace sums {
namespace {
std::uint64_t mix(std::uint64_t x) {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
long pow10(int n) {
  long p = 1;
  while (n-- > 0) p *= 10;
  return p;
}
// The D digits of x, least significant first.
void digits_of(long x, int digits, std::vector<int>& out) {
  for (int k = 0; k < digits; ++k, x /= 10) out.push_back(static_cast<int>(x % 10));
}
void put_operand(long x, int digits, std::vector<int>& out) {  // most significant first
  const std::size_t at = out.size();
  digits_of(x, digits, out);
  std::reverse(out.begin() + static_cast<long>(at), out.end());
}
}  // namespace

std::vector<int> prompt(problem p, int digits) {
  std::vector<int> t;
  put_operand(p.a, digits, t);
  t.push_back(plus);
  put_operand(p.b, digits, t);
  t.push_back(equals);
  return t;
}

std::vector<int> answer(problem p, int digits) {
  std::vector<int> t;
  digits_of(p.a + p.b, digits + 1, t);
  t.push_back(end);
  return t;
}

std::string read_sum(const std::vector<int>& written, int digits) {
  if (static_cast<int>(written.size()) != digits + 1) return "";
  std::string s;
  for (auto it = written.rbegin(); it != written.rend(); ++it) {
    if (*it < 0 || *it > 9) return "";
    if (!s.empty() || *it != 0) s += static_cast<char>('0' + *it);
  }
  return s.empty() ? "0" : s;
}

std::string show(const std::vector<int>& tokens) {
  std::string s;
  for (int t : tokens) s += t >= 0 && t <= 9 ? static_cast<char>('0' + t) : t == plus ? '+' : t == equals ? '=' : '$';
  return s;
}

bool held_out(problem p) {
  const auto lo = static_cast<std::uint64_t>(std::min(p.a, p.b)), hi = static_cast<std::uint64_t>(std::max(p.a, p.b));
  return mix(mix(lo) ^ hi) % 50 == 0;
}

problem draw(std::uint64_t seed, int stream, std::uint64_t index, int digits) {
  std::uint64_t h = mix(mix(mix(seed) ^ static_cast<std::uint64_t>(stream)) ^ index);
  auto operand = [&] {
    h = mix(h);
    const int n = 1 + static_cast<int>(h % static_cast<std::uint64_t>(digits));  // its digit count
    const long lo = n == 1 ? 0 : pow10(n - 1), span = pow10(n) - lo;
    h = mix(h);
    return lo + static_cast<long>(h % static_cast<std::uint64_t>(span));
  };
  for (;;) {  // one draw in 50 is held out: a few tries on average
    const problem p{operand(), operand()};
    if (held_out(p) == (stream == 1)) return p;
  }
}

parsed parse(std::string_view line, int digits) {
  std::string s;
  for (char c : line)
    if (c != ' ' && c != '\t' && c != '\r') s += c;
  if (!s.empty() && s.back() == '=') s.pop_back();
  if (s.empty()) return {{}, "empty line (type a sum such as 437+589)"};
  const auto at = s.find('+');
  if (at == std::string::npos) return {{}, fmt::format("no '+' in \"{}\" (type a sum such as 437+589)", s)};
  parsed r;
  long* operands[2] = {&r.p.a, &r.p.b};
  const std::string_view parts[2] = {std::string_view(s).substr(0, at), std::string_view(s).substr(at + 1)};
  for (int k = 0; k < 2; ++k) {
    std::string_view x = parts[k];
    if (x.empty()) return {{}, fmt::format("the {} operand is missing", k ? "second" : "first")};
    for (char c : x)
      if (!std::isdigit(static_cast<unsigned char>(c)))
        return {{}, fmt::format("'{}' in \"{}\" is not a digit (operands are whole numbers >= 0)", c, x)};
    while (x.size() > 1 && x.front() == '0') x.remove_prefix(1);  // 007 is 7
    if (static_cast<int>(x.size()) > digits)
      return {{}, fmt::format("{} has {} digits, and this model adds operands of at most {}", x, x.size(), digits)};
    long v = 0;
    for (char c : x) v = v * 10 + (c - '0');
    *operands[k] = v;
  }
  return r;
}

}  // namespace sums
