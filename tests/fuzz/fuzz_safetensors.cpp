// libFuzzer target: any bytes as a safetensors file. Parsing must either succeed or throw
// zqat::Error; on success the parser's promises are checked (tensors inside the data section,
// sized by dtype x shape, not overlapping, unique names) and every small tensor is converted to
// F32. A broken promise traps, so the fuzzer reports it like a crash.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "zqat/core/error.h"
#include "zqat/io/safetensors.h"

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace zqat;
    try {
        const safetensors::File f = safetensors::File::from_memory(data, size, "fuzz.safetensors");
        check(size >= 8);
        uint64_t header_len = 0;
        std::memcpy(&header_len, data, 8);
        const uint64_t data_start = 8 + header_len;
        size_t sink = 0;
        for (const auto& [k, v] : f.metadata()) sink += k.size() + v.size();
        std::vector<std::pair<uint64_t, uint64_t>> ranges;
        for (const auto& t : f.tensors()) {
            check(f.find_tensor(t.name) == &t);  // names are unique
            check(t.name != "__metadata__");
            check(t.offset >= data_start && t.offset <= size && t.nbytes <= size - t.offset);
            uint64_t numel = 1;
            for (int64_t d : t.shape) {
                check(d >= 0);
                numel *= uint64_t(d);
            }
            const auto want = dtype_nbytes(t.dtype, numel);
            check(want && *want == t.nbytes);
            if (t.nbytes > 0) ranges.emplace_back(t.offset, t.offset + t.nbytes);
            if (t.nbytes > (1u << 20)) continue;
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
