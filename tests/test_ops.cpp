// Every fast op against its scalar reference, at every ISA level the CPU has, on tiny, odd and
// strided shapes; plus bit-identity of results across thread counts. Error budgets per op:
//   gemm_nt          |c - ref| <= 1e-5 * sqrt(K) * sum_k |a_ik w_jk|   (+ |bias|)
//   attention        |o - ref| <= 2e-6 * max|v|  (outputs are convex mixes of v)
//   cross_entropy    |nll - ref| <= 2e-6 * (1 + |ref|)
//   rmsnorm/layernorm, silu_mul: |y - ref| <= 2e-6 * |ref| + 1e-6 * rms(ref)
//   rope, relu, add: bit-identical to the reference
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "isa_util.h"
#include "zqat/core/ops.h"
#include "zqat/core/thread_pool.h"

namespace zqat {
namespace {

size_t sz(int64_t n) {
    return static_cast<size_t>(n);
}

std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

// The ISA levels this CPU can run; each test loops over them and restores "auto" at the end.
using test::isa_levels;
using test::IsaGuard;

TEST(Ops, SetIsa) {
    IsaGuard guard;
    const std::string best(ops::set_isa("auto"));
    EXPECT_EQ(ops::isa(), best);
    EXPECT_EQ(ops::set_isa("generic"), "generic");
    EXPECT_EQ(ops::isa(), "generic");
    EXPECT_EQ(ops::set_isa("no-such-isa"), best);
    EXPECT_FALSE(isa_levels().empty());
}

struct GemmCase {
    int64_t M, N, K;
    int64_t pad_a, pad_w, pad_c;  // extra stride beyond the row length
    bool bias;
};

void check_gemm(const GemmCase& g, ThreadPool* pool, const std::string& isa) {
    const int64_t lda = g.K + g.pad_a, ldw = g.K + g.pad_w, ldc = g.N + g.pad_c;
    const auto a = random_vec(sz(g.M * lda), 1);
    const auto w = random_vec(sz(g.N * ldw), 2);
    const auto b = random_vec(sz(g.N), 3);
    const float* bias = g.bias ? b.data() : nullptr;
    std::vector<float> c(sz(g.M * ldc), 7.0f), want(c), absdot(c);
    ops::gemm_nt(g.M, g.N, g.K, a.data(), lda, w.data(), ldw, bias, c.data(), ldc, pool);
    ops::ref::gemm_nt(g.M, g.N, g.K, a.data(), lda, w.data(), ldw, bias, want.data(), ldc);
    std::vector<float> aa(a), wa(w);
    for (auto& x : aa) x = std::fabs(x);
    for (auto& x : wa) x = std::fabs(x);
    ops::ref::gemm_nt(g.M, g.N, g.K, aa.data(), lda, wa.data(), ldw, nullptr, absdot.data(), ldc);
    const float budget = 1e-5f * std::sqrt(float(std::max<int64_t>(g.K, 1)));
    for (int64_t i = 0; i < g.M; ++i) {
        for (int64_t j = 0; j < g.N; ++j) {
            const size_t at = sz(i * ldc + j);
            const float tol = budget * (absdot[at] + (bias ? std::fabs(bias[j]) : 0.0f)) + 1e-30f;
            ASSERT_LE(std::fabs(c[at] - want[at]), tol)
                << isa << " M=" << g.M << " N=" << g.N << " K=" << g.K << " at (" << i << "," << j
                << ")";
        }
        for (int64_t j = g.N; j < ldc; ++j) {  // padding past N untouched
            ASSERT_EQ(c[sz(i * ldc + j)], 7.0f) << isa << " wrote past N at row " << i;
        }
    }
}

const std::vector<GemmCase> kGemmCases = {
    {1, 1, 1, 0, 0, 0, false},     {1, 7, 33, 0, 0, 0, true},      {7, 1, 5, 3, 1, 2, true},
    {7, 33, 17, 0, 0, 0, false},   {33, 7, 129, 5, 3, 1, true},    {13, 100, 577, 1, 7, 3, true},
    {3, 5, 4097, 0, 0, 0, false},  {50, 300, 70, 2, 2, 2, true},   {37, 1100, 40, 0, 3, 5, true},
    {40, 70, 1000, 3, 0, 0, true}, {25, 1100, 700, 1, 1, 1, true}, {4, 32, 16, 0, 0, 0, false},
    {12, 64, 48, 0, 0, 0, true},   {5, 3, 0, 0, 0, 0, true},
};

TEST(Ops, GemmMatchesReference) {
    IsaGuard guard;
    ThreadPool pool(2);
    for (const auto& isa : isa_levels()) {
        ops::set_isa(isa);
        for (const auto& g : kGemmCases) {
            check_gemm(g, nullptr, isa);
            check_gemm(g, &pool, isa);
        }
    }
}

TEST(Ops, GemmBitIdenticalAcrossThreads) {
    IsaGuard guard;
    ThreadPool pool2(2), pool3(3);
    const int64_t M = 70, N = 1100, K = 700;
    const auto a = random_vec(sz(M * K), 4), w = random_vec(sz(N * K), 5);
    const auto b = random_vec(sz(N), 6);
    for (const auto& isa : isa_levels()) {
        ops::set_isa(isa);
        std::vector<float> c1(sz(M * N)), c2(c1), c3(c1);
        ops::gemm_nt(M, N, K, a.data(), K, w.data(), K, b.data(), c1.data(), N, nullptr);
        ops::gemm_nt(M, N, K, a.data(), K, w.data(), K, b.data(), c2.data(), N, &pool2);
        ops::gemm_nt(M, N, K, a.data(), K, w.data(), K, b.data(), c3.data(), N, &pool3);
        EXPECT_EQ(0, std::memcmp(c1.data(), c2.data(), c1.size() * 4)) << isa;
        EXPECT_EQ(0, std::memcmp(c1.data(), c3.data(), c1.size() * 4)) << isa;
    }
}

struct AttnCase {
    int64_t T, S, H, Hkv, D, pad;  // pad: extra token stride on q, k, v and out
};

const std::vector<AttnCase> kAttnCases = {
    {1, 1, 1, 1, 1, 0},    {1, 7, 3, 1, 8, 0},    {7, 7, 2, 2, 5, 3},      {5, 40, 4, 2, 16, 1},
    {33, 40, 9, 3, 64, 0}, {70, 70, 4, 2, 80, 5}, {100, 100, 3, 3, 33, 2},
};

void run_attention(const AttnCase& c, ThreadPool* pool, bool reference, std::vector<float>* out) {
    const int64_t qs = c.H * c.D + c.pad, ks = c.Hkv * c.D + c.pad + 1,
                  vs = c.Hkv * c.D + c.pad + 2, os = c.H * c.D + c.pad;
    const auto q = random_vec(sz(c.T * qs), 10, -2.0f, 2.0f);
    const auto k = random_vec(sz(c.S * ks), 11, -2.0f, 2.0f);
    const auto v = random_vec(sz(c.S * vs), 12);
    out->assign(sz(c.T * os), 5.0f);
    const float scale = 1.0f / std::sqrt(float(c.D));
    if (reference) {
        ops::ref::attention_causal(c.T, c.S, c.H, c.Hkv, c.D, q.data(), qs, k.data(), ks, v.data(),
                                   vs, out->data(), os, scale);
    } else {
        ops::attention_causal(c.T, c.S, c.H, c.Hkv, c.D, q.data(), qs, k.data(), ks, v.data(), vs,
                              out->data(), os, scale, pool);
    }
}

TEST(Ops, AttentionMatchesReference) {
    IsaGuard guard;
    ThreadPool pool(2);
    for (const auto& isa : isa_levels()) {
        ops::set_isa(isa);
        for (const auto& c : kAttnCases) {
            std::vector<float> want, got1, got2;
            run_attention(c, nullptr, true, &want);
            run_attention(c, nullptr, false, &got1);
            run_attention(c, &pool, false, &got2);
            for (size_t i = 0; i < want.size(); ++i) {
                ASSERT_LE(std::fabs(got1[i] - want[i]), 2e-6f)
                    << isa << " T=" << c.T << " S=" << c.S << " D=" << c.D << " at " << i;
            }
            EXPECT_EQ(0, std::memcmp(got1.data(), got2.data(), got1.size() * 4)) << isa;
        }
    }
}

TEST(Ops, CrossEntropyMatchesReference) {
    IsaGuard guard;
    ThreadPool pool(2);
    for (const auto& isa : isa_levels()) {
        ops::set_isa(isa);
        for (const int64_t V : {1, 7, 33, 4097, 49152}) {
            const int64_t M = V > 4097 ? 2 : 5;
            const auto logits = random_vec(sz(M * V), uint32_t(V), -12.0f, 12.0f);
            std::vector<int32_t> target(sz(M));
            for (int64_t i = 0; i < M; ++i) target[sz(i)] = int32_t((i * 7919) % V);
            std::vector<float> want(sz(M)), got1(want), got2(want);
            ops::ref::cross_entropy(M, V, logits.data(), target.data(), want.data());
            ops::cross_entropy(M, V, logits.data(), target.data(), got1.data(), nullptr);
            ops::cross_entropy(M, V, logits.data(), target.data(), got2.data(), &pool);
            for (int64_t i = 0; i < M; ++i) {
                EXPECT_LE(std::fabs(got1[i] - want[i]), 2e-6f * (1.0f + std::fabs(want[i])))
                    << isa << " V=" << V << " row " << i;
            }
            EXPECT_EQ(0, std::memcmp(got1.data(), got2.data(), got1.size() * 4)) << isa;
        }
    }
}

void expect_rel_close(const std::vector<float>& got, const std::vector<float>& want,
                      const std::string& what) {
    double ss = 0.0;
    for (float x : want) ss += double(x) * x;
    const float rms = float(std::sqrt(ss / double(std::max<size_t>(want.size(), 1))));
    for (size_t i = 0; i < want.size(); ++i) {
        ASSERT_LE(std::fabs(got[i] - want[i]), 2e-6f * std::fabs(want[i]) + 1e-6f * rms)
            << what << " at " << i << ": " << got[i] << " vs " << want[i];
    }
}

TEST(Ops, NormsMatchReference) {
    for (const int64_t D : {1, 7, 33, 576, 4097}) {
        const int64_t M = 3;
        const auto x = random_vec(sz(M * D), 20, -3.0f, 3.0f);
        const auto w = random_vec(sz(D), 21), b = random_vec(sz(D), 22);
        std::vector<float> want(x.size()), got(x.size()), inplace(x);
        ops::ref::rmsnorm(M, D, x.data(), w.data(), 1e-5f, want.data());
        ops::rmsnorm(M, D, x.data(), w.data(), 1e-5f, got.data());
        expect_rel_close(got, want, "rmsnorm D=" + std::to_string(D));
        ops::rmsnorm(M, D, inplace.data(), w.data(), 1e-5f, inplace.data());
        EXPECT_EQ(0, std::memcmp(got.data(), inplace.data(), got.size() * 4)) << "alias";
        for (const float* bias : {static_cast<const float*>(nullptr), b.data()}) {
            ops::ref::layernorm(M, D, x.data(), w.data(), bias, 1e-5f, want.data());
            ops::layernorm(M, D, x.data(), w.data(), bias, 1e-5f, got.data());
            expect_rel_close(got, want, "layernorm D=" + std::to_string(D));
        }
    }
}

TEST(Ops, RopeIsBitIdenticalToReference) {
    const int64_t n_tok = 9, n_head = 3, head_dim = 64, stride = n_head * head_dim + 5;
    std::vector<int32_t> pos(sz(n_tok));
    for (int64_t t = 0; t < n_tok; ++t) pos[sz(t)] = int32_t(t * 97 + 3);
    for (const int64_t rot_dim : {64, 32}) {
        auto want = random_vec(sz(n_tok * stride), 30), got = want;
        ops::ref::rope_neox(n_tok, n_head, head_dim, rot_dim, pos.data(), 10000.0f, want.data(),
                            stride);
        ops::rope_neox(n_tok, n_head, head_dim, rot_dim, pos.data(), 10000.0f, got.data(), stride);
        EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * 4)) << rot_dim;
    }
}

TEST(Ops, ElementwiseMatchReference) {
    IsaGuard guard;
    for (const auto& isa : isa_levels()) {
        ops::set_isa(isa);
        for (const int64_t n : {1, 7, 33, 4097}) {
            const auto g = random_vec(sz(n), 40, -20.0f, 20.0f), u = random_vec(sz(n), 41);
            std::vector<float> want(sz(n)), got(sz(n)), alias(g);
            ops::ref::silu_mul(n, g.data(), u.data(), want.data());
            ops::silu_mul(n, g.data(), u.data(), got.data());
            expect_rel_close(got, want, isa + " silu_mul n=" + std::to_string(n));
            ops::silu_mul(n, alias.data(), u.data(), alias.data());
            EXPECT_EQ(0, std::memcmp(got.data(), alias.data(), got.size() * 4));

            ops::ref::add(n, g.data(), u.data(), want.data());
            ops::add(n, g.data(), u.data(), got.data());
            EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * 4));
            want = g;
            got = g;
            ops::ref::relu(n, want.data());
            ops::relu(n, got.data());
            EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * 4));
        }
    }
}

}  // namespace
}  // namespace zqat
