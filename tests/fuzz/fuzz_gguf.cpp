// libFuzzer target: any bytes as a GGUF file. Parsing must either succeed or throw zqat::Error;
// on success every metadata value is read and every small tensor dequantized.
#include <cstddef>
#include <cstdint>

#include "zqat/core/error.h"
#include "zqat/io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const zqat::gguf::File f = zqat::gguf::File::from_memory(data, size, "fuzz.gguf");
        size_t sink = 0;
        for (const auto& [key, v] : f.metadata())
            sink += key.size() + v.s.size() + v.strs.size() + v.ints.size() + v.floats.size();
        for (const auto& t : f.tensors()) {
            if (t.nbytes > (1u << 20)) continue;
            const zqat::Tensor x = f.tensor(t).to_f32();
            sink += size_t(x.numel());
        }
        return sink == size_t(-1);
    } catch (const zqat::Error&) {
        return 0;
    }
}
