// Fast quantizer entry points (contracts in core/ops.h): the per-group parameters in scalar code,
// written exactly as in ref_quant.cpp, and the element loops from the active kernel table (one
// pass for min/max, one for quantize). Work is split into tasks of whole rows whose size depends
// only on the shape, and rows are independent, so results never depend on the thread count.
#include <algorithm>
#include <cmath>
#include <functional>

#include "cpu/kernels.h"
#include "zqat/core/dtype.h"
#include "zqat/core/error.h"
#include "zqat/core/ops.h"
#include "zqat/core/thread_pool.h"

namespace zqat::ops {
namespace {

constexpr int64_t kTaskElems = int64_t(1) << 15;  // about 128 KiB of floats per task

void run_rows(ThreadPool* pool, int64_t rows, int64_t cols,
              const std::function<void(int64_t, int64_t)>& fn) {
    const int64_t per = std::max<int64_t>(1, kTaskElems / std::max<int64_t>(cols, 1));
    const int64_t n_tasks = (rows + per - 1) / per;
    auto task = [&](int64_t t, int) { fn(t * per, std::min(rows, (t + 1) * per)); };
    if (pool && pool->size() > 1 && n_tasks > 1) {
        pool->parallel_for(n_tasks, task);
    } else {
        for (int64_t t = 0; t < n_tasks; ++t) task(t, 0);
    }
}

}  // namespace

void quantize_weight(int64_t rows, int64_t cols, const float* W, int64_t ldw, int bits,
                     int64_t group, bool sym, const float* gamma, const float* beta, uint8_t* codes,
                     uint16_t* scales, uint16_t* zeros, float* w_hat, ThreadPool* pool) {
    ZQAT_ASSERT(bits >= 2 && bits <= 8);
    if (rows <= 0 || cols <= 0) return;
    if (group <= 0) group = cols;  // 0: one group per output channel
    ZQAT_ASSERT(cols % group == 0);
    const cpu::Kernels& kr = cpu::active_kernels();
    const int64_t ng = cols / group;
    const float qmax = float((1 << bits) - 1);
    const float half = float(1 << (bits - 1));
    run_rows(pool, rows, cols, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            for (int64_t g = 0; g < ng; ++g) {
                const float* x = W + r * ldw + g * group;
                float mn, mx;
                kr.minmax(group, x, &mn, &mx);
                const float ga = gamma ? gamma[r * ng + g] : 1.0f;
                const float be = beta ? beta[r * ng + g] : 1.0f;
                const float hi = std::max(ga * mx, 0.0f);
                const float lo = std::min(be * mn, 0.0f);
                const float d32 = sym ? std::max(std::max(hi, -lo), 1e-5f) / (half - 1.0f)
                                      : std::max(hi - lo, 1e-5f) / qmax;
                uint16_t d16 = f32_to_fp16(d32);
                if ((d16 & 0x7fff) == 0) d16 = 1;  // the smallest fp16 subnormal, 2^-24
                const float delta = fp16_to_f32(d16);
                const int zp = sym ? 1 << (bits - 1)
                                   : int(std::clamp(std::nearbyint(-lo / delta), 0.0f, qmax));
                const float zpf = float(zp);
                if (scales) scales[r * ng + g] = d16;
                if (zeros) zeros[r * ng + g] = f32_to_fp16(zpf);
                const int64_t at = r * cols + g * group;
                if (codes || w_hat) {
                    kr.quant_row(group, x, delta, zpf, qmax, codes ? codes + at : nullptr,
                                 w_hat ? w_hat + at : nullptr);
                }
            }
        }
    });
}

void fake_quant_act(int64_t M, int64_t D, float* x, int64_t ld, int bits, float clip,
                    ThreadPool* pool) {
    ZQAT_ASSERT(bits >= 2 && bits <= 8);
    ZQAT_ASSERT(clip > 0);
    if (M <= 0 || D <= 0) return;
    const cpu::Kernels& kr = cpu::active_kernels();
    const float qmax = float((1 << bits) - 1);
    run_rows(pool, M, D, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            float* row = x + i * ld;
            float lo, hi;
            kr.minmax(D, row, &lo, &hi);
            hi = clip * hi;
            lo = clip * lo;
            const float delta = std::max(hi - lo, 1e-5f) / qmax;
            const float zp = std::nearbyint(-lo / delta);
            kr.quant_row(D, row, delta, zp, qmax, nullptr, row);
        }
    });
}

int64_t hadamard_block(int64_t D) {
    return D > 0 ? D & -D : 1;
}

void hadamard_rows(int64_t M, int64_t D, float* x, int64_t ld, ThreadPool* pool) {
    const int64_t b = hadamard_block(D);
    if (M <= 0 || b < 2) return;
    const float norm = float(1.0 / std::sqrt(double(b)));
    run_rows(pool, M, D, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i)
            for (float* v = x + i * ld; v < x + i * ld + D; v += b) {
                // Butterflies of span h = 1, 2, .., b/2 (Sylvester order), then the 1/sqrt(b).
                for (int64_t h = 1; h < b; h *= 2)
                    for (int64_t j0 = 0; j0 < b; j0 += 2 * h)
                        for (int64_t j = j0; j < j0 + h; ++j) {
                            const float p = v[j], q = v[j + h];
                            v[j] = p + q;
                            v[j + h] = p - q;
                        }
                for (int64_t j = 0; j < b; ++j) v[j] *= norm;
            }
    });
}

float perturb_row(int64_t n, const float* w, const float* z, float pe, const float* cs,
                  const float* d, float* out) {
    return cpu::active_kernels().perturb_row(n, w, z, pe, cs, d, out);
}

void fill_normal(uint64_t seed, uint32_t tensor_id, uint64_t first, int64_t n, float* out) {
    cpu::active_kernels().fill_normal(seed, tensor_id, first, n, out);
}

}  // namespace zqat::ops
