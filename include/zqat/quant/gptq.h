// GPTQ (Frantar et al. 2022, "OPTQ"), one linear layer W [rows = out, cols = in], and plain
// round-to-nearest (RTN) in the same output form.
//
// GPTQ quantizes W column by column (in the order of the inputs, or by descending diag(H) with
// act_order), and after each column spreads its rounding error over the columns not yet quantized
// so that the layer's output error sum_r (w_r - w_hat_r)^T H (w_r - w_hat_r) stays small, with H
// the inputs' second moment (quant/hessian.h). As in the reference implementation (gptq.py):
//   - dead inputs (H_ii == 0) get H_ii = 1 and W[:, i] = 0;
//   - damping: H += damp * mean(diag H) * I;
//   - Hinv = the upper Cholesky factor U of H^-1 (H^-1 = U^T U), in double;
//   - columns are processed in blocks of `block`; a column's scaled error (w - w_hat) / U_ii is
//     subtracted, times U's row, from the later columns of the block at once and from the columns
//     after the block lazily (one float GEMM per block).
// Quantizer: exactly ops::quantize_weight's (METHOD.md s1, fp16 delta, RNE). Its params (delta, zp)
// come, per output row:
//   - per channel (group == cols): from the whole row of W at the start (after dead inputs are
//     zeroed), like gptq.py's non-grouped path;
//   - grouped: from the row's current, error-updated weights of the group when the group's first
//     column is reached (blocks are adjusted so that no group straddles a block boundary, which
//     changes rounding only, not the algorithm, and makes "current" exact);
//   - grouped with act_order (or static_groups): "static groups", from the original W per
//     contiguous group up front, so storage stays contiguous.
// Each column is then q = clamp(rne(w / delta) + zp, 0, 2^bits - 1). Every row's arithmetic is
// independent of the other rows and of how rows are split into tasks, and the lazy update is a
// thread-count invariant GEMM, so results are bit-identical for any thread count.
#pragma once

#include <cstdint>
#include <vector>

namespace zqat {

class ThreadPool;

struct GptqOptions {
    double damp = 0.01;      // fraction of mean(diag H) added to the diagonal
    int64_t block = 128;     // columns per lazy-update block
    bool act_order = false;  // quantize inputs by descending diag(H)
    // Grouped only: params of every group from the original W up front (gptq.py's
    // --static-groups), instead of from the current weights at the group's first column. Always
    // on with act_order. Measured here (tests/test_quant_gptq.cpp): at 2 bits the current
    // weights can drift out of their group's range, and static groups then do better.
    bool static_groups = false;
};

// The result of quantizing one weight, in the original column order.
struct QuantizedWeight {
    int bits = 0;
    int64_t rows = 0, cols = 0, group = 0;  // group divides cols; == cols per channel
    std::vector<uint8_t> codes;             // [rows, cols], each < 2^bits
    std::vector<uint16_t> scales, zeros;    // [rows, cols / group], fp16 bits (delta, zp)
    std::vector<float> w_hat;               // [rows, cols] = (code - zp) * delta, bit-exact
};

// W [rows, cols] (row stride cols); H [cols, cols] symmetric positive semi-definite, any positive
// scale (e.g. Hessian::mean()). bits in 2..8. Throws Error("[quant] ...") on bad arguments or when
// the damped H is not positive definite (raise damp).
QuantizedWeight gptq_quantize(const float* W, int64_t rows, int64_t cols,
                              const std::vector<double>& H, int bits, int64_t group, bool sym,
                              const GptqOptions& opt, ThreadPool* pool);

// Round to nearest: ops::quantize_weight on W [rows, cols], in the same form.
QuantizedWeight rtn_quantize(const float* W, int64_t rows, int64_t cols, int bits, int64_t group,
                             bool sym, ThreadPool* pool);

// sum_r (w_r - w_hat_r)^T H (w_r - w_hat_r) in double: the layer's summed squared output error
// over the inputs H was accumulated from (times n when H is a mean).
double layer_output_error(const float* W, const float* w_hat, int64_t rows, int64_t cols,
                          const std::vector<double>& H);

}  // namespace zqat
