// The per-ISA kernel table behind zqat::ops. ops.cpp owns the blocking, threading and causal
// bookkeeping; an ISA supplies only the inner loops below (one table per instruction set:
// arch/x86/*_avx512.cpp, *_avx2.cpp, generic_kernels.cpp). Every kernel computes each output
// element in a fixed order, so a result depends on the ISA but never on the thread count.
#pragma once

#include <cstdint>
#include <string_view>

#include "zqat/core/packed.h"

namespace zqat::cpu {

struct Kernels {
    std::string_view name;
    // GEMM micro-kernel tile: rows <= mr rows of A times one panel of nr columns.
    int mr, nr;
    // c[rows, cols] (=|+=) a[rows, kc] . b[kc, cols], then + bias[cols] if bias != nullptr.
    // a: row stride lda. b: a panel [kc][nr] with row stride ldb (a packed panel has ldb = nr;
    // V rows of attention are used in place); only its first cols <= nr columns are read.
    // Each c element accumulates k = 0..kc-1 in order, starting from c (accumulate) or 0.
    void (*gemm_tile)(int rows, int cols, int64_t kc, const float* a, int64_t lda, const float* b,
                      int64_t ldb, float* c, int64_t ldc, bool accumulate, const float* bias);
    // Packs cols <= nr rows of w (kc floats each, row stride ldw) into dst [kc][nr] (transposed),
    // zero-filling columns cols..nr-1.
    void (*pack_panel)(int cols, int64_t kc, const float* w, int64_t ldw, float* dst);
    // max of x[0..n), n >= 1.
    float (*max)(int64_t n, const float* x);
    // y[i] = exp(x[i] * scale - shift) for i < n; returns the sum of the y[i] (float, fixed order).
    float (*exp_scaled)(int64_t n, const float* x, float scale, float shift, float* y);
    // sum of exp(x[i] - shift), accumulated in double.
    double (*sum_exp)(int64_t n, const float* x, float shift);
    // y = silu(gate) * up.
    void (*silu_mul)(int64_t n, const float* gate, const float* up, float* y);

    // Quantizer inner loops (METHOD.md s1; the per-group parameters are computed by the caller).
    // *mn = min, *mx = max of x[0..n), n >= 1 (exact; the sign of a zero result is unspecified).
    void (*minmax)(int64_t n, const float* x, float* mn, float* mx);
    // For i < n: q = min(max(rne(x[i] / delta) + zp, 0), qmax), the clamps exactly as
    // std::min(std::max(v, 0.0f), qmax), rne = round half to even, IEEE division; then
    // codes[i] = q (if codes) and y[i] = (q - zp) * delta (if y; y may alias x).
    void (*quant_row)(int64_t n, const float* x, float delta, float zp, float qmax, uint8_t* codes,
                      float* y);
    // out[i] = (code(r, k0 + i) - zp) * delta of the element's group, fp16 scale/zero widened to
    // float, for i < n: bit-identical to PackedWeight::dequantize_rows.
    void (*dequant_row)(const PackedWeight& w, int64_t r, int64_t k0, int64_t n, float* out);
    // out[i] = normal_at(seed, tensor_id, first + i) for i < n (core/rng.h), bit-identical to
    // the scalar fill_normal.
    void (*fill_normal)(uint64_t seed, uint32_t tensor_id, uint64_t first, int64_t n, float* out);
    // ops::perturb_row (core/ops.h), bit-identical to ops::ref::perturb_row.
    float (*perturb_row)(int64_t n, const float* w, const float* z, float pe, const float* cs,
                         const float* d, float* out);
};

// The table the fast ops use now (set_isa / CPU features); defined in ops.cpp.
const Kernels& active_kernels();

const Kernels& kernels_generic();
// GEMM pieces of each table, defined in arch/x86/gemm_*.cpp (same contracts as the members above).
void gemm_tile_avx512(int rows, int cols, int64_t kc, const float* a, int64_t lda, const float* b,
                      int64_t ldb, float* c, int64_t ldc, bool accumulate, const float* bias);
void pack_panel_avx512(int cols, int64_t kc, const float* w, int64_t ldw, float* dst);
void gemm_tile_avx2(int rows, int cols, int64_t kc, const float* a, int64_t lda, const float* b,
                    int64_t ldb, float* c, int64_t ldc, bool accumulate, const float* bias);
void pack_panel_avx2(int cols, int64_t kc, const float* w, int64_t ldw, float* dst);

// Quantizer pieces (arch/x86/quant_*.cpp; generic ones in generic_kernels.cpp, which the AVX2
// table shares for dequant_row).
void minmax_avx512(int64_t n, const float* x, float* mn, float* mx);
void quant_row_avx512(int64_t n, const float* x, float delta, float zp, float qmax, uint8_t* codes,
                      float* y);
void dequant_row_avx512(const PackedWeight& w, int64_t r, int64_t k0, int64_t n, float* out);
void minmax_avx2(int64_t n, const float* x, float* mn, float* mx);
void quant_row_avx2(int64_t n, const float* x, float delta, float zp, float qmax, uint8_t* codes,
                    float* y);
void dequant_row_generic(const PackedWeight& w, int64_t r, int64_t k0, int64_t n, float* out);

void fill_normal_avx512(uint64_t seed, uint32_t tensor_id, uint64_t first, int64_t n, float* out);
void fill_normal_avx2(uint64_t seed, uint32_t tensor_id, uint64_t first, int64_t n, float* out);
float perturb_row_avx512(int64_t n, const float* w, const float* z, float pe, const float* cs,
                         const float* d, float* out);
float perturb_row_avx2(int64_t n, const float* w, const float* z, float pe, const float* cs,
                       const float* d, float* out);

const Kernels& kernels_avx2();    // only call when the CPU has AVX2 + FMA + F16C
const Kernels& kernels_avx512();  // only call when the CPU has AVX-512 F/BW/VL/DQ

}  // namespace zqat::cpu
