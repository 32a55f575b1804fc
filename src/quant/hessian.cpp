// Input second moments for GPTQ: see include/zqat/quant/hessian.h.
#include "zqat/quant/hessian.h"

#include <algorithm>

#include "zqat/core/error.h"
#include "zqat/core/ops.h"

namespace zqat {

Hessian::Hessian(int64_t cols) : cols_(cols) {
    if (cols < 1) fail("quant", "Hessian needs at least one column, got {}", cols);
    sum_.assign(size_t(cols * cols), 0.0);
}

void Hessian::add(const float* x, int64_t rows, int64_t ld, ThreadPool* pool) {
    if (rows < 0) fail("quant", "Hessian::add: negative row count {}", rows);
    if (ld < cols_) fail("quant", "Hessian::add: row stride {} below cols {}", ld, cols_);
    const int64_t C = cols_;
    for (int64_t r0 = 0; r0 < rows; r0 += kChunk) {
        const int64_t R = std::min(kChunk, rows - r0);
        xt_.resize(size_t(C * R));
        tmp_.resize(size_t(C * C));
        // [R, C] -> [C, R], in tiles so both sides stay in cache.
        constexpr int64_t T = 32;
        for (int64_t rb = 0; rb < R; rb += T)
            for (int64_t cb = 0; cb < C; cb += T)
                for (int64_t r = rb; r < std::min(rb + T, R); ++r) {
                    const float* xr = x + (r0 + r) * ld;
                    for (int64_t c = cb; c < std::min(cb + T, C); ++c)
                        xt_[size_t(c * R + r)] = xr[c];
                }
        // tmp [C, C] = Xt [C, R] . Xt^T
        ops::gemm_nt(C, C, R, xt_.data(), R, xt_.data(), R, nullptr, tmp_.data(), C, pool);
        // The GEMM need not be exactly symmetric; use its upper triangle for both halves.
        for (int64_t i = 0; i < C; ++i) {
            double* s = sum_.data() + i * C;
            const float* t = tmp_.data() + i * C;
            for (int64_t j = i; j < C; ++j) s[j] += double(t[j]);
        }
    }
    for (int64_t i = 0; i < C; ++i)
        for (int64_t j = 0; j < i; ++j) sum_[size_t(i * C + j)] = sum_[size_t(j * C + i)];
    n_ += rows;
    // Release the scratch: a layer holds up to four Hessians at once (down_proj's tmp_ alone is
    // 1536^2 floats), and this is the init's memory peak; re-allocating per call is cheap.
    std::vector<float>().swap(xt_);
    std::vector<float>().swap(tmp_);
}

std::vector<double> Hessian::mean() const {
    std::vector<double> m(sum_.size(), 0.0);
    if (n_ == 0) return m;
    for (size_t i = 0; i < m.size(); ++i) m[i] = sum_[i] / double(n_);
    return m;
}

}  // namespace zqat
