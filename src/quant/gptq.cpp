// GPTQ and RTN for one linear layer: see include/zqat/quant/gptq.h.
#include "zqat/quant/gptq.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "zqat/core/dtype.h"
#include "zqat/core/error.h"
#include "zqat/core/ops.h"
#include "zqat/core/thread_pool.h"

namespace zqat {

namespace {

// fn(task) for task in [0, n): on the pool when there is one, else in order. Tasks are sized by
// the caller from the problem only, so results never depend on the thread count.
void run(ThreadPool* pool, int64_t n, const std::function<void(int64_t)>& fn) {
    if (pool && pool->size() > 1 && n > 1) {
        pool->parallel_for(n, [&](int64_t t, int) { fn(t); });
    } else {
        for (int64_t t = 0; t < n; ++t) fn(t);
    }
}

// Dot product in a fixed order (four partial sums), so it vectorizes and is still deterministic.
double dot(const double* a, const double* b, int64_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) {
        s0 += a[k] * b[k];
        s1 += a[k + 1] * b[k + 1];
        s2 += a[k + 2] * b[k + 2];
        s3 += a[k + 3] * b[k + 3];
    }
    for (; k < n; ++k) s0 += a[k] * b[k];
    return (s0 + s1) + (s2 + s3);
}

constexpr int64_t kRowsPerTask = 64;

// In place: the lower triangle of A [K, K] (row-major, symmetric) becomes L with A = L L^T; the
// strict upper triangle is zeroed. Left-looking by columns; column j's rows are independent.
void cholesky_lower(std::vector<double>& A, int64_t K, ThreadPool* pool, const char* what) {
    for (int64_t j = 0; j < K; ++j) {
        double* Lj = A.data() + j * K;
        double d = Lj[j] - dot(Lj, Lj, j);
        if (!(d > 0) || !std::isfinite(d))
            fail("quant",
                 "GPTQ: {} is not positive definite (pivot {} of {} is {}); raise the damping",
                 what, j, K, d);
        d = std::sqrt(d);
        Lj[j] = d;
        const int64_t below = K - j - 1;
        run(pool, (below + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t t) {
            const int64_t i0 = j + 1 + t * kRowsPerTask, i1 = std::min(K, i0 + kRowsPerTask);
            for (int64_t i = i0; i < i1; ++i) {
                double* Li = A.data() + i * K;
                Li[j] = (Li[j] - dot(Li, Lj, j)) / d;
            }
        });
    }
    for (int64_t i = 0; i < K; ++i)
        std::fill(A.begin() + i * K + i + 1, A.begin() + (i + 1) * K, 0.0);
}

// The upper Cholesky factor U of H^-1 (H^-1 = U^T U), returned as its transpose (lower) [K, K].
// H = L L^T; X = L^-1 (lower, built column by column as rows of Xt = X^T); H^-1 = X^T X; then the
// lower Cholesky factor of H^-1 is U^T.
std::vector<double> inverse_upper_cholesky_t(std::vector<double> H, int64_t K, ThreadPool* pool) {
    cholesky_lower(H, K, pool, "the damped Hessian");
    const std::vector<double>& L = H;
    std::vector<double> Xt(size_t(K * K), 0.0);  // Xt[j][i] = X[i][j], nonzero for i >= j
    run(pool, K, [&](int64_t j) {
        double* x = Xt.data() + j * K;
        x[j] = 1.0 / L[size_t(j * K + j)];
        for (int64_t i = j + 1; i < K; ++i) {
            const double* Li = L.data() + i * K;
            x[i] = -dot(Li + j, x + j, i - j) / Li[i];
        }
    });
    std::vector<double> Hinv(size_t(K * K), 0.0);  // lower triangle: sum_{k >= a} X[k][a] X[k][b]
    run(pool, K, [&](int64_t a) {
        const double* xa = Xt.data() + a * K;
        for (int64_t b = 0; b <= a; ++b)
            Hinv[size_t(a * K + b)] = dot(xa + a, Xt.data() + b * K + a, K - a);
    });
    for (int64_t a = 0; a < K; ++a)
        for (int64_t b = a + 1; b < K; ++b) Hinv[size_t(a * K + b)] = Hinv[size_t(b * K + a)];
    cholesky_lower(Hinv, K, pool, "the inverse Hessian");
    return Hinv;
}

void check_args(int64_t rows, int64_t cols, int bits, int64_t group, const char* who) {
    if (rows < 1 || cols < 1) fail("quant", "{}: empty weight [{}, {}]", who, rows, cols);
    if (bits < 2 || bits > 8) fail("quant", "{}: bits must be in 2..8, got {}", who, bits);
    if (group < 1 || cols % group != 0)
        fail("quant", "{}: group {} does not divide the {} input columns", who, group, cols);
}

QuantizedWeight empty_result(int64_t rows, int64_t cols, int bits, int64_t group) {
    QuantizedWeight q;
    q.bits = bits;
    q.rows = rows;
    q.cols = cols;
    q.group = group;
    q.codes.resize(size_t(rows * cols));
    q.scales.resize(size_t(rows * (cols / group)));
    q.zeros.resize(q.scales.size());
    q.w_hat.resize(size_t(rows * cols));
    return q;
}

// q = clamp(rne(x / delta) + zp, 0, qmax), as ops::quantize_weight computes it.
inline float quant_code(float x, float delta, float zp, float qmax) {
    return std::clamp(std::nearbyint(x / delta) + zp, 0.0f, qmax);
}

}  // namespace

QuantizedWeight gptq_quantize(const float* W, int64_t rows, int64_t cols,
                              const std::vector<double>& H, int bits, int64_t group, bool sym,
                              const GptqOptions& opt, ThreadPool* pool) {
    check_args(rows, cols, bits, group, "gptq");
    const int64_t K = cols;
    if (int64_t(H.size()) != K * K)
        fail("quant", "gptq: Hessian has {} entries, expected {} x {}", H.size(), K, K);
    if (!(opt.damp >= 0) || !std::isfinite(opt.damp))
        fail("quant", "gptq: damping must be finite and >= 0, got {}", opt.damp);
    if (opt.block < 1) fail("quant", "gptq: block must be at least 1, got {}", opt.block);
    for (double h : H)
        if (!std::isfinite(h)) fail("quant", "gptq: Hessian has a non-finite entry");

    const bool per_channel = group == K;
    const bool static_groups = (opt.static_groups || opt.act_order) && !per_channel;
    const int64_t n_groups = K / group;
    const auto qmax = float((1 << bits) - 1);
    QuantizedWeight out = empty_result(rows, cols, bits, group);

    // Dead inputs: never active, so their weights do not matter; zero them and make H regular.
    std::vector<float> W0(W, W + rows * K);
    std::vector<double> diag(static_cast<size_t>(K));
    for (int64_t i = 0; i < K; ++i) {
        diag[size_t(i)] = H[size_t(i * K + i)];
        if (diag[size_t(i)] == 0) {
            diag[size_t(i)] = 1;
            for (int64_t r = 0; r < rows; ++r) W0[size_t(r * K + i)] = 0;
        }
    }

    // Params fixed up front: per channel (whole rows) or static groups (original W).
    if (per_channel || static_groups)
        ops::ref::quantize_weight(rows, K, W0.data(), K, bits, group, sym, nullptr, nullptr,
                                  nullptr, out.scales.data(), out.zeros.data(), nullptr);

    // Column order: by descending diag(H) (ties by index) with act_order.
    std::vector<int64_t> perm(static_cast<size_t>(K));
    std::iota(perm.begin(), perm.end(), int64_t(0));
    if (opt.act_order)
        std::stable_sort(perm.begin(), perm.end(),
                         [&](int64_t a, int64_t b) { return diag[size_t(a)] > diag[size_t(b)]; });

    // Damped, permuted H, then U = upper Cholesky factor of its inverse (kept as U^T, lower).
    std::vector<double> Hp(static_cast<size_t>(K * K));
    double mean_diag = 0;
    for (int64_t i = 0; i < K; ++i) mean_diag += diag[size_t(i)];
    mean_diag /= double(K);
    for (int64_t a = 0; a < K; ++a)
        for (int64_t b = 0; b < K; ++b)
            Hp[size_t(a * K + b)] = a == b ? diag[size_t(perm[size_t(a)])] + opt.damp * mean_diag
                                           : H[size_t(perm[size_t(a)] * K + perm[size_t(b)])];
    const std::vector<double> Ut = inverse_upper_cholesky_t(std::move(Hp), K, pool);
    // Float copies, as gptq.py works in float32: U rows [K, K] for the in-block update, and U^T
    // [K, K] as the NT operand of the lazy GEMM (its row j, columns [i1, i2) = U[i1:i2, j]).
    std::vector<float> Uf(size_t(K * K), 0.0f), Utf(size_t(K * K));
    for (int64_t i = 0; i < K; ++i)
        for (int64_t j = 0; j < K; ++j) {
            Utf[size_t(i * K + j)] = float(Ut[size_t(i * K + j)]);
            Uf[size_t(j * K + i)] = float(Ut[size_t(i * K + j)]);
        }

    // Working weights, permuted: Wp[r][p] = W0[r][perm[p]].
    std::vector<float> Wp(static_cast<size_t>(rows * K));
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t p = 0; p < K; ++p) Wp[size_t(r * K + p)] = W0[size_t(r * K + perm[size_t(p)])];
    std::vector<uint8_t> codes_p(static_cast<size_t>(rows * K));

    // Blocks that never split a group, so a group's params see fully updated weights.
    int64_t blk = std::min(opt.block, K);
    if (!per_channel && !static_groups) {
        if (group <= blk)
            blk -= blk % group;
        else if (group % blk != 0)
            blk = group;
    }
    std::vector<float> err(static_cast<size_t>(rows * blk));
    std::vector<float> upd(static_cast<size_t>(rows * K));
    const int64_t n_tasks = (rows + kRowsPerTask - 1) / kRowsPerTask;

    for (int64_t i1 = 0; i1 < K; i1 += blk) {
        const int64_t i2 = std::min(K, i1 + blk), cnt = i2 - i1;
        run(pool, n_tasks, [&](int64_t t) {
            const int64_t r0 = t * kRowsPerTask, r1 = std::min(rows, r0 + kRowsPerTask);
            for (int64_t r = r0; r < r1; ++r) {
                float* w = Wp.data() + r * K;
                uint16_t* sc = out.scales.data() + r * n_groups;
                uint16_t* zs = out.zeros.data() + r * n_groups;
                for (int64_t i = i1; i < i2; ++i) {
                    int64_t g = 0;
                    if (static_groups) {
                        g = perm[size_t(i)] / group;
                    } else if (!per_channel) {
                        g = i / group;
                        if (i % group == 0)  // the group's columns [i, i + group) are current
                            ops::ref::quantize_weight(1, group, w + i, group, bits, group, sym,
                                                      nullptr, nullptr, nullptr, sc + g, zs + g,
                                                      nullptr);
                    }
                    const float delta = fp16_to_f32(sc[g]), zp = fp16_to_f32(zs[g]);
                    const float x = w[i];
                    const float q = quant_code(x, delta, zp, qmax);
                    codes_p[size_t(r * K + i)] = uint8_t(q);
                    const float e = (x - (q - zp) * delta) / Uf[size_t(i * K + i)];
                    const float* u = Uf.data() + i * K;
                    for (int64_t j = i + 1; j < i2; ++j) w[j] -= e * u[j];
                    err[size_t(r * blk + (i - i1))] = e;
                }
            }
        });
        if (i2 < K) {
            // W[:, i2:] -= Err [rows, cnt] . U[i1:i2, i2:]
            const int64_t n = K - i2;
            ops::gemm_nt(rows, n, cnt, err.data(), blk, Utf.data() + i2 * K + i1, K, nullptr,
                         upd.data(), n, pool);
            run(pool, n_tasks, [&](int64_t t) {
                const int64_t r0 = t * kRowsPerTask, r1 = std::min(rows, r0 + kRowsPerTask);
                for (int64_t r = r0; r < r1; ++r) {
                    float* w = Wp.data() + r * K + i2;
                    const float* d = upd.data() + r * n;
                    for (int64_t j = 0; j < n; ++j) w[j] -= d[j];
                }
            });
        }
    }

    // Back to the original column order; w_hat = dequantize(codes, scales, zeros).
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t p = 0; p < K; ++p)
            out.codes[size_t(r * K + perm[size_t(p)])] = codes_p[size_t(r * K + p)];
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < K; ++c) {
            const int64_t g = r * n_groups + c / group;
            const float delta = fp16_to_f32(out.scales[size_t(g)]);
            const float zp = fp16_to_f32(out.zeros[size_t(g)]);
            out.w_hat[size_t(r * K + c)] = (float(out.codes[size_t(r * K + c)]) - zp) * delta;
        }
    return out;
}

QuantizedWeight rtn_quantize(const float* W, int64_t rows, int64_t cols, int bits, int64_t group,
                             bool sym, ThreadPool* pool) {
    check_args(rows, cols, bits, group, "rtn");
    QuantizedWeight out = empty_result(rows, cols, bits, group);
    ops::quantize_weight(rows, cols, W, cols, bits, group, sym, nullptr, nullptr, out.codes.data(),
                         out.scales.data(), out.zeros.data(), out.w_hat.data(), pool);
    return out;
}

double layer_output_error(const float* W, const float* w_hat, int64_t rows, int64_t cols,
                          const std::vector<double>& H) {
    if (int64_t(H.size()) != cols * cols)
        fail("quant", "layer_output_error: Hessian has {} entries, expected {} x {}", H.size(),
             cols, cols);
    std::vector<double> d(static_cast<size_t>(cols));
    double total = 0;
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c)
            d[size_t(c)] = double(W[r * cols + c]) - double(w_hat[r * cols + c]);
        for (int64_t i = 0; i < cols; ++i)
            total += d[size_t(i)] * dot(H.data() + i * cols, d.data(), cols);
    }
    return total;
}

}  // namespace zqat
