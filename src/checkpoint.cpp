// src/checkpoint.cpp: safetensors reading and writing behind ctgraph/checkpoint.hpp.
// nlohmann-json is used here only: it is a private dependency of the library.
#include "ctgraph/checkpoint.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "ctgraph/format.hpp"

namespace ctgraph {
namespace {

static_assert(std::endian::native == std::endian::little,
              "ctgraph: checkpoints store little-endian data and are read and written as raw bytes");

using json = nlohmann::ordered_json;
using u64 = std::uint64_t;

std::string in_quotes(std::string_view s) {
  std::string r;  // appended, not added: g++ 12 warns (-Wrestrict) on "\"" + std::string(s)
  r.reserve(s.size() + 2);
  r += '"';
  r += s;
  r += '"';
  return r;
}

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw checkpoint_error("ctgraph: checkpoint " + in_quotes(path.string()) + ": " + what);
}
[[noreturn]] void fail_errno(const std::filesystem::path& path, const std::string& what) {
  fail(path, what + ": " + std::strerror(errno));
}

const char* dtype_code(dtype t) { return t == dtype::f32 ? "F32" : t == dtype::f64 ? "F64" : "I32"; }
// Bytes per element of a safetensors dtype; 0 when unknown.
u64 dtype_bytes(std::string_view code) {
  static const std::map<std::string_view, u64> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8}};
  const auto it = sizes.find(code);
  return it == sizes.end() ? 0 : it->second;
}

// "[3, 4]", as every message prints a shape.
std::string dims_text(const std::vector<u64>& d) {
  std::string r;
  detail::format_dims(std::back_inserter(r), d);
  return r;
}

class fd_guard {
 public:
  explicit fd_guard(int fd) : fd_(fd) {}
  ~fd_guard() {
    if (fd_ >= 0) ::close(fd_);
  }
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// Reads exactly n bytes at offset; false on a short read (end of file).
bool read_at(int fd, void* dst, u64 n, u64 offset, const std::filesystem::path& path) {
  auto* p = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      fail_errno(path, "read failed");
    }
    if (r == 0) return false;
    p += r, n -= static_cast<u64>(r), offset += static_cast<u64>(r);
  }
  return true;
}
void write_all(int fd, const void* src, u64 n, const std::filesystem::path& tmp) {
  const auto* p = static_cast<const char*>(src);
  while (n > 0) {
    const ssize_t r = ::write(fd, p, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      fail_errno(tmp, "write failed");
    }
    p += r, n -= static_cast<u64>(r);
  }
}

// One tensor entry of a header, checked on its own and against the data section's size.
struct entry {
  std::string name;
  std::string dtype;
  std::vector<u64> dims;
  u64 begin = 0, end = 0;
};

u64 get_u64(const json& v, const std::filesystem::path& path, const std::string& what) {
  if (v.is_number_unsigned()) return v.get<u64>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return static_cast<u64>(v.get<std::int64_t>());
  std::string found = v.dump();  // cut: the value may be a whole array or a long string
  if (found.size() > 64) found = found.substr(0, 60) + " ...";
  fail(path, what + " must be a non-negative integer, found " + found);
}

entry parse_entry(const std::string& name, const json& v, u64 data_size, const std::filesystem::path& path) {
  const std::string where = "tensor " + in_quotes(name);
  if (!v.is_object()) fail(path, where + ": header entry is not an object");
  entry e;
  e.name = name;
  const auto dt = v.find("dtype");
  if (dt == v.end() || !dt->is_string()) fail(path, where + ": no \"dtype\" string");
  e.dtype = dt->get<std::string>();
  const u64 item = dtype_bytes(e.dtype);
  if (item == 0) fail(path, where + ": unknown dtype " + in_quotes(e.dtype));
  const auto sh = v.find("shape");
  if (sh == v.end() || !sh->is_array()) fail(path, where + ": no \"shape\" array");
  u64 bytes = item;
  bool overflow = false;
  for (const auto& d : *sh) {
    e.dims.push_back(get_u64(d, path, where + ": each dimension of \"shape\""));
    overflow |= __builtin_mul_overflow(bytes, e.dims.back(), &bytes);
  }
  if (overflow) fail(path, where + ": shape " + dims_text(e.dims) + " is too large");
  const auto off = v.find("data_offsets");
  if (off == v.end() || !off->is_array() || off->size() != 2)
    fail(path, where + ": no \"data_offsets\" array of two integers");
  e.begin = get_u64((*off)[0], path, where + ": data_offsets[0]");
  e.end = get_u64((*off)[1], path, where + ": data_offsets[1]");
  const std::string offsets = "data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
  if (e.begin > e.end) fail(path, where + ": " + offsets + " end before they begin");
  if (e.end > data_size)
    fail(path, where + ": " + offsets + " run past the end of the data (" + std::to_string(data_size) +
                   " bytes after the header): file truncated or offsets out of range");
  if (e.end - e.begin != bytes)
    fail(path, where + ": " + offsets + " hold " + std::to_string(e.end - e.begin) + " bytes, but dtype " + e.dtype +
                   " and shape " + dims_text(e.dims) + " need " + std::to_string(bytes));
  return e;
}

// The longest header read (safetensors' own limit): a corrupt length must not allocate
// gigabytes.
constexpr u64 max_header_bytes = 100'000'000;
// Arrays and objects in the header nest at most this deep (a valid header nests 3 deep).
constexpr std::size_t max_header_depth = 64;

// nlohmann-json's SAX events to the header's ordered_json value, as json::parse builds it
// but in time linear in the header's size: ordered_json's parse looks each key up among
// the keys before it in its object (quadratic in the number of tensors: 40 s for 100,000),
// here keys are appended, and a key twice in an object is an error (not the last one
// silently winning). Nesting is limited: ordered_json copies objects' values when an object
// grows, recursively, and 200,000 nested arrays in a 400 KB header overflowed the stack.
class header_builder {
 public:
  explicit header_builder(json& root) : root_(root) {}
  const std::string& error() const { return error_; }

  bool null() { return add(nullptr); }
  bool boolean(bool v) { return add(v); }
  bool number_integer(json::number_integer_t v) { return add(v); }
  bool number_unsigned(json::number_unsigned_t v) { return add(v); }
  bool number_float(json::number_float_t v, const json::string_t&) { return add(v); }
  bool string(json::string_t& v) { return add(std::move(v)); }
  bool binary(json::binary_t& v) { return add(json::binary(std::move(v))); }
  bool start_object(std::size_t) {
    keys_.emplace_back();
    return open(json::object());
  }
  bool key(json::string_t& k) {
    if (!keys_.back().insert(k).second) {
      error_ = "header has the key " + in_quotes(k) + " twice in one object";
      return false;
    }
    key_ = std::move(k);
    return true;
  }
  bool end_object() {
    keys_.pop_back();
    open_.pop_back();
    return true;
  }
  bool start_array(std::size_t) { return open(json::array()); }
  bool end_array() {
    open_.pop_back();
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const json::exception& e) {
    error_ = std::string("header is not valid JSON: ") + e.what();
    return false;
  }

 private:
  // Places v in the innermost open array or object (after key_), or as the root.
  json* place(json&& v) {
    if (open_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    json& parent = *open_.back();
    if (parent.is_array()) {
      auto& a = parent.get_ref<json::array_t&>();
      a.push_back(std::move(v));
      return &a.back();
    }
    // ordered_json's object is a vector of pairs: emplace_back skips ordered_map's lookup.
    // Open values stay valid: only the innermost open value grows.
    auto& o = parent.get_ref<json::object_t&>();
    o.emplace_back(std::move(key_), std::move(v));
    return &o.back().second;
  }
  bool add(json&& v) {
    place(std::move(v));
    return true;
  }
  bool open(json&& v) {
    if (open_.size() >= max_header_depth) {
      error_ = "header nests arrays and objects more than " + std::to_string(max_header_depth) + " deep";
      return false;
    }
    open_.push_back(place(std::move(v)));
    return true;
  }

  json& root_;
  std::vector<json*> open_;                  // the open arrays and objects, outermost first
  std::vector<std::set<std::string>> keys_;  // the keys so far of each open object
  std::string key_;                          // the key of the next value in an object
  std::string error_;
};

// A parsed, checked header: its entries and metadata, and where the data starts.
struct header {
  std::vector<entry> entries;
  checkpoint_metadata metadata;
  u64 data_start = 0;
};

header read_header(int fd, const std::filesystem::path& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) fail_errno(path, "cannot stat");
  if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
  const u64 size = static_cast<u64>(st.st_size);
  if (size < 8) fail(path, "file is " + std::to_string(size) + " bytes, too short for the 8-byte header length");
  unsigned char len_bytes[8];
  if (!read_at(fd, len_bytes, 8, 0, path)) fail(path, "file truncated while reading the header length");
  u64 n = 0;
  for (int k = 7; k >= 0; --k) n = n << 8 | len_bytes[k];
  if (n > size - 8)
    fail(path, "header length " + std::to_string(n) + " exceeds the file's size (" + std::to_string(size) +
                   " bytes, 8 of them the length): file truncated or not safetensors");
  if (n > max_header_bytes)
    fail(path, "header length " + std::to_string(n) + " exceeds the limit of " + std::to_string(max_header_bytes) +
                   " bytes: file corrupt or not safetensors");
  std::string text(n, '\0');
  if (!read_at(fd, text.data(), n, 8, path)) fail(path, "file truncated while reading the header");
  json j;
  header_builder builder(j);
  bool parsed = false;
  try {
    parsed = json::sax_parse(text, &builder);
  } catch (const json::exception& e) {
    fail(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!parsed) fail(path, builder.error());
  if (!j.is_object()) fail(path, "header is not a JSON object");
  header h;
  h.data_start = 8 + n;
  const u64 data_size = size - h.data_start;
  for (const auto& [name, v] : j.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) fail(path, "\"__metadata__\" is not an object");
      for (const auto& [k, s] : v.items()) {
        if (!s.is_string()) fail(path, "\"__metadata__\" value of " + in_quotes(k) + " is not a string");
        h.metadata.emplace_back(k, s.get<std::string>());
      }
      continue;
    }
    h.entries.push_back(parse_entry(name, v, data_size, path));
  }
  std::vector<const entry*> by_offset;
  for (const auto& e : h.entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const entry* a, const entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (std::size_t k = 1; k < by_offset.size(); ++k) {
    const entry &a = *by_offset[k - 1], &b = *by_offset[k];
    if (b.begin < a.end)
      fail(path, "the data of tensors " + in_quotes(a.name) + " [" + std::to_string(a.begin) + ", " +
                     std::to_string(a.end) + ") and " + in_quotes(b.name) + " [" + std::to_string(b.begin) + ", " +
                     std::to_string(b.end) + ") overlap");
  }
  return h;
}

int open_for_reading(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_errno(path, "cannot open");
  return fd;
}

}  // namespace

void save_tensors(std::span<const tensor_ref> tensors, const std::filesystem::path& path,
                  const checkpoint_metadata& metadata) {
  json j = json::object();
  if (!metadata.empty()) {
    json m = json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    j["__metadata__"] = std::move(m);
  }
  u64 offset = 0;
  std::set<std::string_view> names;
  for (const auto& t : tensors) {
    const std::string name(t.name);
    if (name.empty() || name == "__metadata__") fail(path, "cannot save a tensor named " + in_quotes(name));
    if (!names.insert(t.name).second) fail(path, "two tensors named " + in_quotes(name));
    u64 bytes = dtype_size(t.type);
    std::vector<u64> dims;
    for (int d : t.dims) {
      if (d < 0) fail(path, "tensor " + in_quotes(name) + ": negative dimension");
      dims.push_back(static_cast<u64>(d));
      bytes *= static_cast<u64>(d);
    }
    j[name] = {{"dtype", dtype_code(t.type)}, {"shape", dims}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = j.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data starts 8-byte aligned

  // A unique temporary beside the file, so that the rename stays on one file system.
  std::string tmp_name = path.string() + ".tmp.XXXXXX";
  fd_guard fd(::mkstemp(tmp_name.data()));
  const std::filesystem::path tmp = tmp_name;
  if (fd.get() < 0) fail_errno(path, "cannot create the temporary file " + in_quotes(tmp_name));
  try {
    if (::fchmod(fd.get(), 0644) != 0) fail_errno(tmp, "cannot set permissions");
    unsigned char len_bytes[8];
    for (int k = 0; k < 8; ++k) len_bytes[k] = static_cast<unsigned char>(static_cast<u64>(text.size()) >> (8 * k));
    write_all(fd.get(), len_bytes, 8, tmp);
    write_all(fd.get(), text.data(), text.size(), tmp);
    for (const auto& t : tensors) {
      u64 bytes = dtype_size(t.type);
      for (int d : t.dims) bytes *= static_cast<u64>(d);
      write_all(fd.get(), t.data, bytes, tmp);
    }
    if (::fsync(fd.get()) != 0) fail_errno(tmp, "fsync failed");
    if (::close(fd.release()) != 0) fail_errno(tmp, "close failed");
    if (::rename(tmp_name.c_str(), path.c_str()) != 0)
      fail_errno(path, "cannot rename " + in_quotes(tmp_name) + " to it");
  } catch (...) {
    ::unlink(tmp_name.c_str());
    throw;
  }
  // Make the rename durable: flush the directory that holds the file.
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  fd_guard dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() < 0) fail_errno(path, "cannot open its directory to flush it");
  if (::fsync(dfd.get()) != 0 && errno != EINVAL) fail_errno(path, "fsync of its directory failed");
}

void load_tensors(std::span<const tensor_ref> tensors, const std::filesystem::path& path, const load_options& options) {
  detail::load_tensors_ignoring(tensors, path, options, {});
}

void detail::load_tensors_ignoring(std::span<const tensor_ref> tensors, const std::filesystem::path& path,
                                   const load_options& options, std::string_view ignored_prefix) {
  fd_guard fd(open_for_reading(path));
  const header h = read_header(fd.get(), path);
  std::map<std::string_view, const entry*> by_name;
  for (const auto& e : h.entries) by_name[e.name] = &e;

  std::vector<const entry*> found;
  for (const auto& t : tensors) {
    const std::string where = "tensor " + in_quotes(t.name);
    const auto it = by_name.find(t.name);
    if (it == by_name.end()) fail(path, "missing tensor " + in_quotes(t.name));
    const entry& e = *it->second;
    if (e.dtype != dtype_code(t.type))
      fail(path, where + ": expected dtype " + dtype_code(t.type) + ", found " + e.dtype);
    std::vector<u64> want;
    for (int d : t.dims) want.push_back(static_cast<u64>(d));
    if (e.dims != want) fail(path, where + ": expected shape " + dims_text(want) + ", found " + dims_text(e.dims));
    found.push_back(&e);
  }
  if (!options.allow_extra_tensors && h.entries.size() > tensors.size()) {
    std::map<std::string_view, int> wanted;
    for (const auto& t : tensors) wanted[t.name] = 1;
    std::string extra;
    for (const auto& e : h.entries)
      if (!wanted.count(e.name) && (ignored_prefix.empty() || !std::string_view(e.name).starts_with(ignored_prefix)))
        extra += (extra.empty() ? "" : ", ") + in_quotes(e.name);
    const bool with_state = std::any_of(tensors.begin(), tensors.end(),
                                        [](const tensor_ref& t) { return t.name.starts_with(optimizer_state_prefix); });
    if (!extra.empty())
      fail(path, std::string("unexpected tensors in the file (not in the parameter set") +
                     (with_state ? " or the optimizer's state): " : "): ") + extra);
  }
  for (std::size_t k = 0; k < tensors.size(); ++k)
    if (!read_at(fd.get(), tensors[k].data, found[k]->end - found[k]->begin, h.data_start + found[k]->begin, path))
      fail(path, "file truncated while reading tensor " + in_quotes(tensors[k].name));
}

checkpoint_metadata load_metadata(const std::filesystem::path& path) {
  fd_guard fd(open_for_reading(path));
  return read_header(fd.get(), path).metadata;
}

}  // namespace ctgraph
