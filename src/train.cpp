// src/train.cpp: the training utilities of ctgraph/train.hpp: batches, metrics_log, progress,
// plots. POSIX calls (isatty, posix_spawn) stay in this file.
#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctgraph/train.hpp>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <utility>

extern char** environ;  // posix_spawn passes it on: gnuplot sees the user's environment

namespace ctgraph {
namespace fs = std::filesystem;

// ---- batches ----

namespace {
// SplitMix64's output function: spreads nearby seeds and epochs over the whole 64-bit range.
std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
// A uniform draw in [0, bound): draws below 2^64 mod bound are rejected, so that each result is
// hit by the same number of the generator's values (a plain % would favour small results).
std::uint64_t draw_below(std::mt19937_64& gen, std::uint64_t bound) {
  const std::uint64_t biased = (std::uint64_t{0} - bound) % bound;
  for (;;)
    if (const std::uint64_t r = gen(); r >= biased) return r % bound;
}
}  // namespace

batches::batches(std::size_t examples, std::size_t size, batch_options options)
    : examples_(examples), size_(size), per_epoch_(0), options_(options) {
  if (size == 0) throw std::invalid_argument("ctgraph: batches: batch size 0");
  if (size > examples)
    throw std::invalid_argument(
        fmt::format("ctgraph: batches: batch size {} is larger than the data set ({} examples)", size, examples));
  per_epoch_ = options.rest == remainder::wrap ? (examples + size - 1) / size : examples / size;
}

void batches::plan(std::uint64_t epoch) {
  if (planned_ && epoch == epoch_) return;
  schedule_.resize(examples_);
  for (std::size_t i = 0; i < examples_; ++i) schedule_[i] = i;
  if (options_.shuffle) {
    std::mt19937_64 gen(splitmix64(options_.seed ^ splitmix64(epoch)));
    for (std::size_t i = examples_ - 1; i > 0; --i) std::swap(schedule_[i], schedule_[draw_below(gen, i + 1)]);
  }
  // The wrapped last batch continues into the epoch's own head: a batch is one contiguous span.
  for (std::size_t i = 0; schedule_.size() < per_epoch_ * size_; ++i) schedule_.push_back(schedule_[i]);
  epoch_ = epoch;
  planned_ = true;
}

std::span<const std::size_t> batches::order(std::uint64_t epoch) {
  plan(epoch);
  return std::span<const std::size_t>(schedule_.data(), examples_);
}

std::span<const std::size_t> batches::indices(std::uint64_t epoch, std::size_t index) {
  if (index >= per_epoch_)
    throw std::out_of_range(fmt::format("ctgraph: batches: batch {} of an epoch of {}", index, per_epoch_));
  plan(epoch);
  return std::span<const std::size_t>(schedule_.data() + index * size_, size_);
}

// ---- metrics_log ----

std::string csv_field(std::string_view text) {
  if (text.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(text);
  std::string r = "\"";
  for (const char c : text) r += c == '"' ? std::string("\"\"") : std::string(1, c);
  return r + "\"";
}

std::vector<std::string> csv_fields(std::string_view line) {
  std::vector<std::string> fields(1);
  for (std::size_t i = 0; i < line.size();) {
    if (line[i] == ',') {
      fields.emplace_back();
      ++i;
    } else if (line[i] == '"' && fields.back().empty()) {
      for (++i;; ++i) {  // a quoted field: up to a quote that is not doubled
        if (i >= line.size()) throw std::invalid_argument("ctgraph: csv_fields: a quoted field is not closed");
        if (line[i] == '"' && (i + 1 >= line.size() || line[i + 1] != '"')) break;
        if (line[i] == '"') ++i;
        fields.back() += line[i];
      }
      if (++i < line.size() && line[i] != ',')
        throw std::invalid_argument("ctgraph: csv_fields: a quoted field is followed by more than a comma");
    } else {
      fields.back() += line[i++];
    }
  }
  return fields;
}

namespace {
std::string joined(const std::vector<std::string>& names) {
  std::string r;
  for (const auto& n : names) {
    if (!r.empty()) r += ',';
    r += csv_field(n);
  }
  return r;
}
// The first line of an existing file without its line break, and whether the file ends in one;
// nothing if the file is missing or empty.
std::optional<std::pair<std::string, bool>> first_line(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::nullopt;
  std::string line;
  if (!std::getline(f, line) && line.empty()) return std::nullopt;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  f.clear();
  f.seekg(-1, std::ios::end);
  char last = 0;
  f.get(last);
  return std::pair{line, last == '\n'};
}
// Whether a header line names `columns`; a line that is not CSV does not.
bool same_columns(std::string_view line, const std::vector<std::string>& columns) {
  try {
    return csv_fields(line) == columns;
  } catch (const std::invalid_argument&) {
    return false;
  }
}
}  // namespace

metrics_log::metrics_log(const fs::path& path, std::vector<std::string> columns, metrics_log_options options)
    : path_(path), columns_(std::move(columns)), options_(options) {
  if (columns_.empty()) throw std::invalid_argument("ctgraph: metrics_log: no columns");
  for (std::size_t i = 0; i < columns_.size(); ++i) {
    if (columns_[i].empty()) throw std::invalid_argument(fmt::format("ctgraph: metrics_log: column {} has no name", i));
    if (std::find(columns_.begin(), columns_.begin() + i, columns_[i]) != columns_.begin() + i)
      throw std::invalid_argument(fmt::format("ctgraph: metrics_log: column \"{}\" is named twice", columns_[i]));
  }
  const std::string header = joined(columns_);
  std::string start = header + "\n";
  if (options.append)
    if (const auto existing = first_line(path)) {
      if (!same_columns(existing->first, columns_))
        throw std::runtime_error(fmt::format("ctgraph: metrics_log: {} has the columns {}, not {}: cannot append to it",
                                             path.string(), existing->first, header));
      start = existing->second ? "" : "\n";  // a row cut short by a stopped run stays on its own line
    }
  file_ = std::fopen(path.c_str(), options.append ? "ab" : "wb");
  if (!file_)
    throw std::runtime_error(
        fmt::format("ctgraph: metrics_log: cannot open {}: {}", path.string(), std::strerror(errno)));
  if (std::fputs(start.c_str(), file_) < 0 || std::fflush(file_) != 0) {
    const int e = errno;
    std::fclose(file_);
    file_ = nullptr;
    throw std::runtime_error(fmt::format("ctgraph: metrics_log: cannot write {}: {}", path.string(), std::strerror(e)));
  }
}

metrics_log::metrics_log(metrics_log&& other) noexcept
    : path_(std::move(other.path_)),
      columns_(std::move(other.columns_)),
      options_(other.options_),
      file_(std::exchange(other.file_, nullptr)) {}

metrics_log& metrics_log::operator=(metrics_log&& other) noexcept {
  if (this != &other) {
    if (file_) std::fclose(file_);
    path_ = std::move(other.path_);
    columns_ = std::move(other.columns_);
    options_ = other.options_;
    file_ = std::exchange(other.file_, nullptr);
  }
  return *this;
}

metrics_log::~metrics_log() {
  if (file_) std::fclose(file_);
}

void metrics_log::write(std::span<const log_value> row) {
  if (!file_) throw std::runtime_error(fmt::format("ctgraph: metrics_log: {} is closed", path_.string()));
  if (row.size() != columns_.size())
    throw std::invalid_argument(fmt::format("ctgraph: metrics_log: {} values for the {} columns {}", row.size(),
                                            columns_.size(), joined(columns_)));
  line_.clear();
  auto out = std::back_inserter(line_);
  for (std::size_t i = 0; i < row.size(); ++i) {
    if (i > 0) line_ += ',';
    std::visit(
        [&](auto v) {
          using V = decltype(v);
          if constexpr (std::is_same_v<V, std::string_view>) {
            line_ += csv_field(v);
          } else if constexpr (std::is_same_v<V, std::int64_t>) {
            fmt::format_to(out, "{}", v);
          } else if (std::isnan(v)) {
            line_ += "nan";  // never "-nan": one spelling for readers
          } else if (options_.precision > 0) {
            fmt::format_to(out, "{:.{}g}", v, options_.precision);
          } else {
            fmt::format_to(out, "{}", v);
          }
        },
        row[i].get());
  }
  line_ += '\n';
  if (std::fputs(line_.c_str(), file_) < 0 || std::fflush(file_) != 0)
    throw std::runtime_error(
        fmt::format("ctgraph: metrics_log: cannot write {}: {}", path_.string(), std::strerror(errno)));
}

void metrics_log::close() {
  if (!file_) return;
  const int r = std::fclose(std::exchange(file_, nullptr));
  if (r != 0)
    throw std::runtime_error(
        fmt::format("ctgraph: metrics_log: cannot close {}: {}", path_.string(), std::strerror(errno)));
}

// ---- progress ----

std::string short_number(double v) {
  const double a = std::fabs(v);
  return a >= 1e9   ? fmt::format("{:.2f}G", v / 1e9)
         : a >= 1e6 ? fmt::format("{:.2f}M", v / 1e6)
         : a >= 1e3 ? fmt::format("{:.1f}k", v / 1e3)
                    : fmt::format("{:.0f}", v);
}

std::string clock_time(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = std::lround(seconds);
  return s >= 3600 ? fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
                   : fmt::format("{}:{:02}", s / 60, s % 60);
}

progress::progress(long total, progress_options options) : total_(total), o_(std::move(options)) {
  if (o_.start < 0 || total < o_.start)
    throw std::invalid_argument(
        fmt::format("ctgraph: progress: start {} and total {}: need 0 <= start <= total", o_.start, total));
  if (o_.width < 1) throw std::invalid_argument(fmt::format("ctgraph: progress: width {} (need >= 1)", o_.width));
  if (o_.lines < 0) throw std::invalid_argument(fmt::format("ctgraph: progress: lines {} (need >= 0)", o_.lines));
  if (!o_.out) throw std::invalid_argument("ctgraph: progress: no output stream");
  if (!o_.clock)
    o_.clock = [] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    };
  terminal_ = o_.terminal ? *o_.terminal : ::isatty(::fileno(o_.out)) == 1;
  t0_ = o_.clock();
}

progress::~progress() {
  try {
    finish();
  } catch (...) {  // a destructor must not throw; finish() only prints a line break
  }
}

double progress::elapsed() const { return o_.clock() - t0_; }

std::string progress::text(long done, std::span<const metric> metrics, bool bar) const {
  const int digits = static_cast<int>(std::to_string(total_).size());
  std::string s = fmt::format("{} {:>{}}/{}", o_.label, done, digits, total_);
  if (bar) {
    const long filled = total_ > 0 ? done * o_.width / total_ : o_.width;
    s += fmt::format(" [{}{}]", std::string(filled, '#'), std::string(o_.width - filled, '.'));
  }
  auto out = std::back_inserter(s);
  for (const metric& m : metrics) {
    const int d = std::clamp(m.decimals, 0, 17);
    if (m.percent)
      fmt::format_to(out, "  {} {:{}.{}f}%", m.name, 100 * m.value, d + 4, d);
    else if (std::fabs(m.value) < 1e6 || !std::isfinite(m.value))
      fmt::format_to(out, "  {} {:.{}f}", m.name, m.value, d);
    else  // 1e30 in fixed notation is 31 digits
      fmt::format_to(out, "  {} {:.{}e}", m.name, m.value, d);
  }
  const long steps = done - o_.start;
  const double secs = elapsed();
  if (steps > 0 && secs > 0) {
    const bool examples = o_.examples_per_step > 0;
    fmt::format_to(out, "  {} {}/s", short_number(steps * (examples ? o_.examples_per_step : 1) / secs),
                   examples ? "ex" : "steps");
    if (done < total_) fmt::format_to(out, "  ETA {}", clock_time(secs * static_cast<double>(total_ - done) / steps));
  }
  if (done == total_) fmt::format_to(out, "  elapsed {}", clock_time(secs));
  return s;
}

void progress::update(long done, std::span<const metric> metrics) {
  if (done < o_.start || done > total_)
    throw std::invalid_argument(
        fmt::format("ctgraph: progress: step {} is outside the bar's {}..{}", done, o_.start, total_));
  const bool last = done == total_;
  if (terminal_) {
    const double now = o_.clock();
    if (drawn_ && !last && now - last_draw_ < o_.redraw_seconds) return;
    std::string line = text(done, metrics, true);
    const std::size_t width = line.size();
    if (width < last_width_) line.append(last_width_ - width, ' ');  // blank the longer line before
    fmt::print(o_.out, "\r{}", line);
    drawn_ = true;
    last_draw_ = now;
    last_width_ = width;
  } else {
    // Plain lines: the first, one each time the run crosses another 1/lines of its steps, the last.
    const long steps = total_ - o_.start;
    const long every = o_.lines > 0 ? std::max(1L, steps / o_.lines) : LONG_MAX;
    const bool first = last_printed_ < 0;
    if (!first && !last && (done - o_.start) / every <= (last_printed_ - o_.start) / every) return;
    fmt::print(o_.out, "{}\n", text(done, metrics, false));
    last_printed_ = done;
  }
  std::fflush(o_.out);
}

void progress::finish() {
  if (!terminal_ || !drawn_) return;
  drawn_ = false;
  fmt::print(o_.out, "\n");
  std::fflush(o_.out);
}

// ---- plots ----

namespace {
// A gnuplot single-quoted string: quotes doubled, control characters (which would end the
// script's line) as spaces.
std::string gnuplot_string(std::string_view text) {
  std::string r = "'";
  for (const char c : text)
    if (c == '\'')
      r += "''";
    else
      r += static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? ' ' : c;
  return r + "'";
}

// "set terminal ..." for the image's extension; then its output and the encoding of its texts.
std::string terminal(const fs::path& image, int width, int height, const char* who) {
  std::string ext = image.extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (width < 1 || height < 1)
    throw std::invalid_argument(fmt::format("ctgraph: {}: size {}x{} (need at least 1x1)", who, width, height));
  // noenhanced: texts as written ("train_loss" is not "train" with a subscript "loss").
  std::string t;
  if (ext == ".svg")
    t = fmt::format("set terminal svg size {},{} dynamic noenhanced background rgb 'white'\n", width, height);
  else if (ext == ".png")
    t = fmt::format("set terminal pngcairo size {},{} noenhanced background rgb 'white'\n", width, height);
  else
    throw std::invalid_argument(
        fmt::format("ctgraph: {}: {}: the image must end in .svg or .png", who, image.string()));
  return t + "set encoding utf8\nset output " + gnuplot_string(image.string()) + "\n";
}

std::string range(const axis_range& r, const char* axis, const char* who) {
  if (!std::isfinite(r.min) || !std::isfinite(r.max) || !(r.min < r.max))
    throw std::invalid_argument(
        fmt::format("ctgraph: {}: {} range [{}, {}] (need finite min < max)", who, axis, r.min, r.max));
  return fmt::format("set {}range [{}:{}]\n", axis, r.min, r.max);
}

// Tick labels of one heatmap axis: the given ones, or numbers from 0 (every step-th of many).
std::string ticks(const char* axis, const std::vector<std::string>& labels, int n) {
  std::string s = fmt::format("set {}tics nomirror", axis);
  if (labels.empty()) return s + fmt::format(" 0,{},{}\n", std::max(1, n / 20), n - 1);
  std::size_t longest = 0;
  for (const auto& l : labels) longest = std::max(longest, l.size());
  if (axis[0] == 'x' && longest > 3) s += " rotate by 60 right";  // long column labels would overlap
  s += " (";
  for (int i = 0; i < n; ++i) s += fmt::format("{}{} {}", i ? ", " : "", gnuplot_string(labels[i]), i);
  return s + ")\n";
}
}  // namespace

std::optional<fs::path> find_program(const std::string& program) {
  auto runnable = [](const fs::path& f) {
    std::error_code ec;
    return fs::is_regular_file(f, ec) && ::access(f.c_str(), X_OK) == 0;
  };
  if (program.empty()) return std::nullopt;
  if (program.find('/') != std::string::npos)
    return runnable(program) ? std::optional<fs::path>(program) : std::nullopt;
  const char* path = std::getenv("PATH");
  if (!path) return std::nullopt;
  const std::string_view folders = path;
  for (std::size_t start = 0; start <= folders.size();) {
    std::size_t end = folders.find(':', start);
    if (end == std::string_view::npos) end = folders.size();
    if (end > start)
      if (const fs::path f = fs::path(folders.substr(start, end - start)) / program; runnable(f)) return f;
    start = end + 1;
  }
  return std::nullopt;
}

std::string curves_script(const fs::path& csv, const curves_plot& plot, const fs::path& image) {
  constexpr const char* who = "plot_curves";
  if (plot.curves.empty()) throw std::invalid_argument("ctgraph: plot_curves: no curves");
  std::ifstream f(csv, std::ios::binary);
  std::string line;
  if (!f || !std::getline(f, line))
    throw std::runtime_error(fmt::format("ctgraph: plot_curves: cannot read the header of {}", csv.string()));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  const std::vector<std::string> header = csv_fields(line);
  auto column = [&](const std::string& name) {  // gnuplot counts columns from 1
    const auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end())
      throw std::invalid_argument(
          fmt::format("ctgraph: plot_curves: {} has no column \"{}\" (its columns: {})", csv.string(), name, line));
    return it - header.begin() + 1;
  };
  const std::string& x = plot.x.empty() ? header.front() : plot.x;
  const auto x_column = column(x);

  std::string s = terminal(image, plot.width, plot.height, who);
  s += "set datafile separator ','\nset key outside top center horizontal\nset grid\n";
  if (!plot.title.empty()) s += "set title " + gnuplot_string(plot.title) + "\n";
  s += "set xlabel " + gnuplot_string(plot.xlabel.empty() ? x : plot.xlabel) + "\n";
  if (!plot.ylabel.empty()) s += "set ylabel " + gnuplot_string(plot.ylabel) + "\n";
  if (plot.log_y) s += "set logscale y\n";
  if (plot.y_range) s += range(*plot.y_range, "y", who);
  const bool right = std::any_of(plot.curves.begin(), plot.curves.end(), [](const curve& c) { return c.right_axis; });
  if (right) {
    s += "set ytics nomirror\nset y2tics\n";
    if (!plot.y2label.empty()) s += "set y2label " + gnuplot_string(plot.y2label) + "\n";
    if (plot.y2_range) s += range(*plot.y2_range, "y2", who);
  }
  s += "plot ";
  for (std::size_t i = 0; i < plot.curves.size(); ++i) {
    const curve& c = plot.curves[i];
    s += fmt::format("{}{} using {}:{} skip 1{} with lines lw 2 title {}", i ? ", \\\n     " : "",
                     i ? std::string("''") : gnuplot_string(csv.string()), x_column, column(c.column),
                     c.right_axis ? " axes x1y2" : "", gnuplot_string(c.title.empty() ? c.column : c.title));
  }
  return s + "\n";
}

namespace {
// One heatmap's settings and data (no terminal): a whole plot, or a panel of a multiplot.
std::string heatmap_body(std::span<const double> values, const heatmap_plot& plot, const char* who) {
  const int rows = plot.rows, cols = plot.cols;
  if (rows < 1 || cols < 1)
    throw std::invalid_argument(fmt::format("ctgraph: {}: a {}x{} matrix (need at least 1x1)", who, rows, cols));
  if (values.size() != static_cast<std::size_t>(rows) * cols)
    throw std::invalid_argument(
        fmt::format("ctgraph: {}: {} values for a {}x{} matrix ({})", who, values.size(), rows, cols, rows * cols));
  auto check_labels = [who](const std::vector<std::string>& labels, int n, const char* what) {
    if (!labels.empty() && labels.size() != static_cast<std::size_t>(n))
      throw std::invalid_argument(
          fmt::format("ctgraph: {}: {} {} labels for {} {}s", who, labels.size(), what, n, what));
  };
  check_labels(plot.row_labels, rows, "row");
  check_labels(plot.col_labels, cols, "column");
  std::string s;
  s += plot.title.empty() ? "unset title\n" : "set title " + gnuplot_string(plot.title) + "\n";
  s += plot.xlabel.empty() ? "unset xlabel\n" : "set xlabel " + gnuplot_string(plot.xlabel) + "\n";
  s += plot.ylabel.empty() ? "unset ylabel\n" : "set ylabel " + gnuplot_string(plot.ylabel) + "\n";
  s += fmt::format("set xrange [-0.5:{}.5]\nset yrange [{}.5:-0.5]\n", cols - 1, rows - 1);  // row 0 on top
  s += ticks("x", plot.col_labels, cols) + ticks("y", plot.row_labels, rows);
  s += "set size ratio -1\nset tics scale 0\nunset key\n";  // square cells
  // viridis: ordered in lightness, readable in grey; NaN cells stay white, unlike any value.
  s += "set palette defined (0 '#440154', 0.25 '#3b528b', 0.5 '#21918c', 0.75 '#5ec962', 1 '#fde725')\n";
  s += plot.range ? range(*plot.range, "cb", who) : "set autoscale cb\n";
  s += "$values << EOD\n";
  auto out = std::back_inserter(s);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      const double v = values[static_cast<std::size_t>(r) * cols + c];
      if (std::isfinite(v))
        fmt::format_to(out, "{:.9g}", v);
      else
        s += "NaN";  // gnuplot leaves it blank (and warns); an infinity has no colour either
      s += c + 1 < cols ? ' ' : '\n';
    }
  // pixels: each cell a rectangle, sharp at any zoom (an embedded bitmap would be smoothed)
  return s + "EOD\nplot $values matrix with image pixels\n";
}
}  // namespace

std::string heatmap_script(std::span<const double> values, const heatmap_plot& plot, const fs::path& image) {
  // About 30 pixels a cell, with room for the labels and the colour box.
  const int width = plot.width > 0 ? plot.width : std::clamp(200 + 30 * plot.cols, 360, 2000);
  const int height = plot.height > 0 ? plot.height : std::clamp(120 + 30 * plot.rows, 240, 2000);
  const std::string body = heatmap_body(values, plot, "plot_heatmap");  // checks before the terminal's size
  return terminal(image, width, height, "plot_heatmap") + body;
}

std::string heatmaps_script(std::span<const heatmap> maps, const heatmaps_layout& layout, const fs::path& image) {
  constexpr const char* who = "plot_heatmaps";
  if (maps.empty()) throw std::invalid_argument("ctgraph: plot_heatmaps: no heatmaps");
  if (layout.columns < 1)
    throw std::invalid_argument(fmt::format("ctgraph: plot_heatmaps: {} columns (need at least 1)", layout.columns));
  const int n = static_cast<int>(maps.size()), columns = std::min(layout.columns, n),
            grid_rows = (n + columns - 1) / columns;
  std::string panels;
  int widest = 1, tallest = 1;
  for (const heatmap& m : maps) {
    panels += heatmap_body(m.values, m.plot, who);
    widest = std::max(widest, m.plot.cols), tallest = std::max(tallest, m.plot.rows);
  }
  // Each panel about as large as plot_heatmap would draw the largest one.
  const int width = layout.width > 0 ? layout.width : std::clamp(columns * (200 + 30 * widest), 360, 4000);
  const int height = layout.height > 0 ? layout.height : std::clamp(40 + grid_rows * (120 + 30 * tallest), 240, 4000);
  std::string s = terminal(image, width, height, who);
  s += fmt::format("set multiplot layout {},{}", grid_rows, columns);
  if (!layout.title.empty()) s += " title " + gnuplot_string(layout.title);
  return s + "\n" + panels + "unset multiplot\n";
}

plot_result plot_heatmaps(std::span<const heatmap> maps, const heatmaps_layout& layout, const fs::path& image,
                          const plot_options& options) {
  return run_gnuplot(heatmaps_script(maps, layout, image), image, options);
}

std::string heatmap_script(std::span<const float> values, const heatmap_plot& plot, const fs::path& image) {
  const std::vector<double> v(values.begin(), values.end());
  return heatmap_script(std::span<const double>(v), plot, image);
}

namespace {
// A file in the temporary folder, removed when it goes.
struct temp_file {
  std::string path;
  int fd = -1;
  temp_file() {
    std::error_code ec;
    path = (fs::temp_directory_path(ec) / "ctgraph_plot_XXXXXX").string();
    fd = ::mkstemp(path.data());
    if (fd < 0) path.clear();
  }
  ~temp_file() {
    if (fd >= 0) ::close(fd);
    if (!path.empty()) ::unlink(path.c_str());
  }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
};

plot_result failed(const fs::path& image, std::string why) {
  std::error_code ec;
  fs::remove(image, ec);  // a half-written image is not a plot
  return {plot_status::gnuplot_failed, fmt::format("gnuplot failed, {} not written: {}", image.string(), why)};
}
}  // namespace

plot_result run_gnuplot(const std::string& script, const fs::path& image, const plot_options& options) {
  const auto gnuplot = find_program(options.gnuplot);
  if (!gnuplot)
    return {plot_status::gnuplot_missing,
            fmt::format("{} not found{}, {} not written (Debian: apt install gnuplot-nox)", options.gnuplot,
                        options.gnuplot.find('/') == std::string::npos ? " on PATH" : "", image.string())};
  // The script goes in a file rather than down a pipe: a gnuplot that stops early cannot then
  // kill this process with SIGPIPE. Its output goes to a second file, quoted when it fails.
  temp_file script_file, log_file;
  if (script_file.fd < 0 || log_file.fd < 0) return failed(image, "cannot create a temporary file");
  for (std::size_t done = 0; done < script.size();) {
    const ssize_t n = ::write(script_file.fd, script.data() + done, script.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return failed(image, fmt::format("cannot write its script: {}", std::strerror(errno)));
    done += static_cast<std::size_t>(n);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, log_file.fd, 1);
  posix_spawn_file_actions_adddup2(&actions, log_file.fd, 2);
  std::string arg0 = "gnuplot";
  char* argv[] = {arg0.data(), script_file.path.data(), nullptr};
  pid_t pid = 0;
  const int spawned = ::posix_spawn(&pid, gnuplot->c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) return failed(image, fmt::format("cannot run {}: {}", gnuplot->string(), std::strerror(spawned)));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return failed(image, fmt::format("waitpid: {}", std::strerror(errno)));
  std::error_code ec;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && fs::exists(image, ec)) return {plot_status::written, {}};

  std::ifstream log(log_file.path, std::ios::binary);
  std::string said(std::istreambuf_iterator<char>(log), {});
  while (!said.empty() && std::isspace(static_cast<unsigned char>(said.back()))) said.pop_back();
  if (said.size() > 600) said = "..." + said.substr(said.size() - 600);  // its last errors
  const std::string how = WIFEXITED(status)     ? fmt::format("exit code {}", WEXITSTATUS(status))
                          : WIFSIGNALED(status) ? fmt::format("signal {}", WTERMSIG(status))
                                                : std::string("stopped");
  return failed(image, said.empty() ? how : fmt::format("{}:\n{}", how, said));
}

plot_result plot_curves(const fs::path& csv, const curves_plot& plot, const fs::path& image,
                        const plot_options& options) {
  return run_gnuplot(curves_script(csv, plot, image), image, options);
}

plot_result plot_heatmap(std::span<const double> values, const heatmap_plot& plot, const fs::path& image,
                         const plot_options& options) {
  return run_gnuplot(heatmap_script(values, plot, image), image, options);
}

plot_result plot_heatmap(std::span<const float> values, const heatmap_plot& plot, const fs::path& image,
                         const plot_options& options) {
  return run_gnuplot(heatmap_script(values, plot, image), image, options);
}

}  // namespace ctgraph
