// The input second moment of one linear layer, accumulated over calibration activations:
//   sum = sum over rows x of x x^T   ([cols, cols], double),   n_samples = rows seen.
// GPTQ's Hessian of ||X W^T - X W_hat^T||^2 is 2 X^T X / n; the factor 2 (and the 1/n) scale
// H and H^-1 alike and cancel in GPTQ's updates, so mean() returns sum / n, without the 2.
// Deterministic for any thread count: each call's rows are cut into fixed chunks of kChunk rows
// (from the call's first row, whatever the pool), each chunk's X^T X is one float GEMM
// (ops::gemm_nt, itself thread-count invariant) and is added into the double sum in chunk order.
#pragma once

#include <cstdint>
#include <vector>

namespace zqat {

class ThreadPool;

class Hessian {
  public:
    static constexpr int64_t kChunk = 2048;  // rows per float GEMM

    explicit Hessian(int64_t cols);  // cols >= 1

    // x [rows, cols], row stride ld >= cols. rows may be 0.
    void add(const float* x, int64_t rows, int64_t ld, ThreadPool* pool);

    int64_t n_samples() const { return n_; }
    int64_t cols() const { return cols_; }
    const std::vector<double>& sum() const { return sum_; }  // [cols, cols], symmetric
    // sum / n_samples ([cols, cols]); all zeros before any sample.
    std::vector<double> mean() const;

  private:
    int64_t cols_;
    int64_t n_ = 0;
    std::vector<double> sum_;
    std::vector<float> xt_, tmp_;  // scratch: a chunk transposed [cols, chunk], its X^T X
};

}  // namespace zqat
