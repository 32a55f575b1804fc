// The quantizer (METHOD.md s1, core/ops.h) and packed weights (core/packed.h):
//   - the scalar references on hand-computed cases (values worked out in float32/fp16 by hand:
//     struct-packed Python floats, round half to even);
//   - properties: |w_hat - w| <= delta/2 where no clamp applies, codes < 2^bits;
//   - fast quantize_weight / fake_quant_act bit-identical to the references at every ISA level,
//     with 1 and 2 threads, on odd shapes and strides;
//   - PackedWeight round trips, and packed storage equal to fake quantization bit for bit;
//   - gemm_nt_packed bit-identical to gemm_nt on the dequantized weight.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "isa_util.h"
#include "zqat/core/dtype.h"
#include "zqat/core/ops.h"
#include "zqat/core/packed.h"
#include "zqat/core/thread_pool.h"

namespace zqat {
namespace {

size_t sz(int64_t n) {
    return static_cast<size_t>(n);
}

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

// Values on a coarse binary grid (multiples of 1/8 in [-4, 4]): many exact rounding ties and
// repeated extremes, plus some exact zeros.
std::vector<float> grid_vec(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> dist(-32, 32);
    std::vector<float> v(n);
    for (auto& x : v) x = float(dist(rng)) / 8.0f;
    return v;
}

using test::isa_levels;
using test::IsaGuard;

bool same_bits(const void* a, const void* b, size_t bytes) {
    return std::memcmp(a, b, bytes) == 0;
}

// ---- Reference, hand-computed cases ------------------------------------------------------------

struct WeightOut {
    std::vector<uint8_t> codes;
    std::vector<uint16_t> scales, zeros;
    std::vector<float> w_hat;
};

WeightOut ref_weight(const std::vector<float>& w, int64_t rows, int64_t cols, int bits,
                     int64_t group, bool sym, const float* gamma = nullptr,
                     const float* beta = nullptr) {
    const int64_t ng = cols / (group > 0 ? group : cols);
    WeightOut o{std::vector<uint8_t>(sz(rows * cols)), std::vector<uint16_t>(sz(rows * ng)),
                std::vector<uint16_t>(sz(rows * ng)), std::vector<float>(sz(rows * cols))};
    ops::ref::quantize_weight(rows, cols, w.data(), cols, bits, group, sym, gamma, beta,
                              o.codes.data(), o.scales.data(), o.zeros.data(), o.w_hat.data());
    return o;
}

TEST(QuantRef, TwoBitGroupOfFour) {
    // hi = 1, lo = -1: delta = fp16(2/3) = 0.66650390625 (0x3955), zp = rne(1.5004) = 2;
    // x/delta = -1.5004, -0.30, 0.750, 1.5004 -> -2, -0, 1, 2 -> q = 0, 2, 3, 4 -> clamp 3.
    const auto o = ref_weight({-1.0f, -0.2f, 0.5f, 1.0f}, 1, 4, 2, 4, false);
    EXPECT_EQ(o.scales[0], 0x3955);
    EXPECT_EQ(fp16_to_f32(o.zeros[0]), 2.0f);
    EXPECT_EQ(o.codes, (std::vector<uint8_t>{0, 2, 3, 3}));
    EXPECT_EQ(o.w_hat, (std::vector<float>{-1.3330078125f, 0.0f, 0.66650390625f, 0.66650390625f}));
}

TEST(QuantRef, TiesRoundHalfToEven) {
    // 4 bits: delta = 15 / 15 = 1 exactly, zp = rne(7.5) = 8; x/delta = -7.5, 0.5, 2.5, 7.5 round
    // to -8, 0, 2, 8 (half away from zero would give 1 and 3 for the middle two).
    const auto o = ref_weight({-7.5f, 0.5f, 2.5f, 7.5f}, 1, 4, 4, 0, false);
    EXPECT_EQ(o.scales[0], 0x3c00);
    EXPECT_EQ(fp16_to_f32(o.zeros[0]), 8.0f);
    EXPECT_EQ(o.codes, (std::vector<uint8_t>{0, 8, 10, 15}));
    EXPECT_EQ(o.w_hat, (std::vector<float>{-8.0f, 0.0f, 2.0f, 7.0f}));

    std::vector<float> a = {-7.5f, 0.5f, 2.5f, 7.5f};
    ops::ref::fake_quant_act(1, 4, a.data(), 4, 4, 1.0f);
    EXPECT_EQ(a, (std::vector<float>{-8.0f, 0.0f, 2.0f, 7.0f}));
}

TEST(QuantRef, ActivationClipShrinksTheRange) {
    // clip 0.5 at 2 bits on a row of -6..6: hi = 3, lo = -3, delta = 6 / 3 = 2, zp = rne(1.5) =
    // 2; x / delta = -3, -0.5, 0.5, 3 -> q = clamp(-1, 0, 3) = 0, rne(-0.5) + 2 = 2, rne(0.5) + 2
    // = 2, clamp(5) = 3 -> (q - 2) * 2 = -4, 0, 0, 2: the ends are clipped onto the grid.
    std::vector<float> a = {-6.0f, -1.0f, 1.0f, 6.0f};
    ops::ref::fake_quant_act(1, 4, a.data(), 4, 2, 0.5f);
    EXPECT_EQ(a, (std::vector<float>{-4.0f, 0.0f, 0.0f, 2.0f}));
}

TEST(QuantRef, ZeroRangeHitsTheFloor) {
    // Weights: the range always holds 0, so only an all-zero group has hi == lo: delta =
    // fp16(1e-5 / 15) = 11 * 2^-24 (a subnormal, 0x000b), zp = 0, everything 0.
    const auto o = ref_weight({0.0f, 0.0f, 0.0f, 0.0f}, 1, 4, 4, 0, false);
    EXPECT_EQ(o.scales[0], 0x000b);
    EXPECT_EQ(o.zeros[0], 0);
    EXPECT_EQ(o.codes, (std::vector<uint8_t>(4, 0)));
    EXPECT_EQ(o.w_hat, (std::vector<float>(4, 0.0f)));

    // Activations: a constant row 0.3: delta = 1e-5f / 15, zp = rne(-0.3 / delta) = -450000,
    // q = 450000 - 450000 = 0, x_hat = 450000 * delta = 0.3f exactly.
    std::vector<float> a(3, 0.3f);
    ops::ref::fake_quant_act(1, 3, a.data(), 3, 4, 1.0f);
    EXPECT_EQ(a, (std::vector<float>(3, 0.3f)));
}

TEST(QuantRef, AllPositiveWeightsHaveLoZero) {
    // lo = min(0.1, 0) = 0 -> zp = 0; delta = fp16(0.8 / 3) = 0.2666015625 (0x3444);
    // x/delta = 0.375, 0.750, 1.5004, 3.0007 -> 0, 1, 2, 3.
    const auto o = ref_weight({0.1f, 0.2f, 0.4f, 0.8f}, 1, 4, 2, 4, false);
    EXPECT_EQ(o.scales[0], 0x3444);
    EXPECT_EQ(o.zeros[0], 0);
    EXPECT_EQ(o.codes, (std::vector<uint8_t>{0, 1, 2, 3}));
    EXPECT_EQ(o.w_hat, (std::vector<float>{0.0f, 0.2666015625f, 0.533203125f, 0.7998046875f}));

    // Activations keep lo = min(x) unclamped: x = 1..4 at 2 bits: delta = 1, zp = -1, exact.
    std::vector<float> a = {1.0f, 2.0f, 3.0f, 4.0f};
    ops::ref::fake_quant_act(1, 4, a.data(), 4, 2, 1.0f);
    EXPECT_EQ(a, (std::vector<float>{1.0f, 2.0f, 3.0f, 4.0f}));
}

TEST(QuantRef, SymmetricAndClipping) {
    // sym, 3 bits: delta = fp16(max(0.9, 0.3) / 3) = 0.300048828125 (0x34cd), zp = 4.
    const auto s = ref_weight({-0.3f, 0.1f, 0.2f, 0.9f}, 1, 4, 3, 4, true);
    EXPECT_EQ(s.scales[0], 0x34cd);
    EXPECT_EQ(fp16_to_f32(s.zeros[0]), 4.0f);
    EXPECT_EQ(s.codes, (std::vector<uint8_t>{3, 4, 5, 7}));
    EXPECT_EQ(s.w_hat,
              (std::vector<float>{-0.300048828125f, 0.0f, 0.300048828125f, 0.900146484375f}));

    // LWC: gamma = 0.5, beta = 0.75: hi = 0.5, lo = -0.75, delta = fp16(1.25 / 3) = 0x36ab,
    // zp = rne(1.7996) = 2; x/delta = -2.40, -0.48, 1.20, 2.40 -> q = 0, 2, 3, 4 -> clamp 3.
    const float gamma = 0.5f, beta = 0.75f;
    const auto c = ref_weight({-1.0f, -0.2f, 0.5f, 1.0f}, 1, 4, 2, 4, false, &gamma, &beta);
    EXPECT_EQ(c.scales[0], 0x36ab);
    EXPECT_EQ(fp16_to_f32(c.zeros[0]), 2.0f);
    EXPECT_EQ(c.codes, (std::vector<uint8_t>{0, 2, 3, 3}));
    EXPECT_EQ(c.w_hat,
              (std::vector<float>{-0.83349609375f, 0.0f, 0.416748046875f, 0.416748046875f}));
}

TEST(QuantRef, ErrorAtMostHalfAStepInsideTheRange) {
    const int64_t rows = 9, cols = 256;
    const auto w = random_vec(sz(rows * cols), 11);
    for (const int bits : {2, 3, 4, 6, 8}) {
        for (const int64_t group : {int64_t(0), int64_t(32), int64_t(128)}) {
            for (const bool sym : {false, true}) {
                const auto o = ref_weight(w, rows, cols, bits, group, sym);
                const int64_t g = group > 0 ? group : cols, ng = cols / g;
                const float qmax = float((1 << bits) - 1);
                for (int64_t r = 0; r < rows; ++r) {
                    for (int64_t k = 0; k < cols; ++k) {
                        const size_t at = sz(r * cols + k);
                        const float delta = fp16_to_f32(o.scales[sz(r * ng + k / g)]);
                        const float zp = fp16_to_f32(o.zeros[sz(r * ng + k / g)]);
                        ASSERT_LT(o.codes[at], 1u << bits);
                        const float x = w[at];
                        const float unclamped = std::nearbyint(x / delta) + zp;
                        const float err = std::fabs(o.w_hat[at] - x);
                        if (unclamped >= 0.0f && unclamped <= qmax) {
                            ASSERT_LE(err, 0.5f * delta * (1.0f + 1e-5f))
                                << "bits " << bits << " group " << group << " sym " << sym;
                        } else {
                            // Clamped only past the fp16-rounded grid's end: at most a
                            // 2^-11 relative rounding of delta times qmax steps further.
                            ASSERT_LE(err, delta * (0.5f + qmax / 1024.0f) * (1.0f + 1e-5f))
                                << "bits " << bits << " group " << group << " sym " << sym;
                        }
                    }
                }
            }
        }
    }
}

// ---- Fast against reference --------------------------------------------------------------------

struct WeightCase {
    int64_t rows, cols, pad;
};

void check_quantize_weight(const WeightCase& c, int bits, int64_t group, bool sym, bool lwc,
                           bool grid, ThreadPool* pool, const std::string& isa) {
    const int64_t ldw = c.cols + c.pad;
    const int64_t ng = c.cols / (group > 0 ? group : c.cols);
    const uint32_t seed = uint32_t(c.rows * 131 + c.cols * 7 + bits);
    auto w = grid ? grid_vec(sz(c.rows * ldw), seed) : random_vec(sz(c.rows * ldw), seed);
    if (!grid && c.rows > 2) {  // an all-zero row and an all-positive row
        std::fill(w.begin(), w.begin() + c.cols, 0.0f);
        for (int64_t k = 0; k < c.cols; ++k) w[sz(ldw + k)] = std::fabs(w[sz(ldw + k)]) + 0.01f;
    }
    const auto gamma = random_vec(sz(c.rows * ng), seed + 1, 0.5f, 1.0f);
    const auto beta = random_vec(sz(c.rows * ng), seed + 2, 0.5f, 1.0f);
    const float* ga = lwc ? gamma.data() : nullptr;
    const float* be = lwc ? beta.data() : nullptr;
    std::vector<uint8_t> codes(sz(c.rows * c.cols), 0xee), codes_ref(codes);
    std::vector<uint16_t> sc(sz(c.rows * ng)), sc_ref(sc), zr(sc), zr_ref(sc);
    std::vector<float> wh(sz(c.rows * c.cols), 7.0f), wh_ref(wh);
    ops::quantize_weight(c.rows, c.cols, w.data(), ldw, bits, group, sym, ga, be, codes.data(),
                         sc.data(), zr.data(), wh.data(), pool);
    ops::ref::quantize_weight(c.rows, c.cols, w.data(), ldw, bits, group, sym, ga, be,
                              codes_ref.data(), sc_ref.data(), zr_ref.data(), wh_ref.data());
    const std::string what = isa + " rows " + std::to_string(c.rows) + " cols " +
                             std::to_string(c.cols) + " bits " + std::to_string(bits) + " group " +
                             std::to_string(group) + (sym ? " sym" : "") + (lwc ? " lwc" : "") +
                             (grid ? " grid" : "") + (pool ? " pool" : "");
    ASSERT_EQ(codes, codes_ref) << what;
    ASSERT_EQ(sc, sc_ref) << what;
    ASSERT_EQ(zr, zr_ref) << what;
    ASSERT_TRUE(same_bits(wh.data(), wh_ref.data(), wh.size() * 4)) << what;
    // Each output alone (the others null) gives the same values.
    std::vector<float> wh_only(wh.size(), 7.0f);
    ops::quantize_weight(c.rows, c.cols, w.data(), ldw, bits, group, sym, ga, be, nullptr, nullptr,
                         nullptr, wh_only.data(), pool);
    ASSERT_TRUE(same_bits(wh_only.data(), wh_ref.data(), wh.size() * 4)) << what;
    std::vector<uint8_t> codes_only(codes.size(), 0xee);
    ops::quantize_weight(c.rows, c.cols, w.data(), ldw, bits, group, sym, ga, be, codes_only.data(),
                         nullptr, nullptr, nullptr, pool);
    ASSERT_EQ(codes_only, codes_ref) << what;
}

TEST(QuantOps, QuantizeWeightMatchesReference) {
    IsaGuard guard;
    ThreadPool pool(2);
    const std::vector<WeightCase> grouped = {{1, 128, 0}, {7, 384, 3}, {33, 4224, 1}, {5, 64, 0}};
    const std::vector<WeightCase> per_channel = {
        {1, 1, 0}, {7, 7, 2}, {33, 33, 0}, {3, 4097, 5}, {2, 576, 0}};
    for (const auto& isa : isa_levels()) {
        ops::set_isa(isa);
        for (const int bits : {2, 3, 4, 6, 8}) {
            for (const bool sym : {false, true}) {
                for (const bool lwc : {false, true}) {
                    for (const bool grid : {false, true}) {
                        for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
                            for (const auto& c : per_channel) {
                                check_quantize_weight(c, bits, 0, sym, lwc, grid, p, isa);
                            }
                            for (const auto& c : grouped) {
                                for (const int64_t g : {int64_t(32), int64_t(64), int64_t(128)}) {
                                    if (c.cols % g) continue;
                                    check_quantize_weight(c, bits, g, sym, lwc, grid, p, isa);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

void check_fake_quant_act(int64_t M, int64_t D, int64_t pad, int bits, float clip, ThreadPool* pool,
                          const std::string& isa) {
    const int64_t ld = D + pad;
    auto x = random_vec(sz(M * ld), uint32_t(M * 17 + D + bits), -3.0f, 3.0f);
    if (M > 2) {  // a constant row, an all-positive row and a row on a tie-heavy grid
        std::fill(x.begin(), x.begin() + D, 0.7f);
        for (int64_t j = 0; j < D; ++j) x[sz(ld + j)] = std::fabs(x[sz(ld + j)]) + 1.0f;
        const auto g = grid_vec(sz(D), 5);
        std::copy(g.begin(), g.end(), x.begin() + 2 * ld);
    }
    auto want = x;
    ops::fake_quant_act(M, D, x.data(), ld, bits, clip, pool);
    ops::ref::fake_quant_act(M, D, want.data(), ld, bits, clip);
    ASSERT_TRUE(same_bits(x.data(), want.data(), x.size() * 4))
        << isa << " M " << M << " D " << D << " ld " << ld << " bits " << bits << " clip " << clip
        << (pool ? " pool" : "");
}

TEST(QuantOps, FakeQuantActMatchesReference) {
    IsaGuard guard;
    ThreadPool pool(2);
    for (const auto& isa : isa_levels()) {
        ops::set_isa(isa);
        for (const int bits : {2, 4, 6, 8}) {
            for (const int64_t M : {1, 7, 33}) {
                for (const int64_t D : {1, 7, 33, 576, 1536, 4097}) {
                    for (const int64_t pad : {0, 5}) {
                        for (const float clip : {1.0f, 0.83f}) {
                            check_fake_quant_act(M, D, pad, bits, clip, nullptr, isa);
                            check_fake_quant_act(M, D, pad, bits, clip, &pool, isa);
                        }
                    }
                }
            }
        }
    }
}

TEST(QuantOps, BitIdenticalAcrossThreads) {
    IsaGuard guard;
    ThreadPool pool2(2), pool3(3);
    const int64_t M = 301, D = 1536;
    const auto x0 = random_vec(sz(M * D), 21, -2.0f, 2.0f);
    for (const auto& isa : isa_levels()) {
        ops::set_isa(isa);
        auto a = x0, b = x0, c = x0;
        ops::fake_quant_act(M, D, a.data(), D, 4, 0.9f, nullptr);
        ops::fake_quant_act(M, D, b.data(), D, 4, 0.9f, &pool2);
        ops::fake_quant_act(M, D, c.data(), D, 4, 0.9f, &pool3);
        EXPECT_TRUE(same_bits(a.data(), b.data(), a.size() * 4)) << isa;
        EXPECT_TRUE(same_bits(a.data(), c.data(), a.size() * 4)) << isa;
        std::vector<float> w1(x0.size()), w2(w1), w3(w1);
        ops::quantize_weight(M, D, x0.data(), D, 3, 64, false, nullptr, nullptr, nullptr, nullptr,
                             nullptr, w1.data(), nullptr);
        ops::quantize_weight(M, D, x0.data(), D, 3, 64, false, nullptr, nullptr, nullptr, nullptr,
                             nullptr, w2.data(), &pool2);
        ops::quantize_weight(M, D, x0.data(), D, 3, 64, false, nullptr, nullptr, nullptr, nullptr,
                             nullptr, w3.data(), &pool3);
        EXPECT_TRUE(same_bits(w1.data(), w2.data(), w1.size() * 4)) << isa;
        EXPECT_TRUE(same_bits(w1.data(), w3.data(), w1.size() * 4)) << isa;
    }
}

// ---- Hadamard rotation ------------------------------------------------------------------------

TEST(Hadamard, BlockIsTheLargestPowerOfTwoDivisor) {
    EXPECT_EQ(ops::hadamard_block(576), 64);
    EXPECT_EQ(ops::hadamard_block(1536), 512);
    EXPECT_EQ(ops::hadamard_block(12), 4);
    EXPECT_EQ(ops::hadamard_block(7), 1);
    EXPECT_EQ(ops::hadamard_block(1), 1);
}

TEST(Hadamard, HandComputedOrderFour) {
    // H_4 = [[1,1,1,1],[1,-1,1,-1],[1,1,-1,-1],[1,-1,-1,1]] / 2
    std::vector<float> a = {1, 2, 3, 4}, r = a;
    ops::hadamard_rows(1, 4, a.data(), 4, nullptr);
    ops::ref::hadamard_rows(1, 4, r.data(), 4);
    const std::vector<float> want = {5, -1, -2, 0};
    EXPECT_EQ(a, want);
    EXPECT_EQ(r, want);
}

// Butterflies against the explicit products on odd shapes, strides and thread counts; H H = I;
// and (x H) . (w H) == x . w, the property the forward relies on.
TEST(Hadamard, ButterfliesMatchReference) {
    ThreadPool pool(2);
    for (int64_t D : {1, 3, 6, 12, 24, 40, 576, 1536})
        for (int64_t M : {1, 5})
            for (int64_t pad : {0, 3}) {
                const int64_t ld = D + pad;
                const auto x0 = random_vec(sz(M * ld), uint32_t(D * 7 + M + pad), -3.0f, 3.0f);
                auto fast = x0, fast2 = x0, ref = x0;
                ops::hadamard_rows(M, D, fast.data(), ld, nullptr);
                ops::hadamard_rows(M, D, fast2.data(), ld, &pool);
                ops::ref::hadamard_rows(M, D, ref.data(), ld);
                EXPECT_TRUE(same_bits(fast.data(), fast2.data(), fast.size() * 4)) << D;
                double err = 0, norm = 0, dot0 = 0, dot1 = 0;
                for (int64_t i = 0; i < M; ++i)
                    for (int64_t j = 0; j < ld; ++j) {
                        const size_t k = sz(i * ld + j);
                        if (j >= D) {  // padding untouched
                            EXPECT_EQ(fast[k], x0[k]);
                            continue;
                        }
                        err = std::max(err, double(std::fabs(fast[k] - ref[k])));
                        norm = std::max(norm, double(std::fabs(ref[k])));
                        dot0 += double(x0[k]) * double(x0[sz(j)]);
                        dot1 += double(fast[k]) * double(fast[sz(j)]);
                    }
                EXPECT_LE(err, 1e-6 * std::max(norm, 1.0)) << D;
                EXPECT_NEAR(dot1, dot0, 1e-4 * std::fabs(dot0) + 1e-4) << D;
                ops::hadamard_rows(M, D, fast.data(), ld, nullptr);  // H H = I
                for (size_t k = 0; k < fast.size(); ++k) EXPECT_NEAR(fast[k], x0[k], 1e-5) << D;
            }
}

// ---- Packed weights ----------------------------------------------------------------------------

TEST(Packed, ByteLayoutIsLsbFirst) {
    const uint16_t one = f32_to_fp16(1.0f), zero = 0;
    const std::vector<uint8_t> c4 = {1, 2, 3, 4, 15};
    const auto p4 = PackedWeight::from_codes(4, 1, 5, 5, c4.data(), &one, &zero);
    ASSERT_EQ(p4.row_bytes, 3);
    EXPECT_EQ(p4.codes[0], 0x21);  // element 0 in the low nibble
    EXPECT_EQ(p4.codes[1], 0x43);
    EXPECT_EQ(p4.codes[2], 0x0f);
    const std::vector<uint8_t> c2 = {1, 2, 3, 0, 2};
    const auto p2 = PackedWeight::from_codes(2, 1, 5, 5, c2.data(), &one, &zero);
    ASSERT_EQ(p2.row_bytes, 2);
    EXPECT_EQ(p2.codes[0], 0x39);  // 0b00'11'10'01
    EXPECT_EQ(p2.codes[1], 0x02);
    const std::vector<uint8_t> c3 = {5, 6, 7};  // 101 110 111 -> bits 0..8 = 1,0,1, 0,1,1, 1,1,1
    const auto p3 = PackedWeight::from_codes(3, 1, 3, 3, c3.data(), &one, &zero);
    ASSERT_EQ(p3.row_bytes, 2);
    EXPECT_EQ(p3.codes[0], 0xf5);  // 0b11'110'101
    EXPECT_EQ(p3.codes[1], 0x01);
    EXPECT_EQ(p3.nbytes(), 2u + 4u);
}

TEST(Packed, CodesRoundTripAndDequantize) {
    std::mt19937 rng(3);
    for (const int bits : {2, 3, 4, 6, 8}) {
        for (const int64_t cols : {1, 3, 7, 8, 9, 33, 100, 128, 1000}) {
            for (const int64_t rows : {1, 3}) {
                const int64_t group = cols % 4 == 0 ? cols / 4 : cols;
                const int64_t ng = cols / group;
                std::vector<uint8_t> codes(sz(rows * cols));
                for (auto& c : codes) c = uint8_t(rng() & ((1u << bits) - 1));
                std::vector<uint16_t> sc(sz(rows * ng)), zr(sc);
                for (auto& s : sc) s = f32_to_fp16(float(rng() % 1000 + 1) * 1e-4f);
                for (auto& z : zr) z = f32_to_fp16(float(rng() % (1u << bits)));
                const auto p = PackedWeight::from_codes(bits, rows, cols, group, codes.data(),
                                                        sc.data(), zr.data());
                ASSERT_EQ(p.row_bytes, (cols * bits + 7) / 8);
                ASSERT_EQ(p.n_groups(), ng);
                std::vector<float> deq(sz(rows * cols));
                p.dequantize_rows(0, rows, deq.data());
                for (int64_t r = 0; r < rows; ++r) {
                    for (int64_t k = 0; k < cols; ++k) {
                        const size_t at = sz(r * cols + k);
                        ASSERT_EQ(p.code(r, k), codes[at]) << bits << " " << cols << " " << k;
                        const float want =
                            (float(codes[at]) - fp16_to_f32(zr[sz(r * ng + k / group)])) *
                            fp16_to_f32(sc[sz(r * ng + k / group)]);
                        ASSERT_EQ(deq[at], want);
                    }
                }
                if (rows > 1) {  // a sub-range of rows
                    std::vector<float> last(sz(cols));
                    p.dequantize_rows(rows - 1, 1, last.data());
                    ASSERT_TRUE(
                        same_bits(last.data(), deq.data() + (rows - 1) * cols, sz(cols) * 4));
                }
            }
        }
    }
}

TEST(Packed, StorageEqualsFakeQuantization) {
    for (const int bits : {2, 3, 4, 6, 8}) {
        for (const bool sym : {false, true}) {
            const int64_t rows = 5, cols = 384, group = 128;
            const auto w = random_vec(sz(rows * cols), uint32_t(bits));
            const auto o = ref_weight(w, rows, cols, bits, group, sym);
            const auto p = PackedWeight::from_codes(bits, rows, cols, group, o.codes.data(),
                                                    o.scales.data(), o.zeros.data());
            std::vector<float> deq(sz(rows * cols));
            p.dequantize_rows(0, rows, deq.data());
            EXPECT_TRUE(same_bits(deq.data(), o.w_hat.data(), deq.size() * 4)) << bits << sym;
        }
    }
}

// ---- Packed GEMM -------------------------------------------------------------------------------

struct PackedGemmCase {
    int64_t M, N, K, group;  // group 0: per channel
    int bits;
    int64_t pad_a, pad_c;
    bool bias;
};

void check_gemm_packed(const PackedGemmCase& g, ThreadPool* pool, const std::string& isa) {
    const int64_t lda = g.K + g.pad_a, ldc = g.N + g.pad_c;
    const int64_t group = g.group > 0 ? g.group : g.K;
    const auto w = random_vec(sz(g.N * g.K), uint32_t(g.N + g.K));
    const auto o = ref_weight(w, g.N, g.K, g.bits, group, false);
    const auto p = PackedWeight::from_codes(g.bits, g.N, g.K, group, o.codes.data(),
                                            o.scales.data(), o.zeros.data());
    const auto a = random_vec(sz(g.M * lda), uint32_t(g.M));
    const auto b = random_vec(sz(g.N), 9);
    const float* bias = g.bias ? b.data() : nullptr;
    std::vector<float> c(sz(g.M * ldc), 7.0f), want(c);
    ops::gemm_nt_packed(g.M, a.data(), lda, p, bias, c.data(), ldc, pool);
    ops::gemm_nt(g.M, g.N, g.K, a.data(), lda, o.w_hat.data(), g.K, bias, want.data(), ldc,
                 nullptr);
    ASSERT_TRUE(same_bits(c.data(), want.data(), c.size() * 4))
        << isa << " M " << g.M << " N " << g.N << " K " << g.K << " group " << g.group << " bits "
        << g.bits << (pool ? " pool" : "");
}

TEST(QuantOps, GemmPackedBitIdenticalToGemmOnDequantized) {
    IsaGuard guard;
    ThreadPool pool(2);
    const std::vector<PackedGemmCase> cases = {
        {1, 1, 32, 0, 4, 0, 0, false},       {7, 17, 32, 32, 2, 3, 1, true},
        {33, 17, 128, 32, 3, 0, 2, true},    {1, 576, 128, 128, 4, 1, 0, false},
        {300, 17, 576, 64, 6, 0, 0, true},   {33, 576, 576, 0, 2, 2, 3, true},
        {7, 576, 1536, 128, 4, 0, 0, false}, {300, 576, 1536, 0, 8, 1, 1, true},
        {7, 17, 1000, 0, 3, 0, 0, true},     {33, 1, 1536, 32, 2, 0, 0, false},
        {33, 2100, 576, 64, 4, 0, 0, true},  {7, 2100, 1536, 128, 2, 1, 0, false},
        {12, 64, 48, 0, 4, 0, 0, true},      {5, 33, 33, 0, 6, 0, 0, true},
    };
    for (const auto& isa : isa_levels()) {
        ops::set_isa(isa);
        for (const auto& g : cases) {
            check_gemm_packed(g, nullptr, isa);
            check_gemm_packed(g, &pool, isa);
        }
    }
}

}  // namespace
}  // namespace zqat
