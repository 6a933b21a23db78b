// ctgraph/checkpoint.hpp: parameter sets to and from safetensors files.
//
//   cg::save(params, "model.safetensors");   // atomic: a unique temporary, fsync, rename
//   cg::load(params, "model.safetensors");   // every param present, same dtype and shape
//
//   cg::save(params, opt, "ckpt.safetensors", {{"epoch", "7"}});  // params + optimizer state
//   cg::load(params, opt, "ckpt.safetensors");                    // resume bit for bit
//
// The format (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
// length N, N bytes of JSON {"name": {"dtype": "F32", "shape": [3, 4], "data_offsets":
// [begin, end]}, ..., "__metadata__": {"key": "value"}} (padded with spaces), then the
// raw little-endian data, offsets counted from the data's start. Names are the params'
// names, which follow PyTorch's state_dict: a file saved here loads with
// safetensors.torch.load_file, and a state_dict saved there loads here.
//
// With an optimizer, the same file also holds the optimizer's state (see for_each_state() in
// ctgraph/optim.hpp) under names that start with "optimizer.": "optimizer.fc1.weight.exp_avg",
// "optimizer.fc1.weight.step", ... It stays a valid state_dict file: in PyTorch,
// {k: v for k, v in load_file(f).items() if not k.startswith("optimizer.")} are the params.
// Here, load(params, path) ignores the tensors under "optimizer." (so that a checkpoint
// with optimizer state still loads as weights only), while load(params, opt, path) requires
// every param and every state tensor of the optimizer and nothing else.
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

namespace detail {
// A callable of the form for_each_state() calls, to check that an optimizer has one.
struct state_visitor_archetype {
  void operator()(std::string, dtype, std::span<const int>, const void*) const;
};
}  // namespace detail

/// An optimizer whose state can be saved and loaded: cg::sgd, cg::adam, cg::adamw, or any
/// type with `for_each_state(f)` calling f(std::string name, dtype type, std::span<const int>
/// dims, void* data) per state tensor (a const object passing const void*), names starting
/// with "optimizer.".
template <class O>
concept optimizer_with_state = requires(const O& o, detail::state_visitor_archetype f) {
  o.for_each_state(f);
};

/// The prefix of the names of optimizer-state tensors in a checkpoint (see save(params, opt, path)).
inline constexpr std::string_view optimizer_state_prefix = "optimizer.";

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
  /// Ignore tensors of the file that the parameter set (and, for load(params, opt, path),
  /// the optimizer) does not have (default: an error naming them). load(params, path)
  /// ignores tensors named "optimizer.*" either way.
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
// load_tensors(), not counting the file's tensors whose names start with `ignored_prefix`
// (when not empty) as extra.
void load_tensors_ignoring(std::span<const tensor_ref> tensors, const std::filesystem::path& path,
                           const load_options& options, std::string_view ignored_prefix);

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

// The tensor_refs of the params, then those of the optimizer's state; `names` holds the
// state's names (the refs view them).
template <class P, class Opt>
std::vector<tensor_ref> tensor_refs(const parameters<P>& params, const Opt& opt, std::vector<std::string>& names) {
  std::vector<tensor_ref> r = tensor_refs(params);
  struct state {
    dtype type;
    std::span<const int> dims;
    const void* data;
  };
  std::vector<state> states;
  opt.for_each_state([&](std::string name, dtype type, std::span<const int> dims, const void* data) {
    names.push_back(std::move(name));
    states.push_back({type, dims, data});
  });
  for (std::size_t k = 0; k < states.size(); ++k)
    // save() only reads through data; load() passes a mutable optimizer.
    r.push_back({names[k], states[k].type, states[k].dims, const_cast<void*>(states[k].data)});
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
/// Tensors named "optimizer.*" (optimizer state, saved by save(params, opt, path)) are
/// ignored: a checkpoint with optimizer state loads as weights only.
/// @param params  the parameter set to fill
/// @param path    the file to read
/// @param options see load_options
/// @throws checkpoint_error on a missing tensor, another dtype or shape, an unexpected
///         tensor, a malformed or truncated file
template <class P>
void load(parameters<P>& params, const std::filesystem::path& path, const load_options& options = {}) {
  const auto refs = detail::tensor_refs(params);
  detail::load_tensors_ignoring(refs, path, options, optimizer_state_prefix);
}

/// Saves every param of `params` under its name and the state of `opt` (see its
/// for_each_state(), names "optimizer.<param>.<key>") to the one safetensors file `path`,
/// atomically, as save_tensors(): a run that loads it with load(params, opt, path) continues
/// bit for bit as if it had not stopped. The optimizer's hyper-parameters are not saved.
/// @param params   the parameter set to save
/// @param opt      the optimizer of `params` (cg::sgd, cg::adam, cg::adamw)
/// @param path     the file to write (replaced if it exists)
/// @param metadata optional "__metadata__" key/value pairs (e.g. the epoch)
/// @throws checkpoint_error on an I/O error, or a param named like a state tensor
template <class P, optimizer_with_state Opt>
void save(const parameters<P>& params, const Opt& opt, const std::filesystem::path& path,
          const checkpoint_metadata& metadata = {}) {
  std::vector<std::string> names;
  const auto refs = detail::tensor_refs(params, opt, names);
  save_tensors(refs, path, metadata);
}

/// Loads every param of `params` and the state of `opt` from the safetensors file `path`,
/// as written by save(params, opt, path); see load_tensors(). The header is checked whole
/// before anything is written, against the params and the state `opt` has: the same kind
/// of optimizer, with the same state-shaping options (sgd's momentum != 0, amsgrad), over
/// a parameter set of the same names, dtypes and shapes.
/// @param params  the parameter set to fill
/// @param opt     the optimizer whose state to fill (its hyper-parameters are kept)
/// @param path    the file to read
/// @param options see load_options
/// @throws checkpoint_error on a missing tensor (e.g. missing tensor
///         optimizer.fc1.weight.step for a file saved without optimizer state, or by
///         another optimizer), another dtype or shape, an unexpected tensor, a malformed or
///         truncated file
template <class P, optimizer_with_state Opt>
void load(parameters<P>& params, Opt& opt, const std::filesystem::path& path, const load_options& options = {}) {
  std::vector<std::string> names;
  const auto refs = detail::tensor_refs(params, std::as_const(opt), names);
  load_tensors(refs, path, options);
}

}  // namespace ctgraph
