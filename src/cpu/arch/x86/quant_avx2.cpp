// AVX2 quantizer inner loops (contracts in kernels.h), bit-identical to the scalar reference for
// the reasons given in quant_avx512.cpp (_mm256_round_ps(_MM_FROUND_TO_NEAREST_INT) rounds half
// to even). Ragged tails go through the same formula in scalar code. Dequantization uses the
// generic scalar decoder (dequant_row_generic).
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "cpu/kernels.h"

namespace zqat::cpu {
namespace {

template <bool kCodes, bool kY>
void quant_row_impl(int64_t n, const float* x, float delta, float zp, float qmax, uint8_t* codes,
                    float* y) {
    const __m256 vd = _mm256_set1_ps(delta), vz = _mm256_set1_ps(zp), vq = _mm256_set1_ps(qmax);
    const __m256 zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 r = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(x + i), vd),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256 q = _mm256_min_ps(vq, _mm256_max_ps(zero, _mm256_add_ps(r, vz)));
        if (kCodes) {
            const __m256i qi = _mm256_cvtps_epi32(q);
            const __m128i w16 =
                _mm_packus_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
            _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + i), _mm_packus_epi16(w16, w16));
        }
        if (kY) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_sub_ps(q, vz), vd));
    }
    for (; i < n; ++i) {
        const float q = std::min(std::max(std::nearbyint(x[i] / delta) + zp, 0.0f), qmax);
        if (kCodes) codes[i] = uint8_t(q);
        if (kY) y[i] = (q - zp) * delta;
    }
}

}  // namespace

void minmax_avx2(int64_t n, const float* x, float* mn, float* mx) {
    __m256 lo = _mm256_set1_ps(x[0]), hi = lo;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 a = _mm256_loadu_ps(x + i);
        lo = _mm256_min_ps(lo, a);
        hi = _mm256_max_ps(hi, a);
    }
    alignas(32) float l[8], h[8];
    _mm256_store_ps(l, lo);
    _mm256_store_ps(h, hi);
    float a = l[0], b = h[0];
    for (int j = 1; j < 8; ++j) {
        a = l[j] < a ? l[j] : a;
        b = h[j] > b ? h[j] : b;
    }
    for (; i < n; ++i) {
        a = x[i] < a ? x[i] : a;
        b = x[i] > b ? x[i] : b;
    }
    *mn = a;
    *mx = b;
}

void quant_row_avx2(int64_t n, const float* x, float delta, float zp, float qmax, uint8_t* codes,
                    float* y) {
    if (codes && y) return quant_row_impl<true, true>(n, x, delta, zp, qmax, codes, y);
    if (codes) return quant_row_impl<true, false>(n, x, delta, zp, qmax, codes, y);
    if (y) return quant_row_impl<false, true>(n, x, delta, zp, qmax, codes, y);
}

float perturb_row_avx2(int64_t n, const float* w, const float* z, float pe, const float* cs,
                       const float* d, float* out) {
    // Lanes 0-7 and 8-15 of the reference's 16 in two registers. The ragged tail runs masked
    // (not in scalar code: in this -mfma file GCC would fuse a scalar v * d + acc).
    const __m256 vpe = _mm256_set1_ps(pe);
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t k = 0; k < n; k += 16)
        for (int h = 0; h < 2; ++h) {
            const int64_t at = k + 8 * h;
            const int64_t left = std::min<int64_t>(8, std::max<int64_t>(0, n - at));
            if (left == 0) break;
            const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(left)), idx);
            __m256 v = _mm256_maskload_ps(w + at, m);
            if (z) v = _mm256_add_ps(v, _mm256_mul_ps(vpe, _mm256_maskload_ps(z + at, m)));
            if (d)
                acc[h] = _mm256_blendv_ps(
                    acc[h], _mm256_add_ps(acc[h], _mm256_mul_ps(v, _mm256_maskload_ps(d + at, m))),
                    _mm256_castsi256_ps(m));
            if (cs) v = _mm256_mul_ps(v, _mm256_maskload_ps(cs + at, m));
            _mm256_maskstore_ps(out + at, m, v);
        }
    if (!d) return 0.0f;
    // The reference's tree: l[i] + l[i+8], + 4, + 2, + 1.
    const __m256 s8 = _mm256_add_ps(acc[0], acc[1]);
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

}  // namespace zqat::cpu
