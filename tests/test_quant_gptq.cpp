// quant/hessian and quant/gptq: the Hessian against a naive double loop; GPTQ against RTN on
// correlated inputs (its layer output error is never above RTN's), against a textbook unblocked
// GPTQ written here (OBS updates of an explicit inverse, no Cholesky), and for exactness (codes in
// range, w_hat = dequantize(codes), identical for any thread count, equal to RTN when H is
// diagonal).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "zqat/core/dtype.h"
#include "zqat/core/error.h"
#include "zqat/core/thread_pool.h"
#include "zqat/quant/gptq.h"
#include "zqat/quant/hessian.h"

using namespace zqat;

namespace {

// Standard normals from mt19937_64 by Box-Muller (the same on every standard library).
struct Normal {
    std::mt19937_64 rng;
    explicit Normal(uint64_t seed) : rng(seed) {}
    double uniform() { return (double(rng() >> 11) + 0.5) * 0x1.0p-53; }
    double operator()() {
        return std::sqrt(-2.0 * std::log(uniform())) * std::cos(6.283185307179586 * uniform());
    }
};

std::vector<float> randn(int64_t n, uint64_t seed, double scale = 1.0) {
    Normal g(seed);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = float(g() * scale);
    return v;
}

// X [n, cols] = Z [n, cols] . A [cols, cols] with a random mixing A and uneven column scales, so
// H = X^T X / n is far from diagonal.
std::vector<float> correlated_inputs(int64_t n, int64_t cols, uint64_t seed) {
    const auto Z = randn(n * cols, seed);
    auto A = randn(cols * cols, seed + 1, 1.0 / std::sqrt(double(cols)));
    for (int64_t i = 0; i < cols; ++i) A[size_t(i * cols + i)] += 1.0f;
    std::vector<float> X(size_t(n * cols), 0.0f);
    for (int64_t r = 0; r < n; ++r)
        for (int64_t k = 0; k < cols; ++k) {
            const float z = Z[size_t(r * cols + k)] * (1.0f + float(k % 7));
            for (int64_t c = 0; c < cols; ++c)
                X[size_t(r * cols + c)] += z * A[size_t(k * cols + c)];
        }
    return X;
}

std::vector<double> hessian_of(const std::vector<float>& X, int64_t cols, ThreadPool* pool) {
    Hessian h(cols);
    h.add(X.data(), int64_t(X.size()) / cols, cols, pool);
    return h.mean();
}

// Every property of one result that must hold exactly.
void check_exact(const QuantizedWeight& q, int64_t rows, int64_t cols, int bits, int64_t group) {
    ASSERT_EQ(q.rows, rows);
    ASSERT_EQ(q.cols, cols);
    ASSERT_EQ(q.group, group);
    ASSERT_EQ(q.bits, bits);
    ASSERT_EQ(q.codes.size(), size_t(rows * cols));
    ASSERT_EQ(q.scales.size(), size_t(rows * cols / group));
    ASSERT_EQ(q.zeros.size(), q.scales.size());
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
            const size_t at = size_t(r * cols + c), g = size_t(r * (cols / group) + c / group);
            ASSERT_LT(q.codes[at], 1u << bits);
            const float want =
                (float(q.codes[at]) - fp16_to_f32(q.zeros[g])) * fp16_to_f32(q.scales[g]);
            ASSERT_EQ(std::memcmp(&want, &q.w_hat[at], 4), 0) << r << "," << c;
        }
}

void expect_identical(const QuantizedWeight& a, const QuantizedWeight& b) {
    EXPECT_EQ(a.codes, b.codes);
    EXPECT_EQ(a.scales, b.scales);
    EXPECT_EQ(a.zeros, b.zeros);
    ASSERT_EQ(a.w_hat.size(), b.w_hat.size());
    EXPECT_EQ(std::memcmp(a.w_hat.data(), b.w_hat.data(), a.w_hat.size() * 4), 0);
}

// Textbook GPTQ (no blocks, no Cholesky): keep the inverse of the damped H over the columns not
// yet quantized; quantize column q, spread err / Hinv_qq * Hinv[q, :] over the rest, and remove q
// from Hinv by one Gaussian elimination step. Group params from the current weights at each
// group's first column, per-channel params from W. No act_order. Returns w_hat.
std::vector<float> textbook_gptq(const std::vector<float>& W, int64_t rows, int64_t cols,
                                 const std::vector<double>& H, int bits, int64_t group, bool sym,
                                 double damp) {
    const int64_t K = cols;
    std::vector<double> A(H);
    double md = 0;
    for (int64_t i = 0; i < K; ++i) md += A[size_t(i * K + i)];
    for (int64_t i = 0; i < K; ++i) A[size_t(i * K + i)] += damp * md / double(K);
    // Gauss-Jordan inverse.
    std::vector<double> Inv(size_t(K * K), 0.0);
    for (int64_t i = 0; i < K; ++i) Inv[size_t(i * K + i)] = 1;
    for (int64_t p = 0; p < K; ++p) {
        const double d = A[size_t(p * K + p)];
        for (int64_t j = 0; j < K; ++j) {
            A[size_t(p * K + j)] /= d;
            Inv[size_t(p * K + j)] /= d;
        }
        for (int64_t i = 0; i < K; ++i) {
            if (i == p) continue;
            const double f = A[size_t(i * K + p)];
            for (int64_t j = 0; j < K; ++j) {
                A[size_t(i * K + j)] -= f * A[size_t(p * K + j)];
                Inv[size_t(i * K + j)] -= f * Inv[size_t(p * K + j)];
            }
        }
    }
    const QuantizedWeight rtn = rtn_quantize(W.data(), rows, cols, bits, cols, sym, nullptr);
    std::vector<float> out(W.size());
    for (int64_t r = 0; r < rows; ++r) {
        std::vector<double> w(W.begin() + r * K, W.begin() + (r + 1) * K);
        std::vector<double> Hi(Inv);
        float delta = fp16_to_f32(rtn.scales[size_t(r)]), zp = fp16_to_f32(rtn.zeros[size_t(r)]);
        for (int64_t q = 0; q < K; ++q) {
            if (group < cols && q % group == 0) {
                std::vector<float> g(w.begin() + q, w.begin() + q + group);
                const QuantizedWeight p =
                    rtn_quantize(g.data(), 1, group, bits, group, sym, nullptr);
                delta = fp16_to_f32(p.scales[0]);
                zp = fp16_to_f32(p.zeros[0]);
            }
            const float qmax = float((1 << bits) - 1);
            const float code =
                std::clamp(std::nearbyint(float(w[size_t(q)]) / delta) + zp, 0.0f, qmax);
            const float wh = (code - zp) * delta;
            out[size_t(r * K + q)] = wh;
            const double e = (w[size_t(q)] - double(wh)) / Hi[size_t(q * K + q)];
            for (int64_t j = q + 1; j < K; ++j) w[size_t(j)] -= e * Hi[size_t(q * K + j)];
            const double hqq = Hi[size_t(q * K + q)];
            for (int64_t i = q + 1; i < K; ++i)
                for (int64_t j = q + 1; j < K; ++j)
                    Hi[size_t(i * K + j)] -= Hi[size_t(i * K + q)] * Hi[size_t(q * K + j)] / hqq;
        }
    }
    return out;
}

}  // namespace

TEST(Hessian, MatchesNaiveDoubleAndThreadInvariant) {
    const int64_t n = 5000, cols = 96, ld = 100;  // 5000 rows: chunks of 2048, 2048, 904
    auto X = randn(n * ld, 11);
    ThreadPool p1(1), p2(2);
    Hessian h0(cols), h1(cols), h2(cols);
    h0.add(X.data(), n, ld, nullptr);
    h1.add(X.data(), n, ld, &p1);
    h2.add(X.data(), n, ld, &p2);
    EXPECT_EQ(h0.sum(), h1.sum());
    EXPECT_EQ(h0.sum(), h2.sum());
    EXPECT_EQ(h0.n_samples(), n);
    EXPECT_EQ(h0.cols(), cols);

    std::vector<double> want(size_t(cols * cols), 0.0);
    for (int64_t r = 0; r < n; ++r)
        for (int64_t i = 0; i < cols; ++i)
            for (int64_t j = 0; j < cols; ++j)
                want[size_t(i * cols + j)] += double(X[size_t(r * ld + i)]) * X[size_t(r * ld + j)];
    double md = 0, mx = 0;
    for (size_t k = 0; k < want.size(); ++k) {
        md = std::max(md, std::fabs(h0.sum()[k] - want[k]));
        mx = std::max(mx, std::fabs(want[k]));
    }
    EXPECT_LT(md / mx, 1e-4) << md << " / " << mx;
    for (int64_t i = 0; i < cols; ++i)
        for (int64_t j = 0; j < cols; ++j)
            ASSERT_EQ(h0.sum()[size_t(i * cols + j)], h0.sum()[size_t(j * cols + i)]);
    const auto m = h0.mean();
    for (size_t k = 0; k < m.size(); ++k) ASSERT_EQ(m[k], h0.sum()[k] / double(n));

    // Two calls accumulate: n_samples adds up, sum = the sum of the parts.
    Hessian ha(cols), hb(cols);
    ha.add(X.data(), 3000, ld, &p2);
    ha.add(X.data() + 3000 * ld, n - 3000, ld, &p2);
    hb.add(X.data() + 3000 * ld, n - 3000, ld, nullptr);
    EXPECT_EQ(ha.n_samples(), n);
    Hessian hc(cols);
    hc.add(X.data(), 3000, ld, nullptr);
    for (size_t k = 0; k < want.size(); ++k) ASSERT_EQ(ha.sum()[k], hc.sum()[k] + hb.sum()[k]);
    EXPECT_THROW(Hessian(0), Error);
    EXPECT_THROW(h0.add(X.data(), 1, cols - 1, nullptr), Error);
}

TEST(Gptq, NeverWorseThanRtnOnCorrelatedInputs) {
    struct Shape {
        int64_t rows, cols;
    };
    for (const Shape s : {Shape{32, 128}, Shape{16, 256}, Shape{64, 64}}) {
        const auto X = correlated_inputs(2048, s.cols, uint64_t(s.cols));
        const auto H = hessian_of(X, s.cols, nullptr);
        const auto W = randn(s.rows * s.cols, uint64_t(s.rows * 7 + 1), 0.05);
        for (int bits : {2, 3, 4})
            for (int64_t group : {s.cols, int64_t(32)})
                for (int order = 0; order < 3; ++order)  // in order, static groups, act_order
                    for (bool sym : {false, true}) {
                        if (order == 1 && group == s.cols) continue;  // per channel: no groups
                        const bool act = order == 2;
                        SCOPED_TRACE(::testing::Message()
                                     << s.rows << "x" << s.cols << " bits " << bits << " group "
                                     << group << " order " << order << " sym " << sym);
                        GptqOptions o;
                        o.act_order = act;
                        o.static_groups = order == 1;
                        const auto g = gptq_quantize(W.data(), s.rows, s.cols, H, bits, group, sym,
                                                     o, nullptr);
                        const auto r =
                            rtn_quantize(W.data(), s.rows, s.cols, bits, group, sym, nullptr);
                        check_exact(g, s.rows, s.cols, bits, group);
                        check_exact(r, s.rows, s.cols, bits, group);
                        const double eg =
                            layer_output_error(W.data(), g.w_hat.data(), s.rows, s.cols, H);
                        const double er =
                            layer_output_error(W.data(), r.w_hat.data(), s.rows, s.cols, H);
                        // Measured exception: 2-bit symmetric with groups whose params come
                        // from the current weights (the default, as gptq.py with group ==
                        // block): the error-updated weights drift past their group's range and
                        // clamp, and GPTQ ends up about even with RTN (ratios 0.71..1.02 on
                        // these shapes; 0.50 with static groups, 0.58 asymmetric). The textbook
                        // check below shows this is the algorithm, not this implementation.
                        const bool drift = bits == 2 && sym && group < s.cols && order == 0;
                        EXPECT_LE(eg, (drift ? 1.05 : 1.0) * er);
                        EXPECT_GT(eg, 0);
                        if (group == s.cols || order > 0) {  // params from the original W, as RTN's
                            EXPECT_EQ(g.scales, r.scales);
                            EXPECT_EQ(g.zeros, r.zeros);
                        }
                        if (std::getenv("ZQAT_GPTQ_VERBOSE"))
                            std::printf("%ldx%ld b%d g%ld order%d sym%d: gptq/rtn = %.3f\n", s.rows,
                                        s.cols, bits, group, order, int(sym), eg / er);
                    }
    }
}

TEST(Gptq, MatchesTextbookUnblockedGptq) {
    const int64_t rows = 24, cols = 96;
    const auto X = correlated_inputs(1024, cols, 5);
    const auto H = hessian_of(X, cols, nullptr);
    const auto W = randn(rows * cols, 6, 0.05);
    for (int bits : {2, 3, 4})
        for (int64_t group : {cols, int64_t(32)})
            for (bool sym : {false, true}) {
                SCOPED_TRACE(::testing::Message()
                             << "bits " << bits << " group " << group << " sym " << sym);
                GptqOptions o;
                o.block = 40;  // not a multiple of the group: blocks are cut at 32 then
                const auto g = gptq_quantize(W.data(), rows, cols, H, bits, group, sym, o, nullptr);
                const auto t = textbook_gptq(W, rows, cols, H, bits, group, sym, o.damp);
                int64_t same = 0;
                for (size_t k = 0; k < t.size(); ++k) same += g.w_hat[k] == t[k];
                // Float vs double arithmetic can flip a rare near-tie, and a flip then propagates.
                EXPECT_GE(double(same) / double(t.size()), 0.99);
                const double eg = layer_output_error(W.data(), g.w_hat.data(), rows, cols, H);
                const double et = layer_output_error(W.data(), t.data(), rows, cols, H);
                EXPECT_NEAR(eg / et, 1.0, 0.01);
            }
}

TEST(Gptq, BitIdenticalForAnyThreadCountAndBlock) {
    const int64_t rows = 150, cols = 192;  // three row tasks of 64
    const auto X = correlated_inputs(1500, cols, 3);
    const auto H = hessian_of(X, cols, nullptr);
    const auto W = randn(rows * cols, 4, 0.05);
    ThreadPool p1(1), p2(2), p3(3);
    for (int64_t group : {cols, int64_t(32), int64_t(64)})
        for (bool act : {false, true}) {
            GptqOptions o;
            o.act_order = act;
            const auto a = gptq_quantize(W.data(), rows, cols, H, 3, group, false, o, nullptr);
            check_exact(a, rows, cols, 3, group);
            expect_identical(a, gptq_quantize(W.data(), rows, cols, H, 3, group, false, o, &p1));
            expect_identical(a, gptq_quantize(W.data(), rows, cols, H, 3, group, false, o, &p2));
            expect_identical(a, gptq_quantize(W.data(), rows, cols, H, 3, group, false, o, &p3));
        }
}

TEST(Gptq, DiagonalHessianEqualsRtn) {
    // With a diagonal H, U = chol(H^-1) is diagonal: no error spreads, so GPTQ is RTN (damping
    // only scales the diagonal), for every grouping, with and without act_order.
    const int64_t rows = 20, cols = 128;
    const auto W = randn(rows * cols, 9, 0.05);
    std::vector<double> I(size_t(cols * cols), 0.0), D(I);
    Normal n(10);
    for (int64_t i = 0; i < cols; ++i) {
        I[size_t(i * cols + i)] = 1;
        D[size_t(i * cols + i)] = 0.1 + std::fabs(n());
    }
    for (const auto* H : {&I, &D})
        for (int bits : {2, 4})
            for (int64_t group : {cols, int64_t(32)})
                for (bool act : {false, true})
                    for (double damp : {0.0, 0.01}) {
                        GptqOptions o;
                        o.act_order = act;
                        o.damp = damp;
                        const auto g =
                            gptq_quantize(W.data(), rows, cols, *H, bits, group, false, o, nullptr);
                        const auto r =
                            rtn_quantize(W.data(), rows, cols, bits, group, false, nullptr);
                        expect_identical(g, r);
                    }
}

TEST(Gptq, DeadInputs) {
    // Inputs 3 and 40 are always zero: their weights are dropped (w_hat = 0) and cost nothing.
    const int64_t rows = 16, cols = 64;
    auto X = correlated_inputs(512, cols, 12);
    for (int64_t r = 0; r < 512; ++r) X[size_t(r * cols + 3)] = X[size_t(r * cols + 40)] = 0;
    const auto H = hessian_of(X, cols, nullptr);
    ASSERT_EQ(H[3 * cols + 3], 0.0);
    const auto W = randn(rows * cols, 13, 0.05);
    for (bool act : {false, true}) {
        GptqOptions o;
        o.act_order = act;
        const auto g = gptq_quantize(W.data(), rows, cols, H, 3, 32, false, o, nullptr);
        check_exact(g, rows, cols, 3, 32);
        for (int64_t r = 0; r < rows; ++r) {
            EXPECT_EQ(g.w_hat[size_t(r * cols + 3)], 0.0f);
            EXPECT_EQ(g.w_hat[size_t(r * cols + 40)], 0.0f);
        }
        const auto rt = rtn_quantize(W.data(), rows, cols, 3, 32, false, nullptr);
        EXPECT_LE(layer_output_error(W.data(), g.w_hat.data(), rows, cols, H),
                  layer_output_error(W.data(), rt.w_hat.data(), rows, cols, H));
    }
}

TEST(Gptq, Errors) {
    const int64_t rows = 4, cols = 64;
    const auto W = randn(rows * cols, 1);
    std::vector<double> I(size_t(cols * cols), 0.0);
    for (int64_t i = 0; i < cols; ++i) I[size_t(i * cols + i)] = 1;
    GptqOptions o;
    EXPECT_THROW(gptq_quantize(W.data(), rows, cols, I, 4, 48, false, o, nullptr), Error);
    EXPECT_THROW(gptq_quantize(W.data(), rows, cols, I, 1, 32, false, o, nullptr), Error);
    EXPECT_THROW(gptq_quantize(W.data(), rows, cols, {1.0}, 4, 32, false, o, nullptr), Error);
    EXPECT_THROW(rtn_quantize(W.data(), rows, cols, 9, 32, false, nullptr), Error);
    std::vector<double> neg(I);
    for (auto& v : neg) v = -v;
    o.damp = 0;
    try {
        gptq_quantize(W.data(), rows, cols, neg, 4, 32, false, o, nullptr);
        ADD_FAILURE() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("not positive definite"), std::string::npos)
            << e.what();
    }
    EXPECT_THROW(layer_output_error(W.data(), W.data(), rows, cols, {1.0}), Error);
}
