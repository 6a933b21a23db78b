// examples/translate/dates.hpp: the translate example's data, generated, never downloaded.
// Dates from 1900-01-01 to 2099-12-31 written as people write them, in ten formats, with month
// and weekday names as shown, all lower case or all upper case (the weekday is the real one),
// and their ISO 8601 form (YYYY-MM-DD). Characters become token ids through two vocabularies,
// one for what people write and one for ISO dates; id 0 pads in both.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dates {

constexpr int first_year = 1900, last_year = 2099;
constexpr int days = 73049;     // 1900-01-01 .. 2099-12-31
constexpr int formats = 10;     // "5 November 2026" .. "November 5th, 2026"
constexpr int max_source = 30;  // the longest input the model reads ("Wednesday, 30 September 2026" is 28)
constexpr int iso_length = 10;  // YYYY-MM-DD

// The source vocabulary: 0 pads, then the characters dates are written with.
constexpr std::string_view source_chars = " ,./0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
constexpr int source_vocab = 1 + static_cast<int>(source_chars.size());  // 67
// The target vocabulary: 0 pads, 1 starts the decoder, 2 ends a date, then digits and '-'.
constexpr int pad = 0, bos = 1, eos = 2;
constexpr std::string_view target_chars = "0123456789-";
constexpr int target_vocab = 3 + static_cast<int>(target_chars.size());  // 14
constexpr int target_steps = iso_length + 1;                             // the ten characters, then eos

// Letter case of the names: as shown ("November"), all lower or all upper case.
enum class letter_case { as_shown, lower, upper };

// Day `day` (0 is 1900-01-01) in format `format` (0-9) and letter case `lc`.
std::string written(int day, int format, letter_case lc);
// Its ISO 8601 form.
std::string iso(int day);

// The source ids of a line (1-based positions in source_chars), leading and trailing spaces and
// tabs ignored, or why they cannot be: empty, longer than max_source, or a character outside the
// vocabulary (named with its position in the line).
struct encoded {
  std::vector<int> ids;
  std::string error;  // empty when ids is the text
};
encoded encode_source(std::string_view line);
// The target ids of an ISO date (no bos, no eos) and back; decode_target stops at eos or pad.
std::vector<int> encode_target(std::string_view iso_date);
std::string decode_target(const int* ids, int n);
// A source id's or a target id's character, for labels ("" for padding and the specials).
std::string source_char(int id);
std::string target_char(int id);

// The days that train and those held out: every day whose hash falls in the last tenth is held
// out, so the held-out dates are dates the model never saw, in any format.
bool held_out(int day);

// One example: the written date and its ISO form.
struct example {
  std::string text, iso;
  int day = 0, format = 0;
};
// The example number `index` of the stream `stream` from `seed`: a pure function of the three, so
// that a run, and a resumed run, draws the same examples. Held-out streams draw held-out days.
example draw(std::uint64_t seed, std::uint64_t stream, std::uint64_t index, bool from_held_out);

// A training batch, time-major as the model reads it: src [max_source, B] (padded), src_len [B],
// tgt_in [target_steps, B] (bos, then the ISO characters) and tgt_out [target_steps, B] (the ISO
// characters, then eos).
struct batch {
  std::vector<int> src, src_len, tgt_in, tgt_out;
};
batch make_batch(const std::vector<example>& xs);

}  // namespace dates
