// Element types: fp16 <-> f32 conversion against an independent decoder and against numpy
// (round half to even, subnormals, overflow, NaN), bf16 and F16 bulk conversion, and the byte
// sizes of block types, including counts whose size would overflow 64 bits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "zqat/core/dtype.h"
#include "zqat/core/error.h"

using namespace zqat;

namespace {

uint32_t bits_of(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
float float_of(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
bool half_is_nan(uint16_t h) {
    return (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0;
}

// IEEE binary16 value, decoded independently of dtype.h: (-1)^s * 2^(e-15) * 1.m, or
// 2^-14 * 0.m for e = 0. Infinity for e = 31 (NaNs are not asked for).
double half_value(uint16_t h) {
    const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
    const double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 31) return sign * std::numeric_limits<double>::infinity();
    if (e == 0) return sign * std::ldexp(double(m), -24);
    return sign * std::ldexp(double(1024 + m), e - 25);
}

// Correctly rounded f32 -> fp16 (nearest, ties to even), by search over the ordered halves.
uint16_t reference_f32_to_fp16(float f) {
    const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
    const double a = std::fabs(double(f));
    if (std::isnan(f)) return uint16_t(sign | 0x7E00);
    // 65520 is the midpoint between the largest half (65504) and 2^16, where inf takes over.
    if (a >= 65520.0) return uint16_t(sign | 0x7C00);
    uint16_t lo = 0, hi = 0x7BFF;  // largest h with half_value(h) <= a
    while (lo < hi) {
        const uint16_t mid = uint16_t((lo + hi + 1) / 2);
        if (half_value(mid) <= a)
            lo = mid;
        else
            hi = uint16_t(mid - 1);
    }
    const double below = a - half_value(lo);
    const double above = (lo == 0x7BFF ? 65536.0 : half_value(uint16_t(lo + 1))) - a;
    uint16_t r = lo;
    if (above < below || (above == below && (lo & 1))) r = uint16_t(lo + 1);
    return uint16_t(sign | r);
}

}  // namespace

TEST(Fp16, AllHalvesRoundTrip) {
    int nans = 0;
    for (uint32_t i = 0; i < 65536; ++i) {
        const uint16_t h = uint16_t(i);
        const float f = fp16_to_f32(h);
        const uint16_t back = f32_to_fp16(f);
        if (half_is_nan(h)) {
            ++nans;
            ASSERT_TRUE(std::isnan(f)) << std::hex << h;
            ASSERT_TRUE(half_is_nan(back)) << std::hex << h << " -> " << back;
            ASSERT_EQ(back & 0x8000, h & 0x8000) << std::hex << h;  // sign kept
            continue;
        }
        ASSERT_EQ(double(f), half_value(h)) << std::hex << h;
        ASSERT_EQ(back, h) << std::hex << h << " -> " << f << " -> " << back;
        ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << std::hex << h;
    }
    EXPECT_EQ(nans, 2 * 1023);
}

TEST(Fp16, NumpyValues) {
    // {f32 bits, numpy.float16(numpy.float32(x)).view(uint16)}, printed by numpy 1.x/2.x.
    const uint32_t cases[][2] = {
        {0x3f801000, 0x3c00},  // 1 + 2^-11: tie between 0x3c00 and 0x3c01 -> even
        {0x3f803000, 0x3c02},  // 1 + 3 * 2^-11: tie -> even 0x3c02
        {0x3f801008, 0x3c01},  // just above the tie
        {0xbf801000, 0xbc00},  // -(1 + 2^-11)
        {0x45001000, 0x6800},  // 2049: tie between 2048 and 2050
        {0x45003000, 0x6802},  // 2051: tie between 2050 and 2052
        {0x477fe000, 0x7bff},  // 65504, the largest half
        {0x477fef00, 0x7bff},  // 65519
        {0x477feffd, 0x7bff},  // 65519.988
        {0x477ff000, 0x7c00},  // 65520: tie between 65504 and 2^16 -> inf
        {0xc77ff000, 0xfc00},  // -65520
        {0x501502f9, 0x7c00},  // 1e10
        {0x33800000, 0x0001},  // 2^-24, the smallest subnormal
        {0x33000000, 0x0000},  // 2^-25: tie between 0 and 2^-24 -> 0
        {0x33c00000, 0x0002},  // 3 * 2^-25: tie -> even 2
        {0x33002000, 0x0001},  // just above 2^-25
        {0x32800000, 0x0000},  // 2^-26
        {0x387fc000, 0x03ff},  // 1023 * 2^-24, the largest subnormal
        {0x387fe000, 0x0400},  // 1023.5 * 2^-24: tie -> the smallest normal
        {0x387ff000, 0x0400},  // just below 2^-14
        {0x38800000, 0x0400},  // 2^-14
        {0x387fda40, 0x03ff},  // 6.1e-5
        {0x337ffae5, 0x0001},  // 5.96e-8
        {0x3727c5ac, 0x00a8},  // 1e-5
        {0x3dcccccd, 0x2e66},  // 0.1
        {0x3eaaaaab, 0x3555},  // 1/3
        {0x3eaaa000, 0x3555},  // 0.333251953125
        {0x40490fdb, 0x4248},  // pi
        {0x80000000, 0x8000},  // -0
        {0x2edbe6ff, 0x0000},  // 1e-10
        {0xaedbe6ff, 0x8000},  // -1e-10
        {0x00000001, 0x0000},  // the smallest f32 subnormal
        {0x7f800000, 0x7c00},  // inf
        {0xff800000, 0xfc00},  // -inf
        {0x7f7fffff, 0x7c00},  // FLT_MAX
    };
    for (const auto& c : cases) {
        const float f = float_of(c[0]);
        EXPECT_EQ(f32_to_fp16(f), c[1]) << std::hex << "f32 0x" << c[0] << " = " << f;
        EXPECT_EQ(reference_f32_to_fp16(f), c[1]) << std::hex << c[0];  // the oracle agrees
    }
    for (uint32_t nan : {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7fffffffu, 0xff800001u}) {
        const uint16_t h = f32_to_fp16(float_of(nan));
        EXPECT_TRUE(half_is_nan(h)) << std::hex << nan << " -> " << h;
        EXPECT_EQ(h & 0x8000, (nan >> 16) & 0x8000) << std::hex << nan;
    }
}

TEST(Fp16, EveryTieAndItsNeighboursRoundLikeTheOracle) {
    // The midpoint between each pair of adjacent halves (exact in f32), and the floats on either
    // side of it: this covers every rounding decision of f32_to_fp16.
    for (uint16_t h = 0; h < 0x7BFF; ++h) {
        const float mid = float((half_value(h) + half_value(uint16_t(h + 1))) / 2);
        ASSERT_EQ(double(mid), (half_value(h) + half_value(uint16_t(h + 1))) / 2);
        for (float f : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e30f)}) {
            for (float s : {f, -f}) {
                ASSERT_EQ(f32_to_fp16(s), reference_f32_to_fp16(s))
                    << std::hex << "f32 0x" << bits_of(s) << " = " << s;
            }
        }
    }
}

TEST(Fp16, SweepOfF32BitPatterns) {
    // Every 1021st f32 bit pattern (all exponents, both signs, NaNs included): ~4M values.
    for (uint64_t x = 0; x < (uint64_t(1) << 32); x += 1021) {
        const float f = float_of(uint32_t(x));
        const uint16_t got = f32_to_fp16(f), want = reference_f32_to_fp16(f);
        if (std::isnan(f)) {
            ASSERT_TRUE(half_is_nan(got)) << std::hex << x;
            continue;
        }
        ASSERT_EQ(got, want) << std::hex << "f32 0x" << x << " = " << f;
    }
}

TEST(Fp16, BulkDequantizeEqualsScalar) {
    std::vector<uint16_t> all(65536);
    for (uint32_t i = 0; i < 65536; ++i) all[i] = uint16_t(i);
    std::vector<float> f16(65536), bf16(65536);
    dequantize(DType::F16, all.data(), f16.data(), 65536);
    dequantize(DType::BF16, all.data(), bf16.data(), 65536);
    for (uint32_t i = 0; i < 65536; ++i) {
        ASSERT_EQ(bits_of(f16[i]), bits_of(fp16_to_f32(uint16_t(i)))) << std::hex << i;
        ASSERT_EQ(bits_of(bf16[i]), i << 16) << std::hex << i;  // bf16 is the top half of f32
        ASSERT_EQ(bits_of(bf16_to_f32(uint16_t(i))), i << 16);
    }
    std::vector<float> src = {1.5f, -0.0f, 3e38f}, dst(3);
    dequantize(DType::F32, src.data(), dst.data(), 3);
    EXPECT_EQ(bits_of(dst[1]), 0x80000000u);
    EXPECT_EQ(dst[2], 3e38f);
}

TEST(DType, InfoMatchesGgml) {
    struct Row {
        uint32_t id;
        const char* name;
        int64_t elems, bytes;
    };
    const Row rows[] = {{0, "F32", 1, 4},       {1, "F16", 1, 2},    {2, "Q4_0", 32, 18},
                        {3, "Q4_1", 32, 20},    {8, "Q8_0", 32, 34}, {12, "Q4_K", 256, 144},
                        {14, "Q6_K", 256, 210}, {24, "I8", 1, 1},    {25, "I16", 1, 2},
                        {26, "I32", 1, 4},      {27, "I64", 1, 8},   {28, "F64", 1, 8},
                        {30, "BF16", 1, 2}};
    for (const Row& r : rows) {
        const auto info = dtype_info(r.id);
        ASSERT_TRUE(info.has_value()) << r.id;
        EXPECT_EQ(info->name, r.name);
        EXPECT_EQ(info->block_elems, r.elems) << r.name;
        EXPECT_EQ(info->block_bytes, r.bytes) << r.name;
        EXPECT_EQ(dtype_info(DType(r.id)).name, r.name);
    }
    for (uint32_t unknown :
         {4u, 5u, 6u, 7u, 9u, 10u, 11u, 13u, 15u, 23u, 29u, 31u, 39u, 1000u, 0xFFFFFFFFu})
        EXPECT_FALSE(dtype_info(unknown).has_value()) << unknown;
}

TEST(DType, NbytesOfBlockMultiples) {
    EXPECT_EQ(dtype_nbytes(DType::F32, 0), 0u);
    EXPECT_EQ(dtype_nbytes(DType::Q8_0, 0), 0u);
    EXPECT_EQ(dtype_nbytes(DType::F32, 3), 12u);
    EXPECT_EQ(dtype_nbytes(DType::F16, 5), 10u);
    EXPECT_EQ(dtype_nbytes(DType::BF16, 7), 14u);
    EXPECT_EQ(dtype_nbytes(DType::F64, 3), 24u);
    EXPECT_EQ(dtype_nbytes(DType::I8, 3), 3u);
    EXPECT_EQ(dtype_nbytes(DType::Q4_0, 32), 18u);
    EXPECT_EQ(dtype_nbytes(DType::Q4_1, 64), 40u);
    EXPECT_EQ(dtype_nbytes(DType::Q8_0, 96), 102u);
    EXPECT_EQ(dtype_nbytes(DType::Q4_K, 256), 144u);
    EXPECT_EQ(dtype_nbytes(DType::Q6_K, 512), 420u);
    EXPECT_EQ(dtype_nbytes(DType::Q8_0, 576 * 49152), uint64_t(576 / 32 * 34) * 49152);
    // Not whole blocks.
    for (uint64_t n : {1u, 16u, 31u, 33u, 63u})
        for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q8_0})
            EXPECT_FALSE(dtype_nbytes(t, n).has_value()) << n;
    for (uint64_t n : {32u, 128u, 255u, 257u, 384u}) {
        EXPECT_FALSE(dtype_nbytes(DType::Q4_K, n).has_value()) << n;
        EXPECT_FALSE(dtype_nbytes(DType::Q6_K, n).has_value()) << n;
    }
}

TEST(DType, NbytesOverflow) {
    const uint64_t max = std::numeric_limits<uint64_t>::max();
    EXPECT_EQ(dtype_nbytes(DType::I8, max), max);
    EXPECT_EQ(dtype_nbytes(DType::F32, max / 4), max / 4 * 4);
    EXPECT_FALSE(dtype_nbytes(DType::F32, max / 4 + 1).has_value());
    EXPECT_FALSE(dtype_nbytes(DType::F32, uint64_t(1) << 62).has_value());
    EXPECT_FALSE(dtype_nbytes(DType::F16, uint64_t(1) << 63).has_value());
    EXPECT_FALSE(dtype_nbytes(DType::F64, max / 8 + 1).has_value());
    EXPECT_FALSE(dtype_nbytes(DType::I64, max).has_value());
    // Block types: the largest whole number of blocks that fits, and one block more.
    for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
        const auto info = dtype_info(t);
        const uint64_t e = uint64_t(info.block_elems), b = uint64_t(info.block_bytes);
        const uint64_t blocks = max / b;
        if (blocks <= max / e) {
            EXPECT_EQ(dtype_nbytes(t, blocks * e), blocks * b) << info.name;
            if (blocks + 1 <= max / e) {
                EXPECT_FALSE(dtype_nbytes(t, (blocks + 1) * e).has_value()) << info.name;
            }
        }
        // The largest multiple of the block in u64 overflows exactly when a block has more bytes
        // than elements (Q8_0: 34 > 32).
        EXPECT_EQ(dtype_nbytes(t, max / e * e).has_value(), b <= e) << info.name;
    }
}

TEST(DType, DequantizeWithoutDequantizerThrows) {
    const int8_t x[4] = {1, 2, 3, 4};
    float out[4];
    for (DType t : {DType::I8, DType::I16, DType::I32, DType::I64, DType::F64}) {
        try {
            dequantize(t, x, out, 1);
            ADD_FAILURE() << dtype_info(t).name << " did not throw";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(dtype_info(t).name), std::string::npos)
                << e.what();
        }
    }
}
