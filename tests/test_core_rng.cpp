// The counter-based generator: Philox4x32-10 equals Random123's known-answer vectors
// (tests/kat_vectors of DEShawResearch/random123, the three "philox4x32 10" lines), and the
// normals are keyed by (seed, tensor, element) alone.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/normal_math.h"
#include "zqat/core/rng.h"

namespace zqat {
namespace {

TEST(Rng, PhiloxKnownAnswers) {
    using A4 = std::array<uint32_t, 4>;
    EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, {0, 0}),
              (A4{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
    EXPECT_EQ(
        philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}),
        (A4{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
    EXPECT_EQ(
        philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}),
        (A4{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

TEST(Rng, FillEqualsElementwiseFromAnyOffset) {
    for (uint64_t first : {0ull, 1ull, 3ull, 5ull, (1ull << 33) + 2}) {
        std::vector<float> z(37);
        fill_normal(42, 7, first, int64_t(z.size()), z.data());
        for (size_t i = 0; i < z.size(); ++i) EXPECT_EQ(z[i], normal_at(42, 7, first + i)) << i;
    }
}

TEST(Rng, NormalMoments) {
    const int64_t n = 1 << 20;
    std::vector<float> z(static_cast<size_t>(n));
    fill_normal(1, 0, 0, n, z.data());
    double s = 0, s2 = 0, s4 = 0;
    for (float v : z) {
        s += v;
        s2 += double(v) * v;
        s4 += double(v) * v * v * v;
    }
    const double mean = s / double(n), var = s2 / double(n) - mean * mean;
    // Standard errors at n = 2^20: mean 1e-3, variance 1.4e-3, fourth moment ~1e-2.
    EXPECT_LT(std::fabs(mean), 5e-3);
    EXPECT_LT(std::fabs(var - 1.0), 7e-3);
    EXPECT_LT(std::fabs(s4 / double(n) - 3.0), 0.05);
}

TEST(Rng, BoxMullerAtUnitRadiusGivesPositiveZeros) {
    // u1 = 1 (r_a >> 8 == 2^24 - 1): -2 ln u1 = -0, and both z are +0 on every path, as the
    // vector max(x, 0) gives.
    float a = 1, b = 1;
    normal_math::box_muller(0xFFFFFFFFu, 12345u, &a, &b);
    EXPECT_EQ(std::signbit(a), false);
    EXPECT_EQ(std::signbit(b), false);
    EXPECT_EQ(a, 0.0f);
    EXPECT_EQ(b, 0.0f);
}

TEST(Rng, KeysSeparateStreams) {
    EXPECT_NE(normal_at(1, 0, 0), normal_at(2, 0, 0));
    EXPECT_NE(normal_at(1, 0, 0), normal_at(1, 1, 0));
    EXPECT_NE(normal_at(1, 0, 0), normal_at(1, 0, 4));
    EXPECT_EQ(normal_at(9, 3, 123456789), normal_at(9, 3, 123456789));
    EXPECT_NE(step_seed(0, 1, 0), step_seed(0, 0, 1));
    EXPECT_NE(step_seed(0, 1, 0), step_seed(1, 1, 0));
    EXPECT_EQ(step_seed(5, 6, 7), step_seed(5, 6, 7));
}

}  // namespace
}  // namespace zqat
