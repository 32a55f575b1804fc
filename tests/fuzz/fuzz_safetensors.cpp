// libFuzzer target: any bytes as a safetensors file. Parsing must either succeed or throw
// zqat::Error; on success every small tensor is converted to F32.
#include <cstddef>
#include <cstdint>

#include "zqat/core/error.h"
#include "zqat/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const zqat::safetensors::File f =
            zqat::safetensors::File::from_memory(data, size, "fuzz.safetensors");
        size_t sink = f.metadata().size();
        for (const auto& t : f.tensors()) {
            if (t.nbytes > (1u << 20)) continue;
            sink += size_t(f.tensor(t).to_f32().numel());
        }
        return sink == size_t(-1);
    } catch (const zqat::Error&) {
        return 0;
    }
}
