// libFuzzer target: any bytes as a tokenizer.json. Loading must either succeed or throw
// zqat::Error; on success a few fixed strings (valid and invalid UTF-8, special-token spellings,
// digit runs, whitespace runs) and a slice of the input itself are encoded with and without
// special tokens, every id must lie inside the vocabulary, and decode must accept them.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "zqat/core/error.h"
#include "zqat/io/tokenizer.h"

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace zqat;
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    try {
        const Tokenizer tok = Tokenizer::from_hf_json_string(bytes, "fuzz-tokenizer.json");
        const int32_t n_vocab = tok.n_vocab();
        check(n_vocab >= 0);
        check(tok.bos_id() >= -1 && tok.bos_id() < n_vocab);
        check(tok.eos_id() >= -1 && tok.eos_id() < n_vocab);
        size_t sink = 0;
        for (std::string_view s :
             {std::string_view("Hello world 123"), std::string_view(" \t\n  x \r\n\r\n y "),
              std::string_view("\xff\xfe abc \xe2\x82"), std::string_view(""),
              std::string_view("<|endoftext|><|endoftext|"), std::string_view("I'M we'll 12345"),
              std::string_view("the  12345 the\r\n\xe4\xb8\xad\xf0\x9f\x98\x80's"),
              bytes.substr(0, 256)}) {
            for (bool special : {false, true}) {
                // Encoding never throws for a tokenizer that loaded; ids are in range (a byte
                // the vocabulary cannot spell is unk, or dropped when there is no unk).
                const auto ids = tok.encode(s, true, special);
                for (int32_t id : ids) check(id >= 0 && id < n_vocab);
                sink += tok.decode(ids).size();
            }
        }
        for (int32_t id = 0; id < std::min(n_vocab, 256); ++id) sink += tok.token_bytes(id).size();
        return sink == size_t(-1);
    } catch (const Error&) {
        return 0;
    }
}
