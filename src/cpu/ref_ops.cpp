// Scalar reference ops: the oracle every fast kernel is tested against. Plain loops, accumulation
// in double where it is cheap, so the reference is at least as accurate as any fast path.
#include <algorithm>
#include <cmath>
#include <vector>

#include "zqat/core/ops.h"

namespace zqat::ops::ref {

void gemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* W,
             int64_t ldw, const float* bias, float* C, int64_t ldc) {
    for (int64_t i = 0; i < M; ++i) {
        for (int64_t j = 0; j < N; ++j) {
            double acc = 0.0;
            for (int64_t k = 0; k < K; ++k) acc += double(A[i * lda + k]) * double(W[j * ldw + k]);
            if (bias) acc += double(bias[j]);
            C[i * ldc + j] = float(acc);
        }
    }
}

void rmsnorm(int64_t M, int64_t D, const float* x, const float* w, float eps, float* y) {
    for (int64_t i = 0; i < M; ++i) {
        const float* xr = x + i * D;
        float* yr = y + i * D;
        double ss = 0.0;
        for (int64_t j = 0; j < D; ++j) ss += double(xr[j]) * double(xr[j]);
        const double inv = 1.0 / std::sqrt(ss / double(D) + double(eps));
        for (int64_t j = 0; j < D; ++j) yr[j] = float(double(xr[j]) * inv * double(w[j]));
    }
}

void layernorm(int64_t M, int64_t D, const float* x, const float* w, const float* b, float eps,
               float* y) {
    for (int64_t i = 0; i < M; ++i) {
        const float* xr = x + i * D;
        float* yr = y + i * D;
        double mean = 0.0;
        for (int64_t j = 0; j < D; ++j) mean += xr[j];
        mean /= double(D);
        double var = 0.0;
        for (int64_t j = 0; j < D; ++j) var += (xr[j] - mean) * (xr[j] - mean);
        var /= double(D);
        const double inv = 1.0 / std::sqrt(var + double(eps));
        for (int64_t j = 0; j < D; ++j) {
            yr[j] = float((double(xr[j]) - mean) * inv * double(w[j]) + (b ? double(b[j]) : 0.0));
        }
    }
}

// Angles follow HF transformers in float32: inv_freq = 1 / theta^(2i/rot_dim) and
// angle = float(pos) * inv_freq, both rounded to float; cos/sin of that float angle.
void rope_neox(int64_t n_tok, int64_t n_head, int64_t head_dim, int64_t rot_dim, const int32_t* pos,
               float theta, float* x, int64_t x_stride) {
    const int64_t half = rot_dim / 2;
    for (int64_t t = 0; t < n_tok; ++t) {
        for (int64_t i = 0; i < half; ++i) {
            const float inv_freq = 1.0f / std::pow(theta, float(2 * i) / float(rot_dim));
            const float angle = float(pos[t]) * inv_freq;
            const float c = float(std::cos(double(angle)));
            const float s = float(std::sin(double(angle)));
            for (int64_t h = 0; h < n_head; ++h) {
                float* xh = x + t * x_stride + h * head_dim;
                const float x0 = xh[i], x1 = xh[i + half];
                xh[i] = x0 * c - x1 * s;
                xh[i + half] = x1 * c + x0 * s;
            }
        }
    }
}

void attention_causal(int64_t T, int64_t S, int64_t H, int64_t Hkv, int64_t D, const float* q,
                      int64_t q_stride, const float* k, int64_t k_stride, const float* v,
                      int64_t v_stride, float* out, int64_t out_stride, float scale) {
    const int64_t group = H / Hkv;
    std::vector<double> p(static_cast<size_t>(S)), o(static_cast<size_t>(D));
    for (int64_t h = 0; h < H; ++h) {
        const int64_t kvh = h / group;
        for (int64_t t = 0; t < T; ++t) {
            const int64_t n_keys = S - T + t + 1;
            const float* qv = q + t * q_stride + h * D;
            double mx = -INFINITY;
            for (int64_t j = 0; j < n_keys; ++j) {
                const float* kv = k + j * k_stride + kvh * D;
                double dot = 0.0;
                for (int64_t d = 0; d < D; ++d) dot += double(qv[d]) * double(kv[d]);
                p[j] = dot * double(scale);
                mx = std::max(mx, p[j]);
            }
            double sum = 0.0;
            for (int64_t j = 0; j < n_keys; ++j) {
                p[j] = std::exp(p[j] - mx);
                sum += p[j];
            }
            std::fill(o.begin(), o.end(), 0.0);
            for (int64_t j = 0; j < n_keys; ++j) {
                const float* vv = v + j * v_stride + kvh * D;
                for (int64_t d = 0; d < D; ++d) o[d] += p[j] * double(vv[d]);
            }
            float* ov = out + t * out_stride + h * D;
            for (int64_t d = 0; d < D; ++d) ov[d] = float(o[d] / sum);
        }
    }
}

void silu_mul(int64_t n, const float* gate, const float* up, float* y) {
    for (int64_t i = 0; i < n; ++i) {
        const double g = gate[i];
        y[i] = float(g / (1.0 + std::exp(-g)) * double(up[i]));
    }
}

void relu(int64_t n, float* x) {
    for (int64_t i = 0; i < n; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void add(int64_t n, const float* a, const float* b, float* y) {
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void cross_entropy(int64_t M, int64_t V, const float* logits, const int32_t* target, float* nll) {
    for (int64_t i = 0; i < M; ++i) {
        const float* row = logits + i * V;
        double mx = -INFINITY;
        for (int64_t j = 0; j < V; ++j) mx = std::max(mx, double(row[j]));
        double sum = 0.0;
        for (int64_t j = 0; j < V; ++j) sum += std::exp(double(row[j]) - mx);
        nll[i] = float(mx + std::log(sum) - double(row[target[i]]));
    }
}

}  // namespace zqat::ops::ref
