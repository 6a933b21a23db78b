// ctgraph/train/progress.hpp: a progress bar with examples per second, metrics and ETA.
//
//   cg::progress bar(epochs, {.label = "epoch", .examples_per_step = n_train});
//   for (int epoch = 1; epoch <= epochs; ++epoch) {
//     ...
//     bar.update(epoch, {cg::metric("loss", loss), cg::percent("held-out", acc)});
//   }
//   bar.finish();
//
// On a terminal one line is redrawn in place (at most every redraw_seconds, and always at the
// end), then ended by finish():
//
//   epoch 151/300 [###############...............] loss 0.0412  held-out  98.3%  12.3k ex/s  ETA 0:03
//
// Elsewhere (a file, a pipe, a CI log) it prints plain lines: the first update, about `lines`
// more spread over the run, and the last:
//
//   epoch 151/300  loss 0.0412  held-out  98.3%  12.3k ex/s  ETA 0:03
//
// Rates and the ETA count only this run's steps, from start (the steps a resumed run had done)
// to the current one, over the seconds since the bar was made, read from options.clock.
#pragma once
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace ctgraph {

/// One named value shown by progress::update: `name value`, with `decimals` digits after the
/// point, as a percentage of a fraction when `percent`.
struct metric {
  std::string_view name;  ///< shown before the value ("loss")
  double value;           ///< the value (a fraction when percent)
  int decimals = 4;       ///< digits after the decimal point
  bool percent = false;   ///< show 100 * value with a % sign, in a fixed width

  /// `name value`, e.g. metric("loss", 0.0412) shows "loss 0.0412".
  metric(std::string_view name, double value, int decimals = 4) : name(name), value(value), decimals(decimals) {}
};
/// A fraction shown as a percentage: percent("held-out", 0.983) shows "held-out  98.3%".
inline metric percent(std::string_view name, double fraction, int decimals = 1) {
  metric m(name, fraction, decimals);
  m.percent = true;
  return m;
}

/// Options of progress.
struct progress_options {
  std::string label = "step";          ///< what a step is called, shown before "done/total"
  long start = 0;                      ///< steps done before this run (a resumed run's)
  double examples_per_step = 0;        ///< examples per step, for "ex/s" (0: "steps/s" instead)
  int width = 30;                      ///< characters of the bar, on a terminal
  int lines = 10;                      ///< plain lines besides the first and the last, elsewhere
  double redraw_seconds = 0.05;        ///< least time between redraws, on a terminal
  std::FILE* out = stdout;             ///< where it prints
  std::optional<bool> terminal = {};   ///< draw a bar (true) or plain lines; default: whether out is a terminal
  std::function<double()> clock = {};  ///< seconds from any origin; default: std::chrono::steady_clock
};

/// A progress bar over steps start+1 .. total (epochs, batches, ...); see the file's comment.
class progress {
 public:
  /// A bar up to step `total`, its clock started now.
  /// @throws std::invalid_argument if start < 0, total < start, width < 1 or lines < 0
  explicit progress(long total, progress_options options = {});
  progress(const progress&) = delete;
  progress& operator=(const progress&) = delete;
  /// Calls finish() (errors ignored).
  ~progress();

  /// Shows that step `done` has been reached, with `metrics` after the count.
  /// @throws std::invalid_argument if done is not in [start, total]
  void update(long done, std::span<const metric> metrics);
  /// update(done, metrics) for `bar.update(epoch, {cg::metric("loss", loss)})`.
  void update(long done, std::initializer_list<metric> metrics = {}) {
    update(done, std::span<const metric>(metrics.begin(), metrics.size()));
  }
  /// Ends a terminal's bar with a line break, so that what is printed next starts on a line of
  /// its own; prints nothing elsewhere. Calling it twice, or with no update, does nothing.
  void finish();

  /// Seconds since the bar was made, by its clock.
  double elapsed() const;
  /// Whether it draws a bar (on a terminal) rather than plain lines.
  bool terminal() const noexcept { return terminal_; }

 private:
  std::string text(long done, std::span<const metric> metrics, bool bar) const;

  long total_;
  progress_options o_;
  bool terminal_;
  double t0_;
  bool drawn_ = false;          // a terminal line is open (not yet ended by finish)
  double last_draw_ = 0;        // when the terminal line was last drawn
  std::size_t last_width_ = 0;  // its length, to blank what a shorter line leaves
  long last_printed_ = -1;      // the step of the last plain line
};

/// 1234.5 as "1.2k", 2.5e6 as "2.50M", 12.3 as "12": a rate short enough for a progress line.
std::string short_number(double v);
/// Seconds as "m:ss" or "h:mm:ss" (rounded to the second): 83.4 as "1:23", 3723 as "1:02:03".
std::string clock_time(double seconds);

}  // namespace ctgraph
