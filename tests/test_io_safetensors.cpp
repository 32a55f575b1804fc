// Safetensors reader and the mmap/file helpers: files built here byte by byte, systematic
// corruption (every truncation, every header field), and the golden models' safetensors files
// (every model.safetensors under tests/data, written by the Python safetensors package).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "zqat/core/error.h"
#include "zqat/io/mmap.h"
#include "zqat/io/safetensors.h"

using namespace zqat;
namespace fs = std::filesystem;

namespace {

// u64 header length | header JSON | data bytes.
std::vector<uint8_t> file_of(const std::string& header, const std::vector<uint8_t>& data) {
    const uint64_t n = header.size();
    std::vector<uint8_t> b(8 + header.size() + data.size());
    std::memcpy(b.data(), &n, 8);
    std::copy(header.begin(), header.end(), b.begin() + 8);
    std::copy(data.begin(), data.end(), b.begin() + 8 + std::ptrdiff_t(header.size()));
    return b;
}

std::vector<uint8_t> zeros(size_t n) {
    return std::vector<uint8_t>(n, 0);
}

safetensors::File parse(const std::vector<uint8_t>& b) {
    return safetensors::File::from_memory(b.data(), b.size(), "t.safetensors");
}

template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// Three dtypes, metadata, a scalar, an empty tensor, and HF-style space padding of the header.
std::vector<uint8_t> valid_file() {
    const std::string h = R"({"__metadata__":{"format":"pt","note":"x"},)"
                          R"("w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                          R"("h":{"dtype":"F16","shape":[4],"data_offsets":[24,32]},)"
                          R"("b":{"dtype":"BF16","shape":[2,1,2],"data_offsets":[32,40]},)"
                          R"("s":{"dtype":"F32","shape":[],"data_offsets":[40,44]},)"
                          R"("e":{"dtype":"F16","shape":[0,5],"data_offsets":[44,44]}}    )";
    std::vector<uint8_t> data(44);
    const float w[6] = {0, 1, -2, 3.5f, 4, 5};
    std::memcpy(data.data(), w, 24);
    const uint16_t h16[4] = {0x3c00, 0xc000, 0x3800, 0x0000};  // 1, -2, 0.5, 0
    std::memcpy(&data[24], h16, 8);
    const uint16_t b16[4] = {0x3f80, 0x4040, 0xbf00, 0x7f80};  // 1, 3, -0.5, inf
    std::memcpy(&data[32], b16, 8);
    const float s = 42.f;
    std::memcpy(&data[40], &s, 4);
    return file_of(h, data);
}

}  // namespace

TEST(SafetensorsBuilt, ParsesEveryDtypeAndMetadata) {
    const auto b = valid_file();
    const safetensors::File f = parse(b);
    EXPECT_EQ(f.path(), "t.safetensors");
    EXPECT_EQ(f.metadata().size(), 2u);
    EXPECT_EQ(f.metadata().at("format"), "pt");
    ASSERT_EQ(f.tensors().size(), 5u);
    const uint64_t data_start = b.size() - 44;
    const auto* w = f.find_tensor("w");
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->dtype, DType::F32);
    EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(w->offset, data_start);
    EXPECT_EQ(w->nbytes, 24u);
    EXPECT_EQ(f.find_tensor("nope"), nullptr);
    const Tensor wt = f.tensor(*w);
    EXPECT_EQ(wt.data, b.data() + data_start);
    EXPECT_EQ(wt.to_f32().f32()[3], 3.5f);
    const Tensor h = f.tensor(*f.find_tensor("h")).to_f32();
    EXPECT_EQ(std::vector<float>(h.f32(), h.f32() + 4), (std::vector<float>{1, -2, 0.5f, 0}));
    const Tensor bf = f.tensor(*f.find_tensor("b")).to_f32();
    EXPECT_EQ(bf.shape, (std::vector<int64_t>{2, 1, 2}));
    EXPECT_EQ(std::vector<float>(bf.f32(), bf.f32() + 3), (std::vector<float>{1, 3, -0.5f}));
    EXPECT_TRUE(std::isinf(bf.f32()[3]));
    const Tensor s = f.tensor(*f.find_tensor("s")).to_f32();
    EXPECT_TRUE(s.shape.empty());
    EXPECT_EQ(s.numel(), 1);
    EXPECT_EQ(s.f32()[0], 42.f);
    const auto* e = f.find_tensor("e");
    EXPECT_EQ(e->nbytes, 0u);
    EXPECT_EQ(f.tensor(*e).to_f32().numel(), 0);
}

TEST(SafetensorsBuilt, EmptyHeaderObject) {
    EXPECT_TRUE(parse(file_of("{}", {})).tensors().empty());
    EXPECT_TRUE(parse(file_of(R"({"__metadata__":{}})", {})).metadata().empty());
}

TEST(SafetensorsBuilt, GoldenModelsFromPython) {
    int n_files = 0;
    for (const auto& entry : fs::recursive_directory_iterator(ZQAT_TEST_DATA)) {
        const fs::path& p = entry.path();
        if (p.filename() != "model.safetensors") continue;
        SCOPED_TRACE(p.string());
        ++n_files;
        const safetensors::File f = safetensors::File::open(p.string());
        ASSERT_FALSE(f.tensors().empty());
        // The Python writer packs tensors back to back from the end of the header to the end.
        uint64_t lo = UINT64_MAX, hi = 0, total = 0;
        for (const auto& t : f.tensors()) {
            lo = std::min(lo, t.offset);
            hi = std::max(hi, t.offset + t.nbytes);
            total += t.nbytes;
            EXPECT_EQ(f.tensor(t).to_f32().numel(), t.nbytes / (t.dtype == DType::F32 ? 4 : 2));
        }
        EXPECT_EQ(hi, fs::file_size(p));
        EXPECT_EQ(hi - lo, total);
        EXPECT_EQ(lo % 8, 0u);  // the header is padded to 8 bytes
    }
    if (n_files == 0) GTEST_SKIP() << "no model.safetensors under " << ZQAT_TEST_DATA;
}

TEST(SafetensorsCorrupt, EveryTruncationIsAnError) {
    const auto b = valid_file();
    for (size_t n = 0; n < b.size(); ++n) {
        const std::vector<uint8_t> cut(b.begin(), b.begin() + std::ptrdiff_t(n));
        const std::string e = error_of([&] { parse(cut); });
        ASSERT_FALSE(e.empty()) << "truncated to " << n << " bytes parsed";
        EXPECT_EQ(e.rfind("[safetensors] t.safetensors: ", 0), 0u) << e;
        EXPECT_NE(e.find("offset"), std::string::npos) << e;
    }
}

TEST(SafetensorsCorrupt, HeaderLength) {
    std::vector<uint8_t> b = zeros(16);
    const uint64_t huge = uint64_t(1) << 40, big = (uint64_t(100) << 20) + 1;
    std::memcpy(b.data(), &huge, 8);
    EXPECT_NE(error_of([&] { parse(b); }).find("header length 1099511627776 at offset 0"),
              std::string::npos);
    std::memcpy(b.data(), &big, 8);
    EXPECT_NE(error_of([&] { parse(b); }).find("byte limit"), std::string::npos);
    const uint64_t past = 9;
    std::memcpy(b.data(), &past, 8);
    EXPECT_NE(error_of([&] { parse(b); }).find("past end of file"), std::string::npos);
    EXPECT_NE(error_of([&] { parse(zeros(5)); }).find("needs 8 bytes"), std::string::npos);
}

TEST(SafetensorsCorrupt, EveryFieldIsChecked) {
    auto expect = [](const std::string& header, size_t data, std::vector<std::string> want) {
        const auto b = file_of(header, zeros(data));
        const std::string e = error_of([&] { parse(b); });
        ASSERT_FALSE(e.empty()) << header << " parsed";
        want.push_back("t.safetensors");
        want.push_back("offset");
        for (const auto& w : want) EXPECT_NE(e.find(w), std::string::npos) << e << " | " << w;
    };
    auto one = [](const std::string& body) { return R"({"x":)" + body + "}"; };
    const std::string x_at = "offset 9";  // `"x"` starts right after the 8-byte length and `{`
    EXPECT_NO_THROW(
        parse(file_of(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})"), zeros(8))));
    expect("{\"x\":", 0, {"JSON invalid"});
    expect("{\"x\":1,}", 0, {"JSON invalid"});
    expect("[1,2]", 0, {"not a JSON object"});
    expect("\"str\"", 0, {"not a JSON object"});
    expect(R"({"x":1e999999})", 0, {"JSON"});  // number out of range
    expect(one("[1]"), 0, {"'x'", "not an object", x_at});
    expect(one(R"({"shape":[2],"data_offsets":[0,8]})"), 8, {"lacks 'dtype'", x_at});
    expect(one(R"({"dtype":"F32","data_offsets":[0,8]})"), 8, {"lacks 'shape'", x_at});
    expect(one(R"({"dtype":"F32","shape":[2]})"), 8, {"lacks 'data_offsets'", x_at});
    expect(one(R"({"dtype":"I64","shape":[1],"data_offsets":[0,8]})"), 8, {"dtype \"I64\"", x_at});
    expect(one(R"({"dtype":7,"shape":[1],"data_offsets":[0,4]})"), 4, {"dtype 7", x_at});
    expect(one(R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), 8, {"negative", x_at});
    expect(one(R"({"dtype":"F32","shape":[2.5],"data_offsets":[0,8]})"), 8, {"non-integer"});
    expect(one(R"({"dtype":"F32","shape":"2","data_offsets":[0,8]})"), 8, {"shape must be"});
    expect(one(R"({"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]})"), 4,
           {"0..8 dims"});
    expect(one(R"({"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,8]})"), 8,
           {"overflows", x_at});
    // 2^62 elements pass the element cap but their 2^64 bytes do not fit u64.
    expect(one(R"({"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]})"), 8,
           {"more than 2^64"});
    expect(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})"), 8, {"[begin, end]"});
    expect(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,-8]})"), 8, {"[begin, end]"});
    expect(one(R"({"dtype":"F32","shape":[2],"data_offsets":"0,8"})"), 8, {"[begin, end]"});
    expect(one(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})"), 8, {"past end of file"});
    expect(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})"), 4,
           {"[0, 8)", "past end of file (size"});
    expect(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]})"), 8,
           {"past end of file"});
    expect(one(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})"), 8, {"needs 8"});
    expect(one(R"({"dtype":"F16","shape":[3],"data_offsets":[0,8]})"), 8, {"needs 6"});
    expect(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
           R"("y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
           12, {"'x' and 'y' overlap"});
    expect(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
           R"("x":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
           16, {"'x'", "more than once"});
    expect(R"({"__metadata__":[1]})", 0, {"__metadata__", "not an object"});
    expect(R"({"__metadata__":{"a":1}})", 0, {"'a'", "expected a string"});
}

TEST(SafetensorsCorrupt, EveryByteFlipIsSafe) {
    const auto good = valid_file();
    int errors = 0;
    for (size_t i = 0; i < good.size() - 44; ++i) {
        for (uint8_t x : {uint8_t(0x01), uint8_t(0x20), uint8_t(0x80)}) {
            auto b = good;
            b[i] ^= x;
            try {
                const safetensors::File f = parse(b);
                for (const auto& t : f.tensors())
                    if (t.nbytes < (1u << 20)) (void)f.tensor(t).to_f32();
            } catch (const Error&) {
                ++errors;
            }
        }
    }
    EXPECT_GT(errors, 0);
}

TEST(MappedFile, OpenReadWrite) {
    const fs::path dir = fs::temp_directory_path() / "zqat_test_io_mmap";
    fs::create_directories(dir);
    const std::string path = (dir / "a.bin").string();
    write_file_atomic(path, std::string("hello\0world", 11));
    EXPECT_EQ(read_file(path), std::string("hello\0world", 11));
    write_file_atomic(path, "replaced");  // renamed over the old file
    {
        const auto m = MappedFile::open(path);
        EXPECT_EQ(m->size(), 8u);
        EXPECT_EQ(std::memcmp(m->data(), "replaced", 8), 0);
        EXPECT_EQ(m->path(), path);
    }
    // No temporary left behind.
    int n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
    EXPECT_EQ(n, 1);
    write_file_atomic(path, "");
    EXPECT_EQ(MappedFile::open(path)->size(), 0u);
    EXPECT_EQ(read_file(path), "");
    // An empty file is a truncated safetensors / GGUF, not a crash.
    EXPECT_NE(error_of([&] { safetensors::File::open(path); }).find(path), std::string::npos);

    const std::string missing = (dir / "missing.bin").string();
    EXPECT_NE(
        error_of([&] { MappedFile::open(missing); }).find("[io] " + missing + ": cannot open"),
        std::string::npos);
    EXPECT_NE(error_of([&] { read_file(dir.string()); }).find("not a regular file"),
              std::string::npos);
    EXPECT_FALSE(
        error_of([&] { write_file_atomic((dir / "no/such/dir/x").string(), "x"); }).empty());
    fs::remove_all(dir);
}
