// tests/fuzz/checkpoint_fuzz.cpp: a libFuzzer target over checkpoint loading (src/checkpoint.cpp).
//
// Each input is written as a whole file and loaded through every entry point: load_tensors()
// with a fixed set of tensors (names, dtypes and shapes of the seeds in corpus/checkpoint/),
// with and without allow_extra_tensors, with a subset and with no tensor; the call cg::load()
// makes (ignoring "optimizer.*"); load_metadata(). A checkpoint_error is an expected outcome;
// anything else is a bug reported with __builtin_trap() (libFuzzer saves the input):
// - another exception type, a crash, a sanitizer report, a hang;
// - an error whose message does not start with 'ctgraph: checkpoint "<path>": ';
// - an error after which a destination buffer changed: load() checks the whole header before
//   it writes (ctgraph/checkpoint.hpp), and the file here cannot change under it, so the
//   "only a read failure after those checks" exception cannot happen;
// - a load that succeeds although the header, read here on its own with nlohmann-json, does
//   not hold each tensor with its dtype and shape (or holds others, when they are not
//   allowed), or with buffers that differ from the file's bytes at the tensor's offsets;
// - outcomes that contradict each other (a load succeeds but load_metadata() fails, the
//   full set loads but a subset of it does not).
// Build and run: tests/fuzz/run_fuzz.sh BUILD_DIR SECONDS (see tests/fuzz/README.md).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctgraph/checkpoint.hpp>
#include <exception>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cg = ctgraph;

namespace {

[[noreturn]] void bug(const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "checkpoint_fuzz: BUG: %s%s%s\n", what, detail.empty() ? "" : ": ", detail.c_str());
  std::fflush(stderr);
  __builtin_trap();
}

// The file every input is written to: a memfd, opened again by its /proc/self/fd path (a
// regular file that never touches the disk), else a per-process file in /tmp.
struct input_file {
  int fd = -1;
  std::string path;
  bool remove = false;
  input_file() {
    fd = ::memfd_create("ctgraph_checkpoint_fuzz", MFD_CLOEXEC);
    if (fd >= 0) {
      path = "/proc/self/fd/" + std::to_string(fd);
      if (::access(path.c_str(), R_OK) == 0) return;
      ::close(fd);
    }
    path = "/tmp/ctgraph_checkpoint_fuzz." + std::to_string(::getpid()) + ".safetensors";
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) bug("cannot create the input file", path);
    remove = true;
  }
  ~input_file() {
    if (remove) ::unlink(path.c_str());
  }
  void write(const std::uint8_t* data, std::size_t size) const {
    if (::ftruncate(fd, 0) != 0) bug("ftruncate failed");
    std::size_t done = 0;
    while (done < size) {
      const ssize_t r = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
      if (r <= 0) bug("pwrite failed");
      done += static_cast<std::size_t>(r);
    }
  }
};

// The tensors loaded: names, dtypes and shapes of the seeds (tests/fuzz/make_seeds.py).
constexpr std::array<int, 2> w_dims{2, 3};
constexpr std::array<int, 1> b_dims{3};
constexpr std::array<int, 2> e_dims{0, 4};
struct spec {
  const char* name;
  cg::dtype type;
  std::span<const int> dims;
};
constexpr std::array<spec, 4> specs{{
    {"w", cg::dtype::f32, w_dims},  // 24 bytes
    {"b", cg::dtype::f64, b_dims},  // 24 bytes
    {"n", cg::dtype::i32, {}},      // a scalar, 4 bytes
    {"e", cg::dtype::f32, e_dims},  // no element
}};

std::size_t bytes_of(const spec& s) {
  std::size_t n = cg::dtype_size(s.type);
  for (int d : s.dims) n *= static_cast<std::size_t>(d);
  return n;
}
const char* code_of(cg::dtype t) { return t == cg::dtype::f32 ? "F32" : t == cg::dtype::f64 ? "F64" : "I32"; }

// Destination buffers, filled with a pattern before each call so that any write shows.
struct buffers {
  std::array<std::vector<unsigned char>, specs.size()> data;
  buffers() {
    for (std::size_t k = 0; k < specs.size(); ++k) data[k].resize(bytes_of(specs[k]) + 1);  // never empty
  }
  void poison() {
    for (auto& d : data)
      for (std::size_t i = 0; i < d.size(); ++i) d[i] = static_cast<unsigned char>(0xa5 ^ i);
  }
  bool poisoned() const {
    for (const auto& d : data)
      for (std::size_t i = 0; i < d.size(); ++i)
        if (d[i] != static_cast<unsigned char>(0xa5 ^ i)) return false;
    return true;
  }
  std::vector<cg::tensor_ref> refs(std::initializer_list<std::size_t> which) {
    std::vector<cg::tensor_ref> r;
    for (std::size_t k : which) r.push_back({specs[k].name, specs[k].type, specs[k].dims, data[k].data()});
    return r;
  }
};

// The header of the input, parsed here independently of src/checkpoint.cpp, and only after
// a successful load: json::parse itself overflows the stack on deeply nested input, which
// src/checkpoint.cpp rejects.
class oracle {
 public:
  oracle(const std::uint8_t* data, std::size_t n) : file_(data), size_(n) {}

  const nlohmann::ordered_json& header() {
    if (parsed_) return header_;
    parsed_ = true;
    if (size_ < 8) return header_;
    std::uint64_t len = 0;
    for (int k = 7; k >= 0; --k) len = len << 8 | file_[k];
    if (len > size_ - 8) return header_;
    data_start_ = 8 + len;
    header_ = nlohmann::ordered_json::parse(file_ + 8, file_ + data_start_, nullptr, /*allow_exceptions=*/false);
    return header_;
  }

  // After a successful load of `which` into `bufs`: the header holds each with its dtype
  // and shape, its bytes are the buffer's, and no other tensor unless `extra_ok` (or it
  // starts with `ignored`).
  void check_loaded(const char* call, const buffers& bufs, std::initializer_list<std::size_t> which, bool extra_ok,
                    std::string_view ignored = {}) {
    const std::string c = call;
    const auto& header = this->header();
    if (!header.is_object()) bug("a load succeeded on a header that is not a JSON object", c);
    for (std::size_t k : which) {
      const spec& s = specs[k];
      const auto it = header.find(s.name);
      if (it == header.end()) bug("a load succeeded without the tensor in the header", c + ": " + s.name);
      const auto& v = *it;
      const auto dt = v.is_object() ? v.find("dtype") : v.end();
      if (dt == v.end() || !dt->is_string() || dt->get<std::string>() != code_of(s.type))
        bug("a load succeeded with another dtype", c + ": " + s.name);
      const auto sh = v.find("shape");
      if (sh == v.end() || !sh->is_array() || sh->size() != s.dims.size())
        bug("a load succeeded with another rank", c + ": " + s.name);
      for (std::size_t i = 0; i < s.dims.size(); ++i)
        if (!(*sh)[i].is_number_integer() || (*sh)[i].get<std::int64_t>() != s.dims[i])
          bug("a load succeeded with another shape", c + ": " + s.name);
      const auto off = v.find("data_offsets");
      // A non-negative integer, as the loader reads one: JSON's -0 is a signed integer 0.
      auto offset = [](const nlohmann::json& j) {
        return j.is_number_unsigned() || (j.is_number_integer() && j.get<std::int64_t>() >= 0);
      };
      if (off == v.end() || !off->is_array() || off->size() != 2 || !offset((*off)[0]) || !offset((*off)[1]))
        bug("a load succeeded without two data_offsets", c + ": " + s.name);
      const auto begin = static_cast<std::uint64_t>((*off)[0].get<std::int64_t>()),
                 end = static_cast<std::uint64_t>((*off)[1].get<std::int64_t>());
      const std::size_t n = bytes_of(s);
      if (end < begin || end - begin != n || end > size_ - data_start_)
        bug("a load succeeded with offsets that do not fit", c + ": " + s.name);
      if (n != 0 && std::memcmp(bufs.data[k].data(), file_ + data_start_ + begin, n) != 0)
        bug("a load succeeded but the buffer is not the file's bytes", c + ": " + s.name);
      if (bufs.data[k][n] != static_cast<unsigned char>(0xa5 ^ n))
        bug("a load wrote past the end of a tensor's buffer", c + ": " + s.name);
    }
    if (extra_ok) return;
    for (const auto& [name, v] : header.items()) {
      if (name == "__metadata__" || (!ignored.empty() && std::string_view(name).starts_with(ignored))) continue;
      bool wanted = false;
      for (std::size_t k : which) wanted |= name == specs[k].name;
      if (!wanted) bug("a load succeeded with an unexpected tensor in the file", c + ": " + name);
    }
  }

 private:
  const std::uint8_t* file_;
  std::size_t size_;
  std::uint64_t data_start_ = 0;
  bool parsed_ = false;
  nlohmann::ordered_json header_;
};

// Runs one load; true if it succeeded, false on a checkpoint_error (checked). Anything
// else traps.
template <class F>
bool attempt(const char* call, const std::string& path, buffers& bufs, F&& f) {
  bufs.poison();
  try {
    f();
    return true;
  } catch (const cg::checkpoint_error& e) {
    const std::string msg = e.what();
    const std::string prefix = "ctgraph: checkpoint \"" + path + "\": ";
    if (msg.compare(0, prefix.size(), prefix) != 0 || msg.size() == prefix.size())
      bug("an error message that does not name the file and the problem", std::string(call) + ": " + msg);
    if (!bufs.poisoned()) bug("a failed load changed a destination buffer", std::string(call) + ": " + msg);
    return false;
  } catch (const std::exception& e) {
    bug("an exception that is not a checkpoint_error", std::string(call) + ": " + e.what());
  } catch (...) {
    bug("an exception that is not a std::exception", call);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const input_file file;
  static buffers bufs;
  file.write(data, size);
  const std::string& path = file.path;
  oracle o(data, size);

  const auto all = bufs.refs({0, 1, 2, 3});
  const auto w_only = bufs.refs({0});
  const std::vector<cg::tensor_ref> none;
  const cg::load_options extra{.allow_extra_tensors = true};

  const bool strict = attempt("load_tensors(all)", path, bufs, [&] { cg::load_tensors(all, path); });
  if (strict) o.check_loaded("load_tensors(all)", bufs, {0, 1, 2, 3}, false);
  const bool lenient = attempt("load_tensors(all, extra)", path, bufs, [&] { cg::load_tensors(all, path, extra); });
  if (lenient) o.check_loaded("load_tensors(all, extra)", bufs, {0, 1, 2, 3}, true);
  const bool as_load = attempt("load_tensors_ignoring(all, \"optimizer.\")", path, bufs,
                               [&] { cg::detail::load_tensors_ignoring(all, path, {}, cg::optimizer_state_prefix); });
  if (as_load) o.check_loaded("load_tensors_ignoring(all)", bufs, {0, 1, 2, 3}, false, cg::optimizer_state_prefix);
  const bool subset = attempt("load_tensors(w, extra)", path, bufs, [&] { cg::load_tensors(w_only, path, extra); });
  if (subset) o.check_loaded("load_tensors(w, extra)", bufs, {0}, true);
  const bool empty = attempt("load_tensors({})", path, bufs, [&] { cg::load_tensors(none, path); });
  if (empty) o.check_loaded("load_tensors({})", bufs, {}, false);
  cg::checkpoint_metadata md;
  const bool header_ok = attempt("load_metadata", path, bufs, [&] { md = cg::load_metadata(path); });

  if (strict && !(lenient && as_load)) bug("the strict load succeeded but a more lenient one failed");
  if (as_load && !lenient) bug("load_tensors_ignoring succeeded but allow_extra_tensors failed");
  if (lenient && !subset) bug("all tensors loaded but a subset of them did not");
  if ((strict || lenient || as_load || subset || empty) && !header_ok)
    bug("a load succeeded but load_metadata failed on the same header");
  if (header_ok) {
    // The metadata is the header's "__metadata__", in order.
    cg::checkpoint_metadata want;
    const auto& header = o.header();
    if (header.is_object() && header.contains("__metadata__"))
      for (const auto& [k, v] : header.at("__metadata__").items())
        want.emplace_back(k, v.is_string() ? v.get<std::string>() : std::string());
    if (md != want) bug("load_metadata's pairs are not the header's \"__metadata__\"");
  }
  return 0;
}
