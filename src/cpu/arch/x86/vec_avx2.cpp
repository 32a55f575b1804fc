// AVX2 vector kernels (exp-based reductions, SwiGLU) and the AVX2 kernel table.
// exp: as in vec_avx512.cpp, 2^n built in the exponent bits; inputs below -87.3 give 0.
#include <immintrin.h>

#include <cmath>

#include "cpu/kernels.h"

namespace zqat::cpu {
namespace {

inline __m256i tail_mask(int64_t n) {  // lanes i < n set
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654f);
    const __m256 underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(underflow, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

float max_avx2(int64_t n, const float* x) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    float r[8];
    _mm256_storeu_ps(r, m);
    float mx = r[0];
    for (int j = 1; j < 8; ++j) mx = std::fmax(mx, r[j]);
    for (; i < n; ++i) mx = std::fmax(mx, x[i]);
    return mx;
}

float exp_scaled_avx2(int64_t n, const float* x, float scale, float shift, float* y) {
    const __m256 vs = _mm256_set1_ps(scale), vh = _mm256_set1_ps(shift);
    __m256 sum = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 8) {
        const __m256i m = tail_mask(n - i);
        const __m256 e = _mm256_and_ps(_mm256_castsi256_ps(m),
                                       exp8(_mm256_fmsub_ps(_mm256_maskload_ps(x + i, m), vs, vh)));
        _mm256_maskstore_ps(y + i, m, e);
        sum = _mm256_add_ps(sum, e);
    }
    return hsum(sum);
}

double sum_exp_avx2(int64_t n, const float* x, float shift) {
    const __m256 vh = _mm256_set1_ps(shift);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (int64_t i = 0; i < n; i += 8) {
        const __m256i m = tail_mask(n - i);
        const __m256 e = _mm256_and_ps(_mm256_castsi256_ps(m),
                                       exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vh)));
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double r[4];
    _mm256_storeu_pd(r, _mm256_add_pd(s0, s1));
    return (r[0] + r[1]) + (r[2] + r[3]);
}

void silu_mul_avx2(int64_t n, const float* gate, const float* up, float* y) {
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 8) {
        const __m256i m = tail_mask(n - i);
        const __m256 g = _mm256_maskload_ps(gate + i, m), u = _mm256_maskload_ps(up + i, m);
        const __m256 s =
            _mm256_div_ps(g, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), g))));
        _mm256_maskstore_ps(y + i, m, _mm256_mul_ps(s, u));
    }
}

}  // namespace

const Kernels& kernels_avx2() {
    static const Kernels k{"avx2",
                           6,
                           16,
                           gemm_tile_avx2,
                           pack_panel_avx2,
                           max_avx2,
                           exp_scaled_avx2,
                           sum_exp_avx2,
                           silu_mul_avx2,
                           minmax_avx2,
                           quant_row_avx2,
                           dequant_row_generic,
                           fill_normal_avx2,
                           perturb_row_avx2};
    return k;
}

}  // namespace zqat::cpu
