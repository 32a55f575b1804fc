// Malformed model files must end in zqat::Error naming the file and what is wrong -- never a
// crash, an absurd allocation or a silently wrong tensor. Seeds: tests/data/io (made by
// scripts/make_fuzz_seeds.py); the real model when ZQAT_MODEL is set.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "zqat/core/error.h"
#include "zqat/io/gguf.h"
#include "zqat/io/safetensors.h"
#include "zqat/io/tokenizer.h"

using namespace zqat;

namespace {

std::vector<uint8_t> slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    EXPECT_TRUE(f.good()) << path;
    return {std::istreambuf_iterator<char>(f), {}};
}

const std::string kGguf = std::string(ZQAT_TEST_DATA) + "/io/corpus_fuzz_gguf/tiny.gguf";
const std::string kSafe =
    std::string(ZQAT_TEST_DATA) + "/io/corpus_fuzz_safetensors/tiny.safetensors";

template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

gguf::File parse_gguf(const std::vector<uint8_t>& b) {
    return gguf::File::from_memory(b.data(), b.size(), "t.gguf");
}
safetensors::File parse_safe(const std::vector<uint8_t>& b) {
    return safetensors::File::from_memory(b.data(), b.size(), "t.safetensors");
}

void put_u64(std::vector<uint8_t>& b, size_t off, uint64_t v) {
    std::memcpy(&b[off], &v, 8);
}
void put_u32(std::vector<uint8_t>& b, size_t off, uint32_t v) {
    std::memcpy(&b[off], &v, 4);
}

}  // namespace

TEST(GgufValid, SeedParsesWithEveryValueType) {
    const auto b = slurp(kGguf);
    const gguf::File f = parse_gguf(b);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.get_uint("test.u32"), 7u);
    EXPECT_EQ(f.get_int("test.i32"), -7);
    EXPECT_FLOAT_EQ(float(f.get_float("test.f32")), 0.5f);
    EXPECT_TRUE(f.get_bool("test.bool"));
    EXPECT_EQ(f.get_string("test.str"), "h\xc3\xa9llo");
    EXPECT_EQ(f.get_string_array("test.arr_str"), (std::vector<std::string>{"a", "bc"}));
    EXPECT_EQ(f.get_int_array("test.arr_int"), (std::vector<int64_t>{1, 2, 3}));
    EXPECT_EQ(f.get_uint("test.u64"), uint64_t(1) << 40);
    // Wrong type and missing key: errors that name the key.
    EXPECT_NE(error_of([&] { f.get_string("test.u32"); }).find("test.u32"), std::string::npos);
    EXPECT_NE(error_of([&] { f.get_uint("nope"); }).find("missing metadata key 'nope'"),
              std::string::npos);
    ASSERT_EQ(f.tensors().size(), 7u);
    // Dequantization equals gguf-py's reference (scripts/make_fuzz_seeds.py) for every block type.
    const auto exp_bytes = slurp(std::string(ZQAT_TEST_DATA) + "/io/dequant_expected.json");
    const auto expected = nlohmann::json::parse(exp_bytes.begin(), exp_bytes.end());
    for (const char* name : {"q8_0", "q4_0", "q4_1", "q4_k", "q6_k"}) {
        SCOPED_TRACE(name);
        const Tensor x = f.tensor(*f.find_tensor(name)).to_f32();
        const auto want = expected.at(name).get<std::vector<float>>();
        ASSERT_EQ(size_t(x.numel()), want.size());
        for (size_t i = 0; i < want.size(); ++i)
            EXPECT_NEAR(x.f32()[i], want[i], 1e-6f * std::max(1.f, std::fabs(want[i]))) << i;
    }
    const Tensor f32 = f.tensor(*f.find_tensor("f32")).to_f32();
    EXPECT_EQ(f32.shape, (std::vector<int64_t>{2, 32}));
}

TEST(GgufValid, Version2HasTheSameLayout) {
    auto b = slurp(kGguf);
    put_u32(b, 4, 2);
    EXPECT_EQ(parse_gguf(b).version(), 2u);
}

TEST(GgufCorrupt, EveryTruncationIsAnError) {
    const auto b = slurp(kGguf);
    // Bytes after the last tensor's data are alignment padding: cutting those is harmless.
    uint64_t end = 0;
    const gguf::File whole = parse_gguf(b);
    for (const auto& t : whole.tensors()) end = std::max(end, t.offset + t.nbytes);
    ASSERT_GT(end, b.size() - 64);
    for (size_t n = 0; n < end; ++n) {
        std::vector<uint8_t> t(b.begin(), b.begin() + std::ptrdiff_t(n));
        const std::string e = error_of([&] { parse_gguf(t); });
        EXPECT_FALSE(e.empty()) << "truncated to " << n << " bytes parsed";
        EXPECT_NE(e.find("t.gguf"), std::string::npos) << e;
    }
}

TEST(GgufCorrupt, HeaderFieldsAreChecked) {
    const auto good = slurp(kGguf);
    auto expect = [&](auto patch, const char* what) {
        auto b = good;
        patch(b);
        const std::string e = error_of([&] { parse_gguf(b); });
        EXPECT_NE(e.find(what), std::string::npos) << "got: '" << e << "' want: " << what;
    };
    expect([](auto& b) { b[0] = 'X'; }, "magic");
    expect([](auto& b) { put_u32(b, 4, 1); }, "version 1");
    expect([](auto& b) { put_u32(b, 4, 4); }, "version 4");
    expect([](auto& b) { put_u64(b, 8, uint64_t(1) << 60); }, "tensor count");
    expect([](auto& b) { put_u64(b, 16, uint64_t(1) << 60); }, "metadata count");
    // The first key's length (offset 24) larger than the file.
    expect([](auto& b) { put_u64(b, 24, uint64_t(1) << 40); }, "length");
}

TEST(GgufCorrupt, TensorInfosAreChecked) {
    const auto good = slurp(kGguf);
    const gguf::File f = parse_gguf(good);
    // Find the first tensor info by searching for its name: u64 len, "f32", u32 n_dims, dims...
    const std::string name = "f32";
    size_t at = 0;
    for (size_t i = 0; i + 8 + name.size() < good.size(); ++i) {
        uint64_t len;
        std::memcpy(&len, &good[i], 8);
        if (len == name.size() && std::memcmp(&good[i + 8], name.data(), name.size()) == 0) {
            at = i + 8 + name.size();  // -> n_dims
            break;
        }
    }
    ASSERT_GT(at, 0u);
    const size_t dims = at + 4, type = dims + 16, offset = type + 4;
    auto expect = [&](auto patch, const char* what) {
        auto b = good;
        patch(b);
        const std::string e = error_of([&] { parse_gguf(b); });
        EXPECT_NE(e.find(what), std::string::npos) << "got: '" << e << "' want: " << what;
    };
    expect([&](auto& b) { put_u32(b, at, 0); }, "dims");
    expect([&](auto& b) { put_u32(b, at, 5); }, "dims");
    expect(
        [&](auto& b) {
            put_u64(b, dims, uint64_t(1) << 62);
            put_u64(b, dims + 8, 1u << 20);
        },
        "overflow");
    expect([&](auto& b) { put_u32(b, type, 99); }, "unknown type 99");
    expect([&](auto& b) { put_u64(b, offset, 3); }, "not aligned");
    expect([&](auto& b) { put_u64(b, offset, uint64_t(1) << 40); }, "past end of file");
    expect([&](auto& b) { put_u64(b, offset, f.tensors()[1].offset - f.tensors()[0].offset); },
           "overlap");
    // Rename the second tensor to the first one's name ("f16" -> "f32").
    expect(
        [&](auto& b) {
            for (size_t i = at; i + 3 < b.size(); ++i)
                if (std::memcmp(&b[i], "f16", 3) == 0) {
                    b[i + 1] = '3', b[i + 2] = '2';
                    break;
                }
        },
        "duplicate tensor name");
}

TEST(SafetensorsValid, SeedParses) {
    const auto b = slurp(kSafe);
    const safetensors::File f = parse_safe(b);
    ASSERT_EQ(f.tensors().size(), 3u);
    const Tensor a = f.tensor(*f.find_tensor("a")).to_f32();
    EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
    for (int i = 0; i < 6; ++i) EXPECT_EQ(a.f32()[i], float(i));
    const Tensor h = f.tensor(*f.find_tensor("b")).to_f32();
    const Tensor bf = f.tensor(*f.find_tensor("c")).to_f32();
    for (int i = 0; i < 4; ++i) EXPECT_EQ(h.f32()[i], float(i));
    for (int i = 0; i < 4; ++i) EXPECT_EQ(bf.f32()[i], float(i));
    EXPECT_EQ(f.metadata().at("format"), "pt");
}

TEST(SafetensorsCorrupt, EveryTruncationIsAnError) {
    const auto b = slurp(kSafe);
    for (size_t n = 0; n < b.size(); ++n) {
        std::vector<uint8_t> t(b.begin(), b.begin() + std::ptrdiff_t(n));
        EXPECT_FALSE(error_of([&] { parse_safe(t); }).empty()) << n;
    }
}

TEST(SafetensorsCorrupt, HeaderIsChecked) {
    auto with_header = [](const std::string& json, size_t data_bytes) {
        std::vector<uint8_t> b(8 + json.size() + data_bytes, 0);
        put_u64(b, 0, json.size());
        std::memcpy(&b[8], json.data(), json.size());
        return b;
    };
    auto expect = [&](const std::string& json, size_t data, const char* what) {
        const auto b = with_header(json, data);
        const std::string e = error_of([&] { parse_safe(b); });
        EXPECT_NE(e.find(what), std::string::npos) << json << " -> '" << e << "'";
        EXPECT_NE(e.find("t.safetensors"), std::string::npos) << e;
    };
    const std::string ok = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    EXPECT_NO_THROW(parse_safe(with_header(ok, 8)));
    expect(ok, 4, "past end of file");
    expect(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 8, "needs 8");
    expect(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8, "past end");
    expect(R"({"x":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}})", 8, "dtype");
    expect(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, "negative");
    expect(R"({"x":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8, "non-integer");
    expect(R"({"x":{"dtype":"F32","shape":[2]}})", 8, "data_offsets");
    expect(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
           R"("y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
           12, "overlap");
    expect(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
           R"("x":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
           16, "more than once");
    expect(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],)"
           R"("data_offsets":[0,8]}})",
           8, "overflow");
    expect(R"([1,2])", 0, "not a JSON object");
    expect(R"({"x":)", 0, "JSON invalid");
    std::vector<uint8_t> huge(16, 0);
    put_u64(huge, 0, uint64_t(1) << 40);
    EXPECT_NE(error_of([&] { parse_safe(huge); }).find("header length"), std::string::npos);
}

TEST(GgufReal, SmolLM2Metadata) {
    const char* path = std::getenv("ZQAT_MODEL");
    if (!path) GTEST_SKIP() << "ZQAT_MODEL not set";
    const gguf::File f = gguf::File::open(path);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.tensors().size(), 272u);
    EXPECT_EQ(f.alignment(), 32u);
    EXPECT_EQ(f.get_uint("llama.block_count"), 30u);
    EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "smollm");
    const gguf::TensorInfo* e = f.find_tensor("token_embd.weight");
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->dtype, DType::Q8_0);
    EXPECT_EQ(e->shape, (std::vector<int64_t>{49152, 576}));
}

TEST(TokenizerJsonCorrupt, ErrorsNameTheFile) {
    const auto bytes =
        slurp(std::string(ZQAT_TEST_DATA) + "/io/corpus_fuzz_tokenizer_json/gpt2.json");
    const std::string seed(bytes.begin(), bytes.end());
    const Tokenizer ok = Tokenizer::from_hf_json_string(seed, "t.json");
    EXPECT_EQ(ok.decode(ok.encode(" the 12", false)), " the 12");
    for (const std::string& bad : {
             std::string("3E1111111111111*, ns0, \"10"),  // found by fuzz_tokenizer_json
             std::string("{"),
             std::string("[]"),
             std::string(R"({"model": 1})"),
             std::string(R"({"model": {"type": "Unigram"}})"),
             std::string(R"({"model": {"type": "BPE", "vocab": {"a": 5}, "merges": []},)"
                         R"( "pre_tokenizer": {"type": "ByteLevel"}})"),
             std::string(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [3]},)"
                         R"( "pre_tokenizer": {"type": "ByteLevel"}})"),
             std::string(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},)"
                         R"( "pre_tokenizer": {"type": "Whitespace"}})"),
         }) {
        const std::string e = error_of([&] { Tokenizer::from_hf_json_string(bad, "t.json"); });
        EXPECT_NE(e.find("t.json"), std::string::npos) << bad << " -> '" << e << "'";
    }
}
