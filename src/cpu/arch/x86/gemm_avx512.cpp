// AVX-512 GEMM micro-kernel: a 12 x 32 tile of C in 24 zmm accumulators. Per k: two loads of the
// packed W panel, 12 broadcasts of A (folded into the FMAs), 24 FMAs. Compiled with -mavx512*.
// GCC 12 flags the _mm512_undefined_ps() operands inside avx512fintrin.h as "maybe
// uninitialized" wherever the intrinsics are inlined (GCC bug 105593), a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include "cpu/kernels.h"

namespace zqat::cpu {
namespace {

constexpr int kMR = 12, kNR = 32;

inline __mmask16 lane_mask(int n) {  // first n lanes of 16, n clamped to [0, 16]
    return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

template <int R>
void tile(int cols, int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
          int64_t ldc, bool accumulate, const float* bias) {
    const __mmask16 m0 = lane_mask(cols), m1 = lane_mask(cols - 16);
    __m512 c0[R], c1[R];
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
        c0[r] = accumulate ? _mm512_maskz_loadu_ps(m0, c + r * ldc) : _mm512_setzero_ps();
        c1[r] = accumulate ? _mm512_maskz_loadu_ps(m1, c + r * ldc + 16) : _mm512_setzero_ps();
    }
    const float* ar[R];
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) ar[r] = a + r * lda;
    if (cols == kNR) {
        for (int64_t k = 0; k < kc; ++k) {
            const __m512 b0 = _mm512_loadu_ps(b + k * ldb), b1 = _mm512_loadu_ps(b + k * ldb + 16);
#pragma GCC unroll 12
            for (int r = 0; r < R; ++r) {
                const __m512 av = _mm512_set1_ps(ar[r][k]);
                c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
                c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
            }
        }
    } else {
        for (int64_t k = 0; k < kc; ++k) {
            const __m512 b0 = _mm512_maskz_loadu_ps(m0, b + k * ldb);
            const __m512 b1 = _mm512_maskz_loadu_ps(m1, b + k * ldb + 16);
#pragma GCC unroll 12
            for (int r = 0; r < R; ++r) {
                const __m512 av = _mm512_set1_ps(ar[r][k]);
                c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
                c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
            }
        }
    }
    if (bias) {
        const __m512 bb0 = _mm512_maskz_loadu_ps(m0, bias),
                     bb1 = _mm512_maskz_loadu_ps(m1, bias + 16);
#pragma GCC unroll 12
        for (int r = 0; r < R; ++r) {
            c0[r] = _mm512_add_ps(c0[r], bb0);
            c1[r] = _mm512_add_ps(c1[r], bb1);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
        _mm512_mask_storeu_ps(c + r * ldc, m0, c0[r]);
        _mm512_mask_storeu_ps(c + r * ldc + 16, m1, c1[r]);
    }
}

using TileFn = void (*)(int, int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t,
                        bool, const float*);
constexpr TileFn kTiles[kMR + 1] = {nullptr, tile<1>, tile<2>, tile<3>,  tile<4>,  tile<5>, tile<6>,
                                    tile<7>, tile<8>, tile<9>, tile<10>, tile<11>, tile<12>};

}  // namespace

void gemm_tile_avx512(int rows, int cols, int64_t kc, const float* a, int64_t lda, const float* b,
                      int64_t ldb, float* c, int64_t ldc, bool accumulate, const float* bias) {
    kTiles[rows](cols, kc, a, lda, b, ldb, c, ldc, accumulate, bias);
}

// [cols rows of w, kc each] -> [kc][32]. Full panels go 16 x 16 blocks at a time through a
// register transpose; the rest (ragged edges) element by element.
void pack_panel_avx512(int cols, int64_t kc, const float* w, int64_t ldw, float* dst) {
    int64_t k0 = 0;
    if (cols == kNR) {
        for (; k0 + 16 <= kc; k0 += 16) {
            for (int half = 0; half < 2; ++half) {
                __m512 r[16];
                for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(w + (half * 16 + i) * ldw + k0);
                // 16x16 transpose: unpack 32-bit, 64-bit, then 128-bit lane shuffles twice.
                __m512 t[16];
                for (int i = 0; i < 16; i += 2) {
                    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
                    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
                }
                for (int i = 0; i < 16; i += 4) {
                    for (int j = 0; j < 2; ++j) {
                        r[i + j] = _mm512_castpd_ps(_mm512_unpacklo_pd(
                            _mm512_castps_pd(t[i + j]), _mm512_castps_pd(t[i + j + 2])));
                        r[i + j + 2] = _mm512_castpd_ps(_mm512_unpackhi_pd(
                            _mm512_castps_pd(t[i + j]), _mm512_castps_pd(t[i + j + 2])));
                    }
                }
                for (int i = 0; i < 16; i += 8) {
                    for (int j = 0; j < 4; ++j) {
                        t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
                        t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xdd);
                    }
                }
                for (int j = 0; j < 8; ++j) {
                    r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
                    r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
                }
                // r[j] now holds column k0 + kPerm[j] of the 16 rows.
                static constexpr int kPerm[16] = {0, 2,  1, 3,  4,  6,  5,  7,
                                                  8, 10, 9, 11, 12, 14, 13, 15};
                for (int j = 0; j < 16; ++j) {
                    _mm512_storeu_ps(dst + (k0 + kPerm[j]) * kNR + half * 16, r[j]);
                }
            }
        }
    }
    for (int64_t k = k0; k < kc; ++k) {
        float* d = dst + k * kNR;
        for (int j = 0; j < cols; ++j) d[j] = w[j * ldw + k];
        for (int j = cols; j < kNR; ++j) d[j] = 0.0f;
    }
}

}  // namespace zqat::cpu
