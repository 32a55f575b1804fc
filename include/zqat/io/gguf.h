// GGUF reader (versions 2 and 3), over an mmap. Byte layout (little endian):
//   magic "GGUF" u32 version | u64 n_tensors | u64 n_kv
//   n_kv x { string key | u32 value_type | value }
//     string = u64 length + bytes (not NUL terminated)
//     value  = scalar of value_type, or for ARRAY: u32 elem_type | u64 count | count x elem
//   n_tensors x { string name | u32 n_dims | n_dims x u64 ne (innermost first) | u32 ggml_type |
//                 u64 offset (relative to the data section) }
//   padding to `general.alignment` (default 32) | data section (each tensor offset aligned).
// Every count, length and offset is checked against the bytes left before anything is allocated or
// read; a malformed file raises Error naming the file, the field and its byte offset.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "zqat/core/tensor.h"

namespace zqat {

class MappedFile;

namespace gguf {

enum class ValueType : uint32_t {
    UINT8 = 0,
    INT8 = 1,
    UINT16 = 2,
    INT16 = 3,
    UINT32 = 4,
    INT32 = 5,
    FLOAT32 = 6,
    BOOL = 7,
    STRING = 8,
    ARRAY = 9,
    UINT64 = 10,
    INT64 = 11,
    FLOAT64 = 12,
};
std::string_view type_name(ValueType t);

// One metadata value. Scalars fill exactly one of u/i/f/b/s according to `type` (integers are
// stored in both u and i when they fit); arrays set elem_type and fill one of the vectors.
struct Value {
    ValueType type = ValueType::UINT8;
    ValueType elem_type = ValueType::UINT8;  // arrays only
    uint64_t u = 0;
    int64_t i = 0;
    double f = 0;
    bool b = false;
    std::string s;
    std::vector<std::string> strs;  // ARRAY of STRING
    std::vector<int64_t> ints;      // ARRAY of any integer type or BOOL
    std::vector<double> floats;     // ARRAY of FLOAT32/FLOAT64
    uint64_t offset = 0;            // byte offset of the value in the file (for error messages)
};

struct TensorInfo {
    std::string name;
    std::vector<int64_t> shape;  // PyTorch order, outermost first (GGUF ne reversed)
    DType dtype = DType::F32;
    uint64_t offset = 0;  // absolute byte offset of the data in the file
    uint64_t nbytes = 0;
};

class File {
  public:
    static File open(const std::string& path);
    // Parse bytes owned by the caller (fuzzing, tests); `name` is used in messages.
    static File from_memory(const uint8_t* data, uint64_t size, std::string name);

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    uint64_t file_size() const { return size_; }
    uint64_t alignment() const { return alignment_; }

    const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
    const Value* find(std::string_view key) const;  // nullptr if absent
    bool has(std::string_view key) const { return find(key) != nullptr; }
    // Typed getters: throw Error naming the file, the key and the expected type when the key is
    // missing or of another type. Integer getters accept any integer type whose value fits.
    uint64_t get_uint(std::string_view key) const;
    int64_t get_int(std::string_view key) const;
    double get_float(std::string_view key) const;  // any numeric scalar
    bool get_bool(std::string_view key) const;
    const std::string& get_string(std::string_view key) const;
    const std::vector<std::string>& get_string_array(std::string_view key) const;
    const std::vector<int64_t>& get_int_array(std::string_view key) const;
    const std::vector<double>& get_float_array(std::string_view key) const;
    uint64_t get_uint_or(std::string_view key, uint64_t dflt) const;
    double get_float_or(std::string_view key, double dflt) const;
    bool get_bool_or(std::string_view key, bool dflt) const;
    std::string get_string_or(std::string_view key, std::string dflt) const;

    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const TensorInfo* find_tensor(std::string_view name) const;  // nullptr if absent
    // A view onto the mapped bytes, dtype as stored (call .to_f32() to dequantize).
    Tensor tensor(const TensorInfo& info) const;

  private:
    std::string path_;
    std::shared_ptr<const void> owner_;  // the MappedFile (null for from_memory)
    const uint8_t* base_ = nullptr;
    uint64_t size_ = 0;
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    std::vector<std::pair<std::string, Value>> kv_;
    std::vector<TensorInfo> tensors_;
    friend class Parser;
};

}  // namespace gguf
}  // namespace zqat
