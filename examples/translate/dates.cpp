// examples/translate/dates.cpp: dates as people write them, their ISO form, and token ids.
#include "dates.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>

namespace dates {
namespace {
namespace chr = std::chrono;

constexpr const char* month_names[12] = {"January", "February", "March",     "April",   "May",      "June",
                                         "July",    "August",   "September", "October", "November", "December"};
constexpr const char* weekday_names[7] = {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"};

chr::year_month_day date_of(int day) {
  return chr::year_month_day{chr::sys_days{chr::year{first_year} / 1 / 1} + chr::days{day}};
}
std::string ordinal(unsigned d) {
  const char* suffix = (d % 10 == 1 && d != 11)   ? "st"
                       : (d % 10 == 2 && d != 12) ? "nd"
                       : (d % 10 == 3 && d != 13) ? "rd"
                                                  : "th";
  return fmt::format("{}{}", d, suffix);
}
// splitmix64: a good mix of the bits of x, for hashing days and seeding draws.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
// The character at the start of `s`, for an error message: quoted when printable ASCII or a whole
// UTF-8 sequence, else its byte in hex.
std::string describe_char(std::string_view s) {
  const auto c = static_cast<unsigned char>(s[0]);
  if (c < 0x80)
    return std::isprint(c) ? fmt::format("character '{}'", s[0]) : fmt::format("control character 0x{:02x}", c);
  const std::size_t n = c >= 0xf0 && c < 0xf8 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
  bool whole = n > 0 && s.size() >= n;
  for (std::size_t k = 1; whole && k < n; ++k) whole = (static_cast<unsigned char>(s[k]) & 0xc0) == 0x80;
  return whole ? fmt::format("character '{}'", s.substr(0, n)) : fmt::format("byte 0x{:02x} (not UTF-8)", c);
}
}  // namespace

std::string written(int day, int format, letter_case lc) {
  const auto ymd = date_of(day);
  const unsigned d = static_cast<unsigned>(ymd.day()), m = static_cast<unsigned>(ymd.month());
  const int y = static_cast<int>(ymd.year());
  // 1900-01-01 was a Monday; chrono's weekday counts from Sunday.
  const unsigned iso_weekday = chr::weekday{chr::sys_days{ymd}}.iso_encoding();  // 1 = Monday
  const std::string month = month_names[m - 1], mon = month.substr(0, 3);
  const std::string weekday = weekday_names[iso_weekday - 1], wd = weekday.substr(0, 3);
  std::string s;
  switch (format) {
    case 0:
      s = fmt::format("{} {} {}", d, month, y);
      break;
    case 1:
      s = fmt::format("{} {}, {}", month, d, y);
      break;
    case 2:
      s = fmt::format("{} {} {}", d, mon, y);
      break;
    case 3:
      s = fmt::format("{} {}, {}", mon, d, y);
      break;
    case 4:
      s = fmt::format("{:02}/{:02}/{}", d, m, y);
      break;
    case 5:
      s = fmt::format("{}.{:02}.{:02}", y, m, d);
      break;
    case 6:
      s = fmt::format("{}, {} {} {}", weekday, d, month, y);
      break;
    case 7:
      s = fmt::format("{} {} {} {}", wd, d, mon, y);
      break;
    case 8:
      s = fmt::format("{} {} {}", ordinal(d), month, y);
      break;
    default:
      s = fmt::format("{} {}, {}", month, ordinal(d), y);
      break;
  }
  if (lc != letter_case::as_shown)
    for (char& c : s) c = static_cast<char>(lc == letter_case::lower ? std::tolower(c) : std::toupper(c));
  return s;
}

std::string iso(int day) {
  const auto ymd = date_of(day);
  return fmt::format("{:04}-{:02}-{:02}", static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                     static_cast<unsigned>(ymd.day()));
}

encoded encode_source(std::string_view line) {
  encoded r;
  const auto first = line.find_first_not_of(" \t"), last = line.find_last_not_of(" \t");
  if (first == std::string_view::npos) return r.error = "empty line", r;
  const std::string_view text = line.substr(first, last - first + 1);
  if (text.size() > static_cast<std::size_t>(max_source))
    return r.error = fmt::format("{} characters, longer than the model's maximum of {}", text.size(), max_source), r;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto k = source_chars.find(text[i]);
    if (k == std::string_view::npos) {
      r.error = fmt::format("{} at position {} is not in the vocabulary (letters, digits, space and , . /)",
                            describe_char(text.substr(i)), first + i + 1);
      r.ids.clear();
      return r;
    }
    r.ids.push_back(1 + static_cast<int>(k));
  }
  return r;
}

std::vector<int> encode_target(std::string_view iso_date) {
  std::vector<int> ids;
  for (char c : iso_date) ids.push_back(3 + static_cast<int>(target_chars.find(c)));
  return ids;
}

std::string decode_target(const int* ids, int n) {
  std::string s;
  for (int k = 0; k < n && ids[k] != eos && ids[k] != pad; ++k) s += target_char(ids[k]);
  return s;
}

std::string source_char(int id) {
  return id >= 1 && id < source_vocab ? std::string(1, source_chars[id - 1]) : std::string();
}
std::string target_char(int id) {
  return id >= 3 && id < target_vocab ? std::string(1, target_chars[id - 3]) : std::string();
}

bool held_out(int day) { return mix(static_cast<std::uint64_t>(day) ^ 0x5eed'da7e'0000'0000ull) % 10 == 9; }

example draw(std::uint64_t seed, std::uint64_t stream, std::uint64_t index, bool from_held_out) {
  std::uint64_t s = mix(mix(mix(seed) ^ stream) ^ index);
  auto next = [&] { return s = mix(s); };
  int day = 0;
  do day = static_cast<int>(next() % days);
  while (held_out(day) != from_held_out);
  const int format = static_cast<int>(next() % formats);
  const auto lc = static_cast<letter_case>(next() % 3);
  return {written(day, format, lc), iso(day), day, format};
}

batch make_batch(const std::vector<example>& xs) {
  const int B = static_cast<int>(xs.size());
  batch b{std::vector<int>(max_source * B, pad), std::vector<int>(B), std::vector<int>(target_steps * B, pad),
          std::vector<int>(target_steps * B, pad)};
  for (int j = 0; j < B; ++j) {
    const encoded e = encode_source(xs[j].text);
    b.src_len[j] = static_cast<int>(e.ids.size());
    for (int t = 0; t < b.src_len[j]; ++t) b.src[t * B + j] = e.ids[t];
    const std::vector<int> y = encode_target(xs[j].iso);
    for (int t = 0; t < target_steps; ++t) {
      b.tgt_in[t * B + j] = t == 0 ? bos : y[t - 1];
      b.tgt_out[t * B + j] = t < iso_length ? y[t] : eos;
    }
  }
  return b;
}

}  // namespace dates
