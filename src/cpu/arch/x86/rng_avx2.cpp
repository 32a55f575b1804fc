// ops::fill_normal 8 Philox blocks (32 normals) at a time with AVX2 + FMA: the operations of
// src/core/normal_math.h in the same order, lane-wise, so the result is bit-identical to the
// scalar fill_normal (tests/test_ops_rng.cpp). Same structure as rng_avx512.cpp, with masks as
// all-ones lanes instead of mask registers.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "core/normal_math.h"
#include "cpu/kernels.h"
#include "zqat/core/rng.h"

namespace zqat::cpu {

namespace {

namespace nm = normal_math;

inline __m256i set1(uint32_t v) {
    return _mm256_set1_epi32(int32_t(v));
}

// 32 x 32 -> (hi, lo) per lane.
inline void mul_hilo(__m256i a, __m256i m, __m256i* hi, __m256i* lo) {
    *lo = _mm256_mullo_epi32(a, m);
    const __m256i even = _mm256_srli_epi64(_mm256_mul_epu32(a, m), 32);
    const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    *hi = _mm256_blend_epi32(even, odd, 0xAA);
}

inline __m256 ln_unit(__m256 u) {
    const __m256i bits = _mm256_castps_si256(u);
    __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), set1(127));
    __m256 m = _mm256_castsi256_ps(
        _mm256_or_si256(_mm256_and_si256(bits, set1(0x7fffff)), set1(0x3f800000)));
    const __m256 big = _mm256_cmp_ps(m, _mm256_set1_ps(nm::kSqrt2), _CMP_GT_OQ);
    m = _mm256_blendv_ps(m, _mm256_mul_ps(m, _mm256_set1_ps(0.5f)), big);
    e = _mm256_sub_epi32(e, _mm256_castps_si256(big));  // big lanes are -1: e + 1
    const __m256 num = _mm256_sub_ps(m, _mm256_set1_ps(1.0f));
    const __m256 den = _mm256_add_ps(m, _mm256_set1_ps(1.0f));
    const __m256 s = _mm256_div_ps(num, den);
    const __m256 s2 = _mm256_mul_ps(s, s);
    __m256 p = _mm256_fmadd_ps(s2, _mm256_set1_ps(nm::kAtanh[0]), _mm256_set1_ps(nm::kAtanh[1]));
    p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(nm::kAtanh[2]));
    p = _mm256_fmadd_ps(p, s2, _mm256_set1_ps(nm::kAtanh[3]));
    const __m256 s3 = _mm256_mul_ps(s, s2);
    const __m256 t = _mm256_fmadd_ps(s3, p, s);
    const __m256 lnm = _mm256_mul_ps(t, _mm256_set1_ps(2.0f));
    const __m256 fe = _mm256_cvtepi32_ps(e);
    const __m256 lo = _mm256_fmadd_ps(fe, _mm256_set1_ps(nm::kLn2Lo), lnm);
    return _mm256_fmadd_ps(fe, _mm256_set1_ps(nm::kLn2Hi), lo);
}

inline void sincos_unit(__m256 u, __m256* c, __m256* s) {
    const __m256 t = _mm256_mul_ps(u, _mm256_set1_ps(4.0f));
    const __m256i k = _mm256_cvttps_epi32(t);
    const __m256 f = _mm256_sub_ps(t, _mm256_cvtepi32_ps(k));
    const __m256 x = _mm256_mul_ps(f, _mm256_set1_ps(nm::kHalfPi));
    const __m256 x2 = _mm256_mul_ps(x, x);
    __m256 p = _mm256_fmadd_ps(x2, _mm256_set1_ps(nm::kSin[0]), _mm256_set1_ps(nm::kSin[1]));
    for (int i = 2; i < 5; ++i) p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(nm::kSin[i]));
    const __m256 x3 = _mm256_mul_ps(x, x2);
    const __m256 sn = _mm256_fmadd_ps(x3, p, x);
    __m256 q = _mm256_fmadd_ps(x2, _mm256_set1_ps(nm::kCos[0]), _mm256_set1_ps(nm::kCos[1]));
    for (int i = 2; i < 6; ++i) q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(nm::kCos[i]));
    const __m256 cs = _mm256_fmadd_ps(x2, q, _mm256_set1_ps(1.0f));
    // k odd: swap; cos negative for k = 1, 2; sin negative for k = 2, 3.
    const __m256 odd =
        _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(k, set1(1)), set1(1)));
    const __m256i k12i =
        _mm256_or_si256(_mm256_cmpeq_epi32(k, set1(1)), _mm256_cmpeq_epi32(k, set1(2)));
    const __m256i k23i = _mm256_cmpeq_epi32(_mm256_and_si256(k, set1(2)), set1(2));
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 cc = _mm256_blendv_ps(cs, sn, odd);
    __m256 ss = _mm256_blendv_ps(sn, cs, odd);
    cc = _mm256_xor_ps(cc, _mm256_and_ps(_mm256_castsi256_ps(k12i), sign));
    ss = _mm256_xor_ps(ss, _mm256_and_ps(_mm256_castsi256_ps(k23i), sign));
    *c = cc;
    *s = ss;
}

inline void box_muller(__m256i a, __m256i b, __m256* z_even, __m256* z_odd) {
    const __m256 u1 =
        _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_srli_epi32(a, 8), set1(1))),
                      _mm256_set1_ps(nm::kTwoM24));
    const __m256 u2 =
        _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(b, 8)), _mm256_set1_ps(nm::kTwoM24));
    const __m256 l = ln_unit(u1);
    const __m256 r2 = _mm256_max_ps(_mm256_mul_ps(l, _mm256_set1_ps(-2.0f)), _mm256_setzero_ps());
    const __m256 rho = _mm256_sqrt_ps(r2);
    __m256 c, s;
    sincos_unit(u2, &c, &s);
    *z_even = _mm256_mul_ps(rho, c);
    *z_odd = _mm256_mul_ps(rho, s);
}

// The 32 normals of blocks [block0, block0 + 8) in element order.
void normals8(uint64_t seed, uint32_t tensor_id, uint64_t block0, float* out) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i lo0 = set1(uint32_t(block0));
    __m256i c0 = _mm256_add_epi32(lo0, lane);
    // Carry into the high word where the low word wrapped (unsigned c0 < lo0).
    const __m256i flip = set1(0x80000000u);
    const __m256i carry =
        _mm256_cmpgt_epi32(_mm256_xor_si256(lo0, flip), _mm256_xor_si256(c0, flip));
    __m256i c1 = _mm256_sub_epi32(set1(uint32_t(block0 >> 32)), carry);
    __m256i c2 = set1(tensor_id);
    __m256i c3 = _mm256_setzero_si256();
    uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
    const __m256i m0 = set1(0xD2511F53u), m1 = set1(0xCD9E8D57u);
    for (int round = 0; round < 10; ++round) {
        __m256i hi0, lo0r, hi1, lo1r;
        mul_hilo(c0, m0, &hi0, &lo0r);
        mul_hilo(c2, m1, &hi1, &lo1r);
        const __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), set1(k0));
        const __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), set1(k1));
        c0 = n0;
        c1 = lo1r;
        c2 = n2;
        c3 = lo0r;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    __m256 z[4];
    box_muller(c0, c1, &z[0], &z[1]);
    box_muller(c2, c3, &z[2], &z[3]);
    alignas(32) float t[4][8];
    for (int j = 0; j < 4; ++j) _mm256_store_ps(t[j], z[j]);
    for (int b = 0; b < 8; ++b)
        for (int j = 0; j < 4; ++j) out[4 * b + j] = t[j][b];
}

}  // namespace

void fill_normal_avx2(uint64_t seed, uint32_t tensor_id, uint64_t first, int64_t n, float* out) {
    // Head up to a 32-element boundary, and the tail, by the reference.
    const int64_t head = std::min<int64_t>(n, int64_t((32 - first % 32) % 32));
    if (head > 0) fill_normal(seed, tensor_id, first, head, out);
    int64_t i = head;
    for (; i + 32 <= n; i += 32) normals8(seed, tensor_id, (first + uint64_t(i)) / 4, out + i);
    if (i < n) fill_normal(seed, tensor_id, first + uint64_t(i), n - i, out + i);
}

}  // namespace zqat::cpu
