// ctgraph/train/metrics_log.hpp: a CSV file of metrics, one row per epoch or step.
//
//   cg::metrics_log log("run/loss.csv", {"epoch", "train_loss", "heldout_acc"});
//   log.write({epoch, loss, acc});             // "3,0.0412345678,0.975\n", flushed
//
//   cg::metrics_log again("run/loss.csv", {"epoch", "train_loss", "heldout_acc"}, {.append = true});
//
// The file is RFC 4180 CSV: a header row of the column names, then one row per write(), fields
// separated by commas, rows ended by "\n". A field holding a comma, a double quote, a CR or an LF
// is written in double quotes, its double quotes doubled. Integers are written as integers;
// floating-point values with `precision` significant digits (printf's %g) or, with precision 0,
// as the shortest text that reads back to the same value; NaN and infinities as nan, inf and
// -inf (gnuplot skips them). Each row is flushed as it is written, so a run that stops keeps
// the rows before.
//
// With append, an existing file is continued (a resumed run's rows follow the ones it resumes
// from) after checking that its header is this log's; a missing or empty file is started with
// the header, as without append.
#pragma once
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace ctgraph {

/// Options of metrics_log.
struct metrics_log_options {
  /// Continue an existing file, whose header must be this log's (false: replace it).
  bool append = false;
  /// Significant digits of floating-point values (as %g); 0: the shortest text that reads back
  /// to the same float or double.
  int precision = 9;
};

/// One field of a metrics_log row: an integer, a float, a double or a text, converted implicitly.
class log_value {
 public:
  /// An integer (bool as 0 or 1), written as such.
  template <std::integral I>
  log_value(I v) : v_(static_cast<std::int64_t>(v)) {}
  /// A float or double, written with the log's precision.
  template <std::floating_point F>
  log_value(F v) : v_(static_cast<std::conditional_t<std::is_same_v<F, float>, float, double>>(v)) {}
  /// A text, quoted if it holds a comma, a double quote or a line break (viewed, not copied).
  log_value(std::string_view s) : v_(s) {}
  /// A text (viewed, not copied).
  log_value(const char* s) : v_(std::string_view(s)) {}
  /// A text (viewed, not copied).
  log_value(const std::string& s) : v_(std::string_view(s)) {}

  /// The value.
  const std::variant<std::int64_t, float, double, std::string_view>& get() const noexcept { return v_; }

 private:
  std::variant<std::int64_t, float, double, std::string_view> v_;
};

/// A CSV log of metrics: a header of column names, then one flushed row per write().
/// Move-only; the file is closed by close() or the destructor.
class metrics_log {
 public:
  /// Opens `path` (creating or replacing it, or continuing it with options.append) and writes the
  /// header of `columns` unless it continues a file that has one.
  /// @throws std::invalid_argument if columns is empty, or has an empty or repeated name
  /// @throws std::runtime_error naming the file if it cannot be opened or written, or if it is
  ///         continued and its header is not this one
  metrics_log(const std::filesystem::path& path, std::vector<std::string> columns, metrics_log_options options = {});
  metrics_log(metrics_log&& other) noexcept;             ///< takes over other's file
  metrics_log& operator=(metrics_log&& other) noexcept;  ///< closes this file, takes over other's
  ~metrics_log();                                        ///< closes the file (errors ignored)

  /// Writes one row, one value per column, and flushes it.
  /// @throws std::invalid_argument if the count of values is not the count of columns
  /// @throws std::runtime_error if the log is closed or the file cannot be written
  void write(std::span<const log_value> row);
  /// Writes one row: `log.write({epoch, loss, accuracy})`.
  void write(std::initializer_list<log_value> row) { write(std::span<const log_value>(row.begin(), row.size())); }

  /// Closes the file; later writes throw. Closing a closed log does nothing.
  /// @throws std::runtime_error if the file cannot be flushed
  void close();

  /// The file's path.
  const std::filesystem::path& path() const noexcept { return path_; }
  /// The column names.
  const std::vector<std::string>& columns() const noexcept { return columns_; }

 private:
  std::filesystem::path path_;
  std::vector<std::string> columns_;
  metrics_log_options options_;
  std::FILE* file_ = nullptr;
  std::string line_;  // the row being written, reused
};

/// One CSV field as metrics_log writes it: `text` as is, or in double quotes (its quotes doubled)
/// when it holds a comma, a double quote, a CR or an LF.
std::string csv_field(std::string_view text);

/// The fields of one CSV line (no line break), undoing csv_field's quoting.
/// @throws std::invalid_argument on a quote that is not closed or not followed by a comma
std::vector<std::string> csv_fields(std::string_view line);

}  // namespace ctgraph
