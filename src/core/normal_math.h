// The float Box-Muller transform behind zqat::normal_at (core/rng.h), written once as constants
// and a scalar reference; src/cpu/arch/x86/rng_avx512.cpp repeats the same operations 16 lanes
// wide. Every step is an exactly rounded IEEE operation (+, -, *, fma, /, sqrt, exact int <->
// float conversions), each in its own statement so no compiler contracts it differently, which
// makes the vector code bit-identical to this one.
//   u1 = ((r_a >> 8) + 1) * 2^-24 in (0, 1]     u2 = (r_b >> 8) * 2^-24 in [0, 1)
//   ln u1 = e ln2 + ln m, m in [sqrt(1/2), sqrt(2)): ln m = 2 atanh(s), s = (m - 1) / (m + 1),
//           odd series to s^9 (|error| < 4e-8 for |s| < 0.172)
//   2 pi u2 = quadrant k (0..3) + pi/2 f, f in [0, 1); sin, cos of pi/2 f by Taylor series to
//           x^11 / x^12 (|error| < 6e-8 on [0, pi/2])
//   lane even = sqrt(max(-2 ln u1, 0)) cos(2 pi u2),   lane odd = ... sin(2 pi u2)
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace zqat::normal_math {

inline constexpr float kTwoM24 = 0x1p-24f;
inline constexpr float kSqrt2 = 1.41421356f;
inline constexpr float kLn2Hi = 0.693145752f;     // 0x3f317200: few bits, so e * hi is exact
inline constexpr float kLn2Lo = 1.42860677e-06f;  // ln 2 - kLn2Hi
inline constexpr float kAtanh[4] = {1.0f / 9, 1.0f / 7, 1.0f / 5, 1.0f / 3};
inline constexpr float kHalfPi = 1.57079633f;
inline constexpr float kSin[5] = {-2.50521084e-08f, 2.75573192e-06f, -1.98412698e-04f,
                                  8.33333333e-03f, -1.66666667e-01f};
inline constexpr float kCos[6] = {2.08767570e-09f,  -2.75573192e-07f, 2.48015873e-05f,
                                  -1.38888889e-03f, 4.16666667e-02f,  -0.5f};

// ln u for u in (0, 1] (a normal float).
inline float ln_unit(float u) {
    const uint32_t bits = std::bit_cast<uint32_t>(u);
    int32_t e = int32_t(bits >> 23) - 127;
    float m = std::bit_cast<float>((bits & 0x7fffffu) | 0x3f800000u);  // [1, 2)
    if (m > kSqrt2) {
        m = m * 0.5f;
        e = e + 1;
    }
    const float num = m - 1.0f;
    const float den = m + 1.0f;
    const float s = num / den;
    const float s2 = s * s;
    float p = std::fma(s2, kAtanh[0], kAtanh[1]);
    p = std::fma(p, s2, kAtanh[2]);
    p = std::fma(p, s2, kAtanh[3]);
    const float s3 = s * s2;
    const float t = std::fma(s3, p, s);  // atanh(s)
    const float lnm = t * 2.0f;
    const float fe = float(e);
    const float lo = std::fma(fe, kLn2Lo, lnm);
    return std::fma(fe, kLn2Hi, lo);
}

// (cos, sin) of 2 pi u for u = j * 2^-24, j < 2^24.
inline void sincos_unit(float u, float* c, float* s) {
    const float t = u * 4.0f;  // exact
    const int32_t k = int32_t(t);
    const float f = t - float(k);  // exact, [0, 1)
    const float x = f * kHalfPi;
    const float x2 = x * x;
    float p = std::fma(x2, kSin[0], kSin[1]);
    for (int i = 2; i < 5; ++i) p = std::fma(p, x2, kSin[i]);
    const float x3 = x * x2;
    const float sn = std::fma(x3, p, x);
    float q = std::fma(x2, kCos[0], kCos[1]);
    for (int i = 2; i < 6; ++i) q = std::fma(q, x2, kCos[i]);
    const float cs = std::fma(x2, q, 1.0f);
    // Rotate by k quadrants: (cos, sin) of (k pi/2 + x).
    switch (k) {
        case 0:
            *c = cs;
            *s = sn;
            break;
        case 1:
            *c = -sn;
            *s = cs;
            break;
        case 2:
            *c = -cs;
            *s = -sn;
            break;
        default:
            *c = sn;
            *s = -cs;
            break;
    }
}

// The two normals of one Box-Muller pair of Philox words (a, b).
inline void box_muller(uint32_t a, uint32_t b, float* z_even, float* z_odd) {
    const float u1 = float((a >> 8) + 1u) * kTwoM24;
    const float u2 = float(b >> 8) * kTwoM24;
    const float l = ln_unit(u1);
    // max(+0, x), the operand order of _mm512_max_ps(x, 0): -2 ln 1 = -0 becomes +0 in both.
    const float r2 = std::max(0.0f, l * -2.0f);
    const float rho = std::sqrt(r2);
    float c, s;
    sincos_unit(u2, &c, &s);
    *z_even = rho * c;
    *z_odd = rho * s;
}

}  // namespace zqat::normal_math
