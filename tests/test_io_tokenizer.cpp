// Tokenizer unit tests: pre-tokenizers against HF `tokenizers` (pretok.json), a tokenizer.json
// trained with HF (Llama-3 pre-tokenizer, added tokens) against HF's ids, hand-written
// tokenizer.json files, malformed ones, round trips, invalid UTF-8, SPM details and speed.
// Goldens: scripts/make_tokenizer_golden.py. The SmolLM2 and SPM goldens proper are in
// test_io_tokenizer_golden.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/tokenizer_pre.h"
#include "zqat/core/error.h"
#include "zqat/io/gguf.h"
#include "zqat/io/mmap.h"
#include "zqat/io/tokenizer.h"

using namespace zqat;
using nlohmann::json;

namespace {

const std::string kData = std::string(ZQAT_TEST_DATA) + "/tokenizer/";
using Ids = std::vector<int32_t>;

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

// Random valid UTF-8 mixing ASCII (letters, digits, spaces, newlines, quotes) with 2-4 byte
// characters, so that every pre-tokenizer branch is taken.
std::string random_utf8(std::mt19937& rng, size_t n_chars) {
    static const std::vector<uint32_t> pool = {
        'a',    'Z',    '0',    '7',     ' ',     ' ',    ' ',     '\n',   '\r',   '\t',
        '\'',   's',    'l',    '.',     '!',     '<',    '|',     0xA0,   0xE9,   0x301,
        0x3B1,  0x416,  0x5D0,  0x627,   0x663,   0x939,  0xE01,   0x2028, 0x3000, 0x3042,
        0x4E2D, 0xAC00, 0xFFFD, 0x1F600, 0x1F3FD, 0x200D, 0x10348, 0x2160, 0xBD};
    std::string s;
    for (size_t i = 0; i < n_chars; ++i) {
        const uint32_t cp = pool[rng() % pool.size()];
        if (cp < 0x80) {
            s += char(cp);
        } else if (cp < 0x800) {
            s += char(0xC0 | (cp >> 6));
            s += char(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            s += char(0xE0 | (cp >> 12));
            s += char(0x80 | ((cp >> 6) & 0x3F));
            s += char(0x80 | (cp & 0x3F));
        } else {
            s += char(0xF0 | (cp >> 18));
            s += char(0x80 | ((cp >> 12) & 0x3F));
            s += char(0x80 | ((cp >> 6) & 0x3F));
            s += char(0x80 | (cp & 0x3F));
        }
    }
    return s;
}

const char* model_path() {
    const char* p = std::getenv("ZQAT_MODEL");
    return p && std::ifstream(p).good() ? p : nullptr;
}

// A tiny GPT-2 style tokenizer.json: the 256 byte symbols are ids 0..255 (in byte-map order),
// plus merges "Ġ t", "h e", "Ġt he" and two added tokens.
std::string tiny_json(const std::string& pre, const std::string& extra_model = "") {
    json vocab = json::object();
    int id = 0;
    std::vector<int> bytes;
    for (int b = 0x21; b <= 0x7E; ++b) bytes.push_back(b);
    for (int b = 0xA1; b <= 0xAC; ++b) bytes.push_back(b);
    for (int b = 0xAE; b <= 0xFF; ++b) bytes.push_back(b);
    std::vector<uint32_t> cps(bytes.begin(), bytes.end());
    for (int b = 0, n = 0; b < 256; ++b)
        if (std::find(bytes.begin(), bytes.end(), b) == bytes.end()) cps.push_back(256 + n++);
    for (uint32_t cp : cps) {
        std::string s;
        if (cp < 0x80) {
            s += char(cp);
        } else {
            s += char(0xC0 | (cp >> 6));
            s += char(0x80 | (cp & 0x3F));
        }
        vocab[s] = id++;
    }
    vocab["\xC4\xA0t"] = id++;    // 256 "Ġt"
    vocab["he"] = id++;           // 257
    vocab["\xC4\xA0the"] = id++;  // 258
    json j = {
        {"added_tokens",
         {{{"id", 259}, {"content", "<|eot|>"}, {"special", true}},
          {{"id", 260}, {"content", "<x>"}, {"special", false}, {"lstrip", true}}}},
        {"normalizer", nullptr},
        {"pre_tokenizer", json::parse(pre)},
        {"model",
         {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"\xC4\xA0 t", "h e", "\xC4\xA0t he"}}}}};
    if (!extra_model.empty()) j["model"].update(json::parse(extra_model));
    return j.dump();
}

const char* kByteLevel = R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true})";

}  // namespace

TEST(TokenizerPre, EqualsHuggingFace) {
    using tok::Pattern;
    using K = tok::PreStep::Kind;
    const json gold = json::parse(read_file(kData + "pretok.json"));
    const std::vector<std::pair<std::string, tok::PreTokenizer>> cases = {
        {"gpt2", {{K::split, Pattern::gpt2, false}}},
        {"gpt2_prefix", {{K::prefix_space}, {K::split, Pattern::gpt2, false}}},
        {"smollm", {{K::digits, Pattern::gpt2, true}, {K::split, Pattern::gpt2, false}}},
        {"llama3", {{K::split, Pattern::llama3, false}}},
        {"qwen2", {{K::split, Pattern::qwen2, false}}},
        {"gpt2_split", {{K::split, Pattern::gpt2, false}}},
        {"digits", {{K::digits, Pattern::gpt2, false}}},
    };
    const auto& texts = gold.at("texts");
    ASSERT_GT(texts.size(), 70u);
    for (const auto& [name, pre] : cases) {
        for (size_t i = 0; i < texts.size(); ++i) {
            const std::string text = texts[i].get<std::string>();
            std::vector<std::string> words;
            tok::pre_tokenize(pre, text, words);
            EXPECT_EQ(json(words), gold.at(name)[i]) << name << " on " << json(text).dump();
        }
    }
}

TEST(TokenizerPre, RecognisesRegexSpellings) {
    tok::Pattern p{};
    EXPECT_TRUE(tok::pattern_from_regex(
        R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", &p));
    EXPECT_EQ(p, tok::Pattern::gpt2);
    EXPECT_TRUE(tok::pattern_from_regex(
        R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|)"
        R"(\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
        &p));
    EXPECT_EQ(p, tok::Pattern::llama3);
    EXPECT_FALSE(tok::pattern_from_regex(R"(\s+)", &p));
}

TEST(TokenizerHf, TrainedLlama3EqualsHuggingFace) {
    const Tokenizer tok = Tokenizer::from_hf_json(kData + "hf_llama3/tokenizer.json");
    EXPECT_EQ(tok.kind(), "bpe-byte-level");
    EXPECT_EQ(tok.n_vocab(), 802);
    EXPECT_EQ(tok.bos_id(), 0);  // <|begin|>, from tokenizer_config.json
    EXPECT_EQ(tok.eos_id(), 1);
    EXPECT_TRUE(tok.add_bos());
    const json gold = json::parse(read_file(kData + "hf_llama3/golden.json"));
    ASSERT_GT(gold.size(), 80u);
    for (const json& g : gold) {
        const std::string text = g.at("text").get<std::string>();
        const Ids ids = tok.encode(text, /*add_bos=*/false, /*parse_special=*/true);
        EXPECT_EQ(ids, g.at("ids").get<Ids>()) << json(text).dump().substr(0, 80);
        if (text.find("<tool>") == std::string::npos) {  // lstrip/rstrip drop spaces
            EXPECT_EQ(tok.decode(ids), text);
        }
    }
    // BOS from the config; control tokens only with parse_special, user-defined ones always.
    EXPECT_EQ(tok.encode("a", true).front(), 0);
    EXPECT_GT(tok.encode("<|end|>", false, false).size(), 1u);
    EXPECT_EQ(tok.encode("<|end|>", false, true), Ids{1});
    EXPECT_EQ(tok.encode("<tool>", false, false).size(), 1u);
}

TEST(TokenizerHf, HandWritten) {
    const Tokenizer tok = Tokenizer::from_hf_json_string(
        tiny_json(kByteLevel), "tiny.json",
        R"({"bos_token": {"content": "<|eot|>"}, "eos_token": "<|eot|>", "add_bos_token": false})",
        "tiny_config.json");
    EXPECT_EQ(tok.n_vocab(), 261);
    EXPECT_EQ(tok.eos_id(), 259);
    EXPECT_FALSE(tok.add_bos());
    // " the" -> Ġthe; "the" -> t + he ('t' is byte-map index 'a'-0x21 ...).
    EXPECT_EQ(tok.encode(" the", true), Ids{258});
    const Ids the = tok.encode("the");
    ASSERT_EQ(the.size(), 2u);
    EXPECT_EQ(the[1], 257);
    EXPECT_EQ(tok.decode(tok.encode(" the  12 x<|eot|>", false, true)), " the  12 x<|eot|>");
    EXPECT_EQ(tok.encode("a<|eot|>", false, true).back(), 259);
    // lstrip: "a  <x>" -> a, <x> (the spaces go with the token).
    EXPECT_EQ(tok.encode("a  <x>", false, false), (Ids{tok.encode("a")[0], 260}));
    EXPECT_EQ(tok.token_bytes(256), " t");
    EXPECT_NE(error_of([&] { tok.token_bytes(261); }).find("tiny.json"), std::string::npos);
    // Every byte string survives encode -> decode when it is valid UTF-8.
    std::mt19937 rng(7);
    for (int k = 0; k < 200; ++k) {
        const std::string s = random_utf8(rng, 1 + rng() % 40);
        EXPECT_EQ(tok.decode(tok.encode(s, false)), s);
    }

    // BOS from a TemplateProcessing post-processor (Llama 3 style); the config overrides it.
    json pp = json::parse(tiny_json(kByteLevel));
    pp["post_processor"] = json::parse(R"({"type": "Sequence", "processors": [
        {"type": "ByteLevel"}, {"type": "TemplateProcessing", "single": [
        {"SpecialToken": {"id": "<|eot|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]}]})");
    const Tokenizer with_bos = Tokenizer::from_hf_json_string(pp.dump(), "pp.json");
    EXPECT_TRUE(with_bos.add_bos());
    EXPECT_EQ(with_bos.bos_id(), 259);
    EXPECT_EQ(with_bos.encode(" the"), (Ids{259, 258}));
    EXPECT_FALSE(Tokenizer::from_hf_json_string(pp.dump(), "pp.json", R"({"add_bos_token": false})",
                                                "c.json")
                     .add_bos());

    // Digits + ByteLevel(add_prefix_space) and a Split: the spellings parse and split as HF.
    const Tokenizer seq =
        Tokenizer::from_hf_json_string(tiny_json(R"({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": true, "use_regex": true}]})"),
                                       "seq.json");
    EXPECT_EQ(seq.encode("the"), Ids{258});  // prefix space added
    // HF prepends a space to every piece: "the ", "1", "2" -> " the", " ", " 1", " 2".
    EXPECT_EQ(seq.decode(seq.encode("the 12")), " the  1 2");
    const Tokenizer split =
        Tokenizer::from_hf_json_string(tiny_json(R"({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
             "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]})",
                                                 R"({"ignore_merges": true})"),
                                       "split.json");
    EXPECT_EQ(split.encode(" the"), Ids{258});
}

TEST(TokenizerHf, MalformedNamesFileAndField) {
    struct Case {
        std::string text, field;
    };
    const std::vector<Case> cases = {
        {"{", "invalid JSON"},
        {"[]", "(top level)"},
        {R"({"model": 1})", "model"},
        {R"({"model": {"type": "Unigram"}})", "model.type"},
        {tiny_json(kByteLevel, R"({"vocab": {"a": 5}})"), "model.vocab['a']"},
        {tiny_json(kByteLevel, R"({"vocab": {"a": 0.5}})"), "model.vocab['a']"},
        {tiny_json(kByteLevel, R"({"vocab": []})"), "model.vocab"},
        {tiny_json(kByteLevel, R"({"merges": [3]})"), "model.merges[0]"},
        {tiny_json(kByteLevel, R"({"merges": [["a"]]})"), "model.merges[0]"},
        {tiny_json(kByteLevel, R"({"merges": "x"})"), "model.merges"},
        {tiny_json(kByteLevel, R"({"continuing_subword_prefix": "##"})"),
         "model.continuing_subword_prefix"},
        {tiny_json(R"({"type": "Whitespace"})"), "pre_tokenizer.type"},
        {tiny_json(R"({"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Isolated"})"),
         "pre_tokenizer.pattern"},
        {tiny_json(R"({"type": "Sequence", "pretokenizers": [{"type": "Digits"}]})"),
         "pre_tokenizer"},
        {tiny_json(R"({"type": "Sequence", "pretokenizers": [{"type": "ByteLevel",
                      "use_regex": 3}]})"),
         "pre_tokenizer.pretokenizers[0].use_regex"},
        {tiny_json("null"), "pre_tokenizer"},
    };
    for (const Case& c : cases) {
        const std::string e = error_of([&] { Tokenizer::from_hf_json_string(c.text, "t.json"); });
        EXPECT_NE(e.find("t.json"), std::string::npos) << e;
        EXPECT_NE(e.find(c.field), std::string::npos) << "want '" << c.field << "' in: " << e;
    }
    json j = json::parse(tiny_json(kByteLevel));
    j["added_tokens"][0]["id"] = 100000;
    EXPECT_NE(error_of([&] {
                  Tokenizer::from_hf_json_string(j.dump(), "t.json");
              }).find("added_tokens[0].id"),
              std::string::npos);
    j = json::parse(tiny_json(kByteLevel));
    j["normalizer"] = {{"type", "NFKC"}};
    EXPECT_NE(error_of([&] {
                  Tokenizer::from_hf_json_string(j.dump(), "t.json");
              }).find("normalizer.type"),
              std::string::npos);
    // NFC: text that passes the quick check is tokenized; text NFC could change is refused.
    j["normalizer"] = {{"type", "NFC"}};
    const Tokenizer nfc = Tokenizer::from_hf_json_string(j.dump(), "nfc.json");
    const std::string ok = "caf\xC3\xA9 \xD7\xA9\xD6\xB8 \xE0\xA4\xB9\xE0\xA4\xBF";
    EXPECT_EQ(nfc.decode(nfc.encode(ok)), ok);
    // decomposed e + U+0301; U+212B ANGSTROM SIGN (NFC: U+00C5); marks out of canonical order
    for (const char* bad : {"cafe\xCC\x81", "\xE2\x84\xAB", "a\xD6\xB8\xD6\xB0"}) {
        const std::string e = error_of([&] { nfc.encode(bad); });
        EXPECT_NE(e.find("nfc.json"), std::string::npos) << e;
        EXPECT_NE(e.find("NFC"), std::string::npos) << e;
    }
    const std::string e = error_of([&] {
        Tokenizer::from_hf_json_string(tiny_json(kByteLevel), "t.json", R"({"bos_token": 3})",
                                       "cfg.json");
    });
    EXPECT_NE(e.find("cfg.json"), std::string::npos) << e;
    EXPECT_NE(e.find("bos_token"), std::string::npos) << e;
    EXPECT_NE(error_of([] {
                  Tokenizer::from_hf_json("/nonexistent/tokenizer.json");
              }).find("/nonexistent/tokenizer.json"),
              std::string::npos);
}

TEST(TokenizerHf, InvalidUtf8IsReplacedLikePython) {
    const Tokenizer tok = Tokenizer::from_hf_json(kData + "hf_llama3/tokenizer.json");
    // Each maximal invalid subpart becomes one U+FFFD (Python errors="replace").
    EXPECT_EQ(tok.encode("a\xff"
                         "b",
                         false),
              tok.encode("a\xEF\xBF\xBD"
                         "b",
                         false));
    EXPECT_EQ(tok.encode("\xe2\x82 x", false), tok.encode("\xEF\xBF\xBD x", false));
    EXPECT_EQ(tok.encode("\xed\xa0\x80", false),
              tok.encode("\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", false));
    EXPECT_EQ(tok.decode(tok.encode("\xc0\xaf!", false)), "\xEF\xBF\xBD\xEF\xBF\xBD!");
    EXPECT_TRUE(tok.encode("", false).empty());
}

TEST(TokenizerSpm, SpecialsAndDecode) {
    const Tokenizer tok = Tokenizer::from_gguf(gguf::File::open(kData + "spm.gguf"));
    EXPECT_TRUE(tok.add_bos());
    EXPECT_EQ(tok.encode("", true), Ids{1});
    EXPECT_TRUE(tok.encode("", false).empty());
    // llama.cpp: "▁" again after a special token (here </s>, matched with parse_special).
    const Ids a = tok.encode("hello</s>hello", false, true);
    const Ids h = tok.encode("hello", false);
    Ids want = h;
    want.push_back(2);
    want.insert(want.end(), h.begin(), h.end());
    EXPECT_EQ(a, want);
    EXPECT_EQ(tok.decode(tok.encode("  two  spaces ", true)), "  two  spaces ");
    EXPECT_EQ(tok.decode(tok.encode("bytes: \xe2\x9c\x93 \xf0\x9f\x98\x80", true)),
              "bytes: \xe2\x9c\x93 \xf0\x9f\x98\x80");
    EXPECT_EQ(tok.token_bytes(1), "");  // control tokens decode to nothing (sentencepiece)
    std::mt19937 rng(3);
    for (int k = 0; k < 200; ++k) {
        const std::string s = random_utf8(rng, 1 + rng() % 40);
        EXPECT_EQ(tok.decode(tok.encode(s, true)), s) << json(s).dump();
    }
}

TEST(TokenizerSmolLM2, RoundTripSpeedAndSpecials) {
    const char* path = model_path();
    if (!path) GTEST_SKIP() << "ZQAT_MODEL not set or missing";
    const Tokenizer tok = Tokenizer::from_gguf(gguf::File::open(path));
    EXPECT_EQ(tok.kind(), "bpe-byte-level");
    EXPECT_EQ(tok.n_vocab(), 49152);
    EXPECT_FALSE(tok.add_bos());  // SmolLM2: add_bos_token = false
    EXPECT_EQ(tok.encode("hi", true), tok.encode("hi", false));
    EXPECT_EQ(tok.encode("<|im_start|>user", true, true).front(), 1);
    EXPECT_EQ(tok.encode("12345", false),
              (Ids{tok.encode("1")[0], tok.encode("2")[0], tok.encode("3")[0], tok.encode("4")[0],
                   tok.encode("5")[0]}));
    std::mt19937 rng(11);
    for (int k = 0; k < 300; ++k) {
        const std::string s = random_utf8(rng, 1 + rng() % 60);
        EXPECT_EQ(tok.decode(tok.encode(s, false)), s) << json(s).dump();
    }
    const std::string text =
        read_file(std::string(ZQAT_SOURCE_DIR) + "/../shared/data/wikitext-2-raw/wiki.test.raw");
    const Tokenizer cold = Tokenizer::from_gguf(gguf::File::open(path));  // empty word cache
    const auto t0 = std::chrono::steady_clock::now();
    const Ids ids = cold.encode(text, false, true);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(ids.size(), 301948u);
    // The 2 s budget holds for optimized builds; sanitizer and debug builds get ten times that.
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__)
    const double budget = 2.0;
#else
    const double budget = 20.0;
#endif
    EXPECT_LT(s, budget) << "encoding wiki.test.raw (1.3 MB) took " << s << " s";
    std::printf("encode wiki.test.raw: %.3f s, %zu tokens\n", s, ids.size());
}
