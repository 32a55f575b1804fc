// GGUF and safetensors files built byte by byte here, so every field is known: valid files must
// parse to exactly the values written (from memory and from a file), and every kind of damage --
// truncation at each byte, lying counts and lengths, bad types, overflowing dims, out-of-file,
// misaligned or overlapping data, duplicates -- must end in zqat::Error whose message names the
// file and the field. Runs in the normal suite and under ASan/UBSan (an unchecked 2^60 count
// would abort there as an oversized allocation).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "zqat/core/error.h"
#include "zqat/io/gguf.h"
#include "zqat/io/safetensors.h"

using namespace zqat;
using VT = gguf::ValueType;

namespace {

using Bytes = std::vector<uint8_t>;

// Little-endian byte writer.
struct Writer {
    Bytes b;
    template <class T>
    Writer& raw(T v) {
        uint8_t t[sizeof(T)];
        std::memcpy(t, &v, sizeof(T));
        b.insert(b.end(), t, t + sizeof(T));
        return *this;
    }
    Writer& u32(uint32_t v) { return raw(v); }
    Writer& u64(uint64_t v) { return raw(v); }
    Writer& str(std::string_view s) {
        u64(s.size());
        b.insert(b.end(), s.begin(), s.end());
        return *this;
    }
};

void put_u32(Bytes& b, size_t off, uint32_t v) {
    ASSERT_LE(off + 4, b.size());
    std::memcpy(&b[off], &v, 4);
}
void put_u64(Bytes& b, size_t off, uint64_t v) {
    ASSERT_LE(off + 8, b.size());
    std::memcpy(&b[off], &v, 8);
}

// A GGUF file under construction. Metadata is appended as raw entries; tensors get offsets packed
// at the alignment unless one is given. build() records where fields landed (`at`) so that tests
// can patch single fields:
//   at["kv:<key>"]   offset of the key's length      at["val:<key>"] offset of the value
//   at["ti:<name>"]  offset of the tensor's name     at["nd:<name>"] n_dims, at["ty:<name>"] type,
//   at["of:<name>"]  offset field                    at["data"] data section start
struct Gguf {
    struct T {
        std::string name;
        std::vector<uint64_t> ne;  // innermost first, as stored
        uint32_t type;
        Bytes data;
        std::optional<uint64_t> offset;
    };
    uint32_t version = 3;
    uint64_t layout_alignment = 32;  // what build() pads to; the key is written separately
    Writer kv;
    uint64_t n_kv = 0;
    std::map<std::string, size_t> kv_at, val_at;  // relative to the kv section
    std::vector<T> tensors;
    std::map<std::string, size_t> at;

    Writer& key(const std::string& k, VT t) {
        kv_at[k] = kv.b.size();
        kv.str(k).u32(uint32_t(t));
        val_at[k] = kv.b.size();
        ++n_kv;
        return kv;
    }
    template <class V>
    Gguf& scalar(const std::string& k, VT t, V v) {
        key(k, t).raw(v);
        return *this;
    }
    Gguf& string(const std::string& k, std::string_view v) {
        key(k, VT::STRING).str(v);
        return *this;
    }
    template <class V>
    Gguf& array(const std::string& k, VT et, const std::vector<V>& vs) {
        Writer& w = key(k, VT::ARRAY).u32(uint32_t(et)).u64(vs.size());
        for (const V& v : vs) w.raw(v);
        return *this;
    }
    Gguf& strings(const std::string& k, const std::vector<std::string>& vs) {
        Writer& w = key(k, VT::ARRAY).u32(uint32_t(VT::STRING)).u64(vs.size());
        for (const auto& v : vs) w.str(v);
        return *this;
    }
    Gguf& alignment(uint32_t a) {
        layout_alignment = a;
        return scalar("general.alignment", VT::UINT32, a);
    }
    Gguf& tensor(std::string name, std::vector<uint64_t> ne, DType type, Bytes data) {
        tensors.push_back({std::move(name), std::move(ne), uint32_t(type), std::move(data), {}});
        return *this;
    }

    Bytes build() {
        Writer f;
        f.b = {'G', 'G', 'U', 'F'};
        f.u32(version).u64(tensors.size()).u64(n_kv);
        const size_t kv_start = f.b.size();
        for (const auto& [k, o] : kv_at) at["kv:" + k] = kv_start + o;
        for (const auto& [k, o] : val_at) at["val:" + k] = kv_start + o;
        f.b.insert(f.b.end(), kv.b.begin(), kv.b.end());
        const uint64_t a = layout_alignment;
        uint64_t next = 0, data_size = 0;
        for (T& t : tensors) {
            const uint64_t off = t.offset ? *t.offset : (next + a - 1) / a * a;
            next = std::max(next, off + t.data.size());
            data_size = std::max(data_size, off + t.data.size());
            at["ti:" + t.name] = f.b.size();
            f.str(t.name);
            at["nd:" + t.name] = f.b.size();
            f.u32(uint32_t(t.ne.size()));
            for (uint64_t d : t.ne) f.u64(d);
            at["ty:" + t.name] = f.b.size();
            f.u32(t.type);
            at["of:" + t.name] = f.b.size();
            f.u64(off);
            t.offset = off;
        }
        while (f.b.size() % a != 0) f.b.push_back(0);
        at["data"] = f.b.size();
        // No padding after the last tensor: cutting any byte must then be an error.
        Bytes data(data_size, 0);
        for (const T& t : tensors)
            if (*t.offset + t.data.size() <= data.size())
                std::copy(t.data.begin(), t.data.end(), data.begin() + std::ptrdiff_t(*t.offset));
        f.b.insert(f.b.end(), data.begin(), data.end());
        return f.b;
    }
};

Bytes f32_bytes(const std::vector<float>& v) {
    Bytes b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
}
Bytes u16_bytes(const std::vector<uint16_t>& v) {
    Bytes b(v.size() * 2);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
}

// fp16 bit patterns used below.
constexpr uint16_t kHalfOne = 0x3C00, kHalfTwo = 0x4000, kHalfHalf = 0x3800, kHalfQuarter = 0x3400,
                   kHalfMinusOne = 0xBC00;

// Q8_0 block: d = 0.5, q[j] = j - 16  ->  x[j] = 0.5 * (j - 16).
Bytes q8_0_block() {
    Bytes b = u16_bytes({kHalfHalf});
    for (int j = 0; j < 32; ++j) b.push_back(uint8_t(int8_t(j - 16)));
    return b;
}
// Q4_0 block: d = 2, qs[j] = j | (15 - j) << 4  ->  x[j] = 2 (j - 8), x[j+16] = 2 (7 - j).
Bytes q4_0_block() {
    Bytes b = u16_bytes({kHalfTwo});
    for (int j = 0; j < 16; ++j) b.push_back(uint8_t(j | (15 - j) << 4));
    return b;
}
// Q4_1 block: d = 0.25, m = -1 (or d = 1, m = 0.5), qs as Q4_0  ->  x = d * nibble + m.
Bytes q4_1_block(uint16_t d, uint16_t m) {
    Bytes b = u16_bytes({d, m});
    for (int j = 0; j < 16; ++j) b.push_back(uint8_t(j | (15 - j) << 4));
    return b;
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

gguf::File parse_gguf(const Bytes& b, const std::string& name = "t.gguf") {
    return gguf::File::from_memory(b.data(), b.size(), name);
}
safetensors::File parse_st(const Bytes& b, const std::string& name = "t.safetensors") {
    return safetensors::File::from_memory(b.data(), b.size(), name);
}

// The parse fails with an Error naming the file and containing every word.
void expect_error(const std::string& e, const std::string& file,
                  std::initializer_list<const char*> words) {
    ASSERT_FALSE(e.empty()) << "parsed without error";
    EXPECT_NE(e.find(file), std::string::npos) << e;
    for (const char* w : words)
        EXPECT_NE(e.find(w), std::string::npos) << "want '" << w << "': " << e;
}
void expect_gguf_error(const Bytes& b, std::initializer_list<const char*> words) {
    expect_error(error_of([&] { parse_gguf(b); }), "t.gguf", words);
}
void expect_st_error(const Bytes& b, std::initializer_list<const char*> words) {
    expect_error(error_of([&] { parse_st(b); }), "t.safetensors", words);
}

std::string temp_path(const std::string& name) {
    return testing::TempDir() + "zqat_test_io_formats_" + std::to_string(::getpid()) + "_" + name;
}
void write_bytes(const std::string& path, const Bytes& b) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
    ASSERT_TRUE(f.good()) << path;
}

// ---- GGUF: a file with every value type and four tensors -----------------------------------

// (version, alignment, write the general.alignment key)
using GgufParams = std::tuple<uint32_t, uint32_t, bool>;

Gguf every_type_gguf(const GgufParams& p) {
    Gguf g;
    g.version = std::get<0>(p);
    if (std::get<2>(p))
        g.alignment(std::get<1>(p));
    else
        g.layout_alignment = 32;
    g.scalar("u8", VT::UINT8, uint8_t(200))
        .scalar("i8", VT::INT8, int8_t(-100))
        .scalar("u16", VT::UINT16, uint16_t(60000))
        .scalar("i16", VT::INT16, int16_t(-30000))
        .scalar("u32", VT::UINT32, uint32_t(4000000000u))
        .scalar("i32", VT::INT32, int32_t(-2000000000))
        .scalar("f32", VT::FLOAT32, 1.5f)
        .scalar("bool_t", VT::BOOL, uint8_t(1))
        .scalar("bool_f", VT::BOOL, uint8_t(0))
        .string("str", "h\xc3\xa9llo")
        .string("empty_str", "")
        .scalar("u64", VT::UINT64, (uint64_t(1) << 63) + 5)
        .scalar("i64", VT::INT64, -(int64_t(1) << 62))
        .scalar("f64", VT::FLOAT64, -2.25)
        .strings("arr_str", {"a", "", "ccc"})
        .array("arr_i32", VT::INT32, std::vector<int32_t>{-1, 2, 3})
        .array("arr_u8", VT::UINT8, std::vector<uint8_t>{0, 255})
        .array("arr_u64", VT::UINT64, std::vector<uint64_t>{uint64_t(1) << 40})
        .array("arr_bool", VT::BOOL, std::vector<uint8_t>{1, 0})
        .array("arr_f32", VT::FLOAT32, std::vector<float>{0.5f, -1.0f})
        .array("arr_f64", VT::FLOAT64, std::vector<double>{1e300})
        .array("arr_empty", VT::INT16, std::vector<int16_t>{});
    g.tensor("w.f32", {3, 2}, DType::F32, f32_bytes({0, 0.5f, 1, 1.5f, 2, 2.5f}))
        .tensor("w.f16", {4}, DType::F16, u16_bytes({kHalfOne, 0xC000, kHalfHalf, 0x7BFF}))
        .tensor("w.q8_0", {32, 1}, DType::Q8_0, q8_0_block());
    Bytes q41 = q4_1_block(kHalfQuarter, kHalfMinusOne), q41b = q4_1_block(kHalfOne, kHalfHalf);
    q41.insert(q41.end(), q41b.begin(), q41b.end());
    g.tensor("w.q4_1", {32, 2}, DType::Q4_1, q41);
    return g;
}

class GgufValid : public testing::TestWithParam<GgufParams> {};

void check_every_type(const gguf::File& f, const GgufParams& p) {
    EXPECT_EQ(f.version(), std::get<0>(p));
    EXPECT_EQ(f.alignment(), std::get<1>(p));
    EXPECT_EQ(f.get_uint("u8"), 200u);
    EXPECT_EQ(f.get_int("i8"), -100);
    EXPECT_EQ(f.get_uint("u16"), 60000u);
    EXPECT_EQ(f.get_int("i16"), -30000);
    EXPECT_EQ(f.get_uint("u32"), 4000000000u);
    EXPECT_EQ(f.get_int("u32"), 4000000000);  // any integer that fits
    EXPECT_EQ(f.get_int("i32"), -2000000000);
    EXPECT_EQ(f.get_float("f32"), 1.5);
    EXPECT_EQ(f.get_float("i16"), -30000.0);  // get_float takes any number
    EXPECT_TRUE(f.get_bool("bool_t"));
    EXPECT_FALSE(f.get_bool("bool_f"));
    EXPECT_EQ(f.get_string("str"), "h\xc3\xa9llo");
    EXPECT_EQ(f.get_string("empty_str"), "");
    EXPECT_EQ(f.get_uint("u64"), (uint64_t(1) << 63) + 5);
    EXPECT_EQ(f.get_int("i64"), -(int64_t(1) << 62));
    EXPECT_EQ(f.get_float("f64"), -2.25);
    EXPECT_EQ(f.get_string_array("arr_str"), (std::vector<std::string>{"a", "", "ccc"}));
    EXPECT_EQ(f.get_int_array("arr_i32"), (std::vector<int64_t>{-1, 2, 3}));
    EXPECT_EQ(f.get_int_array("arr_u8"), (std::vector<int64_t>{0, 255}));
    EXPECT_EQ(f.get_int_array("arr_u64"), (std::vector<int64_t>{int64_t(1) << 40}));
    EXPECT_EQ(f.get_int_array("arr_bool"), (std::vector<int64_t>{1, 0}));
    EXPECT_EQ(f.get_float_array("arr_f32"), (std::vector<double>{0.5, -1.0}));
    EXPECT_EQ(f.get_float_array("arr_f64"), (std::vector<double>{1e300}));
    EXPECT_TRUE(f.get_int_array("arr_empty").empty());
    EXPECT_EQ(f.find("arr_empty")->elem_type, VT::INT16);
    EXPECT_EQ(f.get_uint_or("absent", 7), 7u);
    EXPECT_EQ(f.get_string_or("str", "x"), "h\xc3\xa9llo");
    // Wrong kinds are errors naming the key and its offset.
    const std::string e = error_of([&] { f.get_uint("i8"); });
    EXPECT_NE(e.find("'i8'"), std::string::npos) << e;
    EXPECT_NE(e.find("offset " + std::to_string(f.find("i8")->offset)), std::string::npos) << e;
    EXPECT_NE(error_of([&] { f.get_int("u64"); }).find("'u64'"), std::string::npos);
    EXPECT_NE(error_of([&] { f.get_bool("u8"); }).find("'u8'"), std::string::npos);
    EXPECT_NE(error_of([&] { f.get_float("str"); }).find("'str'"), std::string::npos);
    EXPECT_NE(error_of([&] { f.get_float_array("arr_i32"); }).find("arr_i32"), std::string::npos);
    EXPECT_NE(error_of([&] { f.get_string("absent"); }).find("missing"), std::string::npos);

    ASSERT_EQ(f.tensors().size(), 4u);
    for (const auto& t : f.tensors()) EXPECT_EQ(t.offset % f.alignment(), 0u) << t.name;
    const auto* w = f.find_tensor("w.f32");
    ASSERT_NE(w, nullptr);
    EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 3}));  // ne reversed
    EXPECT_EQ(w->nbytes, 24u);
    const Tensor x = f.tensor(*w).to_f32();
    for (int i = 0; i < 6; ++i) EXPECT_EQ(x.f32()[i], 0.5f * float(i));
    const Tensor h = f.tensor(*f.find_tensor("w.f16")).to_f32();
    EXPECT_EQ(h.shape, (std::vector<int64_t>{4}));
    EXPECT_EQ(std::vector<float>(h.f32(), h.f32() + 4), (std::vector<float>{1, -2, 0.5f, 65504}));
    const Tensor q8 = f.tensor(*f.find_tensor("w.q8_0")).to_f32();
    EXPECT_EQ(q8.shape, (std::vector<int64_t>{1, 32}));
    for (int j = 0; j < 32; ++j) EXPECT_EQ(q8.f32()[j], 0.5f * float(j - 16)) << j;
    const auto* q41 = f.find_tensor("w.q4_1");
    EXPECT_EQ(q41->nbytes, 40u);
    const Tensor q4 = f.tensor(*q41).to_f32();
    EXPECT_EQ(q4.shape, (std::vector<int64_t>{2, 32}));
    for (int j = 0; j < 16; ++j) {
        EXPECT_EQ(q4.f32()[j], 0.25f * float(j) - 1.0f);
        EXPECT_EQ(q4.f32()[j + 16], 0.25f * float(15 - j) - 1.0f);
        EXPECT_EQ(q4.f32()[32 + j], float(j) + 0.5f);
        EXPECT_EQ(q4.f32()[48 + j], float(15 - j) + 0.5f);
    }
}

TEST_P(GgufValid, FromMemoryAndFromFile) {
    const Bytes b = every_type_gguf(GetParam()).build();
    check_every_type(parse_gguf(b), GetParam());
    const std::string path = temp_path("every_type.gguf");
    write_bytes(path, b);
    Tensor t;
    {
        const gguf::File f = gguf::File::open(path);
        EXPECT_EQ(f.path(), path);
        EXPECT_EQ(f.file_size(), b.size());
        check_every_type(f, GetParam());
        t = f.tensor(*f.find_tensor("w.f32"));
    }
    std::remove(path.c_str());
    // The tensor keeps the mapping alive after the File and the path are gone.
    EXPECT_EQ(static_cast<const float*>(t.data)[5], 2.5f);
}

TEST_P(GgufValid, EveryTruncationIsAnError) {
    const Bytes b = every_type_gguf(GetParam()).build();
    for (size_t n = 0; n < b.size(); ++n) {
        const Bytes cut(b.begin(), b.begin() + std::ptrdiff_t(n));
        const std::string e = error_of([&] { parse_gguf(cut); });
        ASSERT_FALSE(e.empty()) << "truncated to " << n << " of " << b.size() << " bytes parsed";
        ASSERT_NE(e.find("t.gguf"), std::string::npos) << e;
        ASSERT_NE(e.find("offset"), std::string::npos) << e;
    }
}

INSTANTIATE_TEST_SUITE_P(VersionsAndAlignments, GgufValid,
                         testing::Values(GgufParams{3, 32, true}, GgufParams{3, 32, false},
                                         GgufParams{3, 64, true}, GgufParams{2, 32, false},
                                         GgufParams{2, 64, true}));

TEST(GgufFile, OpenErrorsNameThePath) {
    const std::string missing = temp_path("missing.gguf");
    EXPECT_NE(error_of([&] { gguf::File::open(missing); }).find(missing), std::string::npos);
    EXPECT_NE(error_of([&] { gguf::File::open(testing::TempDir()); }).find("not a regular file"),
              std::string::npos);
    const std::string empty = temp_path("empty.gguf");
    write_bytes(empty, {});
    expect_error(error_of([&] { gguf::File::open(empty); }), empty, {"magic", "offset 0"});
    std::remove(empty.c_str());
    EXPECT_FALSE(error_of([&] { gguf::File::from_memory(nullptr, 0, "t.gguf"); }).empty());
}

// ---- GGUF corruption -------------------------------------------------------------------------

// Two F32 tensors of 16 floats (64 bytes) and one metadata string.
Gguf small_gguf(const std::string& second = "b") {
    Gguf g;
    g.string("name", "tiny");
    std::vector<float> v(16, 1.0f);
    g.tensor("a", {16}, DType::F32, f32_bytes(v)).tensor(second, {4, 4}, DType::F32, f32_bytes(v));
    return g;
}

TEST(GgufCorrupt, SmallFileIsValid) {
    Gguf g = small_gguf();
    const Bytes b = g.build();
    const gguf::File f = parse_gguf(b);
    EXPECT_EQ(f.tensors()[1].offset, g.at["data"] + 64);
}

TEST(GgufCorrupt, Header) {
    Gguf g = small_gguf();
    const Bytes good = g.build();
    auto patched = [&](auto patch) {
        Bytes b = good;
        patch(b);
        return b;
    };
    expect_gguf_error(patched([](Bytes& b) { b[3] = 'L'; }), {"magic", "offset 0"});
    expect_gguf_error(patched([](Bytes& b) { put_u32(b, 4, 1); }), {"version 1", "offset 4"});
    expect_gguf_error(patched([](Bytes& b) { put_u32(b, 4, 4); }), {"version 4", "offset 4"});
    expect_gguf_error(patched([](Bytes& b) { put_u32(b, 4, 0x03000000); }),
                      {"big-endian", "offset 4"});
    expect_gguf_error(patched([](Bytes& b) { put_u64(b, 8, uint64_t(1) << 60); }),
                      {"tensor count", "offset 8"});
    expect_gguf_error(patched([](Bytes& b) { put_u64(b, 8, ~uint64_t(0)); }),
                      {"tensor count", "offset 8"});
    expect_gguf_error(patched([](Bytes& b) { put_u64(b, 16, uint64_t(1) << 60); }),
                      {"metadata count", "offset 16"});
    // One kv more than written: the tensor infos are read as a kv and fail somewhere.
    expect_gguf_error(patched([](Bytes& b) { put_u64(b, 16, 2); }), {"offset"});
}

TEST(GgufCorrupt, MetadataLengthsAndTypes) {
    Gguf g = small_gguf();
    const Bytes good = g.build();
    const size_t key = g.at["kv:name"], val = g.at["val:name"];
    auto patched = [&](size_t off, uint64_t v, bool is64 = true) {
        Bytes b = good;
        is64 ? put_u64(b, off, v) : put_u32(b, off, uint32_t(v));
        return b;
    };
    const std::string key_at = "offset " + std::to_string(key);
    expect_gguf_error(patched(key, uint64_t(1) << 60), {"metadata key", "length", key_at.c_str()});
    expect_gguf_error(patched(key, ~uint64_t(0)), {"metadata key", "length"});
    expect_gguf_error(patched(val, uint64_t(1) << 60), {"string value", "length"});
    expect_gguf_error(patched(val, good.size()), {"string value", "length"});
    expect_gguf_error(patched(val - 4, 13, false), {"value type 13", "'name'", "offset"});
    expect_gguf_error(patched(val - 4, 0xFFFFFFFF, false), {"value type", "offset"});
}

TEST(GgufCorrupt, Arrays) {
    auto with_array = [](uint32_t et, uint64_t n, const Bytes& elems) {
        Gguf g = small_gguf();
        Writer& w = g.key("arr", VT::ARRAY).u32(et).u64(n);
        w.b.insert(w.b.end(), elems.begin(), elems.end());
        return g.build();
    };
    EXPECT_NO_THROW(parse_gguf(with_array(uint32_t(VT::UINT8), 2, {1, 2})));
    expect_gguf_error(with_array(uint32_t(VT::UINT8), uint64_t(1) << 60, {1, 2}),
                      {"array length", "'arr'", "offset"});
    expect_gguf_error(with_array(uint32_t(VT::STRING), uint64_t(1) << 60, {}),
                      {"array length", "offset"});
    expect_gguf_error(with_array(uint32_t(VT::FLOAT64), ~uint64_t(0), {}),
                      {"array length", "offset"});
    // A string inside an array claiming 2^60 bytes.
    Writer s;
    s.u64(uint64_t(1) << 60);
    expect_gguf_error(with_array(uint32_t(VT::STRING), 1, s.b), {"array string", "length"});
    expect_gguf_error(with_array(uint32_t(VT::ARRAY), 1, {}), {"array element type 9", "offset"});
    expect_gguf_error(with_array(13, 0, {}), {"array element type 13", "offset"});
    expect_gguf_error(with_array(uint32_t(VT::BOOL), 2, {1, 7}), {"bool value 7", "offset"});
}

TEST(GgufCorrupt, BoolAndDuplicateKeys) {
    Gguf g = small_gguf();
    g.scalar("flag", VT::BOOL, uint8_t(2));
    const Bytes bad_bool = g.build();
    const std::string at = "offset " + std::to_string(g.at["val:flag"]);
    expect_gguf_error(bad_bool, {"bool value 2", "'flag'", at.c_str()});

    Gguf d = small_gguf();
    d.string("name", "again");
    expect_gguf_error(d.build(), {"duplicate metadata key 'name'", "offset"});
}

TEST(GgufCorrupt, Alignment) {
    auto with_alignment = [](VT type, uint64_t a) {
        Gguf g = small_gguf();
        if (type == VT::UINT32)
            g.scalar("general.alignment", type, uint32_t(a));
        else
            g.scalar("general.alignment", type, a);
        return g.build();
    };
    EXPECT_NO_THROW(parse_gguf(with_alignment(VT::UINT32, 32)));
    EXPECT_EQ(parse_gguf(with_alignment(VT::UINT32, 16)).alignment(), 16u);
    for (uint64_t a : {0, 3, 48, 100})
        expect_gguf_error(with_alignment(VT::UINT32, a), {"general.alignment", "offset"});
    expect_gguf_error(with_alignment(VT::UINT64, 32), {"general.alignment", "offset"});
}

TEST(GgufCorrupt, TensorInfos) {
    Gguf g = small_gguf();
    const Bytes good = g.build();
    auto patched = [&](const std::string& field, uint64_t v, bool is64) {
        Bytes b = good;
        is64 ? put_u64(b, g.at[field], v) : put_u32(b, g.at[field], uint32_t(v));
        return b;
    };
    const std::string nd_at = "offset " + std::to_string(g.at["nd:a"]);
    expect_gguf_error(patched("nd:a", 0, false), {"0 dims", "'a'", nd_at.c_str()});
    expect_gguf_error(patched("nd:a", 5, false), {"5 dims", "'a'", nd_at.c_str()});
    expect_gguf_error(patched("nd:a", 0xFFFFFFFF, false), {"dims", "'a'"});
    expect_gguf_error(patched("ti:a", uint64_t(1) << 60, true), {"tensor name", "length"});
    const std::string ty_at = "offset " + std::to_string(g.at["ty:a"]);
    expect_gguf_error(patched("ty:b", 99, false), {"unknown type 99", "'b'", "offset"});
    expect_gguf_error(patched("ty:a", 6, false), {"unknown type 6", ty_at.c_str()});  // Q5_0
    expect_gguf_error(patched("ty:a", 0xFFFFFFFF, false), {"unknown type", ty_at.c_str()});
    // A Q8_0 row must hold whole 32-element blocks (16 floats are not 34-byte blocks either).
    expect_gguf_error(patched("ty:a", uint32_t(DType::Q8_0), false), {"block", "'a'", "offset"});
    // 64 bytes re-typed as 2 Q8_0 rows of 32 would need 68 bytes: runs into 'b'.
    Gguf q = small_gguf();
    q.tensors[0].ne = {32, 2};
    q.tensors[0].type = uint32_t(DType::Q8_0);
    expect_gguf_error(q.build(), {"overlap", "offset"});
    // Misaligned, past-the-end and overlapping data offsets.
    const std::string of_at = "offset " + std::to_string(g.at["of:b"]);
    expect_gguf_error(patched("of:b", 16, true), {"not aligned", "'b'", of_at.c_str()});
    expect_gguf_error(patched("of:b", 1, true), {"not aligned", "'b'"});
    expect_gguf_error(patched("of:b", 96, true), {"past end of file", "'b'", "offset"});
    expect_gguf_error(patched("of:b", uint64_t(1) << 62, true), {"past end of file", "offset"});
    expect_gguf_error(patched("of:b", ~uint64_t(31), true), {"past end of file", "offset"});
    expect_gguf_error(patched("of:b", 0, true), {"overlap", "'a'", "'b'", "offset"});
    expect_gguf_error(patched("of:a", 64, true), {"overlap", "offset"});
}

TEST(GgufCorrupt, DimsThatOverflow) {
    auto with_dims = [](std::vector<uint64_t> ne, DType type = DType::F32) {
        Gguf g = small_gguf();
        g.tensors[1].ne = std::move(ne);
        g.tensors[1].type = uint32_t(type);
        return g.build();
    };
    expect_gguf_error(with_dims({uint64_t(1) << 32, uint64_t(1) << 32}), {"overflow", "'b'"});
    expect_gguf_error(with_dims({uint64_t(1) << 63}), {"overflow", "'b'", "offset"});
    expect_gguf_error(with_dims({~uint64_t(0)}), {"overflow", "'b'"});
    expect_gguf_error(with_dims({2, 3, uint64_t(1) << 40, uint64_t(1) << 30}), {"overflow"});
    // Fits int64 elements, but not bytes: 2^62 floats are 2^64 bytes.
    expect_gguf_error(with_dims({uint64_t(1) << 31, uint64_t(1) << 31}), {"overflow", "'b'"});
    // Fits bytes, but not the file.
    expect_gguf_error(with_dims({uint64_t(1) << 40, uint64_t(1) << 20}), {"past end of file"});
    expect_gguf_error(with_dims({uint64_t(1) << 35}, DType::Q8_0), {"past end of file"});
    // A zero dim is an empty tensor, not an error.
    const Bytes empty = with_dims({0, 7});
    const gguf::File f = parse_gguf(empty);
    EXPECT_EQ(f.tensors()[1].nbytes, 0u);
    EXPECT_EQ(f.tensor(f.tensors()[1]).to_f32().numel(), 0);
}

TEST(GgufValidEdge, EmptyTensorMayShareAnOffset) {
    // gguf-py packs an empty tensor at the offset where the next one starts.
    Gguf g = small_gguf();
    g.tensor("e", {0}, DType::F32, {});
    g.tensors.back().offset = 64;
    const Bytes b = g.build();
    const gguf::File f = parse_gguf(b);
    EXPECT_EQ(f.find_tensor("e")->offset, f.find_tensor("b")->offset);
    EXPECT_EQ(f.find_tensor("e")->nbytes, 0u);
    // But an empty tensor between two overlapping ones does not hide the overlap.
    Gguf o = small_gguf();
    o.tensors[1].offset = 32;
    o.tensor("e", {0}, DType::F32, {});
    o.tensors.back().offset = 32;
    o.tensor("c", {0}, DType::F32, {});
    o.tensors.back().offset = 0;
    expect_gguf_error(o.build(), {"overlap", "offset"});
}

TEST(GgufCorrupt, DuplicateTensorNames) {
    // (Built with the name rather than assigned: GCC 12 -Wrestrict misfires on the latter.)
    Gguf g = small_gguf("a");
    expect_gguf_error(g.build(), {"duplicate tensor name 'a'", "offset"});
}

// ---- Dequantization of hand-made blocks ------------------------------------------------------

TEST(Dequantize, HandMadeBlocks) {
    auto dequant = [](DType t, const Bytes& b, int64_t n) {
        Tensor x;
        x.dtype = t;
        x.shape = {n};
        x.data = b.data();
        x.nbytes = b.size();
        const Tensor y = x.to_f32();
        return std::vector<float>(y.f32(), y.f32() + n);
    };
    const auto q8 = dequant(DType::Q8_0, q8_0_block(), 32);
    EXPECT_EQ(q8[0], -8.0f);
    EXPECT_EQ(q8[16], 0.0f);
    EXPECT_EQ(q8[31], 7.5f);
    // Extremes of int8 with d = -2: -128 -> 256, 127 -> -254.
    Bytes ext = u16_bytes({0xC000});
    for (int j = 0; j < 32; ++j) ext.push_back(j % 2 ? 0x80 : 0x7F);
    const auto q8e = dequant(DType::Q8_0, ext, 32);
    EXPECT_EQ(q8e[0], -254.0f);
    EXPECT_EQ(q8e[1], 256.0f);

    const auto q40 = dequant(DType::Q4_0, q4_0_block(), 32);
    // qs[0] = 0xF0: weight 0 is the low nibble 0 -> 2 * (0 - 8), weight 16 the high nibble 15.
    EXPECT_EQ(q40[0], -16.0f);
    EXPECT_EQ(q40[16], 14.0f);
    EXPECT_EQ(q40[15], 14.0f);
    EXPECT_EQ(q40[31], -16.0f);
    for (int j = 0; j < 16; ++j) {
        EXPECT_EQ(q40[j], 2.0f * float(j - 8)) << j;
        EXPECT_EQ(q40[j + 16], 2.0f * float(7 - j)) << j;
    }

    Bytes two = q4_1_block(kHalfQuarter, kHalfMinusOne);
    const Bytes second = q4_1_block(kHalfOne, kHalfHalf);
    two.insert(two.end(), second.begin(), second.end());
    const auto q41 = dequant(DType::Q4_1, two, 64);
    EXPECT_EQ(q41[0], -1.0f);   // 0.25 * 0 - 1
    EXPECT_EQ(q41[16], 2.75f);  // 0.25 * 15 - 1
    EXPECT_EQ(q41[5], 0.25f);   // 0.25 * 5 - 1
    EXPECT_EQ(q41[32], 0.5f);   // second block: 1 * 0 + 0.5
    EXPECT_EQ(q41[48], 15.5f);  // 1 * 15 + 0.5
    EXPECT_EQ(q41[63], 0.5f);   // qs[15] = 0x0F: high nibble 0
}

// ---- safetensors -----------------------------------------------------------------------------

Bytes st_file(const std::string& header, const Bytes& data) {
    Writer w;
    w.u64(header.size());
    w.b.insert(w.b.end(), header.begin(), header.end());
    w.b.insert(w.b.end(), data.begin(), data.end());
    return w.b;
}

// F32 [2,3] at [0,24), F16 [4] at [24,32), BF16 [2] at [32,36), F32 scalar [] at [36,40),
// F32 [0,3] empty at [40,40); the data ends exactly at the end of the file.
Bytes valid_st() {
    Bytes data = f32_bytes({0, 1, 2, 3, 4, 5.5f});
    const Bytes h = u16_bytes({kHalfOne, 0xC000, kHalfHalf, 0x7C00});
    const Bytes bf = u16_bytes({0x3F80, 0xC0A0});  // 1, -5
    const Bytes s = f32_bytes({-7.25f});
    for (const Bytes* p : {&h, &bf, &s}) data.insert(data.end(), p->begin(), p->end());
    return st_file(R"({"__metadata__":{"format":"pt","x":"y"},)"
                   R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                   R"("h":{"dtype":"F16","shape":[4],"data_offsets":[24,32]},)"
                   R"("bf":{"dtype":"BF16","shape":[2],"data_offsets":[32,36]},)"
                   R"("s":{"dtype":"F32","shape":[],"data_offsets":[36,40]},)"
                   R"("z":{"dtype":"F32","shape":[0,3],"data_offsets":[40,40]}})",
                   data);
}

void check_valid_st(const safetensors::File& f) {
    EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"x", "y"}}));
    ASSERT_EQ(f.tensors().size(), 5u);
    const auto* a = f.find_tensor("a");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->dtype, DType::F32);
    EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(a->nbytes, 24u);
    const Tensor x = f.tensor(*a).to_f32();
    EXPECT_EQ(std::vector<float>(x.f32(), x.f32() + 6), (std::vector<float>{0, 1, 2, 3, 4, 5.5f}));
    const Tensor h = f.tensor(*f.find_tensor("h")).to_f32();
    EXPECT_EQ(h.f32()[1], -2.0f);
    EXPECT_EQ(h.f32()[2], 0.5f);
    EXPECT_TRUE(std::isinf(h.f32()[3]));
    const Tensor bf = f.tensor(*f.find_tensor("bf")).to_f32();
    EXPECT_EQ(bf.f32()[0], 1.0f);
    EXPECT_EQ(bf.f32()[1], -5.0f);
    const Tensor s = f.tensor(*f.find_tensor("s")).to_f32();
    EXPECT_EQ(s.numel(), 1);
    EXPECT_EQ(s.f32()[0], -7.25f);
    EXPECT_EQ(f.find_tensor("z")->nbytes, 0u);
    EXPECT_EQ(f.tensor(*f.find_tensor("z")).to_f32().numel(), 0);
    EXPECT_EQ(f.find_tensor("__metadata__"), nullptr);
}

TEST(SafetensorsValid, FromMemoryAndFromFile) {
    const Bytes b = valid_st();
    check_valid_st(parse_st(b));
    const std::string path = temp_path("valid.safetensors");
    write_bytes(path, b);
    check_valid_st(safetensors::File::open(path));
    std::remove(path.c_str());
    // An empty header object is a valid file with nothing in it.
    EXPECT_TRUE(parse_st(st_file("{}", {})).tensors().empty());
    EXPECT_TRUE(parse_st(st_file("  {}  ", {})).tensors().empty());
}

TEST(SafetensorsCorrupt, EveryTruncationIsAnError) {
    const Bytes b = valid_st();
    for (size_t n = 0; n < b.size(); ++n) {
        const Bytes cut(b.begin(), b.begin() + std::ptrdiff_t(n));
        const std::string e = error_of([&] { parse_st(cut); });
        ASSERT_FALSE(e.empty()) << "truncated to " << n << " bytes parsed";
        ASSERT_NE(e.find("t.safetensors"), std::string::npos) << e;
        ASSERT_NE(e.find("offset"), std::string::npos) << e;
    }
}

TEST(SafetensorsCorrupt, HeaderLength) {
    Bytes b = valid_st();
    put_u64(b, 0, b.size());
    expect_st_error(b, {"header length", "offset 0", "past end"});
    put_u64(b, 0, uint64_t(200) << 20);
    expect_st_error(b, {"header length", "offset 0", "limit"});
    put_u64(b, 0, ~uint64_t(0));
    expect_st_error(b, {"header length", "offset 0"});
    put_u64(b, 0, 0);
    expect_st_error(b, {"JSON", "offset"});
    expect_st_error({1, 0, 0}, {"header length", "offset 0"});
}

TEST(SafetensorsCorrupt, HeaderJson) {
    auto expect = [](const std::string& header, size_t data, std::initializer_list<const char*> w) {
        SCOPED_TRACE(header);
        expect_st_error(st_file(header, Bytes(data, 0)), w);
    };
    const std::string x = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    EXPECT_NO_THROW(parse_st(st_file(x, Bytes(8, 0))));
    expect(R"({"x":)", 0, {"JSON", "offset"});
    expect("{\"x\":1,}", 0, {"JSON", "offset"});
    expect("\xff", 0, {"JSON", "offset"});
    expect(R"({"a":1e999})", 0, {"JSON", "offset"});
    expect(R"([1,2])", 0, {"not a JSON object", "offset 8"});
    expect(R"("x")", 0, {"not a JSON object"});
    expect(R"(null)", 0, {"not a JSON object"});
    expect(R"({"x":[1]})", 0, {"'x'", "not an object", "offset"});
    expect(R"({"__metadata__":[1]})", 0, {"__metadata__", "offset"});
    expect(R"({"__metadata__":{"k":1}})", 0, {"__metadata__", "'k'", "offset"});
    // Duplicate names: nlohmann would silently keep the last.
    expect(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
           R"("x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
           8, {"'x'", "more than once", "offset"});
}

TEST(SafetensorsCorrupt, DtypeAndShape) {
    auto entry = [](const std::string& dtype, const std::string& shape, const std::string& offs) {
        return R"({"t":{"dtype":)" + dtype + R"(,"shape":)" + shape + R"(,"data_offsets":)" + offs +
               "}}";
    };
    auto expect = [](const std::string& header, std::initializer_list<const char*> w) {
        SCOPED_TRACE(header);
        expect_st_error(st_file(header, Bytes(16, 0)), w);
    };
    EXPECT_NO_THROW(parse_st(st_file(entry(R"("F16")", "[2,4]", "[0,16]"), Bytes(16, 0))));
    expect(entry(R"("I8")", "[4]", "[0,4]"), {"dtype", "\"I8\"", "'t'", "offset"});
    expect(entry(R"("F64")", "[2]", "[0,16]"), {"dtype", "offset"});
    expect(entry("7", "[4]", "[0,4]"), {"dtype", "7", "offset"});
    expect(entry(R"("f32")", "[4]", "[0,16]"), {"dtype", "offset"});
    expect(entry(R"(["F32"])", "[4]", "[0,16]"), {"dtype", "offset"});
    expect(entry(R"("F32")", "[-1]", "[0,4]"), {"dim", "'t'", "offset"});
    expect(entry(R"("F32")", "[2,-2]", "[0,16]"), {"dim", "offset"});
    expect(entry(R"("F32")", "[2.5]", "[0,8]"), {"dim", "offset"});
    expect(entry(R"("F32")", "[2.0]", "[0,8]"), {"dim", "offset"});
    expect(entry(R"("F32")", R"(["2"])", "[0,8]"), {"dim", "offset"});
    expect(entry(R"("F32")", "4", "[0,16]"), {"shape", "offset"});
    expect(entry(R"("F32")", "[1,1,1,1,1,1,1,1,1]", "[0,4]"), {"shape", "offset"});
    expect(entry(R"("F32")", "[4294967296,4294967296]", "[0,16]"), {"overflow", "offset"});
    expect(entry(R"("F32")", "[18446744073709551615]", "[0,16]"), {"overflow", "offset"});
    expect(entry(R"("F32")", "[1073741824,1073741824,16]", "[0,16]"), {"overflow", "offset"});
    expect(R"({"t":{"shape":[1],"data_offsets":[0,4]}})", {"lacks 'dtype'", "offset"});
    expect(R"({"t":{"dtype":"F32","data_offsets":[0,4]}})", {"lacks 'shape'", "offset"});
    expect(R"({"t":{"dtype":"F32","shape":[1]}})", {"lacks 'data_offsets'", "offset"});
}

TEST(SafetensorsCorrupt, DataOffsets) {
    auto f32 = [](const std::string& name, const std::string& shape, const std::string& offs) {
        return "\"" + name + R"(":{"dtype":"F32","shape":)" + shape + R"(,"data_offsets":)" + offs +
               "}";
    };
    auto expect = [](const std::string& header, size_t data, std::initializer_list<const char*> w) {
        SCOPED_TRACE(header);
        expect_st_error(st_file(header, Bytes(data, 0)), w);
    };
    expect("{" + f32("t", "[2]", "[8,0]") + "}", 8, {"'t'", "data", "offset"});
    expect("{" + f32("t", "[2]", "[0,16]") + "}", 8, {"'t'", "past end", "offset"});
    expect("{" + f32("t", "[2]", "[16,24]") + "}", 8, {"past end", "offset"});
    expect("{" + f32("t", "[2]", "[0,18446744073709551615]") + "}", 8, {"past end", "offset"});
    expect("{" + f32("t", "[2]", "[0,99999999999999999999]") + "}", 8, {"data_offsets", "offset"});
    expect("{" + f32("t", "[2]", "[0,4]") + "}", 8, {"'t'", "has 4 bytes", "needs 8", "offset"});
    expect("{" + f32("t", "[2]", "[0,12]") + "}", 12, {"has 12 bytes", "needs 8", "offset"});
    expect("{" + f32("t", "[2]", "[-8,0]") + "}", 8, {"data_offsets", "offset"});
    expect("{" + f32("t", "[2]", "[0.0,8.0]") + "}", 8, {"data_offsets", "offset"});
    expect("{" + f32("t", "[2]", "[0]") + "}", 8, {"data_offsets", "offset"});
    expect("{" + f32("t", "[2]", "[0,8,8]") + "}", 8, {"data_offsets", "offset"});
    expect("{" + f32("t", "[2]", R"({"b":0})") + "}", 8, {"data_offsets", "offset"});
    // Overlapping ranges, also when an empty tensor sorts between the two.
    expect("{" + f32("a", "[4]", "[0,16]") + "," + f32("b", "[2]", "[8,16]") + "}", 16,
           {"overlap", "offset"});
    expect("{" + f32("a", "[4]", "[0,16]") + "," + f32("b", "[4]", "[0,16]") + "}", 16,
           {"overlap", "offset"});
    expect("{" + f32("a", "[4]", "[0,16]") + "," + f32("e", "[0]", "[4,4]") + "," +
               f32("b", "[1]", "[8,12]") + "}",
           16, {"overlap", "offset"});
    // Adjacent ranges and empty tensors anywhere are fine.
    EXPECT_NO_THROW(
        parse_st(st_file("{" + f32("a", "[2]", "[0,8]") + "," + f32("e", "[0]", "[8,8]") + "," +
                             f32("b", "[2]", "[8,16]") + "," + f32("e2", "[3,0]", "[0,0]") + "}",
                         Bytes(16, 0))));
}

// ---- Seeds for the fuzzers -------------------------------------------------------------------

// ZQAT_WRITE_FUZZ_SEEDS=<repo>/tests/data/io ./test_io_formats --gtest_filter='Seeds.*' writes the
// files built above into the libFuzzer seed corpora (corpus_fuzz_<target>/); without the variable
// this test does nothing.
TEST(Seeds, WrittenWhenAsked) {
    const char* dir = std::getenv("ZQAT_WRITE_FUZZ_SEEDS");
    if (dir == nullptr) return;
    const std::string gguf_dir = std::string(dir) + "/corpus_fuzz_gguf/";
    const std::string st_dir = std::string(dir) + "/corpus_fuzz_safetensors/";
    write_bytes(gguf_dir + "every_type_v3_a32.gguf",
                every_type_gguf(GgufParams{3, 32, true}).build());
    write_bytes(gguf_dir + "every_type_v2_a64.gguf",
                every_type_gguf(GgufParams{2, 64, true}).build());
    write_bytes(st_dir + "edge_cases.safetensors", valid_st());
}

}  // namespace
