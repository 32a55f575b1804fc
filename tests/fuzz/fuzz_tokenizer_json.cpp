// libFuzzer target: any bytes as a tokenizer.json. Loading must either succeed or throw
// zqat::Error; on success a few strings are encoded and decoded back.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "zqat/core/error.h"
#include "zqat/io/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const zqat::Tokenizer tok = zqat::Tokenizer::from_hf_json_string(
            std::string_view(reinterpret_cast<const char*>(data), size), "fuzz-tokenizer.json");
        for (const char* s : {"Hello world 123", " \t\n  x", "\xff\xfe abc", "", "<|endoftext|>"}) {
            const auto ids = tok.encode(s, true, true);
            (void)tok.decode(ids);
        }
    } catch (const zqat::Error&) {
    }
    return 0;
}
