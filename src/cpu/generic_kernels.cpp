// Generic kernels: plain C++ (GEMM tile in the portable vector extension) for baseline x86-64, used
// when the CPU has neither AVX2 nor AVX-512, and as a third implementation in tests.
#include <algorithm>
#include <cmath>

#include "cpu/kernels.h"
#include "zqat/core/dtype.h"
#include "zqat/core/ops.h"
#include "zqat/core/rng.h"

namespace zqat::cpu {
namespace {

constexpr int kMR = 6, kNR = 8;

// A 4-float vector in GCC/Clang's portable vector extension: SSE2 on baseline x86-64, NEON on
// ARM. A 6 x 8 tile is 12 of them, which fits the 16 SSE registers without spilling (a plain
// float[R][NR] accumulator array ends up in memory and runs ~10x slower).
typedef float v4f __attribute__((vector_size(16)));

inline v4f load4(const float* p) {
    v4f v;
    __builtin_memcpy(&v, p, sizeof(v));
    return v;
}
inline void store4(float* p, v4f v) {
    __builtin_memcpy(p, &v, sizeof(v));
}

template <int R>
void tile(int cols, int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
          int64_t ldc, bool accumulate, const float* bias) {
    if (cols < kNR) {  // ragged panel (read in place): scalar, touching only the first cols
        for (int r = 0; r < R; ++r) {
            for (int j = 0; j < cols; ++j) {
                float acc = accumulate ? c[r * ldc + j] : 0.0f;
                for (int64_t k = 0; k < kc; ++k) acc += a[r * lda + k] * b[k * ldb + j];
                c[r * ldc + j] = acc + (bias ? bias[j] : 0.0f);
            }
        }
        return;
    }
    v4f acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) {
        acc0[r] = accumulate ? load4(c + r * ldc) : v4f{};
        acc1[r] = accumulate ? load4(c + r * ldc + 4) : v4f{};
    }
    for (int64_t k = 0; k < kc; ++k) {
        const v4f b0 = load4(b + k * ldb), b1 = load4(b + k * ldb + 4);
        for (int r = 0; r < R; ++r) {
            const float av = a[r * lda + k];
            acc0[r] += av * b0;
            acc1[r] += av * b1;
        }
    }
    const v4f bias0 = bias ? load4(bias) : v4f{}, bias1 = bias ? load4(bias + 4) : v4f{};
    for (int r = 0; r < R; ++r) {
        store4(c + r * ldc, acc0[r] + bias0);
        store4(c + r * ldc + 4, acc1[r] + bias1);
    }
}

void gemm_tile_generic(int rows, int cols, int64_t kc, const float* a, int64_t lda, const float* b,
                       int64_t ldb, float* c, int64_t ldc, bool accumulate, const float* bias) {
    switch (rows) {
        case 1:
            return tile<1>(cols, kc, a, lda, b, ldb, c, ldc, accumulate, bias);
        case 2:
            return tile<2>(cols, kc, a, lda, b, ldb, c, ldc, accumulate, bias);
        case 3:
            return tile<3>(cols, kc, a, lda, b, ldb, c, ldc, accumulate, bias);
        case 4:
            return tile<4>(cols, kc, a, lda, b, ldb, c, ldc, accumulate, bias);
        case 5:
            return tile<5>(cols, kc, a, lda, b, ldb, c, ldc, accumulate, bias);
        default:
            return tile<6>(cols, kc, a, lda, b, ldb, c, ldc, accumulate, bias);
    }
}

void pack_panel_generic(int cols, int64_t kc, const float* w, int64_t ldw, float* dst) {
    for (int64_t k = 0; k < kc; ++k) {
        float* d = dst + k * kNR;
        for (int j = 0; j < cols; ++j) d[j] = w[j * ldw + k];
        for (int j = cols; j < kNR; ++j) d[j] = 0.0f;
    }
}

float max_generic(int64_t n, const float* x) {
    float m = x[0];
    for (int64_t i = 1; i < n; ++i) m = x[i] > m ? x[i] : m;
    return m;
}

float exp_scaled_generic(int64_t n, const float* x, float scale, float shift, float* y) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
        y[i] = std::exp(x[i] * scale - shift);
        sum += y[i];
    }
    return sum;
}

double sum_exp_generic(int64_t n, const float* x, float shift) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += double(std::exp(x[i] - shift));
    return sum;
}

void silu_mul_generic(int64_t n, const float* gate, const float* up, float* y) {
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        y[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

void minmax_generic(int64_t n, const float* x, float* mn, float* mx) {
    float lo = x[0], hi = x[0];
    for (int64_t i = 1; i < n; ++i) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    *mn = lo;
    *mx = hi;
}

void quant_row_generic(int64_t n, const float* x, float delta, float zp, float qmax, uint8_t* codes,
                       float* y) {
    for (int64_t i = 0; i < n; ++i) {
        const float q = std::min(std::max(std::nearbyint(x[i] / delta) + zp, 0.0f), qmax);
        if (codes) codes[i] = uint8_t(q);
        if (y) y[i] = (q - zp) * delta;
    }
}

}  // namespace

void dequant_row_generic(const PackedWeight& w, int64_t r, int64_t k0, int64_t n, float* out) {
    const uint8_t* row = w.codes + r * w.row_bytes;
    const int64_t ng = w.n_groups();
    for (int64_t k = k0; k < k0 + n;) {
        const int64_t g = k / w.group, end = std::min(k0 + n, (g + 1) * w.group);
        const float delta = fp16_to_f32(w.scales[r * ng + g]);
        const float zp = fp16_to_f32(w.zeros[r * ng + g]);
        for (; k < end; ++k) out[k - k0] = (float(packed_code(row, w.bits, k)) - zp) * delta;
    }
}

const Kernels& kernels_generic() {
    static const Kernels k{"generic",
                           kMR,
                           kNR,
                           gemm_tile_generic,
                           pack_panel_generic,
                           max_generic,
                           exp_scaled_generic,
                           sum_exp_generic,
                           silu_mul_generic,
                           minmax_generic,
                           quant_row_generic,
                           dequant_row_generic,
                           fill_normal,
                           ops::ref::perturb_row};
    return k;
}

}  // namespace zqat::cpu
