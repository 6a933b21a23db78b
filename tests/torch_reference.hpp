// tests/torch_reference.hpp: reading the PyTorch reference cases that tests/torch/*.py write (safetensors, F64
// tensors under torch's names; see tests/torch/README.md), and comparing against them. CTest passes the
// directory in CTGRAPH_NN_REFERENCE; without it (no python3 with torch at configure time, or a test binary run
// by hand) a parity case passes with a warning that says why.
#pragma once
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <ctgraph/ctgraph.hpp>
#include <filesystem>
#include <initializer_list>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace torch_reference {
namespace cg = ctgraph;

/// The file of reference case `name`, or an empty path (and a warning) when there is no reference data.
inline std::filesystem::path reference_case(const std::string& name) {
  const char* dir = std::getenv("CTGRAPH_NN_REFERENCE");
  if (!dir || !*dir) {
    WARN(
        "skipped: CTGRAPH_NN_REFERENCE is not set: no python3 with torch at configure time "
        "(CTGRAPH_TORCH_PYTHON), or the test binary was run by hand");
    return {};
  }
  std::filesystem::path p = std::filesystem::path(dir) / (name + ".safetensors");
  REQUIRE(std::filesystem::exists(p));
  return p;
}
/// Tensor `name` of a reference file (F64), of the given dims.
inline std::vector<double> tensor(const std::filesystem::path& file, const std::string& name, std::vector<int> dims) {
  long n = 1;
  for (int d : dims) n *= d;
  std::vector<double> v(static_cast<std::size_t>(n));
  const cg::tensor_ref r{name, cg::dtype::f64, dims, v.data()};
  cg::load_tensors(std::span<const cg::tensor_ref>(&r, 1), file, {.allow_extra_tensors = true});
  return v;
}
inline std::vector<double> tensor(const std::filesystem::path& file, const std::string& name, const cg::shape& s) {
  return tensor(file, name, std::vector<int>(s.d, s.d + s.rank));
}
inline std::vector<double> tensor(const std::filesystem::path& file, const std::string& name,
                                  std::initializer_list<int> dims) {
  return tensor(file, name, std::vector<int>(dims));
}
/// An I32 tensor [n] (lengths).
inline std::vector<int> int_tensor(const std::filesystem::path& file, const std::string& name, int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  const int dims[] = {n};
  const cg::tensor_ref r{name, cg::dtype::i32, dims, v.data()};
  cg::load_tensors(std::span<const cg::tensor_ref>(&r, 1), file, {.allow_extra_tensors = true});
  return v;
}
/// The values as element type T.
template <class T>
std::vector<T> as(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}
/// Copies reference values into a param's view.
template <class V>
void load_into(V v, const std::vector<double>& from) {
  REQUIRE(static_cast<std::size_t>(v.size()) == from.size());
  for (std::size_t i = 0; i < from.size(); ++i)
    v.data()[i] = static_cast<std::remove_reference_t<decltype(*v.data())>>(from[i]);
}
inline double rel(double a, double b, double floor) { return std::abs(a - b) / std::max(std::abs(b), floor); }
/// The largest relative error of a against b, with a floor; normwise: the floor is at least b's largest
/// magnitude (float: rounding relative to the tensor's scale, not to each element's).
template <class A, class Bv>
double worst(const A& a, const Bv& b, double floor, bool normwise = false) {
  REQUIRE(static_cast<std::size_t>(a.size()) == static_cast<std::size_t>(b.size()));
  if (normwise)
    for (std::size_t i = 0; i < static_cast<std::size_t>(b.size()); ++i) floor = std::max(floor, std::abs(b.data()[i]));
  double w = 0;
  for (std::size_t i = 0; i < static_cast<std::size_t>(b.size()); ++i)
    w = std::max(w, rel(static_cast<double>(a.data()[i]), static_cast<double>(b.data()[i]), floor));
  return w;
}
}  // namespace torch_reference
