#include "zqat/io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "zqat/core/error.h"
#include "zqat/io/mmap.h"

namespace zqat::safetensors {

namespace {
constexpr uint64_t kMaxHeader = uint64_t(100) << 20;  // as the reference implementation
}

class Parser {
  public:
    explicit Parser(File& f) : f_(f) {}

    void parse() {
        using nlohmann::json;
        const std::string& path = f_.path_;
        if (f_.size_ < 8)
            fail("safetensors",
                 "{}: truncated: header length at offset 0 needs 8 bytes, file has {}", path,
                 f_.size_);
        uint64_t n = 0;
        std::memcpy(&n, f_.base_, 8);
        if (n > kMaxHeader)
            fail("safetensors", "{}: header length {} at offset 0 exceeds the {} byte limit", path,
                 n, kMaxHeader);
        if (n > f_.size_ - 8)
            fail("safetensors", "{}: header length {} at offset 0 runs past end of file (size {})",
                 path, n, f_.size_);
        const uint64_t data_start = 8 + n;
        header_len_ = n;
        json h;
        // nlohmann keeps the last of duplicated keys; a tensor silently replaced by a later
        // entry would be a wrong answer, so top-level keys are checked as they are parsed.
        std::unordered_set<std::string> keys;
        std::string dup;
        auto cb = [&](int depth, json::parse_event_t ev, json& parsed) {
            if (ev == json::parse_event_t::key && depth == 1) {
                const std::string k = parsed.get<std::string>();
                if (!keys.insert(k).second && dup.empty()) dup = k;
            }
            return true;
        };
        try {
            h = json::parse(reinterpret_cast<const char*>(f_.base_ + 8),
                            reinterpret_cast<const char*>(f_.base_ + 8 + n), cb);
        } catch (const json::parse_error& e) {
            fail("safetensors", "{}: header JSON invalid at offset {}: {}", path, 8 + e.byte,
                 e.what());
        } catch (const json::exception& e) {  // e.g. a number out of range
            fail("safetensors", "{}: header JSON at offset 8 invalid: {}", path, e.what());
        }
        if (!h.is_object())
            fail("safetensors", "{}: header at offset 8 is not a JSON object", path);
        if (!dup.empty())
            fail("safetensors",
                 "{}: tensor '{}' at offset {} is listed more than once in the header", path, dup,
                 key_offset(dup));
        for (auto it = h.begin(); it != h.end(); ++it) {
            const std::string& name = it.key();
            const json& v = it.value();
            if (name == "__metadata__") {
                // str -> str, as the reference implementation requires (it rejects other values).
                if (!v.is_object())
                    fail("safetensors", "{}: __metadata__ at offset {} is not an object", path,
                         key_offset(name));
                for (auto m = v.begin(); m != v.end(); ++m) {
                    if (!m.value().is_string())
                        fail("safetensors",
                             "{}: __metadata__ value of '{}' at offset {} is {}, expected a string",
                             path, m.key(), key_offset(name), m.value().type_name());
                    f_.metadata_[m.key()] = m.value().get<std::string>();
                }
                continue;
            }
            f_.tensors_.push_back(info(name, v, data_start));
        }
        // No two tensors may share bytes. Empty tensors own none and are left out: skipping
        // them only inside the comparison would hide an overlap of their two neighbours.
        std::vector<const TensorInfo*> by_off;
        for (const auto& t : f_.tensors_)
            if (t.nbytes > 0) by_off.push_back(&t);
        std::sort(by_off.begin(), by_off.end(),
                  [](auto* a, auto* b) { return a->offset < b->offset; });
        for (size_t i = 1; i < by_off.size(); ++i)
            if (by_off[i - 1]->offset + by_off[i - 1]->nbytes > by_off[i]->offset)
                fail("safetensors", "{}: tensors '{}' and '{}' overlap at offset {}", path,
                     by_off[i - 1]->name, by_off[i]->name, by_off[i]->offset);
    }

  private:
    File& f_;
    uint64_t header_len_ = 0;

    // Byte offset of `"name"` in the header, for messages (8, the header start, when the name is
    // spelled with escapes and cannot be found verbatim).
    uint64_t key_offset(const std::string& name) const {
        const std::string_view h(reinterpret_cast<const char*>(f_.base_ + 8), header_len_);
        const size_t at = h.find('"' + name + '"');
        return at == std::string_view::npos ? 8 : 8 + at;
    }

    // One header entry: {"dtype": str, "shape": [uint...], "data_offsets": [begin, end]}.
    TensorInfo info(const std::string& name, const nlohmann::json& v, uint64_t data_start) {
        const std::string& path = f_.path_;
        const uint64_t at = key_offset(name);
        if (!v.is_object())
            fail("safetensors", "{}: tensor '{}' entry at offset {} is not an object", path, name,
                 at);
        auto field = [&](const char* k) -> const nlohmann::json& {
            if (!v.contains(k))
                fail("safetensors", "{}: tensor '{}' at offset {} lacks '{}'", path, name, at, k);
            return v.at(k);
        };
        TensorInfo t;
        t.name = name;
        const auto& dt = field("dtype");
        const std::string d = dt.is_string() ? dt.get<std::string>() : "";
        if (d == "F32")
            t.dtype = DType::F32;
        else if (d == "F16")
            t.dtype = DType::F16;
        else if (d == "BF16")
            t.dtype = DType::BF16;
        else
            fail("safetensors",
                 "{}: tensor '{}' at offset {} has dtype {} (supported: F32, F16, BF16)", path,
                 name, at, dt.dump());
        const auto& shape = field("shape");
        if (!shape.is_array() || shape.size() > 8)
            fail("safetensors", "{}: tensor '{}' at offset {}: shape must be an array of 0..8 dims",
                 path, name, at);
        // Element counts stay below 2^62 so that bytes (at most 8 per element here) fit u64.
        uint64_t numel = 1;
        for (const auto& s : shape) {
            if (!s.is_number_unsigned())
                fail("safetensors",
                     "{}: tensor '{}' at offset {} has a non-integer or negative dim", path, name,
                     at);
            const uint64_t dim = s.get<uint64_t>();
            if (dim != 0 && numel > (uint64_t(1) << 62) / dim)
                fail("safetensors", "{}: tensor '{}' at offset {}: shape overflows", path, name,
                     at);
            numel *= dim;
            t.shape.push_back(int64_t(dim));
        }
        const auto& off = field("data_offsets");
        if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
            !off[1].is_number_unsigned())
            fail("safetensors", "{}: tensor '{}' at offset {}: data_offsets must be [begin, end]",
                 path, name, at);
        const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
        const uint64_t data_size = f_.size_ - data_start;
        if (b > e || e > data_size)
            fail("safetensors",
                 "{}: tensor '{}' data [{}, {}) at offset {} runs past end of file (size {})", path,
                 name, b, e, data_start + b, f_.size_);
        const auto want = dtype_nbytes(t.dtype, numel);
        if (!want || e - b != *want)
            fail("safetensors",
                 "{}: tensor '{}' has {} bytes at offset {}, but {} of shape {} needs {}", path,
                 name, e - b, data_start + b, d, shape.dump(),
                 want ? fmt::format("{}", *want) : std::string("more than 2^64"));
        t.offset = data_start + b;
        t.nbytes = *want;
        return t;
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

}  // namespace zqat::safetensors
