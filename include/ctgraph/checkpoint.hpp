// ctgraph/checkpoint.hpp: parameter sets to and from safetensors files.
//
//   cg::save(params, "model.safetensors");   // atomic: a unique temporary, fsync, rename
//   cg::load(params, "model.safetensors");   // every param present, same dtype and shape
//
// The format (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
// length N, N bytes of JSON {"name": {"dtype": "F32", "shape": [3, 4], "data_offsets":
// [begin, end]}, ..., "__metadata__": {"key": "value"}} (padded with spaces), then the
// raw little-endian data, offsets counted from the data's start. Names are the params'
// names, which follow PyTorch's state_dict: a file saved here loads with
// safetensors.torch.load_file, and a state_dict saved there loads here.
//
// Errors are cg::checkpoint_error (a std::runtime_error) whose message names the file and
// the problem. load() checks the whole header (every entry's dtype, shape and offsets,
// against each other and against the file's size) before it writes any param; only a read
// failure after those checks can leave the params partly loaded.
#pragma once
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "graph/base.hpp"

namespace ctgraph {

template <class Program>
class parameters;

/// What save() and load() throw: the message names the file and the problem.
class checkpoint_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One tensor of a checkpoint, for save_tensors() and load_tensors(): its name, element
/// type (stored as F32, F64 or I32), row-major dims and data (read by save, written by load).
struct tensor_ref {
  std::string_view name;      ///< the tensor's name in the file (a state_dict key)
  dtype type;                 ///< element type
  std::span<const int> dims;  ///< row-major dimensions; empty for a scalar
  void* data;                 ///< product(dims) elements of `type`
};

/// The optional "__metadata__" of a safetensors header: string keys and values, in order.
using checkpoint_metadata = std::vector<std::pair<std::string, std::string>>;

/// Options of load().
struct load_options {
  /// Ignore tensors of the file that the parameter set does not have (default: an error naming them).
  bool allow_extra_tensors = false;
};

/// Writes `tensors` to a safetensors file at `path`, atomically: to a unique temporary
/// beside it, flushed to disk, then renamed over `path`, and the directory flushed.
/// @param tensors  the tensors to save, in file order; names unique and not "__metadata__"
/// @param path     the file to write (replaced if it exists)
/// @param metadata stored as the header's "__metadata__" when not empty
/// @throws checkpoint_error on a bad name or an I/O error (the temporary is removed)
void save_tensors(std::span<const tensor_ref> tensors, const std::filesystem::path& path,
                  const checkpoint_metadata& metadata = {});

/// Reads the tensors of a safetensors file into `tensors` (matched by name), after checking
/// the header: every tensor present with the same dtype and dims, offsets inside the data
/// and not overlapping, byte counts matching, and no other tensor unless options allow it.
/// @param tensors where each tensor goes
/// @param path    the file to read
/// @param options see load_options
/// @throws checkpoint_error naming the file and the first problem found
void load_tensors(std::span<const tensor_ref> tensors, const std::filesystem::path& path,
                  const load_options& options = {});

/// The "__metadata__" of a safetensors file (empty if it has none).
/// @param path the file to read
/// @throws checkpoint_error if the file or its header is malformed
checkpoint_metadata load_metadata(const std::filesystem::path& path);

namespace detail {
// One tensor_ref per param of the set, in the set's order.
template <class P>
std::vector<tensor_ref> tensor_refs(const parameters<P>& params) {
  std::vector<tensor_ref> r;
  r.reserve(parameters<P>::count);
  for (std::size_t k = 0; k < parameters<P>::count; ++k) {
    const auto& e = parameters<P>::entries[k];
    // save() only reads through data; load() passes a mutable set.
    r.push_back({e.name, e.type, std::span<const int>(e.s.d, static_cast<std::size_t>(e.s.rank)),
                 const_cast<void*>(params.ptr(k))});
  }
  return r;
}
}  // namespace detail

/// Saves every param of `params` under its name to the safetensors file `path`, atomically.
/// @param params   the parameter set to save
/// @param path     the file to write (replaced if it exists)
/// @param metadata optional "__metadata__" key/value pairs
/// @throws checkpoint_error on an I/O error
template <class P>
void save(const parameters<P>& params, const std::filesystem::path& path, const checkpoint_metadata& metadata = {}) {
  const auto refs = detail::tensor_refs(params);
  save_tensors(refs, path, metadata);
}

/// Loads every param of `params` from the safetensors file `path`; see load_tensors().
/// @param params  the parameter set to fill
/// @param path    the file to read
/// @param options see load_options
/// @throws checkpoint_error on a missing tensor, another dtype or shape, an unexpected
///         tensor, a malformed or truncated file
template <class P>
void load(parameters<P>& params, const std::filesystem::path& path, const load_options& options = {}) {
  const auto refs = detail::tensor_refs(params);
  load_tensors(refs, path, options);
}

}  // namespace ctgraph
