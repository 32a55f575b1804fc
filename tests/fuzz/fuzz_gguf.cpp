// libFuzzer target: any bytes as a GGUF file. Parsing must either succeed or throw zqat::Error;
// on success every metadata value is read through every typed getter (each may throw Error), the
// parser's promises about tensors are checked (inside the file, aligned, sized by dtype x shape,
// not overlapping) and every small tensor is dequantized. A broken promise traps, so the fuzzer
// reports it like a crash.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "zqat/core/error.h"
#include "zqat/io/gguf.h"

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

template <class F>
size_t try_get(F&& f) {
    try {
        return size_t(f());
    } catch (const zqat::Error&) {
        return 1;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace zqat;
    try {
        const gguf::File f = gguf::File::from_memory(data, size, "fuzz.gguf");
        size_t sink = 0;
        for (const auto& kv : f.metadata()) {
            const std::string& key = kv.first;
            const gguf::Value& v = kv.second;
            check(f.find(key) == &v);  // keys are unique
            check(v.offset < size);
            sink += key.size() + v.s.size() + v.strs.size() + v.ints.size() + v.floats.size();
            sink += try_get([&] { return f.get_uint(key); });
            sink += try_get([&] { return f.get_int(key); });
            sink += try_get([&] { return f.get_float(key) != 0; });
            sink += try_get([&] { return f.get_bool(key); });
            sink += try_get([&] { return f.get_string(key).size(); });
            sink += try_get([&] { return f.get_string_array(key).size(); });
            sink += try_get([&] { return f.get_int_array(key).size(); });
            sink += try_get([&] { return f.get_float_array(key).size(); });
        }
        check(f.alignment() > 0 && (f.alignment() & (f.alignment() - 1)) == 0);
        std::vector<std::pair<uint64_t, uint64_t>> ranges;
        for (const auto& t : f.tensors()) {
            check(f.find_tensor(t.name) == &t);  // names are unique
            check(t.offset <= size && t.nbytes <= size - t.offset);
            check(t.offset % f.alignment() == 0);
            uint64_t numel = 1;
            for (int64_t d : t.shape) {
                check(d >= 0);
                numel *= uint64_t(d);
            }
            const auto want = dtype_nbytes(t.dtype, numel);
            check(want && *want == t.nbytes);
            if (t.nbytes > 0) ranges.emplace_back(t.offset, t.offset + t.nbytes);
            if (t.nbytes > (1u << 20) || numel > (1u << 20)) continue;
            const Tensor x = f.tensor(t).to_f32();
            check(uint64_t(x.numel()) == numel);
            for (int64_t i = 0; i < x.numel(); ++i) sink += x.f32()[i] == 0.0f;
        }
        std::sort(ranges.begin(), ranges.end());
        for (size_t i = 1; i < ranges.size(); ++i) check(ranges[i - 1].second <= ranges[i].first);
        return sink == size_t(-1);
    } catch (const Error&) {
        return 0;
    }
}
