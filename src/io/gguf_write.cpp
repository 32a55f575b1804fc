// GGUF v3 writing. The header (metadata + tensor infos) is encoded in memory, the tensor data is
// streamed from the caller's buffers straight to a temporary file, so a 100+ MB model is never
// copied into one string.
#include "zqat/io/gguf_write.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "zqat/core/error.h"

namespace zqat::gguf {

namespace {

bool is_unsigned(ValueType t) {
    return t == ValueType::UINT8 || t == ValueType::UINT16 || t == ValueType::UINT32 ||
           t == ValueType::UINT64;
}
bool is_signed(ValueType t) {
    return t == ValueType::INT8 || t == ValueType::INT16 || t == ValueType::INT32 ||
           t == ValueType::INT64;
}
bool is_float(ValueType t) {
    return t == ValueType::FLOAT32 || t == ValueType::FLOAT64;
}
bool valid_type(ValueType t) {
    return uint32_t(t) <= uint32_t(ValueType::FLOAT64);
}

uint64_t umax(ValueType t) {
    switch (t) {
        case ValueType::UINT8:
            return std::numeric_limits<uint8_t>::max();
        case ValueType::UINT16:
            return std::numeric_limits<uint16_t>::max();
        case ValueType::UINT32:
            return std::numeric_limits<uint32_t>::max();
        default:
            return std::numeric_limits<uint64_t>::max();
    }
}
std::pair<int64_t, int64_t> irange(ValueType t) {
    switch (t) {
        case ValueType::INT8:
            return {INT8_MIN, INT8_MAX};
        case ValueType::INT16:
            return {INT16_MIN, INT16_MAX};
        case ValueType::INT32:
            return {INT32_MIN, INT32_MAX};
        default:
            return {INT64_MIN, INT64_MAX};
    }
}

// Throws unless v can be encoded as declared (right vector for arrays, integers in range).
void check_value(const std::string& key, const Value& v) {
    auto bad = [&](const std::string& why) {
        fail("gguf", "metadata key '{}' ({}): {}", key, type_name(v.type), why);
    };
    if (!valid_type(v.type)) bad("unknown value type " + std::to_string(uint32_t(v.type)));
    auto check_int = [&](ValueType t, uint64_t u, int64_t i) {
        if (is_unsigned(t) && u > umax(t))
            bad(fmt::format("value {} does not fit {}", u, type_name(t)));
        if (is_signed(t) && (i < irange(t).first || i > irange(t).second))
            bad(fmt::format("value {} does not fit {}", i, type_name(t)));
        if (t == ValueType::BOOL && u > 1) bad(fmt::format("bool value {}", u));
    };
    if (v.type != ValueType::ARRAY) {
        if (is_unsigned(v.type)) check_int(v.type, v.u, 0);
        if (is_signed(v.type)) check_int(v.type, 0, v.i);
        return;
    }
    const ValueType e = v.elem_type;
    if (!valid_type(e) || e == ValueType::ARRAY) bad("bad array element type");
    const bool strs = e == ValueType::STRING, floats = is_float(e), ints = !strs && !floats;
    if ((!strs && !v.strs.empty()) || (!floats && !v.floats.empty()) || (!ints && !v.ints.empty()))
        bad(fmt::format("array of {} holds elements of another kind", type_name(e)));
    if (ints && e != ValueType::UINT64)
        for (int64_t x : v.ints) check_int(e, x < 0 ? ~uint64_t(0) : uint64_t(x), x);
}

struct Enc {
    std::string b;
    template <class T>
    void put(T v) {
        b.append(reinterpret_cast<const char*>(&v), sizeof(T));
    }
    void str(std::string_view s) {
        put<uint64_t>(s.size());
        b.append(s);
    }
    // One scalar of type t; ints carry both the unsigned and the signed reading.
    void scalar(ValueType t, uint64_t u, int64_t i, double f, bool bl, std::string_view s) {
        switch (t) {
            case ValueType::UINT8:
                return put(uint8_t(u));
            case ValueType::INT8:
                return put(int8_t(i));
            case ValueType::UINT16:
                return put(uint16_t(u));
            case ValueType::INT16:
                return put(int16_t(i));
            case ValueType::UINT32:
                return put(uint32_t(u));
            case ValueType::INT32:
                return put(int32_t(i));
            case ValueType::UINT64:
                return put(uint64_t(u));
            case ValueType::INT64:
                return put(int64_t(i));
            case ValueType::FLOAT32:
                return put(float(f));
            case ValueType::FLOAT64:
                return put(double(f));
            case ValueType::BOOL:
                return put(uint8_t(bl ? 1 : 0));
            case ValueType::STRING:
                return str(s);
            case ValueType::ARRAY:
                ZQAT_ASSERT(false);
        }
    }
    void value(const Value& v) {
        put<uint32_t>(uint32_t(v.type));
        if (v.type != ValueType::ARRAY) return scalar(v.type, v.u, v.i, v.f, v.b, v.s);
        put<uint32_t>(uint32_t(v.elem_type));
        switch (v.elem_type) {
            case ValueType::STRING:
                put<uint64_t>(v.strs.size());
                for (const auto& s : v.strs) str(s);
                break;
            case ValueType::FLOAT32:
            case ValueType::FLOAT64:
                put<uint64_t>(v.floats.size());
                for (double x : v.floats) scalar(v.elem_type, 0, 0, x, false, {});
                break;
            default:
                put<uint64_t>(v.ints.size());
                for (int64_t x : v.ints) scalar(v.elem_type, uint64_t(x), x, 0, x != 0, {});
        }
    }
};

uint64_t align_up(uint64_t x, uint64_t a) {
    return (x + a - 1) / a * a;
}

// An fd open on a temporary file; removed unless commit() renamed it into place.
class TempFile {
  public:
    explicit TempFile(const std::string& path) : path_(path) {
        static std::atomic<uint64_t> counter{0};
        tmp_ = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
        fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC, 0644);
        if (fd_ < 0) fail("gguf", "{}: cannot create '{}': {}", path, tmp_, std::strerror(errno));
    }
    ~TempFile() {
        if (fd_ >= 0) ::close(fd_);
        if (!committed_) ::unlink(tmp_.c_str());
    }
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;

    void write(const void* p, uint64_t n) {
        const auto* c = static_cast<const uint8_t*>(p);
        while (n > 0) {
            const ssize_t w = ::write(fd_, c, size_t(std::min<uint64_t>(n, uint64_t(1) << 30)));
            if (w < 0) {
                if (errno == EINTR) continue;
                fail("gguf", "{}: write failed at offset {}: {}", path_, written_,
                     std::strerror(errno));
            }
            c += w;
            n -= uint64_t(w);
            written_ += uint64_t(w);
        }
    }
    void pad_to(uint64_t a) {
        static const uint8_t zeros[64] = {};
        uint64_t n = align_up(written_, a) - written_;
        while (n > 0) {
            const uint64_t k = std::min<uint64_t>(n, sizeof(zeros));
            write(zeros, k);
            n -= k;
        }
    }
    uint64_t written() const { return written_; }
    void commit() {
        if (::fsync(fd_) != 0) fail("gguf", "{}: cannot flush: {}", path_, std::strerror(errno));
        const int fd = fd_;
        fd_ = -1;
        if (::close(fd) != 0) fail("gguf", "{}: cannot close: {}", path_, std::strerror(errno));
        if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
            fail("gguf", "{}: cannot rename into place: {}", path_, std::strerror(errno));
        committed_ = true;
    }

  private:
    std::string path_, tmp_;
    int fd_ = -1;
    uint64_t written_ = 0;
    bool committed_ = false;
};

}  // namespace

Value make_uint(ValueType t, uint64_t v) {
    ZQAT_ASSERT(is_unsigned(t));
    Value x;
    x.type = t;
    x.u = v;
    x.i = v <= uint64_t(INT64_MAX) ? int64_t(v) : -1;
    return x;
}
Value make_int(ValueType t, int64_t v) {
    ZQAT_ASSERT(is_signed(t));
    Value x;
    x.type = t;
    x.i = v;
    x.u = v >= 0 ? uint64_t(v) : 0;
    return x;
}
Value make_float(ValueType t, double v) {
    ZQAT_ASSERT(is_float(t));
    Value x;
    x.type = t;
    x.f = t == ValueType::FLOAT32 ? double(float(v)) : v;
    return x;
}
Value make_bool(bool v) {
    Value x;
    x.type = ValueType::BOOL;
    x.b = v;
    x.u = v;
    x.i = v;
    return x;
}
Value make_string(std::string v) {
    Value x;
    x.type = ValueType::STRING;
    x.s = std::move(v);
    return x;
}
Value make_string_array(std::vector<std::string> v) {
    Value x;
    x.type = ValueType::ARRAY;
    x.elem_type = ValueType::STRING;
    x.strs = std::move(v);
    return x;
}
Value make_int_array(ValueType elem, std::vector<int64_t> v) {
    ZQAT_ASSERT(is_unsigned(elem) || is_signed(elem) || elem == ValueType::BOOL);
    Value x;
    x.type = ValueType::ARRAY;
    x.elem_type = elem;
    x.ints = std::move(v);
    return x;
}
Value make_float_array(ValueType elem, std::vector<double> v) {
    ZQAT_ASSERT(is_float(elem));
    Value x;
    x.type = ValueType::ARRAY;
    x.elem_type = elem;
    x.floats = std::move(v);
    return x;
}

void Writer::set(std::string key, Value v) {
    check_value(key, v);
    if (key == "general.alignment" &&
        (v.type != ValueType::UINT32 || v.u == 0 || (v.u & (v.u - 1)) != 0))
        fail("gguf", "general.alignment must be a power-of-two uint32");
    for (auto& [k, old] : kv_)
        if (k == key) {
            old = std::move(v);
            return;
        }
    kv_.emplace_back(std::move(key), std::move(v));
}

void Writer::remove(std::string_view key) {
    std::erase_if(kv_, [&](const auto& kv) { return kv.first == key; });
}

const Value* Writer::find(std::string_view key) const {
    for (const auto& [k, v] : kv_)
        if (k == key) return &v;
    return nullptr;
}

uint64_t Writer::alignment() const {
    const Value* a = find("general.alignment");
    return a ? a->u : 32;
}

void Writer::add_tensor(std::string name, std::vector<int64_t> shape, DType type, const void* data,
                        uint64_t nbytes, std::shared_ptr<const void> keep) {
    for (const Entry& e : tensors_)
        if (e.name == name) fail("gguf", "duplicate tensor name '{}'", name);
    if (shape.empty() || shape.size() > 4)
        fail("gguf", "tensor '{}' has {} dims (expected 1..4)", name, shape.size());
    uint64_t n = 1;
    for (int64_t d : shape) {
        if (d < 0) fail("gguf", "tensor '{}' has a negative dim", name);
        n *= uint64_t(d);
    }
    const auto want = dtype_nbytes(type, n);
    if (!want || *want != nbytes || (nbytes > 0 && data == nullptr))
        fail("gguf", "tensor '{}' ({} x {}) holds {} bytes, expected {}", name, n,
             dtype_info(type).name, nbytes, want ? std::to_string(*want) : "a whole block count");
    tensors_.push_back({std::move(name), std::move(shape), type, data, nbytes, std::move(keep)});
}

void Writer::add_tensor(std::string name, std::vector<int64_t> shape, DType type,
                        std::vector<uint8_t> bytes) {
    auto buf = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
    add_tensor(std::move(name), std::move(shape), type, buf->data(), buf->size(), buf);
}

void Writer::write(const std::string& path) const {
    const uint64_t align = alignment();
    Enc h;
    h.b.append("GGUF", 4);
    h.put<uint32_t>(3);
    h.put<uint64_t>(tensors_.size());
    h.put<uint64_t>(kv_.size());
    for (const auto& [k, v] : kv_) {
        h.str(k);
        h.value(v);
    }
    uint64_t off = 0;
    for (const Entry& e : tensors_) {
        h.str(e.name);
        h.put<uint32_t>(uint32_t(e.shape.size()));
        for (auto d = e.shape.rbegin(); d != e.shape.rend(); ++d) h.put<uint64_t>(uint64_t(*d));
        h.put<uint32_t>(uint32_t(e.type));
        h.put<uint64_t>(off);
        off = align_up(off + e.nbytes, align);
    }

    TempFile out(path);
    out.write(h.b.data(), h.b.size());
    out.pad_to(align);
    const uint64_t data_start = out.written();
    for (const Entry& e : tensors_) {
        ZQAT_ASSERT((out.written() - data_start) % align == 0);
        out.write(e.data, e.nbytes);
        out.pad_to(align);
    }
    out.commit();
}

}  // namespace zqat::gguf
