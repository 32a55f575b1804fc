// AVX-512 vector kernels (exp-based reductions, SwiGLU) and the AVX-512 kernel table.
// exp: Cephes-style range reduction x = n ln2 + r, degree-6 polynomial, 2^n by scalef; about
// 1 ulp over the float range, 0 below -104 and inf above 88.72.
// GCC 12 flags the _mm512_undefined_ps() operands inside avx512fintrin.h as "maybe
// uninitialized" wherever the intrinsics are inlined (GCC bug 105593), a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cmath>

#include "cpu/kernels.h"

namespace zqat::cpu {
namespace {

inline __mmask16 tail_mask(int64_t n) {
    return __mmask16((1u << n) - 1);
}  // 0 <= n < 16

inline __m512 exp16(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    x = _mm512_min_ps(x, _mm512_set1_ps(88.72f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

float max_avx512(int64_t n, const float* x) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
    if (i < n)
        m = _mm512_mask_max_ps(m, tail_mask(n - i), m,
                               _mm512_maskz_loadu_ps(tail_mask(n - i), x + i));
    return _mm512_reduce_max_ps(m);
}

float exp_scaled_avx512(int64_t n, const float* x, float scale, float shift, float* y) {
    const __m512 vs = _mm512_set1_ps(scale), vh = _mm512_set1_ps(shift);
    __m512 sum = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 e = exp16(_mm512_fmsub_ps(_mm512_loadu_ps(x + i), vs, vh));
        _mm512_storeu_ps(y + i, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (i < n) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 e = exp16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(m, x + i), vs, vh));
        _mm512_mask_storeu_ps(y + i, m, e);
        sum = _mm512_mask_add_ps(sum, m, sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

double sum_exp_avx512(int64_t n, const float* x, float shift) {
    const __m512 vh = _mm512_set1_ps(shift);
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vh));
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
    }
    if (i < n) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 e =
            _mm512_maskz_mov_ps(m, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vh)));
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

void silu_mul_avx512(int64_t n, const float* gate, const float* up, float* y) {
    const __m512 one = _mm512_set1_ps(1.0f);
    int64_t i = 0;
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : tail_mask(n - i);
        const __m512 g = _mm512_maskz_loadu_ps(m, gate + i), u = _mm512_maskz_loadu_ps(m, up + i);
        const __m512 s =
            _mm512_div_ps(g, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), g))));
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(s, u));
    }
}

}  // namespace

const Kernels& kernels_avx512() {
    static const Kernels k{"avx512",
                           12,
                           32,
                           gemm_tile_avx512,
                           pack_panel_avx512,
                           max_avx512,
                           exp_scaled_avx512,
                           sum_exp_avx512,
                           silu_mul_avx512,
                           minmax_avx512,
                           quant_row_avx512,
                           dequant_row_avx512,
                           fill_normal_avx512,
                           perturb_row_avx512};
    return k;
}

}  // namespace zqat::cpu
