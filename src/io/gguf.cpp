// GGUF parsing. Every read goes through Cursor, which checks the bytes left first, so a truncated
// or lying file ends in an Error naming the field and offset, never in an out-of-bounds read or an
// allocation sized by an unchecked count.
#include "zqat/io/gguf.h"

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "zqat/core/error.h"
#include "zqat/io/mmap.h"

namespace zqat::gguf {

namespace {

constexpr uint64_t kMaxStringBytes = uint64_t(1) << 30;  // 1 GiB: no real key or value is larger
constexpr uint32_t kMaxDims = 4;                         // GGML_MAX_DIMS

// Smallest encoded size of one element of each value type (for bounding array counts).
uint64_t min_encoded_size(ValueType t) {
    switch (t) {
        case ValueType::UINT8:
        case ValueType::INT8:
        case ValueType::BOOL:
            return 1;
        case ValueType::UINT16:
        case ValueType::INT16:
            return 2;
        case ValueType::UINT32:
        case ValueType::INT32:
        case ValueType::FLOAT32:
            return 4;
        case ValueType::UINT64:
        case ValueType::INT64:
        case ValueType::FLOAT64:
            return 8;
        case ValueType::STRING:
            return 8;
        case ValueType::ARRAY:
            return 12;
    }
    return 1;
}

bool valid_type(uint32_t t) {
    return t <= uint32_t(ValueType::FLOAT64);
}

}  // namespace

std::string_view type_name(ValueType t) {
    static constexpr std::string_view names[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                                 "int32",  "float32", "bool",   "string", "array",
                                                 "uint64", "int64",   "float64"};
    return uint32_t(t) < std::size(names) ? names[uint32_t(t)] : "unknown";
}

class Parser {
  public:
    Parser(File& f) : f_(f) {}

    void parse() {
        const char* magic = "GGUF";
        need(4, "magic");
        if (std::memcmp(f_.base_, magic, 4) != 0)
            fail("gguf", "{}: not a GGUF file (magic at offset 0 is not 'GGUF')", f_.path_);
        pos_ = 4;
        f_.version_ = u32("version");
        if (f_.version_ == 0x02000000u || f_.version_ == 0x03000000u)
            fail("gguf", "{}: version at offset 4 is big-endian; only little-endian GGUF is read",
                 f_.path_);
        if (f_.version_ != 2 && f_.version_ != 3)
            fail("gguf", "{}: unsupported GGUF version {} at offset 4 (expected 2 or 3)", f_.path_,
                 f_.version_);
        const uint64_t n_tensors = u64("tensor count");
        const uint64_t n_kv = u64("metadata count");
        // Each kv needs at least 8 (key length) + 4 (type) + 1 bytes; each tensor info
        // 8 (name length) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset).
        if (n_kv > left() / 13)
            fail("gguf", "{}: metadata count {} at offset 16 is impossible for {} bytes", f_.path_,
                 n_kv, f_.size_);
        if (n_tensors > left() / 32)
            fail("gguf", "{}: tensor count {} at offset 8 is impossible for {} bytes", f_.path_,
                 n_tensors, f_.size_);

        std::unordered_set<std::string> keys;
        f_.kv_.reserve(size_t(n_kv));
        for (uint64_t i = 0; i < n_kv; ++i) {
            const uint64_t key_off = pos_;
            std::string key = str("metadata key");
            if (!keys.insert(key).second)
                fail("gguf", "{}: duplicate metadata key '{}' at offset {}", f_.path_, key,
                     key_off);
            const uint64_t type_off = pos_;
            const uint32_t type = u32("value type");
            if (!valid_type(type))
                fail("gguf", "{}: key '{}': unknown value type {} at offset {}", f_.path_, key,
                     type, type_off);
            Value v = value(ValueType(type), key);
            v.offset = type_off;
            f_.kv_.emplace_back(std::move(key), std::move(v));
        }

        if (const Value* a = f_.find("general.alignment")) {
            if (a->type != ValueType::UINT32 || a->u == 0 || (a->u & (a->u - 1)) != 0)
                fail("gguf", "{}: general.alignment at offset {} must be a power-of-two uint32",
                     f_.path_, a->offset);
            f_.alignment_ = a->u;
        }

        std::unordered_set<std::string> names;
        f_.tensors_.reserve(size_t(n_tensors));
        std::vector<uint64_t> rel_offsets;
        for (uint64_t i = 0; i < n_tensors; ++i) {
            const uint64_t info_off = pos_;
            TensorInfo t;
            t.name = str("tensor name");
            if (!names.insert(t.name).second)
                fail("gguf", "{}: duplicate tensor name '{}' at offset {}", f_.path_, t.name,
                     info_off);
            const uint32_t n_dims = u32("tensor dims");
            if (n_dims == 0 || n_dims > kMaxDims)
                fail("gguf", "{}: tensor '{}' has {} dims at offset {} (expected 1..{})", f_.path_,
                     t.name, n_dims, pos_ - 4, kMaxDims);
            uint64_t n_elems = 1;
            std::vector<int64_t> ne(n_dims);
            for (uint32_t d = 0; d < n_dims; ++d) {
                const uint64_t dim = u64("tensor dim");
                if (dim > uint64_t(INT64_MAX) || (dim != 0 && n_elems > uint64_t(INT64_MAX) / dim))
                    fail("gguf", "{}: tensor '{}' dims overflow at offset {}", f_.path_, t.name,
                         pos_ - 8);
                n_elems *= dim;
                ne[d] = int64_t(dim);
            }
            t.shape.assign(ne.rbegin(), ne.rend());
            const uint64_t type_off = pos_;
            const uint32_t type = u32("tensor type");
            const auto info = dtype_info(type);
            if (!info)
                fail("gguf", "{}: tensor '{}' has unknown type {} at offset {}", f_.path_, t.name,
                     type, type_off);
            t.dtype = DType(type);
            if (ne[0] % info->block_elems != 0)
                fail("gguf",
                     "{}: tensor '{}' at offset {}: row of {} is not a multiple of {}'s block {}",
                     f_.path_, t.name, info_off, ne[0], info->name, info->block_elems);
            const auto nbytes = dtype_nbytes(t.dtype, n_elems);
            if (!nbytes)
                fail("gguf", "{}: tensor '{}' size overflows at offset {}", f_.path_, t.name,
                     info_off);
            t.nbytes = *nbytes;
            const uint64_t off = u64("tensor offset");
            if (off % f_.alignment_ != 0)
                fail("gguf", "{}: tensor '{}' offset {} at offset {} is not aligned to {}",
                     f_.path_, t.name, off, pos_ - 8, f_.alignment_);
            rel_offsets.push_back(off);
            f_.tensors_.push_back(std::move(t));
        }

        // The data section starts at the next multiple of the alignment.
        const uint64_t data_start = (pos_ + f_.alignment_ - 1) / f_.alignment_ * f_.alignment_;
        if (n_tensors > 0 && data_start > f_.size_)
            fail("gguf", "{}: data section at offset {} starts past the end of the file ({} bytes)",
                 f_.path_, data_start, f_.size_);
        for (size_t i = 0; i < f_.tensors_.size(); ++i) {
            TensorInfo& t = f_.tensors_[i];
            const uint64_t rel = rel_offsets[i];
            if (rel > f_.size_ - data_start || t.nbytes > f_.size_ - data_start - rel)
                fail(
                    "gguf",
                    "{}: tensor '{}' data at offset {} (+{} bytes) runs past end of file (size {})",
                    f_.path_, t.name, data_start + rel, t.nbytes, f_.size_);
            t.offset = data_start + rel;
        }
        // No two tensors may share bytes. Empty tensors own none: gguf-py places one at the
        // offset where the next tensor starts, so they are left out of the comparison.
        std::vector<const TensorInfo*> by_off;
        for (const auto& t : f_.tensors_)
            if (t.nbytes > 0) by_off.push_back(&t);
        std::sort(by_off.begin(), by_off.end(),
                  [](auto* a, auto* b) { return a->offset < b->offset; });
        for (size_t i = 1; i < by_off.size(); ++i) {
            const TensorInfo* a = by_off[i - 1];
            const TensorInfo* b = by_off[i];
            if (a->offset + a->nbytes > b->offset)
                fail("gguf", "{}: tensors '{}' and '{}' overlap at offset {}", f_.path_, a->name,
                     b->name, b->offset);
        }
    }

  private:
    File& f_;
    uint64_t pos_ = 0;

    uint64_t left() const { return f_.size_ - pos_; }
    void need(uint64_t n, const char* what) {
        if (n > f_.size_ - pos_)
            fail("gguf", "{}: truncated: {} at offset {} needs {} bytes, {} left", f_.path_, what,
                 pos_, n, f_.size_ - pos_);
    }
    template <class T>
    T read(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, f_.base_ + pos_, sizeof(T));  // GGUF is little endian, as is x86
        pos_ += sizeof(T);
        return v;
    }
    uint32_t u32(const char* what) { return read<uint32_t>(what); }
    uint64_t u64(const char* what) { return read<uint64_t>(what); }
    std::string str(const char* what) {
        const uint64_t len_off = pos_;
        const uint64_t n = u64(what);
        if (n > kMaxStringBytes || n > left())
            fail("gguf", "{}: {} length {} at offset {} exceeds the {} bytes left", f_.path_, what,
                 n, len_off, left());
        std::string s(reinterpret_cast<const char*>(f_.base_ + pos_), size_t(n));
        pos_ += n;
        return s;
    }

    // One scalar of type t into v (u/i/f/b/s); returns false for ARRAY.
    void scalar(ValueType t, Value& v, const std::string& key) {
        switch (t) {
            case ValueType::UINT8:
                set_uint(v, read<uint8_t>("uint8"));
                break;
            case ValueType::INT8:
                set_int(v, read<int8_t>("int8"));
                break;
            case ValueType::UINT16:
                set_uint(v, read<uint16_t>("uint16"));
                break;
            case ValueType::INT16:
                set_int(v, read<int16_t>("int16"));
                break;
            case ValueType::UINT32:
                set_uint(v, read<uint32_t>("uint32"));
                break;
            case ValueType::INT32:
                set_int(v, read<int32_t>("int32"));
                break;
            case ValueType::UINT64:
                set_uint(v, read<uint64_t>("uint64"));
                break;
            case ValueType::INT64:
                set_int(v, read<int64_t>("int64"));
                break;
            case ValueType::FLOAT32:
                v.f = read<float>("float32");
                break;
            case ValueType::FLOAT64:
                v.f = read<double>("float64");
                break;
            case ValueType::BOOL: {
                const uint8_t b = read<uint8_t>("bool");
                if (b > 1)
                    fail("gguf", "{}: key '{}': bool value {} at offset {}", f_.path_, key, b,
                         pos_ - 1);
                v.b = b != 0;
                v.u = b;
                v.i = b;
                break;
            }
            case ValueType::STRING:
                v.s = str("string value");
                break;
            case ValueType::ARRAY:
                ZQAT_ASSERT(false);
        }
    }
    static void set_uint(Value& v, uint64_t x) {
        v.u = x;
        v.i = x <= uint64_t(INT64_MAX) ? int64_t(x) : -1;
    }
    static void set_int(Value& v, int64_t x) {
        v.i = x;
        v.u = x >= 0 ? uint64_t(x) : 0;
    }

    Value value(ValueType t, const std::string& key) {
        Value v;
        v.type = t;
        if (t != ValueType::ARRAY) {
            scalar(t, v, key);
            return v;
        }
        const uint64_t et_off = pos_;
        const uint32_t et = u32("array element type");
        if (!valid_type(et) || ValueType(et) == ValueType::ARRAY)
            fail("gguf", "{}: key '{}': bad array element type {} at offset {}", f_.path_, key, et,
                 et_off);
        v.elem_type = ValueType(et);
        const uint64_t n_off = pos_;
        const uint64_t n = u64("array length");
        if (n > left() / min_encoded_size(v.elem_type))
            fail("gguf", "{}: key '{}': array length {} at offset {} exceeds the {} bytes left",
                 f_.path_, key, n, n_off, left());
        Value e;
        switch (v.elem_type) {
            case ValueType::STRING:
                v.strs.reserve(size_t(n));
                for (uint64_t i = 0; i < n; ++i) v.strs.push_back(str("array string"));
                break;
            case ValueType::FLOAT32:
            case ValueType::FLOAT64:
                v.floats.reserve(size_t(n));
                for (uint64_t i = 0; i < n; ++i) {
                    scalar(v.elem_type, e, key);
                    v.floats.push_back(e.f);
                }
                break;
            default:
                v.ints.reserve(size_t(n));
                for (uint64_t i = 0; i < n; ++i) {
                    scalar(v.elem_type, e, key);
                    v.ints.push_back(v.elem_type == ValueType::UINT64 ? int64_t(e.u) : e.i);
                }
        }
        return v;
    }
};

File File::open(const std::string& path) {
    auto m = MappedFile::open(path);
    File f;
    f.path_ = path;
    f.base_ = m->data();
    f.size_ = m->size();
    f.owner_ = m;
    Parser(f).parse();
    return f;
}

File File::from_memory(const uint8_t* data, uint64_t size, std::string name) {
    File f;
    f.path_ = std::move(name);
    f.base_ = data;
    f.size_ = size;
    Parser(f).parse();
    return f;
}

const Value* File::find(std::string_view key) const {
    for (const auto& [k, v] : kv_)
        if (k == key) return &v;
    return nullptr;
}

namespace {
bool is_int(ValueType t) {
    switch (t) {
        case ValueType::UINT8:
        case ValueType::INT8:
        case ValueType::UINT16:
        case ValueType::INT16:
        case ValueType::UINT32:
        case ValueType::INT32:
        case ValueType::UINT64:
        case ValueType::INT64:
            return true;
        default:
            return false;
    }
}
bool is_signed(ValueType t) {
    return t == ValueType::INT8 || t == ValueType::INT16 || t == ValueType::INT32 ||
           t == ValueType::INT64;
}
}  // namespace

#define ZQAT_GGUF_GET(key, expected) \
    const Value* v = find(key);      \
    if (!v) fail("gguf", "{}: missing metadata key '{}' ({} expected)", path_, key, expected)
#define ZQAT_GGUF_BAD(key, expected)                                                             \
    fail("gguf", "{}: metadata key '{}' at offset {} is {}, expected {}", path_, key, v->offset, \
         type_name(v->type), expected)

uint64_t File::get_uint(std::string_view key) const {
    ZQAT_GGUF_GET(key, "unsigned integer");
    if (!is_int(v->type) || (is_signed(v->type) && v->i < 0))
        ZQAT_GGUF_BAD(key, "a non-negative integer");
    return v->u;
}
int64_t File::get_int(std::string_view key) const {
    ZQAT_GGUF_GET(key, "integer");
    if (!is_int(v->type) || (v->type == ValueType::UINT64 && v->u > uint64_t(INT64_MAX)))
        ZQAT_GGUF_BAD(key, "an integer");
    return v->i;
}
double File::get_float(std::string_view key) const {
    ZQAT_GGUF_GET(key, "number");
    if (v->type == ValueType::FLOAT32 || v->type == ValueType::FLOAT64) return v->f;
    if (is_int(v->type)) return is_signed(v->type) ? double(v->i) : double(v->u);
    ZQAT_GGUF_BAD(key, "a number");
}
bool File::get_bool(std::string_view key) const {
    ZQAT_GGUF_GET(key, "bool");
    if (v->type != ValueType::BOOL) ZQAT_GGUF_BAD(key, "bool");
    return v->b;
}
const std::string& File::get_string(std::string_view key) const {
    ZQAT_GGUF_GET(key, "string");
    if (v->type != ValueType::STRING) ZQAT_GGUF_BAD(key, "string");
    return v->s;
}
const std::vector<std::string>& File::get_string_array(std::string_view key) const {
    ZQAT_GGUF_GET(key, "array of string");
    if (v->type != ValueType::ARRAY || v->elem_type != ValueType::STRING)
        ZQAT_GGUF_BAD(key, "array of string");
    return v->strs;
}
const std::vector<int64_t>& File::get_int_array(std::string_view key) const {
    ZQAT_GGUF_GET(key, "array of integer");
    if (v->type != ValueType::ARRAY || !(is_int(v->elem_type) || v->elem_type == ValueType::BOOL))
        ZQAT_GGUF_BAD(key, "array of integer");
    return v->ints;
}
const std::vector<double>& File::get_float_array(std::string_view key) const {
    ZQAT_GGUF_GET(key, "array of float");
    if (v->type != ValueType::ARRAY ||
        !(v->elem_type == ValueType::FLOAT32 || v->elem_type == ValueType::FLOAT64))
        ZQAT_GGUF_BAD(key, "array of float");
    return v->floats;
}
#undef ZQAT_GGUF_GET
#undef ZQAT_GGUF_BAD

uint64_t File::get_uint_or(std::string_view key, uint64_t dflt) const {
    return has(key) ? get_uint(key) : dflt;
}
double File::get_float_or(std::string_view key, double dflt) const {
    return has(key) ? get_float(key) : dflt;
}
bool File::get_bool_or(std::string_view key, bool dflt) const {
    return has(key) ? get_bool(key) : dflt;
}
std::string File::get_string_or(std::string_view key, std::string dflt) const {
    return has(key) ? get_string(key) : dflt;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
    for (const auto& t : tensors_)
        if (t.name == name) return &t;
    return nullptr;
}

Tensor File::tensor(const TensorInfo& info) const {
    Tensor t;
    t.name = info.name;
    t.dtype = info.dtype;
    t.shape = info.shape;
    t.owner = owner_;
    t.data = base_ + info.offset;
    t.nbytes = info.nbytes;
    return t;
}

}  // namespace zqat::gguf
