// Tokenizers that reproduce the reference implementations exactly:
//   - byte-level BPE (GPT-2 family): GGUF `tokenizer.ggml.model = gpt2` (tokens, merges and the
//     pre-tokenizer named by `tokenizer.ggml.pre`), or a Hugging Face tokenizer.json with a BPE
//     model and ByteLevel (optionally Digits / Split) pre-tokenizers;
//   - SentencePiece-style BPE with byte fallback: GGUF `tokenizer.ggml.model = llama` (scores).
// Special tokens (control/user-defined) in the text are matched as whole tokens when parse_special.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace zqat {

namespace gguf {
class File;
}

class Tokenizer {
  public:
    static Tokenizer from_gguf(const gguf::File& file);
    // tokenizer.json; BOS/EOS and add_bos come from tokenizer_config.json beside it when present.
    static Tokenizer from_hf_json(const std::string& tokenizer_json_path);
    // The same from bytes in memory; `name` and `config_name` are used in error messages.
    static Tokenizer from_hf_json_string(std::string_view tokenizer_json, const std::string& name,
                                         std::string_view tokenizer_config_json = {},
                                         const std::string& config_name = {});

    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    ~Tokenizer();

    // add_bos: prepend BOS when the model's metadata asks for it (add_bos_token) -- or always when
    // force_bos. parse_special: recognise special-token strings such as "<|im_start|>".
    std::vector<int32_t> encode(std::string_view text, bool add_bos = true,
                                bool parse_special = false) const;
    std::string decode(std::span<const int32_t> ids) const;  // raw bytes, may be invalid UTF-8
    std::string token_bytes(int32_t id) const;               // what one token decodes to

    int32_t n_vocab() const;
    int32_t bos_id() const;  // -1 when the model has none
    int32_t eos_id() const;
    bool add_bos() const;           // the model's add_bos_token
    std::string_view kind() const;  // "bpe-byte-level" or "spm-bpe"

  private:
    struct Impl;
    explicit Tokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace zqat
