// GGUF v3 writer: the byte layout gguf.h reads (little endian):
//   magic "GGUF" | u32 version 3 | u64 n_tensors | u64 n_kv
//   n_kv x { string key | u32 value_type | value }            (string = u64 length + bytes)
//   n_tensors x { string name | u32 n_dims | n_dims x u64 ne (innermost first) | u32 ggml_type |
//                 u64 offset (relative to the data section, a multiple of the alignment) }
//   zero padding to the alignment | data section, each tensor zero-padded to the alignment.
// The alignment is 32 unless a `general.alignment` uint32 (a power of two) is set.
// Values are gguf::Value, exactly as File::metadata() returns them, so a reader's metadata can be
// copied over as-is (integer scalars are taken from `u` for unsigned types and `i` for signed
// ones; integer and bool arrays from `ints`, UINT64 elements bit-cast; FLOAT32 narrowed from `f`).
// write() streams the header and then each tensor's bytes to a temporary file in the output's
// folder, fsyncs it and renames it into place: the output is never half written, and on any error
// the temporary file is removed and Error("[gguf] <path>: ...") is thrown.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "zqat/core/dtype.h"
#include "zqat/io/gguf.h"

namespace zqat::gguf {

// Scalar and array values (the other fields left at their defaults).
Value make_uint(ValueType t, uint64_t v);  // UINT8/16/32/64
Value make_int(ValueType t, int64_t v);    // INT8/16/32/64
Value make_float(ValueType t, double v);   // FLOAT32/FLOAT64
Value make_bool(bool v);
Value make_string(std::string v);
Value make_string_array(std::vector<std::string> v);
Value make_int_array(ValueType elem, std::vector<int64_t> v);   // any integer type or BOOL
Value make_float_array(ValueType elem, std::vector<double> v);  // FLOAT32/FLOAT64

class Writer {
  public:
    // Adds a key, or replaces its value (keeping its position) when already set.
    void set(std::string key, Value v);
    void set_u32(std::string key, uint32_t v) {
        set(std::move(key), make_uint(ValueType::UINT32, v));
    }
    void set_string(std::string key, std::string v) {
        set(std::move(key), make_string(std::move(v)));
    }
    void remove(std::string_view key);
    const Value* find(std::string_view key) const;
    const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }

    // A tensor: `shape` in PyTorch order (outermost first), 1 to 4 dims; nbytes must equal the
    // size of numel elements of `type`. The bytes are read during write(): `keep` (or the caller)
    // keeps them alive until then. Throws Error on a duplicate name or a size mismatch.
    void add_tensor(std::string name, std::vector<int64_t> shape, DType type, const void* data,
                    uint64_t nbytes, std::shared_ptr<const void> keep = {});
    // The same, owning a copy of / the moved-in bytes.
    void add_tensor(std::string name, std::vector<int64_t> shape, DType type,
                    std::vector<uint8_t> bytes);
    size_t n_tensors() const { return tensors_.size(); }

    uint64_t alignment() const;  // general.alignment, else 32
    // Writes the file atomically (see the header comment).
    void write(const std::string& path) const;

  private:
    struct Entry {
        std::string name;
        std::vector<int64_t> shape;
        DType type;
        const void* data;
        uint64_t nbytes;
        std::shared_ptr<const void> keep;
    };
    std::vector<std::pair<std::string, Value>> kv_;
    std::vector<Entry> tensors_;
};

}  // namespace zqat::gguf
