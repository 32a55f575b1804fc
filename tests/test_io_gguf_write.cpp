// GGUF writer: write -> gguf::File read back gives the same metadata (every value type, arrays,
// extreme values) and the same tensor bytes at aligned offsets; a reader's metadata copies over
// as-is (a gguf-py file rewritten tensor by tensor comes out byte-identical); failed writes leave
// neither the output nor a temporary file; gguf-py reads our files when it is installed.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "zqat/core/error.h"
#include "zqat/io/gguf.h"
#include "zqat/io/gguf_write.h"

using namespace zqat;
using namespace zqat::gguf;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path dir;
    TempDir() {
        dir = fs::temp_directory_path() /
              ("zqat_gguf_write_" + std::to_string(::getpid()) + "_" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir);
        fs::create_directories(dir);
    }
    ~TempDir() { fs::remove_all(dir); }
    std::string operator/(const std::string& name) const { return (dir / name).string(); }
    size_t n_entries() const {
        return size_t(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
    }
};

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
}

void expect_same_value(const std::string& key, const Value& a, const Value& b) {
    SCOPED_TRACE(key);
    EXPECT_EQ(a.type, b.type);
    if (a.type == ValueType::ARRAY) {
        EXPECT_EQ(a.elem_type, b.elem_type);
        EXPECT_EQ(a.strs, b.strs);
        EXPECT_EQ(a.ints, b.ints);
        EXPECT_EQ(a.floats, b.floats);
        return;
    }
    EXPECT_EQ(a.u, b.u);
    EXPECT_EQ(a.i, b.i);
    EXPECT_EQ(a.f, b.f);
    EXPECT_EQ(a.b, b.b);
    EXPECT_EQ(a.s, b.s);
}

void expect_same_metadata(const std::vector<std::pair<std::string, Value>>& a,
                          const std::vector<std::pair<std::string, Value>>& b) {
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].first, b[i].first);
        expect_same_value(a[i].first, a[i].second, b[i].second);
    }
}

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = uint8_t(seed + i * 7 + (i >> 8));
    return v;
}

// Every scalar type at its extremes, and arrays of every element type (one empty).
Writer every_value_type() {
    Writer w;
    w.set("u8", make_uint(ValueType::UINT8, 255));
    w.set("i8", make_int(ValueType::INT8, -128));
    w.set("u16", make_uint(ValueType::UINT16, 65535));
    w.set("i16", make_int(ValueType::INT16, -32768));
    w.set("u32", make_uint(ValueType::UINT32, 4294967295u));
    w.set("i32", make_int(ValueType::INT32, INT32_MIN));
    w.set("u64", make_uint(ValueType::UINT64, std::numeric_limits<uint64_t>::max()));
    w.set("i64", make_int(ValueType::INT64, INT64_MIN));
    w.set("f32", make_float(ValueType::FLOAT32, 0.1));
    w.set("f64", make_float(ValueType::FLOAT64, -1e300));
    w.set("bool.t", make_bool(true));
    w.set("bool.f", make_bool(false));
    w.set("str", make_string(std::string("tab\tnul\0end", 11)));
    w.set("str.empty", make_string(""));
    w.set("a.str", make_string_array({"a", "", "\xe2\x96\x81hello"}));
    w.set("a.u8", make_int_array(ValueType::UINT8, {0, 1, 255}));
    w.set("a.i8", make_int_array(ValueType::INT8, {-128, 0, 127}));
    w.set("a.u16", make_int_array(ValueType::UINT16, {65535}));
    w.set("a.i16", make_int_array(ValueType::INT16, {-32768, 32767}));
    w.set("a.u32", make_int_array(ValueType::UINT32, {4294967295ll, 7}));
    w.set("a.i32", make_int_array(ValueType::INT32, {INT32_MIN, -1, INT32_MAX}));
    w.set("a.u64", make_int_array(ValueType::UINT64, {-1, 5}));  // -1: bit pattern of 2^64-1
    w.set("a.i64", make_int_array(ValueType::INT64, {INT64_MIN, INT64_MAX}));
    w.set("a.f32", make_float_array(ValueType::FLOAT32, {1.5, -0.25, double(float(0.1))}));
    w.set("a.f64", make_float_array(ValueType::FLOAT64, {0.1, 1e-300}));
    w.set("a.bool", make_int_array(ValueType::BOOL, {1, 0, 1}));
    w.set("a.empty", make_int_array(ValueType::INT32, {}));
    return w;
}

}  // namespace

TEST(GgufWrite, RoundTripEveryValueTypeAndTensors) {
    TempDir tmp;
    Writer w = every_value_type();
    w.set_string("general.architecture", "test");
    w.set("u8", make_uint(ValueType::UINT8, 254));  // replacing keeps the position
    EXPECT_EQ(w.metadata()[0].first, "u8");
    struct T {
        std::string name;
        std::vector<int64_t> shape;
        DType type;
        std::vector<uint8_t> bytes;
    };
    const std::vector<T> ts = {
        {"a.f32", {3, 5}, DType::F32, pattern(60, 1)},
        {"b.f16", {7}, DType::F16, pattern(14, 2)},  // 14 bytes: the next one needs padding
        {"c.i8", {2, 3, 1, 5}, DType::I8, pattern(30, 3)},
        {"d.q8_0", {2, 64}, DType::Q8_0, pattern(4 * 34, 4)},
        {"e.empty", {0, 4}, DType::F32, {}},
        {"f.i32", {1}, DType::I32, pattern(4, 5)},
    };
    for (const T& t : ts) w.add_tensor(t.name, t.shape, t.type, t.bytes);
    const std::string path = tmp / "out.gguf";
    w.write(path);
    EXPECT_EQ(tmp.n_entries(), 1u);  // no temporary file left

    const File f = File::open(path);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.alignment(), 32u);
    expect_same_metadata(f.metadata(), w.metadata());
    EXPECT_EQ(f.find("u8")->u, 254u);
    EXPECT_EQ(f.find("a.u64")->ints[0], -1);
    EXPECT_EQ(f.get_string("str").size(), 11u);
    ASSERT_EQ(f.tensors().size(), ts.size());
    for (size_t i = 0; i < ts.size(); ++i) {
        const TensorInfo& info = f.tensors()[i];
        SCOPED_TRACE(info.name);
        EXPECT_EQ(info.name, ts[i].name);
        EXPECT_EQ(info.shape, ts[i].shape);
        EXPECT_EQ(info.dtype, ts[i].type);
        EXPECT_EQ(info.nbytes, ts[i].bytes.size());
        EXPECT_EQ(info.offset % 32, 0u);
        const Tensor t = f.tensor(info);
        if (!ts[i].bytes.empty()) {
            EXPECT_EQ(0, std::memcmp(t.data, ts[i].bytes.data(), ts[i].bytes.size()));
        }
    }
    EXPECT_EQ(f.file_size() % 32, 0u);  // the last tensor is padded too, as gguf-py does
}

TEST(GgufWrite, CustomAlignment) {
    TempDir tmp;
    for (uint32_t align : {1u, 8u, 64u, 256u}) {
        SCOPED_TRACE(align);
        Writer w;
        w.set_u32("general.alignment", align);
        w.add_tensor("x", {3}, DType::I8, pattern(3, 9));
        w.add_tensor("y", {5}, DType::F32, pattern(20, 8));
        EXPECT_EQ(w.alignment(), align);
        const std::string path = tmp / "a.gguf";
        w.write(path);
        const File f = File::open(path);
        EXPECT_EQ(f.alignment(), align);
        for (const TensorInfo& t : f.tensors()) EXPECT_EQ(t.offset % align, 0u);
        EXPECT_EQ(0, std::memcmp(f.tensor(f.tensors()[1]).data, pattern(20, 8).data(), 20));
    }
}

TEST(GgufWrite, CopyOfGgufPyFileIsByteIdentical) {
    // The synthetic llama was written by gguf-py (scripts/make_synthetic_models.py): copying its
    // metadata and tensors in order reproduces the file byte for byte.
    const std::string src = std::string(ZQAT_TEST_DATA) + "/synthetic/llama.gguf";
    const File f = File::open(src);
    Writer w;
    for (const auto& [k, v] : f.metadata()) w.set(k, v);
    for (const TensorInfo& t : f.tensors()) {
        const Tensor x = f.tensor(t);
        w.add_tensor(t.name, t.shape, t.dtype, x.data, x.nbytes, x.owner);
    }
    TempDir tmp;
    const std::string path = tmp / "copy.gguf";
    w.write(path);
    const File g = File::open(path);
    expect_same_metadata(g.metadata(), f.metadata());
    EXPECT_EQ(slurp(path), slurp(src));
}

TEST(GgufWrite, OverwritesAtomically) {
    TempDir tmp;
    const std::string path = tmp / "m.gguf";
    { std::ofstream(path) << "old contents"; }
    Writer w;
    w.set_string("k", "new");
    w.write(path);
    EXPECT_EQ(File::open(path).get_string("k"), "new");
    EXPECT_EQ(tmp.n_entries(), 1u);
}

TEST(GgufWrite, FailedWriteLeavesNothing) {
    TempDir tmp;
    Writer w = every_value_type();
    w.add_tensor("x", {4}, DType::F32, pattern(16, 1));
    // A folder that does not exist: nothing can be created.
    const std::string missing = tmp / "no/such/folder/out.gguf";
    EXPECT_THROW(w.write(missing), Error);
    EXPECT_FALSE(fs::exists(missing));
    EXPECT_EQ(tmp.n_entries(), 0u);
    // The output path is a folder: the rename fails after the temp file was written; it is
    // removed again and the folder is untouched.
    const std::string dir = tmp / "out.gguf";
    fs::create_directories(dir + "/inside");
    try {
        w.write(dir);
        ADD_FAILURE() << "writing over a folder succeeded";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("[gguf] " + dir), std::string::npos) << e.what();
    }
    EXPECT_TRUE(fs::is_directory(dir + "/inside"));
    EXPECT_EQ(tmp.n_entries(), 1u);
}

TEST(GgufWrite, RejectsBadInput) {
    Writer w;
    EXPECT_THROW(w.set("x", make_uint(ValueType::UINT8, 256)), Error);
    EXPECT_THROW(w.set("x", make_int(ValueType::INT16, 40000)), Error);
    EXPECT_THROW(w.set("x", make_int_array(ValueType::UINT8, {-1})), Error);
    EXPECT_THROW(w.set("x", make_int_array(ValueType::BOOL, {2})), Error);
    Value mixed = make_string_array({"a"});
    mixed.ints = {1};
    EXPECT_THROW(w.set("x", mixed), Error);
    EXPECT_THROW(w.set_u32("general.alignment", 24), Error);
    EXPECT_THROW(w.set("general.alignment", make_uint(ValueType::UINT64, 32)), Error);
    EXPECT_TRUE(w.metadata().empty());
    w.add_tensor("t", {2, 2}, DType::F32, pattern(16, 0));
    EXPECT_THROW(w.add_tensor("t", {1}, DType::F32, pattern(4, 0)), Error);     // duplicate
    EXPECT_THROW(w.add_tensor("u", {3}, DType::F32, pattern(8, 0)), Error);     // size mismatch
    EXPECT_THROW(w.add_tensor("u", {31}, DType::Q8_0, pattern(34, 0)), Error);  // partial block
    EXPECT_THROW(w.add_tensor("u", {1, 1, 1, 1, 1}, DType::I8, pattern(1, 0)), Error);
    EXPECT_EQ(w.n_tensors(), 1u);
}

TEST(GgufWrite, GgufPyReadsOurFiles) {
    if (std::system("python3 -c 'import gguf' > /dev/null 2>&1") != 0)
        GTEST_SKIP() << "gguf-py is not installed";
    TempDir tmp;
    Writer w = every_value_type();
    w.set_string("general.architecture", "llama");
    w.add_tensor("a", {3, 5}, DType::F32, pattern(60, 1));
    w.add_tensor("b", {7}, DType::F16, pattern(14, 2));
    w.add_tensor("c", {2, 3}, DType::I8, pattern(6, 3));
    const std::string path = tmp / "py.gguf";
    w.write(path);
    const std::string script = tmp / "check.py";
    std::ofstream(script) << "import sys, gguf\n"
                             "r = gguf.GGUFReader(sys.argv[1])\n"
                             "assert int(r.fields['u32'].parts[-1][0]) == 4294967295\n"
                             "assert 'a.str' in r.fields and 'a.bool' in r.fields\n"
                             "t = {x.name: x for x in r.tensors}\n"
                             "assert sorted(t) == ['a', 'b', 'c'], sorted(t)\n"
                             "assert t['c'].data.tobytes() == bytes([3, 10, 17, 24, 31, 38])\n"
                             "assert len(t['b'].data.tobytes()) == 14\n";
    EXPECT_EQ(std::system(("python3 " + script + " " + path).c_str()), 0);
}
