// Tokenizers against reference implementations (goldens from scripts/make_tokenizer_golden.py):
// SmolLM2's byte-level BPE vs Hugging Face `tokenizers` on all of WikiText-2 test and an
// adversarial string set; SentencePiece-BPE (GGUF "llama" vocab) vs `sentencepiece`.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "zqat/io/gguf.h"
#include "zqat/io/mmap.h"
#include "zqat/io/tokenizer.h"

using namespace zqat;
using nlohmann::json;

namespace {

const std::string kData = std::string(ZQAT_TEST_DATA) + "/tokenizer/";

std::string show(const std::vector<int32_t>& v, size_t at) {
    std::string s;
    for (size_t i = at >= 4 ? at - 4 : 0; i < std::min(v.size(), at + 4); ++i) {
        if (i == at) s += '[';
        s += std::to_string(v[i]);
        s += i == at ? "] " : " ";
    }
    return s;
}

// Equal ids, or a message at the first difference.
void expect_ids(const std::vector<int32_t>& ours, const std::vector<int32_t>& ref,
                const std::string& what) {
    size_t i = 0;
    while (i < ours.size() && i < ref.size() && ours[i] == ref[i]) ++i;
    EXPECT_TRUE(i == ours.size() && i == ref.size())
        << what << ": first difference at id " << i << " of " << ref.size() << " (ours "
        << ours.size() << ")\n  ours: " << show(ours, i) << "\n  ref:  " << show(ref, i);
}

std::vector<int32_t> as_ids(const json& j) {
    return j.get<std::vector<int32_t>>();
}

Tokenizer smollm2() {
    const char* path = std::getenv("ZQAT_MODEL");
    return Tokenizer::from_gguf(gguf::File::open(path));
}

}  // namespace

TEST(TokenizerSmolLM2, WikiText2TestEqualsReference) {
    if (!std::getenv("ZQAT_MODEL")) GTEST_SKIP() << "ZQAT_MODEL not set";
    const Tokenizer tok = smollm2();
    const std::string text =
        read_file(std::string(ZQAT_SOURCE_DIR) + "/../shared/data/wikitext-2-raw/wiki.test.raw");
    const std::string raw = read_file(kData + "wiki_test.smollm2.i32");
    std::vector<int32_t> ref(raw.size() / 4);
    std::memcpy(ref.data(), raw.data(), ref.size() * 4);
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tok.encode(text, /*add_bos=*/true, /*parse_special=*/true);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(ids.size(), 301948u);
    expect_ids(ids, ref, "wiki.test.raw");
    EXPECT_EQ(tok.decode(ids), text);
    EXPECT_LT(s, 10.0) << "encoding 1.3 MB took " << s << " s";
}

TEST(TokenizerSmolLM2, AdversarialEqualsReference) {
    if (!std::getenv("ZQAT_MODEL")) GTEST_SKIP() << "ZQAT_MODEL not set";
    const Tokenizer tok = smollm2();
    const json gold = json::parse(read_file(kData + "adversarial.smollm2.json"));
    ASSERT_GT(gold.size(), 50u);
    size_t n_invalid = 0, n_lossy = 0;
    for (const json& g : gold) {
        const std::string text = g.at("text").get<std::string>();
        // Invalid UTF-8 entries carry the raw bytes; `text` is their U+FFFD-replaced form.
        std::string input = text;
        if (g.contains("bytes_hex")) {
            const std::string hex = g["bytes_hex"].get<std::string>();
            input.clear();
            for (size_t i = 0; i + 1 < hex.size(); i += 2)
                input += char(std::stoi(hex.substr(i, 2), nullptr, 16));
            ++n_invalid;
        }
        const auto ids = tok.encode(input, true, /*parse_special=*/true);
        expect_ids(ids, as_ids(g.at("ids")), json(text).dump().substr(0, 80));
        // "lossy": bytes SmolLM2's vocabulary cannot spell, dropped as HF does.
        if (!g.value("lossy", false)) {
            EXPECT_EQ(tok.decode(ids), text);
        }
        n_lossy += g.value("lossy", false);
    }
    EXPECT_GT(n_invalid, 5u);
    EXPECT_GE(n_lossy, 5u);
    // Metadata: no BOS for SmolLM2 (add_bos_token = false); specials only when asked for.
    EXPECT_FALSE(tok.add_bos());
    EXPECT_EQ(tok.encode("<|im_start|>", true, true), (std::vector<int32_t>{1}));
    EXPECT_GT(tok.encode("<|im_start|>", true, false).size(), 1u);
}

TEST(TokenizerSpm, EqualsSentencePiece) {
    const Tokenizer tok = Tokenizer::from_gguf(gguf::File::open(kData + "spm.gguf"));
    EXPECT_EQ(tok.kind(), "spm-bpe");
    EXPECT_EQ(tok.bos_id(), 1);
    const json gold = json::parse(read_file(kData + "spm.golden.json"));
    ASSERT_GT(gold.size(), 50u);
    for (const json& g : gold) {
        const std::string text = g.at("text").get<std::string>();
        const auto ids = tok.encode(text, /*add_bos=*/false);
        expect_ids(ids, as_ids(g.at("ids")), json(text).dump().substr(0, 80));
    }
    // BOS is added for SPM vocabularies (llama.cpp's default) when asked.
    EXPECT_EQ(tok.encode("hi", true).front(), 1);
}
