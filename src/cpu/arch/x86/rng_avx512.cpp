// ops::fill_normal 16 Philox blocks (64 normals) at a time: the operations of
// src/core/normal_math.h in the same order, lane-wise, so the result is bit-identical to the
// scalar fill_normal (tests/test_ops_rng.cpp).
// GCC 12's avx512fintrin.h trips -Wuninitialized wherever the intrinsics are inlined (GCC bug
// 105593), a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "core/normal_math.h"
#include "cpu/kernels.h"
#include "zqat/core/rng.h"

namespace zqat::cpu {

namespace {

namespace nm = normal_math;

// 32 x 32 -> (hi, lo) per lane.
inline void mul_hilo(__m512i a, __m512i m, __m512i* hi, __m512i* lo) {
    *lo = _mm512_mullo_epi32(a, m);
    const __m512i even = _mm512_srli_epi64(_mm512_mul_epu32(a, m), 32);
    const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
    *hi = _mm512_mask_blend_epi32(0xAAAA, even, odd);
}

inline __m512 ln_unit(__m512 u) {
    const __m512i bits = _mm512_castps_si512(u);
    __m512i e = _mm512_sub_epi32(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(127));
    __m512 m = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_and_si512(bits, _mm512_set1_epi32(0x7fffff)), _mm512_set1_epi32(0x3f800000)));
    const __mmask16 big = _mm512_cmp_ps_mask(m, _mm512_set1_ps(nm::kSqrt2), _CMP_GT_OQ);
    m = _mm512_mask_mul_ps(m, big, m, _mm512_set1_ps(0.5f));
    e = _mm512_mask_add_epi32(e, big, e, _mm512_set1_epi32(1));
    const __m512 num = _mm512_sub_ps(m, _mm512_set1_ps(1.0f));
    const __m512 den = _mm512_add_ps(m, _mm512_set1_ps(1.0f));
    const __m512 s = _mm512_div_ps(num, den);
    const __m512 s2 = _mm512_mul_ps(s, s);
    __m512 p = _mm512_fmadd_ps(s2, _mm512_set1_ps(nm::kAtanh[0]), _mm512_set1_ps(nm::kAtanh[1]));
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(nm::kAtanh[2]));
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(nm::kAtanh[3]));
    const __m512 s3 = _mm512_mul_ps(s, s2);
    const __m512 t = _mm512_fmadd_ps(s3, p, s);
    const __m512 lnm = _mm512_mul_ps(t, _mm512_set1_ps(2.0f));
    const __m512 fe = _mm512_cvtepi32_ps(e);
    const __m512 lo = _mm512_fmadd_ps(fe, _mm512_set1_ps(nm::kLn2Lo), lnm);
    return _mm512_fmadd_ps(fe, _mm512_set1_ps(nm::kLn2Hi), lo);
}

inline void sincos_unit(__m512 u, __m512* c, __m512* s) {
    const __m512 t = _mm512_mul_ps(u, _mm512_set1_ps(4.0f));
    const __m512i k = _mm512_cvttps_epi32(t);
    const __m512 f = _mm512_sub_ps(t, _mm512_cvtepi32_ps(k));
    const __m512 x = _mm512_mul_ps(f, _mm512_set1_ps(nm::kHalfPi));
    const __m512 x2 = _mm512_mul_ps(x, x);
    __m512 p = _mm512_fmadd_ps(x2, _mm512_set1_ps(nm::kSin[0]), _mm512_set1_ps(nm::kSin[1]));
    for (int i = 2; i < 5; ++i) p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(nm::kSin[i]));
    const __m512 x3 = _mm512_mul_ps(x, x2);
    const __m512 sn = _mm512_fmadd_ps(x3, p, x);
    __m512 q = _mm512_fmadd_ps(x2, _mm512_set1_ps(nm::kCos[0]), _mm512_set1_ps(nm::kCos[1]));
    for (int i = 2; i < 6; ++i) q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(nm::kCos[i]));
    const __m512 cs = _mm512_fmadd_ps(x2, q, _mm512_set1_ps(1.0f));
    // k odd: swap; cos negative for k = 1, 2; sin negative for k = 2, 3.
    const __mmask16 odd = _mm512_test_epi32_mask(k, _mm512_set1_epi32(1));
    const __mmask16 k12 = _mm512_cmp_epu32_mask(_mm512_sub_epi32(k, _mm512_set1_epi32(1)),
                                                _mm512_set1_epi32(2), _MM_CMPINT_LT);
    const __mmask16 k23 = _mm512_cmp_epi32_mask(k, _mm512_set1_epi32(2), _MM_CMPINT_NLT);
    __m512 cc = _mm512_mask_blend_ps(odd, cs, sn);
    __m512 ss = _mm512_mask_blend_ps(odd, sn, cs);
    const __m512 sign = _mm512_set1_ps(-0.0f);
    cc = _mm512_mask_xor_ps(cc, k12, cc, sign);
    ss = _mm512_mask_xor_ps(ss, k23, ss, sign);
    *c = cc;
    *s = ss;
}

inline void box_muller(__m512i a, __m512i b, __m512* z_even, __m512* z_odd) {
    const __m512 u1 = _mm512_mul_ps(
        _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_srli_epi32(a, 8), _mm512_set1_epi32(1))),
        _mm512_set1_ps(nm::kTwoM24));
    const __m512 u2 =
        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(b, 8)), _mm512_set1_ps(nm::kTwoM24));
    const __m512 l = ln_unit(u1);
    const __m512 r2 = _mm512_max_ps(_mm512_mul_ps(l, _mm512_set1_ps(-2.0f)), _mm512_setzero_ps());
    const __m512 rho = _mm512_sqrt_ps(r2);
    __m512 c, s;
    sincos_unit(u2, &c, &s);
    *z_even = _mm512_mul_ps(rho, c);
    *z_odd = _mm512_mul_ps(rho, s);
}

// The 64 normals of blocks [block0, block0 + 16) in element order.
void normals16(uint64_t seed, uint32_t tensor_id, uint64_t block0, float* out) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    // Counter words: the low 32 bits of block0 + lane, with the carry into the high word.
    const __m512i lo0 = _mm512_set1_epi32(int32_t(uint32_t(block0)));
    __m512i c0 = _mm512_add_epi32(lo0, lane);
    const __mmask16 carry = _mm512_cmp_epu32_mask(c0, lo0, _MM_CMPINT_LT);
    __m512i c1 = _mm512_mask_add_epi32(_mm512_set1_epi32(int32_t(uint32_t(block0 >> 32))), carry,
                                       _mm512_set1_epi32(int32_t(uint32_t(block0 >> 32))),
                                       _mm512_set1_epi32(1));
    __m512i c2 = _mm512_set1_epi32(int32_t(tensor_id));
    __m512i c3 = _mm512_setzero_si512();
    uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
    const __m512i m0 = _mm512_set1_epi32(int32_t(0xD2511F53u)),
                  m1 = _mm512_set1_epi32(int32_t(0xCD9E8D57u));
    for (int round = 0; round < 10; ++round) {
        __m512i hi0, lo0r, hi1, lo1r;
        mul_hilo(c0, m0, &hi0, &lo0r);
        mul_hilo(c2, m1, &hi1, &lo1r);
        const __m512i n0 =
            _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32(int32_t(k0)));
        const __m512i n2 =
            _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(int32_t(k1)));
        c0 = n0;
        c1 = lo1r;
        c2 = n2;
        c3 = lo0r;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    __m512 z0, z1, z2, z3;
    box_muller(c0, c1, &z0, &z1);
    box_muller(c2, c3, &z2, &z3);
    // Interleave: out[4 b + j] = z_j[b].
    const __m512 a01lo = _mm512_unpacklo_ps(z0, z1), a01hi = _mm512_unpackhi_ps(z0, z1);
    const __m512 a23lo = _mm512_unpacklo_ps(z2, z3), a23hi = _mm512_unpackhi_ps(z2, z3);
    // Within each 128-bit lane L: a01lo = z0[4L], z1[4L], z0[4L+1], z1[4L+1]; and so on.
    const __m512 b0 =
        _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a01lo), _mm512_castps_pd(a23lo)));
    const __m512 b1 =
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a01lo), _mm512_castps_pd(a23lo)));
    const __m512 b2 =
        _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a01hi), _mm512_castps_pd(a23hi)));
    const __m512 b3 =
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a01hi), _mm512_castps_pd(a23hi)));
    // b0 lane L = block 4L, b1 = block 4L+1, b2 = 4L+2, b3 = 4L+3 (each 4 normals). Gather the
    // 128-bit lanes into element order.
    alignas(64) float t[4][16];
    _mm512_store_ps(t[0], b0);
    _mm512_store_ps(t[1], b1);
    _mm512_store_ps(t[2], b2);
    _mm512_store_ps(t[3], b3);
    for (int L = 0; L < 4; ++L)
        for (int j = 0; j < 4; ++j) std::memcpy(out + (4 * L + j) * 4, t[j] + 4 * L, 16);
}

}  // namespace

void fill_normal_avx512(uint64_t seed, uint32_t tensor_id, uint64_t first, int64_t n, float* out) {
    int64_t i = 0;
    // Head up to a 64-element boundary, and the tail, by the reference.
    const int64_t head = std::min<int64_t>(n, int64_t((64 - first % 64) % 64));
    if (head > 0) fill_normal(seed, tensor_id, first, head, out);
    i = head;
    for (; i + 64 <= n; i += 64) normals16(seed, tensor_id, (first + uint64_t(i)) / 4, out + i);
    if (i < n) fill_normal(seed, tensor_id, first + uint64_t(i), n - i, out + i);
}

}  // namespace zqat::cpu
