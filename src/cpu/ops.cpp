// zqat::ops fast entry points: ISA dispatch, blocking and threading around the per-ISA inner loops
// of kernels.h. Determinism: a GEMM output element always sums k = 0..K-1 in order in one tile
// accumulator (K blocks resume from the stored partial, which is exact), so its value does not
// depend on how M and N are blocked or on the thread count; an attention row and a cross-entropy
// row are each computed whole inside one task. Any pool size gives bit-identical results.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/kernels.h"
#include "zqat/core/ops.h"
#include "zqat/core/packed.h"
#include "zqat/core/thread_pool.h"

namespace zqat::ops {
namespace {

using cpu::Kernels;

const Kernels* best_kernels() {
    const auto& f = cpu::cpu_features();
    if (f.avx512) return &cpu::kernels_avx512();
    if (f.avx2) return &cpu::kernels_avx2();
    return &cpu::kernels_generic();
}

std::atomic<const Kernels*> g_kernels{nullptr};

const Kernels& kernels() {
    const Kernels* k = g_kernels.load(std::memory_order_acquire);
    if (!k) {
        k = best_kernels();
        g_kernels.store(k, std::memory_order_release);
    }
    return *k;
}

int64_t ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}
int64_t round_up(int64_t a, int64_t b) {
    return ceil_div(a, b) * b;
}

// Per-thread scratch, 64-byte aligned, grown on demand and kept for the thread's lifetime (a
// forward calls the same shapes again and again; re-allocating would page-fault every call).
// Slots let one thread hold several buffers at once (3: gemm_nt_packed's dequantized rows, used
// while slots 0 or 1 hold the packed panels).
float* scratch(int slot, int64_t n_floats) {
    struct Buf {
        std::unique_ptr<float, decltype(&std::free)> p{nullptr, &std::free};
        int64_t n = 0;
    };
    static thread_local Buf bufs[4];
    Buf& b = bufs[slot];
    if (b.n < n_floats) {
        const int64_t n = round_up(n_floats, 16);
        b.p.reset(static_cast<float*>(std::aligned_alloc(64, size_t(n) * sizeof(float))));
        if (!b.p) throw std::bad_alloc();
        b.n = n;
    }
    return b.p.get();
}

void run(ThreadPool* pool, int64_t n_tasks, const std::function<void(int64_t, int)>& fn) {
    if (pool && pool->size() > 1 && n_tasks > 1) {
        pool->parallel_for(n_tasks, fn);
    } else {
        for (int64_t t = 0; t < n_tasks; ++t) fn(t, 0);
    }
}

// GEMM blocking. K is cut into blocks of at most kKcMax so an A micro-panel (mr x kc) stays in
// L1 and a packed W block (nb x kc) in L2; N into blocks of about kNbTarget columns.
constexpr int64_t kKcMax = 640;
constexpr int64_t kNbTarget = 256;
constexpr int64_t kPrepackMaxFloats = int64_t(1) << 20;  // W up to 4 MiB is packed once, up front

}  // namespace

std::string_view isa() {
    return kernels().name;
}

std::string_view set_isa(std::string_view level) {
    const auto& f = cpu::cpu_features();
    const Kernels* k = best_kernels();
    if (level == "generic") {
        k = &cpu::kernels_generic();
    } else if (level == "avx2" && f.avx2) {
        k = &cpu::kernels_avx2();
    } else if (level == "avx512" && f.avx512) {
        k = &cpu::kernels_avx512();
    }
    g_kernels.store(k, std::memory_order_release);
    return k->name;
}

namespace {

// The blocked GEMM behind gemm_nt and gemm_nt_packed. load_panel(cols, j, k0, kc, dst) writes
// rows [j, j + cols) of W, inputs [k0, k0 + kc), as a packed panel dst [kc][nr] (zero columns
// past cols), exactly what kr.pack_panel makes of fp32 rows; the two entry points differ only in
// where those rows come from, so their results agree bit for bit.
template <class LoadPanel>
void gemm_blocked(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* bias,
                  float* C, int64_t ldc, ThreadPool* pool, const Kernels& kr,
                  const LoadPanel& load_panel) {
    const int64_t mr = kr.mr, nr = kr.nr;
    const int threads = pool ? pool->size() : 1;
    const int64_t n_kb = ceil_div(K, kKcMax), kc_blk = ceil_div(K, n_kb);
    int64_t n_nb = ceil_div(N, kNbTarget);
    const int64_t nb = round_up(ceil_div(N, n_nb), nr);
    n_nb = ceil_div(N, nb);
    const int64_t n_panels = ceil_div(N, nr);

    // One row tile (rows x all panels of [j_begin, j_end)) over one K block; panel(p) gives the
    // packed [kc][nr] slice of panel p for this block.
    auto compute = [&](int64_t i0, int64_t i1, int64_t j_begin, int64_t j_end, int64_t k0,
                       int64_t kc, bool first, bool last, const auto& panel) {
        for (int64_t i = i0; i < i1; i += mr) {
            const int rows = int(std::min(mr, i1 - i));
            for (int64_t j = j_begin; j < j_end; j += nr) {
                const int cols = int(std::min(nr, N - j));
                kr.gemm_tile(rows, cols, kc, A + i * lda + k0, lda, panel(j / nr), nr,
                             C + i * ldc + j, ldc, !first, last && bias ? bias + j : nullptr);
            }
        }
    };

    if (n_panels * nr * K <= kPrepackMaxFloats && n_nb < 8 * threads) {
        // Small W (attention projections): pack all of it once, as panels [K][nr], then cut M too
        // so every thread gets work. A task is (M block, N block) over all of K.
        float* wp = scratch(0, n_panels * nr * K);
        run(pool, n_panels, [&](int64_t p, int) {
            load_panel(int(std::min(nr, N - p * nr)), p * nr, 0, K, wp + p * nr * K);
        });
        const int64_t n_mb = std::clamp(ceil_div(8 * threads, n_nb), int64_t(1), ceil_div(M, mr));
        const int64_t mb = round_up(ceil_div(M, n_mb), mr);
        const int64_t n_mb2 = ceil_div(M, mb);
        run(pool, n_mb2 * n_nb, [&](int64_t task, int) {
            const int64_t ib = task % n_mb2, jb = task / n_mb2;
            const int64_t i0 = ib * mb, i1 = std::min(M, i0 + mb);
            const int64_t j0 = jb * nb, j1 = std::min(N, j0 + nb);
            for (int64_t kb = 0; kb < n_kb; ++kb) {
                const int64_t k0 = kb * kc_blk, kc = std::min(kc_blk, K - k0);
                compute(i0, i1, j0, j1, k0, kc, kb == 0, kb == n_kb - 1,
                        [&](int64_t p) { return wp + p * nr * K + k0 * nr; });
            }
        });
        return;
    }
    // Large W (MLP, LM head): a task is one N block over all of M; it packs its W block one K
    // block at a time into its own scratch, so W is read from memory once.
    run(pool, n_nb, [&](int64_t jb, int) {
        const int64_t j0 = jb * nb, j1 = std::min(N, j0 + nb);
        const int64_t p0 = j0 / nr, np = ceil_div(j1 - j0, nr);
        float* wp = scratch(1, np * nr * kc_blk);
        for (int64_t kb = 0; kb < n_kb; ++kb) {
            const int64_t k0 = kb * kc_blk, kc = std::min(kc_blk, K - k0);
            for (int64_t p = 0; p < np; ++p) {
                const int64_t j = j0 + p * nr;
                load_panel(int(std::min(nr, N - j)), j, k0, kc, wp + p * nr * kc);
            }
            compute(0, M, j0, j1, k0, kc, kb == 0, kb == n_kb - 1,
                    [&](int64_t p) { return wp + (p - p0) * nr * kc; });
        }
    });
}

}  // namespace

void gemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* W,
             int64_t ldw, const float* bias, float* C, int64_t ldc, ThreadPool* pool) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int64_t i = 0; i < M; ++i) {
            for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = bias ? bias[j] : 0.0f;
        }
        return;
    }
    const Kernels& kr = kernels();
    gemm_blocked(M, N, K, A, lda, bias, C, ldc, pool, kr,
                 [&](int cols, int64_t j, int64_t k0, int64_t kc, float* dst) {
                     kr.pack_panel(cols, kc, W + j * ldw + k0, ldw, dst);
                 });
}

// Each panel's rows are dequantized into per-thread scratch ([cols][kc], slot 3) and packed from
// there: dequantization costs N * K per call, amortised over the M rows of A.
void gemm_nt_packed(int64_t M, const float* A, int64_t lda, const PackedWeight& W,
                    const float* bias, float* C, int64_t ldc, ThreadPool* pool) {
    const int64_t N = W.rows, K = W.cols;
    if (M <= 0 || N <= 0 || K <= 0) return;
    const Kernels& kr = kernels();
    gemm_blocked(M, N, K, A, lda, bias, C, ldc, pool, kr,
                 [&](int cols, int64_t j, int64_t k0, int64_t kc, float* dst) {
                     float* rows = scratch(3, cols * kc);
                     for (int r = 0; r < cols; ++r) kr.dequant_row(W, j + r, k0, kc, rows + r * kc);
                     kr.pack_panel(cols, kc, rows, kc, dst);
                 });
}

void rmsnorm(int64_t M, int64_t D, const float* x, const float* w, float eps, float* y) {
    for (int64_t i = 0; i < M; ++i) {
        const float* xr = x + i * D;
        float* yr = y + i * D;
        float part[16] = {};  // 16 partial sums in a fixed pattern: vectorises, stays deterministic
        int64_t j = 0;
        for (; j + 16 <= D; j += 16) {
            for (int l = 0; l < 16; ++l) part[l] += xr[j + l] * xr[j + l];
        }
        double ss = 0.0;
        for (int l = 0; l < 16; ++l) ss += part[l];
        for (; j < D; ++j) ss += double(xr[j]) * double(xr[j]);
        const float inv = float(1.0 / std::sqrt(ss / double(D) + double(eps)));
        for (j = 0; j < D; ++j) yr[j] = xr[j] * inv * w[j];
    }
}

void layernorm(int64_t M, int64_t D, const float* x, const float* w, const float* b, float eps,
               float* y) {
    for (int64_t i = 0; i < M; ++i) {
        const float* xr = x + i * D;
        float* yr = y + i * D;
        float part[16] = {};
        int64_t j = 0;
        for (; j + 16 <= D; j += 16) {
            for (int l = 0; l < 16; ++l) part[l] += xr[j + l];
        }
        double s = 0.0;
        for (int l = 0; l < 16; ++l) s += part[l];
        for (; j < D; ++j) s += xr[j];
        const float mean = float(s / double(D));
        float vpart[16] = {};
        for (j = 0; j + 16 <= D; j += 16) {
            for (int l = 0; l < 16; ++l) {
                const float d = xr[j + l] - mean;
                vpart[l] += d * d;
            }
        }
        double v = 0.0;
        for (int l = 0; l < 16; ++l) v += vpart[l];
        for (; j < D; ++j) v += double(xr[j] - mean) * double(xr[j] - mean);
        const float inv = float(1.0 / std::sqrt(v / double(D) + double(eps)));
        for (j = 0; j < D; ++j) yr[j] = (xr[j] - mean) * inv * w[j] + (b ? b[j] : 0.0f);
    }
}

// Same float arithmetic as ref::rope_neox (bit-identical), with the angles computed once per token
// instead of once per (token, head).
void rope_neox(int64_t n_tok, int64_t n_head, int64_t head_dim, int64_t rot_dim, const int32_t* pos,
               float theta, float* x, int64_t x_stride) {
    const int64_t half = rot_dim / 2;
    const auto nh = static_cast<size_t>(half);
    std::vector<float> inv_freq(nh), cs(nh), sn(nh);
    for (int64_t i = 0; i < half; ++i) {
        inv_freq[i] = 1.0f / std::pow(theta, float(2 * i) / float(rot_dim));
    }
    for (int64_t t = 0; t < n_tok; ++t) {
        for (int64_t i = 0; i < half; ++i) {
            const float angle = float(pos[t]) * inv_freq[i];
            cs[i] = float(std::cos(double(angle)));
            sn[i] = float(std::sin(double(angle)));
        }
        for (int64_t h = 0; h < n_head; ++h) {
            float* xh = x + t * x_stride + h * head_dim;
            for (int64_t i = 0; i < half; ++i) {
                const float x0 = xh[i], x1 = xh[i + half];
                xh[i] = x0 * cs[i] - x1 * sn[i];
                xh[i + half] = x1 * cs[i] + x0 * sn[i];
            }
        }
    }
}

// Per task: one head, a block of up to tq queries. Scores S = Q K^T against K packed per KV head
// as [D][nr] key panels (once per call), exact softmax per row (max, exp, sum), O = P V with V
// read in place, then O /= sum.
void attention_causal(int64_t T, int64_t S, int64_t H, int64_t Hkv, int64_t D, const float* q,
                      int64_t q_stride, const float* k, int64_t k_stride, const float* v,
                      int64_t v_stride, float* out, int64_t out_stride, float scale,
                      ThreadPool* pool) {
    if (T <= 0 || H <= 0) return;
    const Kernels& kr = kernels();
    const int64_t mr = kr.mr, nr = kr.nr;
    const int64_t group = H / Hkv;
    const int64_t n_kp = ceil_div(S, nr);  // key panels
    const int64_t panel_floats = D * nr;
    float* kp = scratch(2, Hkv * n_kp * panel_floats);
    run(pool, Hkv * n_kp, [&](int64_t task, int) {
        const int64_t g = task / n_kp, p = task % n_kp;
        kr.pack_panel(int(std::min(nr, S - p * nr)), D, k + p * nr * k_stride + g * D, k_stride,
                      kp + (g * n_kp + p) * panel_floats);
    });
    const int64_t tq = mr * std::max<int64_t>(1, 32 / mr);
    const int64_t n_qb = ceil_div(T, tq);
    run(pool, H * n_qb, [&](int64_t task, int) {
        const int64_t h = task / n_qb, t0 = (task % n_qb) * tq, t1 = std::min(T, t0 + tq);
        const int64_t g = h / group;
        const int64_t ld = round_up(S - T + t1, nr);  // keys of the last query, panel-padded
        float* sc = scratch(0, tq * ld);
        float* inv_sum = scratch(1, tq);
        const float* kg = kp + g * n_kp * panel_floats;
        for (int64_t i = t0; i < t1; i += mr) {
            const int rows = int(std::min(mr, t1 - i));
            const int64_t n_keys = S - T + i + rows;  // keys of the group's last query
            for (int64_t p = 0; p * nr < n_keys; ++p) {
                kr.gemm_tile(rows, int(nr), D, q + i * q_stride + h * D, q_stride,
                             kg + p * panel_floats, nr, sc + (i - t0) * ld + p * nr, ld, false,
                             nullptr);
            }
            for (int r = 0; r < rows; ++r) {
                float* row = sc + (i - t0 + r) * ld;
                const int64_t n = S - T + i + r + 1;
                const float mx = kr.max(n, row);
                const float sum = kr.exp_scaled(n, row, scale, mx * scale, row);
                inv_sum[i - t0 + r] = 1.0f / sum;
                std::fill(row + n, row + n_keys, 0.0f);
            }
            for (int64_t d = 0; d < D; d += nr) {
                kr.gemm_tile(rows, int(std::min(nr, D - d)), n_keys, sc + (i - t0) * ld, ld,
                             v + g * D + d, v_stride, out + i * out_stride + h * D + d, out_stride,
                             false, nullptr);
            }
            for (int r = 0; r < rows; ++r) {
                float* o = out + (i + r) * out_stride + h * D;
                for (int64_t d = 0; d < D; ++d) o[d] *= inv_sum[i - t0 + r];
            }
        }
    });
}

void silu_mul(int64_t n, const float* gate, const float* up, float* y) {
    if (n > 0) kernels().silu_mul(n, gate, up, y);
}

void relu(int64_t n, float* x) {
    for (int64_t i = 0; i < n; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void add(int64_t n, const float* a, const float* b, float* y) {
    for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void cross_entropy(int64_t M, int64_t V, const float* logits, const int32_t* target, float* nll,
                   ThreadPool* pool) {
    if (M <= 0 || V <= 0) return;
    const Kernels& kr = kernels();
    run(pool, M, [&](int64_t i, int) {
        const float* row = logits + i * V;
        const float mx = kr.max(V, row);
        const double sum = kr.sum_exp(V, row, mx);
        nll[i] = float(double(mx) + std::log(sum) - double(row[target[i]]));
    });
}

}  // namespace zqat::ops

namespace zqat::cpu {

const Kernels& active_kernels() {
    return ops::kernels();
}

}  // namespace zqat::cpu
