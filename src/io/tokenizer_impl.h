// The tokenizer's state, shared by the loaders (tokenizer.cpp: GGUF, tokenizer_hf.cpp:
// tokenizer.json) and the encoder (tokenizer.cpp). Internal to src/io.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer_pre.h"
#include "zqat/io/tokenizer.h"

namespace zqat {

// Token types, numbered as llama.cpp's GGUF tokenizer.ggml.token_type.
enum TokenType : uint8_t {
    kNormal = 1,
    kUnknown = 2,
    kControl = 3,      // matched in text only when parse_special (HF: added, special)
    kUserDefined = 4,  // always matched in text (HF: added, not special)
    kUnused = 5,
    kByte = 6,  // <0xXX> (SentencePiece byte fallback)
};

// The state lives in a namespace-level struct so that free helper functions in the loaders can
// fill it; Tokenizer::Impl (private in the public header) is just this.
struct TokenizerData {
    enum class Kind { bpe, spm } kind = Kind::bpe;
    std::string source;  // file name, for messages

    std::vector<std::string> tokens;  // as stored: byte-level encoded (bpe) or with U+2581 (spm)
    std::vector<uint8_t> types;       // TokenType
    std::vector<float> scores;        // spm merge priorities
    std::unordered_map<std::string, int32_t> token_to_id;
    int32_t bos = -1, eos = -1, unk = -1;
    // bpe: what a byte the vocabulary cannot spell becomes, as HF's BPE model does: its
    // unk_token (consecutive ones fused into one when fuse_unk), or -1: the byte is dropped
    // and its neighbours may merge across it. GGUF files carry no such setting (their
    // unknown_token_id comes from tokenizer_config.json, which HF's model ignores): -1.
    int32_t bpe_unk = -1;
    bool fuse_unk = false;
    bool add_bos = false;
    std::string bos_text;  // HF: the BOS named by the post-processor, resolved after finish()
    bool add_space_prefix = false;  // spm: "▁" before the text and after each special token

    // bpe
    tok::PreTokenizer pre;
    std::vector<std::string> merges;  // "left right", rank = index; resolved to ids in finish()
    bool ignore_merges = false;       // a word that is itself a token is not merged (llama3)
    // HF normalizer NFC: text that the NFC quick check cannot pass is refused (NFC itself is not
    // implemented), so what is tokenized is exactly what HF would tokenize.
    bool nfc = false;
    struct Merge {
        int32_t rank, id;
    };
    std::unordered_map<uint64_t, Merge> merge_of;  // (left id << 32 | right id) -> merge
    std::array<int32_t, 256> byte_symbol{};        // id of byte b's single-character symbol, or -1

    // spm
    std::array<int32_t, 256> byte_token{};  // <0xXX>, or unk

    // Special (control / user-defined) tokens, matched in the text before anything else,
    // leftmost then longest first; lstrip/rstrip swallow the whitespace beside a match (HF).
    struct Special {
        std::string text;
        int32_t id;
        bool control, lstrip, rstrip;
    };
    std::vector<Special> specials;
    std::array<std::vector<uint32_t>, 256>
        special_by_byte;               // first byte -> specials, longest first
    std::vector<bool> lstrip, rstrip;  // per token (HF added_tokens), may be empty

    std::vector<std::string> pieces;  // what each token decodes to

    mutable std::mutex cache_mu;
    mutable std::unordered_map<std::string, std::vector<int32_t>> cache;  // bpe word -> ids

    // Checks ids and builds the lookup tables; throws Error naming `source`.
    void finish();
    void encode_text(std::string_view text, bool after_special, std::vector<int32_t>& out) const;
    void bpe_word(const std::string& word, std::vector<int32_t>& out) const;
    void spm_text(std::string_view text, bool prefix, std::vector<int32_t>& out) const;
};

struct Tokenizer::Impl : TokenizerData {};

}  // namespace zqat
