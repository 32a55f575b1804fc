// GGUF reader: files built byte by byte here (every value type, v2 and v3, custom alignment),
// systematic corruption of them (every truncation, every header field), and the real SmolLM2
// model against what gguf-py reads from it (tests/data/io/smollm2_golden.json, made by
// scripts/make_io_fixtures.py; skipped when ZQAT_MODEL is unset).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "zqat/core/error.h"
#include "zqat/io/gguf.h"

using namespace zqat;
using gguf::ValueType;

namespace {

// Little-endian byte writer that remembers where named fields start, so tests can corrupt them.
struct Bytes {
    std::vector<uint8_t> b;
    std::map<std::string, size_t> at;

    template <class T>
    void put(T v, const std::string& field = "") {
        if (!field.empty()) at[field] = b.size();
        const size_t n = b.size();
        b.resize(n + sizeof(T));
        std::memcpy(&b[n], &v, sizeof(T));
    }
    void str(const std::string& s, const std::string& field = "") {
        put<uint64_t>(s.size(), field);
        b.insert(b.end(), s.begin(), s.end());
    }
};

struct TensorSpec {
    std::string name;
    std::vector<uint64_t> ne;  // innermost first, as stored
    uint32_t type;
    std::vector<uint8_t> data;
};

// A GGUF file: header, the kv pairs already encoded in `kv`, tensor infos, padding, data.
struct Builder {
    uint32_t version = 3;
    uint64_t alignment = 32;  // only used for layout; add general.alignment to change the reader's
    Bytes kv;
    uint64_t n_kv = 0;
    std::vector<TensorSpec> tensors;

    template <class T>
    void scalar(const std::string& key, ValueType t, T v) {
        kv.str(key, "key:" + key);
        kv.put<uint32_t>(uint32_t(t), "type:" + key);
        kv.put<T>(v, "value:" + key);
        ++n_kv;
    }
    void string(const std::string& key, const std::string& v) {
        kv.str(key, "key:" + key);
        kv.put<uint32_t>(uint32_t(ValueType::STRING), "type:" + key);
        kv.str(v, "value:" + key);
        ++n_kv;
    }
    template <class T>
    void array(const std::string& key, ValueType et, const std::vector<T>& v) {
        kv.str(key, "key:" + key);
        kv.put<uint32_t>(uint32_t(ValueType::ARRAY), "type:" + key);
        kv.put<uint32_t>(uint32_t(et), "elem_type:" + key);
        kv.put<uint64_t>(v.size(), "count:" + key);
        for (const T& x : v) {
            if constexpr (std::is_same_v<T, std::string>)
                kv.str(x);
            else
                kv.put<T>(x);
        }
        ++n_kv;
    }

    // Lays out the file. Data offsets are assigned in order, each aligned; `at` of the result
    // names header fields ("n_tensors", "tensor:<name>.type", ...) and data ("data:<name>").
    Bytes build() const {
        Bytes out;
        out.b = {'G', 'G', 'U', 'F'};
        out.put<uint32_t>(version, "version");
        out.put<uint64_t>(tensors.size(), "n_tensors");
        out.put<uint64_t>(n_kv, "n_kv");
        const size_t kv_start = out.b.size();
        out.b.insert(out.b.end(), kv.b.begin(), kv.b.end());
        for (const auto& [k, v] : kv.at) out.at[k] = kv_start + v;
        uint64_t rel = 0;
        std::vector<uint64_t> rels;
        for (const auto& t : tensors) {
            out.str(t.name, "tensor:" + t.name);
            out.put<uint32_t>(uint32_t(t.ne.size()), "tensor:" + t.name + ".n_dims");
            for (size_t d = 0; d < t.ne.size(); ++d)
                out.put<uint64_t>(t.ne[d], "tensor:" + t.name + ".ne" + std::to_string(d));
            out.put<uint32_t>(t.type, "tensor:" + t.name + ".type");
            out.put<uint64_t>(rel, "tensor:" + t.name + ".offset");
            rels.push_back(rel);
            rel = (rel + t.data.size() + alignment - 1) / alignment * alignment;
        }
        const size_t data_start = (out.b.size() + alignment - 1) / alignment * alignment;
        out.b.resize(data_start + rel, 0);
        for (size_t i = 0; i < tensors.size(); ++i) {
            out.at["data:" + tensors[i].name] = data_start + rels[i];
            if (!tensors[i].data.empty())
                std::memcpy(&out.b[data_start + rels[i]], tensors[i].data.data(),
                            tensors[i].data.size());
        }
        out.at["data"] = data_start;
        return out;
    }
};

std::vector<uint8_t> iota_bytes(size_t n, uint8_t start = 0) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = uint8_t(start + i * 7);
    return v;
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& x) {
    std::vector<uint8_t> v(x.size() * 4);
    std::memcpy(v.data(), x.data(), v.size());
    return v;
}

// A small file with every value type, arrays of each element type and a few tensors.
Builder full_builder() {
    Builder g;
    g.scalar<uint8_t>("t.u8", ValueType::UINT8, 200);
    g.scalar<int8_t>("t.i8", ValueType::INT8, -100);
    g.scalar<uint16_t>("t.u16", ValueType::UINT16, 60000);
    g.scalar<int16_t>("t.i16", ValueType::INT16, -30000);
    g.scalar<uint32_t>("t.u32", ValueType::UINT32, 4000000000u);
    g.scalar<int32_t>("t.i32", ValueType::INT32, -2000000000);
    g.scalar<float>("t.f32", ValueType::FLOAT32, 0.25f);
    g.scalar<uint8_t>("t.bool", ValueType::BOOL, 1);
    g.string("t.str", "h\xc3\xa9llo");
    g.scalar<uint64_t>("t.u64", ValueType::UINT64, UINT64_MAX);
    g.scalar<int64_t>("t.i64", ValueType::INT64, INT64_MIN);
    g.scalar<double>("t.f64", ValueType::FLOAT64, -1.0e300);
    g.string("t.empty_str", "");
    g.array<uint8_t>("a.u8", ValueType::UINT8, {1, 255});
    g.array<int8_t>("a.i8", ValueType::INT8, {-1, 127});
    g.array<uint16_t>("a.u16", ValueType::UINT16, {65535});
    g.array<int16_t>("a.i16", ValueType::INT16, {-32768, 5});
    g.array<uint32_t>("a.u32", ValueType::UINT32, {7, 8, 9});
    g.array<int32_t>("a.i32", ValueType::INT32, {-7});
    g.array<float>("a.f32", ValueType::FLOAT32, {1.5f, -2.f});
    g.array<uint8_t>("a.bool", ValueType::BOOL, {0, 1, 1});
    g.array<std::string>("a.str", ValueType::STRING, {"a", "", "xyz"});
    g.array<uint64_t>("a.u64", ValueType::UINT64, {uint64_t(1) << 40});
    g.array<int64_t>("a.i64", ValueType::INT64, {-(int64_t(1) << 40)});
    g.array<double>("a.f64", ValueType::FLOAT64, {0.125});
    g.array<uint32_t>("a.empty", ValueType::UINT32, {});
    g.tensors.push_back({"w.f32", {3, 2}, 0, f32_bytes({0, 1, 2, 3, 4, 5})});
    g.tensors.push_back({"w.q8_0", {32, 2}, 8, iota_bytes(68)});
    g.tensors.push_back({"w.q4_1", {64}, 3, iota_bytes(40, 3)});
    g.tensors.push_back({"w.empty", {0, 4}, 0, {}});
    return g;
}

gguf::File parse(const std::vector<uint8_t>& b) {
    return gguf::File::from_memory(b.data(), b.size(), "t.gguf");
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

template <class T>
void patch(std::vector<uint8_t>& b, size_t off, T v) {
    ASSERT_LE(off + sizeof(T), b.size());
    std::memcpy(&b[off], &v, sizeof(T));
}

}  // namespace

TEST(GgufBuilt, EveryValueType) {
    const Bytes file = full_builder().build();
    const gguf::File f = parse(file.b);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.path(), "t.gguf");
    EXPECT_EQ(f.file_size(), file.b.size());
    EXPECT_EQ(f.metadata().size(), 26u);
    EXPECT_EQ(f.metadata()[0].first, "t.u8");  // file order is kept
    EXPECT_EQ(f.get_uint("t.u8"), 200u);
    EXPECT_EQ(f.get_int("t.i8"), -100);
    EXPECT_EQ(f.get_uint("t.u16"), 60000u);
    EXPECT_EQ(f.get_int("t.i16"), -30000);
    EXPECT_EQ(f.get_uint("t.u32"), 4000000000u);
    EXPECT_EQ(f.get_int("t.u32"), 4000000000);
    EXPECT_EQ(f.get_int("t.i32"), -2000000000);
    EXPECT_EQ(f.get_float("t.f32"), 0.25);
    EXPECT_TRUE(f.get_bool("t.bool"));
    EXPECT_EQ(f.get_string("t.str"), "h\xc3\xa9llo");
    EXPECT_EQ(f.get_uint("t.u64"), UINT64_MAX);
    EXPECT_EQ(f.get_int("t.i64"), INT64_MIN);
    EXPECT_EQ(f.get_float("t.f64"), -1.0e300);
    EXPECT_EQ(f.get_float("t.i16"), -30000.0);  // any number reads as float
    EXPECT_EQ(f.get_string("t.empty_str"), "");
    EXPECT_EQ(f.find("t.u8")->type, ValueType::UINT8);
    EXPECT_EQ(f.find("t.str")->offset, file.at.at("type:t.str"));

    EXPECT_EQ(f.get_int_array("a.u8"), (std::vector<int64_t>{1, 255}));
    EXPECT_EQ(f.get_int_array("a.i8"), (std::vector<int64_t>{-1, 127}));
    EXPECT_EQ(f.get_int_array("a.u16"), (std::vector<int64_t>{65535}));
    EXPECT_EQ(f.get_int_array("a.i16"), (std::vector<int64_t>{-32768, 5}));
    EXPECT_EQ(f.get_int_array("a.u32"), (std::vector<int64_t>{7, 8, 9}));
    EXPECT_EQ(f.get_int_array("a.i32"), (std::vector<int64_t>{-7}));
    EXPECT_EQ(f.get_float_array("a.f32"), (std::vector<double>{1.5, -2.0}));
    EXPECT_EQ(f.get_int_array("a.bool"), (std::vector<int64_t>{0, 1, 1}));
    EXPECT_EQ(f.get_string_array("a.str"), (std::vector<std::string>{"a", "", "xyz"}));
    EXPECT_EQ(f.get_int_array("a.u64"), (std::vector<int64_t>{int64_t(1) << 40}));
    EXPECT_EQ(f.get_int_array("a.i64"), (std::vector<int64_t>{-(int64_t(1) << 40)}));
    EXPECT_EQ(f.get_float_array("a.f64"), (std::vector<double>{0.125}));
    EXPECT_TRUE(f.get_int_array("a.empty").empty());
    EXPECT_EQ(f.find("a.str")->elem_type, ValueType::STRING);

    // Defaults, and errors that name the file, key, offset and types.
    EXPECT_EQ(f.get_uint_or("nope", 5), 5u);
    EXPECT_EQ(f.get_float_or("t.f32", 1.0), 0.25);
    EXPECT_EQ(f.get_string_or("nope", "x"), "x");
    EXPECT_FALSE(f.get_bool_or("nope", false));
    EXPECT_FALSE(f.has("nope"));
    const std::string e = error_of([&] { f.get_string("t.u32"); });
    EXPECT_NE(e.find("t.gguf"), std::string::npos) << e;
    EXPECT_NE(e.find("'t.u32' at offset " + std::to_string(file.at.at("type:t.u32"))),
              std::string::npos)
        << e;
    EXPECT_NE(e.find("uint32"), std::string::npos) << e;
    EXPECT_NE(error_of([&] { f.get_uint("nope"); }).find("missing metadata key 'nope'"),
              std::string::npos);
    EXPECT_FALSE(error_of([&] { f.get_uint("t.i8"); }).empty());    // negative
    EXPECT_FALSE(error_of([&] { f.get_int("t.u64"); }).empty());    // does not fit int64
    EXPECT_FALSE(error_of([&] { f.get_bool("t.u8"); }).empty());    // not a bool
    EXPECT_FALSE(error_of([&] { f.get_float("t.str"); }).empty());  // not a number
    EXPECT_FALSE(error_of([&] { f.get_int_array("a.str"); }).empty());
    EXPECT_FALSE(error_of([&] { f.get_string_array("a.u8"); }).empty());
    EXPECT_FALSE(error_of([&] { f.get_float_array("a.i32"); }).empty());
    EXPECT_FALSE(error_of([&] { f.get_int_array("t.u8"); }).empty());
}

TEST(GgufBuilt, TensorInfosAndData) {
    for (uint32_t version : {2u, 3u}) {
        for (uint64_t align : {32u, 8u, 64u}) {
            SCOPED_TRACE(std::to_string(version) + "/" + std::to_string(align));
            Builder g = full_builder();
            g.version = version;
            g.alignment = align;
            if (align != 32) g.scalar<uint32_t>("general.alignment", ValueType::UINT32, align);
            const Bytes file = g.build();
            const gguf::File f = parse(file.b);
            EXPECT_EQ(f.version(), version);
            EXPECT_EQ(f.alignment(), align);
            ASSERT_EQ(f.tensors().size(), 4u);
            const auto& t = f.tensors();
            EXPECT_EQ(t[0].name, "w.f32");
            EXPECT_EQ(t[0].shape, (std::vector<int64_t>{2, 3}));  // PyTorch order
            EXPECT_EQ(t[0].dtype, DType::F32);
            EXPECT_EQ(t[0].nbytes, 24u);
            EXPECT_EQ(t[1].shape, (std::vector<int64_t>{2, 32}));
            EXPECT_EQ(t[1].dtype, DType::Q8_0);
            EXPECT_EQ(t[1].nbytes, 68u);
            EXPECT_EQ(t[2].shape, (std::vector<int64_t>{64}));
            EXPECT_EQ(t[2].dtype, DType::Q4_1);
            EXPECT_EQ(t[2].nbytes, 40u);
            EXPECT_EQ(t[3].shape, (std::vector<int64_t>{4, 0}));
            EXPECT_EQ(t[3].nbytes, 0u);
            EXPECT_EQ(file.at.at("data") % align, 0u);
            for (const auto& ti : t) {
                EXPECT_EQ(ti.offset, file.at.at("data:" + ti.name)) << ti.name;
                EXPECT_EQ(ti.offset % align, 0u);
            }
            EXPECT_EQ(f.find_tensor("w.q8_0"), &t[1]);
            EXPECT_EQ(f.find_tensor("nope"), nullptr);
            // A tensor is a view of the file's bytes; to_f32 dequantizes it.
            const Tensor w = f.tensor(t[0]);
            EXPECT_EQ(w.data, file.b.data() + t[0].offset);
            EXPECT_EQ(w.name, "w.f32");
            const Tensor x = w.to_f32();
            for (int i = 0; i < 6; ++i) EXPECT_EQ(x.f32()[i], float(i));
            const Tensor q = f.tensor(t[2]).to_f32();
            const uint8_t* blk = file.b.data() + t[2].offset;  // second block of Q4_1
            EXPECT_EQ(q.f32()[32 + 17],
                      fp16_to_f32(uint16_t(blk[20] | blk[21] << 8)) * float(blk[20 + 4 + 1] >> 4) +
                          fp16_to_f32(uint16_t(blk[22] | blk[23] << 8)));
            EXPECT_EQ(f.tensor(t[3]).to_f32().numel(), 0);
        }
    }
}

TEST(GgufBuilt, EmptyFileAndFromDisk) {
    Builder g;
    const Bytes file = g.build();
    EXPECT_EQ(file.b.size(), 32u);  // 24 bytes of header, padded to the alignment
    const gguf::File f = parse(file.b);
    EXPECT_TRUE(f.metadata().empty());
    EXPECT_TRUE(f.tensors().empty());
    // Just the 24 bytes also parse: no tensors, so no data section to reach.
    EXPECT_NO_THROW(parse(std::vector<uint8_t>(file.b.begin(), file.b.begin() + 24)));

    const auto path = std::filesystem::temp_directory_path() / "zqat_test_io_gguf.gguf";
    {
        const Bytes full = full_builder().build();
        std::ofstream(path, std::ios::binary)
            .write(reinterpret_cast<const char*>(full.b.data()), std::streamsize(full.b.size()));
    }
    Tensor keep;
    {
        const gguf::File d = gguf::File::open(path.string());
        EXPECT_EQ(d.path(), path.string());
        keep = d.tensor(*d.find_tensor("w.f32"));
    }
    // The tensor keeps the mapping alive after the File is gone.
    EXPECT_EQ(keep.to_f32().f32()[5], 5.f);
    std::filesystem::remove(path);
    const std::string e = error_of([&] { gguf::File::open(path.string()); });
    EXPECT_NE(e.find(path.string()), std::string::npos) << e;
}

TEST(GgufCorrupt, EveryTruncationIsAnErrorNamingFileAndOffset) {
    const Bytes file = full_builder().build();
    uint64_t end = 0;  // trailing alignment padding after the last tensor may be cut harmlessly
    const gguf::File whole = parse(file.b);
    for (const auto& t : whole.tensors()) end = std::max(end, t.offset + t.nbytes);
    for (size_t n = 0; n < end; ++n) {
        const std::vector<uint8_t> cut(file.b.begin(), file.b.begin() + std::ptrdiff_t(n));
        const std::string e = error_of([&] { parse(cut); });
        ASSERT_FALSE(e.empty()) << "truncated to " << n << " bytes parsed";
        EXPECT_EQ(e.rfind("[gguf] t.gguf: ", 0), 0u) << e;
        EXPECT_NE(e.find("offset"), std::string::npos) << e;
    }
}

TEST(GgufCorrupt, EveryFieldIsChecked) {
    const Bytes file = full_builder().build();
    const auto& at = file.at;
    // Applies a patch and expects an Error containing each of `want`.
    auto expect = [&](const char* what, auto&& fix, std::vector<std::string> want) {
        SCOPED_TRACE(what);
        auto b = file.b;
        fix(b);
        const std::string e = error_of([&] { parse(b); });
        ASSERT_FALSE(e.empty()) << "parsed";
        want.push_back("t.gguf");
        for (const auto& w : want) EXPECT_NE(e.find(w), std::string::npos) << e << " | " << w;
    };
    auto u32 = [](size_t off, uint32_t v) { return [=](auto& b) { patch<uint32_t>(b, off, v); }; };
    auto u64 = [](size_t off, uint64_t v) { return [=](auto& b) { patch<uint64_t>(b, off, v); }; };
    const auto s = [](size_t v) { return std::to_string(v); };

    expect("magic", [](auto& b) { b[3] = 'X'; }, {"magic", "offset 0"});
    expect("version 1", u32(4, 1), {"version 1", "offset 4"});
    expect("version 4", u32(4, 4), {"version 4", "offset 4"});
    expect("big endian", u32(4, 0x03000000), {"big-endian", "offset 4"});
    expect("n_tensors", u64(8, uint64_t(1) << 60), {"tensor count", "offset 8"});
    expect("n_kv", u64(16, UINT64_MAX), {"metadata count", "offset 16"});
    expect("n_kv too large for the kv bytes", u64(16, 27), {"offset"});
    expect("key length", u64(at.at("key:t.u8"), uint64_t(1) << 40),
           {"metadata key length", "offset " + s(at.at("key:t.u8"))});
    expect("value type", u32(at.at("type:t.u8"), 13),
           {"unknown value type 13", "'t.u8'", "offset " + s(at.at("type:t.u8"))});
    expect("bool value", [&](auto& b) { b[at.at("value:t.bool")] = 2; },
           {"bool value 2", "offset " + s(at.at("value:t.bool"))});
    expect("string length", u64(at.at("value:t.str"), UINT64_MAX - 3),
           {"string value length", "offset " + s(at.at("value:t.str"))});
    expect("nested array", u32(at.at("elem_type:a.u8"), 9),
           {"array element type 9", "offset " + s(at.at("elem_type:a.u8"))});
    expect("array count", u64(at.at("count:a.u32"), uint64_t(1) << 61),
           {"array length", "'a.u32'", "offset " + s(at.at("count:a.u32"))});
    expect("string array count", u64(at.at("count:a.str"), 1u << 20),
           {"array length", "offset " + s(at.at("count:a.str"))});
    expect("duplicate key", [&](auto& b) { b[at.at("key:t.i8") + 8 + 2] = 'u'; },
           {"duplicate metadata key 't.u8'", "offset " + s(at.at("key:t.i8"))});

    const std::string q8 = "tensor:w.q8_0";
    expect("duplicate tensor",
           [&](auto& b) { std::memcpy(&b[at.at("tensor:w.q4_1") + 8], "w.q8_0", 6); },
           {"duplicate tensor name 'w.q8_0'", "offset " + s(at.at("tensor:w.q4_1"))});
    expect("n_dims 0", u32(at.at(q8 + ".n_dims"), 0), {"0 dims", "offset"});
    expect("n_dims 5", u32(at.at(q8 + ".n_dims"), 5), {"5 dims", "offset"});
    expect("shape overflow",
           [&](auto& b) {
               patch<uint64_t>(b, at.at(q8 + ".ne0"), uint64_t(1) << 40);
               patch<uint64_t>(b, at.at(q8 + ".ne1"), uint64_t(1) << 40);
           },
           {"overflow", "offset " + s(at.at(q8 + ".ne1"))});
    expect("byte size overflow",  // 2^62 F32 elements: 2^64 bytes
           [&](auto& b) {
               patch<uint64_t>(b, at.at("tensor:w.f32.ne0"), uint64_t(1) << 61);
               patch<uint64_t>(b, at.at("tensor:w.f32.ne1"), 2);
           },
           {"size overflows", "offset " + s(at.at("tensor:w.f32"))});
    expect("negative dim", u64(at.at(q8 + ".ne1"), UINT64_MAX), {"overflow", "offset"});
    expect("unknown dtype", u32(at.at(q8 + ".type"), 4),
           {"unknown type 4", "offset " + s(at.at(q8 + ".type"))});
    expect("absurd dtype", u32(at.at(q8 + ".type"), 0xffffffff), {"unknown type", "offset"});
    expect("row not a multiple of the block", u64(at.at(q8 + ".ne0"), 16),
           {"not a multiple", "offset " + s(at.at(q8))});
    expect("misaligned offset", u64(at.at(q8 + ".offset"), 33),
           {"not aligned to 32", "offset " + s(at.at(q8 + ".offset"))});
    expect("offset past the end", u64(at.at(q8 + ".offset"), uint64_t(1) << 40),
           {"past end of file", "w.q8_0"});
    expect("offset near 2^64", u64(at.at(q8 + ".offset"), UINT64_MAX - 31),
           {"past end of file", "w.q8_0"});
    expect("size past the end", u64(at.at(q8 + ".ne1"), 1000), {"past end of file", "w.q8_0"});
    expect("overlap", u64(at.at(q8 + ".offset"), 0), {"overlap", "w.f32", "w.q8_0", "offset"});
    expect("overlap by growth", u64(at.at("tensor:w.f32.ne1"), 3), {"overlap", "w.f32", "w.q8_0"});
}

TEST(GgufCorrupt, AlignmentIsChecked) {
    auto with_alignment = [](auto add) {
        Builder g = full_builder();
        add(g);
        return g.build().b;
    };
    for (uint32_t bad : {0u, 3u, 48u}) {
        const auto b = with_alignment(
            [&](Builder& g) { g.scalar<uint32_t>("general.alignment", ValueType::UINT32, bad); });
        const std::string e = error_of([&] { parse(b); });
        EXPECT_NE(e.find("general.alignment at offset"), std::string::npos) << bad << ": " << e;
    }
    const auto b = with_alignment(
        [](Builder& g) { g.scalar<uint64_t>("general.alignment", ValueType::UINT64, 32); });
    EXPECT_NE(error_of([&] { parse(b); }).find("power-of-two uint32"), std::string::npos);
    // A real alignment the tensors do not satisfy: data laid out for 32, read with 1024.
    Builder g = full_builder();
    g.scalar<uint32_t>("general.alignment", ValueType::UINT32, 1024);
    const std::string e = error_of([&] { parse(g.build().b); });
    EXPECT_NE(e.find("not aligned to 1024"), std::string::npos) << e;
}

TEST(GgufCorrupt, EveryByteFlipIsSafe) {
    // Not every flip is an error (a changed value is still a value), but none may crash or read
    // out of bounds; ASan builds (scripts/test.sh) make that check strict.
    const Bytes file = full_builder().build();
    const size_t header_end = file.at.at("data");
    int errors = 0;
    for (size_t i = 0; i < header_end; ++i) {
        for (uint8_t x : {uint8_t(0x01), uint8_t(0x80), uint8_t(0xff)}) {
            auto b = file.b;
            b[i] ^= x;
            try {
                const gguf::File f = parse(b);
                for (const auto& t : f.tensors())
                    if (t.nbytes < (1u << 20)) (void)f.tensor(t).to_f32();
            } catch (const Error&) {
                ++errors;
            }
        }
    }
    EXPECT_GT(errors, 0);
}

// ---- block layouts -------------------------------------------------------------------------
// Each GGUF block type against an element-wise restatement of llama.cpp's ggml-common.h layout,
// written differently from src/core/dtype.cpp on purpose (that one follows llama.cpp's loops).

namespace {

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
    std::vector<uint8_t> b(n);
    uint32_t x = seed * 2654435761u + 1;
    for (auto& v : b) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;  // xorshift32
        v = uint8_t(x >> 24);
    }
    return b;
}
void put_f16(std::vector<uint8_t>& b, size_t off, float x) {
    const uint16_t h = f32_to_fp16(x);
    std::memcpy(&b[off], &h, 2);
}
float f16_at(const uint8_t* p) {
    return fp16_to_f32(uint16_t(p[0] | p[1] << 8));
}
std::vector<float> dequant(DType t, const uint8_t* src, int64_t n) {
    std::vector<float> out(size_t(n), -12345.f);
    dequantize(t, src, out.data(), n);
    return out;
}

}  // namespace

TEST(BlockLayout, Q8_0FromAnOddAddress) {
    // {fp16 d; int8 q[32]} x 3, one byte into the buffer: mapped data need not be aligned.
    const int nb = 3;
    auto raw = random_bytes(1 + 34 * nb, 1);
    for (int k = 0; k < nb; ++k) put_f16(raw, 1 + 34 * k, 0.01f * float(k + 1));
    const uint8_t* b = raw.data() + 1;
    const auto y = dequant(DType::Q8_0, b, 32 * nb);
    for (int k = 0; k < nb; ++k)
        for (int j = 0; j < 32; ++j)
            ASSERT_EQ(y[32 * k + j], f16_at(b + 34 * k) * float(int8_t(b[34 * k + 2 + j])));
}

TEST(BlockLayout, Q4_0AndQ4_1NibbleOrder) {
    const int nb = 4;
    auto q40 = random_bytes(18 * nb, 2), q41 = random_bytes(20 * nb, 3);
    for (int k = 0; k < nb; ++k) {
        put_f16(q40, 18 * k, 0.25f - 0.1f * float(k));
        put_f16(q41, 20 * k, 0.03f * float(k + 1));
        put_f16(q41, 20 * k + 2, -0.5f + 0.2f * float(k));
    }
    const auto a = dequant(DType::Q4_0, q40.data(), 32 * nb);
    const auto b = dequant(DType::Q4_1, q41.data(), 32 * nb);
    for (int k = 0; k < nb; ++k) {
        const float d0 = f16_at(&q40[18 * k]), d1 = f16_at(&q41[20 * k]);
        const float m1 = f16_at(&q41[20 * k + 2]);
        for (int j = 0; j < 32; ++j) {
            // Weight j < 16 is the low nibble of qs[j]; weight j >= 16 the high one of qs[j-16].
            const int n0 = j < 16 ? q40[18 * k + 2 + j] & 0xF : q40[18 * k + 2 + j - 16] >> 4;
            const int n1 = j < 16 ? q41[20 * k + 4 + j] & 0xF : q41[20 * k + 4 + j - 16] >> 4;
            ASSERT_EQ(a[32 * k + j], d0 * float(n0 - 8)) << k << ' ' << j;
            ASSERT_EQ(b[32 * k + j], d1 * float(n1) + m1) << k << ' ' << j;
        }
    }
}

TEST(BlockLayout, Q4_K) {
    // {fp16 d; fp16 dmin; u8 scales[12]; u8 qs[128]}: 8 sub-blocks of 32 with 6-bit scale/min
    // pairs; weights 64c..64c+63 share qs[32c..32c+31], low nibbles first.
    const int nb = 2;
    auto b = random_bytes(144 * nb, 4);
    for (int k = 0; k < nb; ++k) {
        put_f16(b, 144 * k, 0.02f * float(k + 1));
        put_f16(b, 144 * k + 2, 0.01f);
    }
    const auto y = dequant(DType::Q4_K, b.data(), 256 * nb);
    for (int k = 0; k < nb; ++k) {
        const uint8_t* blk = &b[144 * k];
        const uint8_t* sc = blk + 4;
        const float d = f16_at(blk), dmin = f16_at(blk + 2);
        for (int i = 0; i < 256; ++i) {
            const int s = i / 32, c = i / 64, l = i % 32;
            // Scales 0-3 are the low 6 bits of bytes 0-3 (mins: 4-7); scales 4-7 take 4 bits
            // from bytes 8-11 and their top 2 bits from the top of bytes 0-3 (mins: 4-7).
            const int scale = s < 4 ? sc[s] & 63 : (sc[s + 4] & 0xF) | ((sc[s - 4] >> 6) << 4);
            const int mn = s < 4 ? sc[s + 4] & 63 : (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4);
            const uint8_t q = blk[16 + 32 * c + l];
            const int nib = (s % 2) ? q >> 4 : q & 0xF;
            ASSERT_EQ(y[256 * k + i], d * float(scale) * float(nib) - dmin * float(mn))
                << k << ' ' << i;
        }
    }
}

TEST(BlockLayout, Q6_K) {
    // {u8 ql[128]; u8 qh[64]; int8 scales[16]; fp16 d}: each half of 128 weights takes 64 bytes
    // of ql (low 4 bits), 32 of qh (2 high bits each) and 8 scales (one per 16 weights).
    const int nb = 2;
    auto b = random_bytes(210 * nb, 5);
    for (int k = 0; k < nb; ++k) put_f16(b, 210 * k + 208, 0.003f * float(k + 1));
    const auto y = dequant(DType::Q6_K, b.data(), 256 * nb);
    for (int k = 0; k < nb; ++k) {
        const uint8_t* blk = &b[210 * k];
        const float d = f16_at(blk + 208);
        for (int i = 0; i < 256; ++i) {
            const int h = i / 128, quad = (i % 128) / 32, l = i % 32;
            const uint8_t lo = blk[64 * h + l + 32 * (quad & 1)];
            const int low4 = quad < 2 ? lo & 0xF : lo >> 4;
            const int high2 = (blk[128 + 32 * h + l] >> (2 * quad)) & 3;
            const int q = (low4 | (high2 << 4)) - 32;
            const int8_t scale = int8_t(blk[192 + 8 * h + l / 16 + 2 * quad]);
            ASSERT_EQ(y[256 * k + i], d * float(scale) * float(q)) << k << ' ' << i;
        }
    }
}

// ---- the real model ------------------------------------------------------------------------

namespace {
const char* model_path() {
    const char* p = std::getenv("ZQAT_MODEL");
    return p && std::filesystem::exists(p) ? p : nullptr;
}
nlohmann::json golden() {
    std::ifstream in(std::string(ZQAT_TEST_DATA) + "/io/smollm2_golden.json");
    return nlohmann::json::parse(in);
}
}  // namespace

TEST(GgufReal, SmolLM2MetadataEqualsGgufPy) {
    const char* path = model_path();
    if (!path) GTEST_SKIP() << "ZQAT_MODEL not set or missing";
    const auto g = golden();
    const gguf::File f = gguf::File::open(path);
    EXPECT_EQ(f.file_size(), g["file_size"].get<uint64_t>());
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.tensors().size(), 272u);
    EXPECT_EQ(f.metadata().size(), g["n_kv"].get<size_t>());
    EXPECT_EQ(f.alignment(), 32u);
    EXPECT_EQ(f.get_uint("llama.block_count"), 30u);
    EXPECT_EQ(f.get_string("general.architecture"), "llama");
    EXPECT_EQ(f.get_uint("llama.embedding_length"), 576u);
    EXPECT_EQ(f.get_uint("llama.context_length"), 8192u);
    EXPECT_EQ(f.get_uint("llama.attention.head_count_kv"), 3u);
    EXPECT_EQ(f.get_float("llama.rope.freq_base"), 100000.0);
    EXPECT_EQ(f.get_float("llama.attention.layer_norm_rms_epsilon"),
              g["metadata"]["llama.attention.layer_norm_rms_epsilon"]["value"].get<double>());
    EXPECT_FALSE(f.get_bool("tokenizer.ggml.add_bos_token"));
    EXPECT_EQ(f.get_string_array("general.languages"), (std::vector<std::string>{"en"}));
    for (const char* key : {"tokenizer.ggml.tokens", "tokenizer.ggml.merges"}) {
        const auto& want = g["metadata"][key];
        const auto& v = f.get_string_array(key);
        ASSERT_EQ(v.size(), want["length"].get<size_t>()) << key;
        for (const auto& s : want["samples"])
            EXPECT_EQ(v.at(s[0].get<size_t>()), s[1].get<std::string>()) << key;
    }
    const auto& types = f.get_int_array("tokenizer.ggml.token_type");
    const auto& want = g["metadata"]["tokenizer.ggml.token_type"];
    ASSERT_EQ(types.size(), want["length"].get<size_t>());
    for (const auto& s : want["samples"]) EXPECT_EQ(types.at(s[0].get<size_t>()), s[1].get<int>());

    const gguf::TensorInfo* e = f.find_tensor("token_embd.weight");
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->dtype, DType::Q8_0);
    EXPECT_EQ(e->shape, (std::vector<int64_t>{49152, 576}));
    for (const auto& t : f.tensors()) EXPECT_EQ(t.offset % 32, 0u) << t.name;
}

TEST(GgufReal, DequantizationEqualsGgufPy) {
    const char* path = model_path();
    if (!path) GTEST_SKIP() << "ZQAT_MODEL not set or missing";
    const auto g = golden();
    const gguf::File f = gguf::File::open(path);
    for (const auto& [name, want] : g["tensors"].items()) {
        SCOPED_TRACE(name);
        const gguf::TensorInfo* info = f.find_tensor(name);
        ASSERT_NE(info, nullptr);
        EXPECT_EQ(dtype_info(info->dtype).name, want["dtype"].get<std::string>());
        EXPECT_EQ(info->shape, want["shape"].get<std::vector<int64_t>>());
        EXPECT_EQ(info->offset, want["offset"].get<uint64_t>());
        EXPECT_EQ(info->nbytes, want["nbytes"].get<uint64_t>());
        const Tensor x = f.tensor(*info).to_f32();
        const float* p = x.f32();
        for (const auto& s : want["samples"]) {
            const size_t i = s[0].get<size_t>();
            const float v = s[1].get<float>();
            ASSERT_LT(i, size_t(x.numel()));
            EXPECT_EQ(p[i], v) << "at " << i;  // same fp32 ops in the same order: bit-identical
        }
        double sum = 0, abs_sum = 0;
        for (int64_t i = 0; i < x.numel(); ++i) sum += p[i], abs_sum += std::fabs(p[i]);
        const double tol = 1e-9 * want["abs_sum"].get<double>();
        EXPECT_NEAR(sum, want["sum"].get<double>(), tol);
        EXPECT_NEAR(abs_sum, want["abs_sum"].get<double>(), tol);
    }
}

TEST(GgufReal, DequantizeWholeModelTiming) {
    const char* path = model_path();
    if (!path) GTEST_SKIP() << "ZQAT_MODEL not set or missing";
    const auto t0 = std::chrono::steady_clock::now();
    const gguf::File f = gguf::File::open(path);
    const auto t1 = std::chrono::steady_clock::now();
    int64_t n = 0;
    for (const auto& t : f.tensors()) n += f.tensor(t).to_f32().numel();
    const auto t2 = std::chrono::steady_clock::now();
    const double parse_s = std::chrono::duration<double>(t1 - t0).count();
    const double deq_s = std::chrono::duration<double>(t2 - t1).count();
    EXPECT_GT(n, 134000000);
    std::printf("parse %.3f s, dequantize %lld weights in %.3f s (%.0f M/s)\n", parse_s,
                (long long)n, deq_s, double(n) / deq_s / 1e6);
}
