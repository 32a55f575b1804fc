// The ZeroQAT kernels against their scalar references, bit for bit at every ISA level:
// ops::fill_normal (the perturbation generator; zqat::fill_normal) from odd offsets, over odd
// lengths, and for block counters whose low word carries into the high one; ops::perturb_row
// (a perturbed, scaled weight row and its dot with the LET shift) on odd lengths.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "isa_util.h"
#include "zqat/core/ops.h"
#include "zqat/core/rng.h"

namespace zqat {
namespace {

TEST(OpsRng, FastEqualsReferenceBitForBit) {
    test::IsaGuard guard;
    const uint64_t firsts[] = {0, 1, 3, 63, 64, 65, 1000, (uint64_t(1) << 34) - 37};
    const int64_t lengths[] = {0, 1, 5, 63, 64, 65, 127, 300, 4099};
    for (const auto& isa : test::isa_levels()) {
        ops::set_isa(isa);
        for (uint64_t first : firsts)
            for (int64_t n : lengths) {
                std::vector<float> fast(size_t(n) + 1, 7.0f), ref(size_t(n) + 1, 7.0f);
                ops::fill_normal(0x123456789abcdefull, 11, first, n, fast.data());
                fill_normal(0x123456789abcdefull, 11, first, n, ref.data());
                ASSERT_EQ(std::memcmp(fast.data(), ref.data(), fast.size() * 4), 0)
                    << isa << " first " << first << " n " << n;
            }
    }
}

TEST(OpsPerturbRow, FastEqualsReferenceBitForBit) {
    test::IsaGuard guard;
    std::vector<float> w(1000), z(1000), cs(1000), d(1000);
    fill_normal(1, 0, 0, 1000, w.data());
    fill_normal(1, 1, 0, 1000, z.data());
    fill_normal(1, 2, 0, 1000, cs.data());
    fill_normal(1, 3, 0, 1000, d.data());
    for (const auto& isa : test::isa_levels()) {
        ops::set_isa(isa);
        for (int64_t n : {0, 1, 7, 15, 16, 17, 31, 33, 576, 1000})
            for (int variant = 0; variant < 8; ++variant) {
                const float* zp = variant & 1 ? z.data() : nullptr;
                const float* cp = variant & 2 ? cs.data() : nullptr;
                const float* dp = variant & 4 ? d.data() : nullptr;
                std::vector<float> fast(size_t(n) + 1, 3.0f), ref(size_t(n) + 1, 3.0f);
                const float a = ops::perturb_row(n, w.data(), zp, -1e-3f, cp, dp, fast.data());
                const float b = ops::ref::perturb_row(n, w.data(), zp, -1e-3f, cp, dp, ref.data());
                ASSERT_EQ(std::memcmp(&a, &b, 4), 0) << isa << " n " << n << " variant " << variant;
                ASSERT_EQ(std::memcmp(fast.data(), ref.data(), fast.size() * 4), 0)
                    << isa << " n " << n << " variant " << variant;
            }
    }
    // By hand: w = 1..3, z = 1, pe = 0.5, cs = 2, d = 1 -> out = 3, 5, 7; dot = 1.5 + 2.5 + 3.5.
    const float hw[3] = {1, 2, 3}, hz[3] = {1, 1, 1}, hc[3] = {2, 2, 2}, hd[3] = {1, 1, 1};
    float ho[3];
    EXPECT_EQ(ops::perturb_row(3, hw, hz, 0.5f, hc, hd, ho), 7.5f);
    EXPECT_EQ(ho[0], 3.0f);
    EXPECT_EQ(ho[2], 7.0f);
}

TEST(OpsRng, FloatBoxMullerMatchesDoubleFormula) {
    // The series for ln, sin and cos stay within a few float ulps of the double-precision
    // transform of the same Philox words.
    double worst = 0;
    for (uint64_t block = 0; block < 20000; ++block) {
        const auto r = philox4x32_10({uint32_t(block), 0, 3, 0}, {99, 0});
        for (int pair = 0; pair < 2; ++pair) {
            const double u1 = (double(r[size_t(2 * pair)] >> 8) + 1) * 0x1p-24;
            const double u2 = double(r[size_t(2 * pair + 1)] >> 8) * 0x1p-24;
            const double rho = std::sqrt(-2 * std::log(u1)), th = 2 * M_PI * u2;
            const double want[2] = {rho * std::cos(th), rho * std::sin(th)};
            for (int j = 0; j < 2; ++j) {
                const double got = normal_at(99, 3, block * 4 + uint64_t(2 * pair + j));
                worst = std::max(worst, std::fabs(got - want[j]));
            }
        }
    }
    EXPECT_LT(worst, 2e-6);
}

}  // namespace
}  // namespace zqat
