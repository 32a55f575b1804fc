// AVX2 GEMM micro-kernel: a 6 x 16 tile of C in 12 ymm accumulators (16 registers in all). Per k:
// two loads of the packed W panel, 6 broadcasts of A, 12 FMAs. Compiled with -mavx2 -mfma.
#include <immintrin.h>

#include "cpu/kernels.h"

namespace zqat::cpu {
namespace {

constexpr int kMR = 6, kNR = 16;

inline __m256i lane_mask(int n) {  // lanes i < n set, n clamped to [0, 8]
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

template <int R>
void tile(int cols, int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
          int64_t ldc, bool accumulate, const float* bias) {
    const __m256i m0 = lane_mask(cols), m1 = lane_mask(cols - 8);
    __m256 c0[R], c1[R];
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
        c0[r] = accumulate ? _mm256_maskload_ps(c + r * ldc, m0) : _mm256_setzero_ps();
        c1[r] = accumulate ? _mm256_maskload_ps(c + r * ldc + 8, m1) : _mm256_setzero_ps();
    }
    const float* ar[R];
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) ar[r] = a + r * lda;
    if (cols == kNR) {
        for (int64_t k = 0; k < kc; ++k) {
            const __m256 b0 = _mm256_loadu_ps(b + k * ldb), b1 = _mm256_loadu_ps(b + k * ldb + 8);
#pragma GCC unroll 6
            for (int r = 0; r < R; ++r) {
                const __m256 av = _mm256_broadcast_ss(ar[r] + k);
                c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
                c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
            }
        }
    } else {
        for (int64_t k = 0; k < kc; ++k) {
            const __m256 b0 = _mm256_maskload_ps(b + k * ldb, m0);
            const __m256 b1 = _mm256_maskload_ps(b + k * ldb + 8, m1);
#pragma GCC unroll 6
            for (int r = 0; r < R; ++r) {
                const __m256 av = _mm256_broadcast_ss(ar[r] + k);
                c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
                c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
            }
        }
    }
    if (bias) {
        const __m256 bb0 = _mm256_maskload_ps(bias, m0), bb1 = _mm256_maskload_ps(bias + 8, m1);
#pragma GCC unroll 6
        for (int r = 0; r < R; ++r) {
            c0[r] = _mm256_add_ps(c0[r], bb0);
            c1[r] = _mm256_add_ps(c1[r], bb1);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
        _mm256_maskstore_ps(c + r * ldc, m0, c0[r]);
        _mm256_maskstore_ps(c + r * ldc + 8, m1, c1[r]);
    }
}

using TileFn = void (*)(int, int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t,
                        bool, const float*);
constexpr TileFn kTiles[kMR + 1] = {nullptr, tile<1>, tile<2>, tile<3>, tile<4>, tile<5>, tile<6>};

}  // namespace

void gemm_tile_avx2(int rows, int cols, int64_t kc, const float* a, int64_t lda, const float* b,
                    int64_t ldb, float* c, int64_t ldc, bool accumulate, const float* bias) {
    kTiles[rows](cols, kc, a, lda, b, ldb, c, ldc, accumulate, bias);
}

// [cols rows of w, kc each] -> [kc][16], 8 k at a time per row (row reads stay contiguous).
void pack_panel_avx2(int cols, int64_t kc, const float* w, int64_t ldw, float* dst) {
    int64_t k0 = 0;
    for (; k0 + 8 <= kc; k0 += 8) {
        for (int j = 0; j < cols; ++j) {
            const float* src = w + j * ldw + k0;
            for (int i = 0; i < 8; ++i) dst[(k0 + i) * kNR + j] = src[i];
        }
        for (int i = 0; i < 8; ++i) {
            for (int j = cols; j < kNR; ++j) dst[(k0 + i) * kNR + j] = 0.0f;
        }
    }
    for (int64_t k = k0; k < kc; ++k) {
        float* d = dst + k * kNR;
        for (int j = 0; j < cols; ++j) d[j] = w[j * ldw + k];
        for (int j = cols; j < kNR; ++j) d[j] = 0.0f;
    }
}

}  // namespace zqat::cpu
