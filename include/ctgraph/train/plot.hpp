// ctgraph/train/plot.hpp: plots through gnuplot, when it is installed: curves of a metrics log,
// and heatmaps of a matrix with labelled rows and columns (attention weights, confusion matrices).
//
//   cg::plot_curves("run/loss.csv", {.curves = {{"train_loss"}, {"heldout_acc", "held-out", true}},
//                                    .log_y = true}, "run/loss.svg");
//   cg::plot_heatmap(weights, {.rows = 4, .cols = 5, .row_labels = {...}, .col_labels = {...}},
//                    "run/attention.svg");
//   cg::plot_heatmaps(maps, {.columns = 2}, "run/attention.svg");   // several, side by side
//
// Each plot is a gnuplot script (curves_script(), heatmap_script(): the text, to test or to keep)
// run by gnuplot. The image's format is its extension's: .svg, or .png (pngcairo). A missing
// gnuplot, or one that fails, is not an error: the result says so, for a note to the user, and no
// image is left behind. Bad input (an unknown column, label counts that do not match the matrix)
// throws std::invalid_argument before gnuplot runs.
//
// Texts (titles, labels) are shown as written: no gnuplot markup ("train_loss" keeps its
// underscore), line breaks and other control characters shown as spaces. NaN and infinities are
// skipped in curves and left blank (background colour) in heatmaps.
#pragma once
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace ctgraph {

/// A closed range of an axis.
struct axis_range {
  double min = 0;  ///< the lowest value shown
  double max = 1;  ///< the highest value shown
};

/// One curve of plot_curves: a column of the CSV against its x column.
struct curve {
  std::string column = {};  ///< the column's name in the CSV header
  std::string title = {};   ///< its key entry (default: the column's name)
  bool right_axis = false;  ///< against the right-hand y axis (y2), e.g. accuracies beside a loss
};

/// What plot_curves draws.
struct curves_plot {
  std::string x = {};                       ///< the x column's name (default: the first column)
  std::vector<curve> curves = {};           ///< at least one
  std::string title = {};                   ///< above the plot (default: none)
  std::string xlabel = {};                  ///< default: the x column's name
  std::string ylabel = {};                  ///< the left y axis's label
  std::string y2label = {};                 ///< the right y axis's label, when a curve uses it
  bool log_y = false;                       ///< a logarithmic left y axis (losses)
  std::optional<axis_range> y_range = {};   ///< default: fitted to the data
  std::optional<axis_range> y2_range = {};  ///< default: fitted to the data
  int width = 800;                          ///< pixels
  int height = 480;                         ///< pixels
};

/// What plot_heatmap draws: a rows x cols matrix, row 0 at the top, column 0 on the left.
struct heatmap_plot {
  int rows = 0;                              ///< the matrix's rows
  int cols = 0;                              ///< the matrix's columns
  std::vector<std::string> row_labels = {};  ///< one per row, on the left (empty: numbered from 0)
  std::vector<std::string> col_labels = {};  ///< one per column, below (empty: numbered from 0)
  std::string title = {};                    ///< above the plot (default: none)
  std::string xlabel = {};                   ///< below the column labels
  std::string ylabel = {};                   ///< left of the row labels
  std::optional<axis_range> range = {};      ///< the colour scale's range (default: the values')
  int width = 0;                             ///< pixels (0: from the number of columns)
  int height = 0;                            ///< pixels (0: from the number of rows)
};

/// How a plot went.
enum class plot_status {
  written,          ///< the image is written
  gnuplot_missing,  ///< gnuplot is not installed (not on PATH): nothing written
  gnuplot_failed,   ///< gnuplot ran and failed: nothing written
};

/// The result of plot_curves() and plot_heatmap(): true when the image is written.
struct plot_result {
  plot_status status = plot_status::written;  ///< what happened
  std::string message = {};                   ///< why no image was written, for the user (empty when written)
  /// Whether the image is written.
  explicit operator bool() const noexcept { return status == plot_status::written; }
};

/// Options of plot_curves() and plot_heatmap().
struct plot_options {
  /// The gnuplot to run: a name looked up on PATH, or a path (containing a '/').
  std::string gnuplot = "gnuplot";
};

/// The gnuplot script that draws `plot` of the CSV file `csv` (a metrics_log) into `image`.
/// @throws std::invalid_argument on no curves, a column the CSV's header lacks, a size below 1 or
///         an image whose extension is neither .svg nor .png
/// @throws std::runtime_error if the CSV cannot be read
std::string curves_script(const std::filesystem::path& csv, const curves_plot& plot,
                          const std::filesystem::path& image);
/// Draws `plot` of the CSV file `csv` into `image` through gnuplot (see curves_script()).
/// @throws what curves_script() throws; a missing or failing gnuplot is reported in the result
plot_result plot_curves(const std::filesystem::path& csv, const curves_plot& plot, const std::filesystem::path& image,
                        const plot_options& options = {});

/// The gnuplot script that draws `values` (row-major, plot.rows x plot.cols) as a heatmap into
/// `image`; the values are written into the script.
/// @throws std::invalid_argument if rows or cols is below 1, values.size() is not rows * cols, a
///         label list is neither empty nor one per row (column), or the image's extension is
///         neither .svg nor .png
std::string heatmap_script(std::span<const double> values, const heatmap_plot& plot,
                           const std::filesystem::path& image);
/// heatmap_script() of float values (an attention weights' view, say).
std::string heatmap_script(std::span<const float> values, const heatmap_plot& plot, const std::filesystem::path& image);
/// Draws `values` as a heatmap into `image` through gnuplot (see heatmap_script()).
/// @throws what heatmap_script() throws; a missing or failing gnuplot is reported in the result
plot_result plot_heatmap(std::span<const double> values, const heatmap_plot& plot, const std::filesystem::path& image,
                         const plot_options& options = {});
/// plot_heatmap() of float values.
plot_result plot_heatmap(std::span<const float> values, const heatmap_plot& plot, const std::filesystem::path& image,
                         const plot_options& options = {});

/// One panel of plot_heatmaps(): a matrix and how to draw it.
struct heatmap {
  std::vector<double> values = {};  ///< row-major, plot.rows x plot.cols
  heatmap_plot plot = {};           ///< its size, labels, title and colour range (its width and height are unused)
};

/// How plot_heatmaps() lays out its panels: in rows of `columns`, the first on the top left.
struct heatmaps_layout {
  int columns = 2;         ///< panels per row
  std::string title = {};  ///< above all panels (default: none)
  int width = 0;           ///< pixels of the whole image (0: from the panels' columns)
  int height = 0;          ///< pixels of the whole image (0: from the panels' rows)
};

/// The gnuplot script that draws `maps` side by side (a multiplot) into `image`.
/// @throws std::invalid_argument if `maps` is empty, columns is below 1, or a panel is wrong as
///         heatmap_script() says
std::string heatmaps_script(std::span<const heatmap> maps, const heatmaps_layout& layout,
                            const std::filesystem::path& image);
/// Draws `maps` side by side into `image` through gnuplot (attention weights of a few examples, say).
/// @throws what heatmaps_script() throws; a missing or failing gnuplot is reported in the result
plot_result plot_heatmaps(std::span<const heatmap> maps, const heatmaps_layout& layout,
                          const std::filesystem::path& image, const plot_options& options = {});

/// Runs gnuplot on `script` (as curves_script() makes it) and reports how it went; when it fails,
/// `image` (the script's output) is removed, and the message quotes gnuplot's errors.
plot_result run_gnuplot(const std::string& script, const std::filesystem::path& image,
                        const plot_options& options = {});

/// The executable `program` in a folder of $PATH, or `program` itself if it contains a '/' and is
/// executable; nothing if there is none.
std::optional<std::filesystem::path> find_program(const std::string& program);

}  // namespace ctgraph
