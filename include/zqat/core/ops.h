// The CPU op interface: what the model's forward calls. Each op has a plain scalar reference in
// zqat::ops::ref (the oracle, src/cpu/ref_ops.cpp) and a fast version chosen at run time from the
// CPU's features (src/cpu/arch/x86/*_avx512.cpp, *_avx2.cpp, else the generic path).
// All matrices are row-major float32; strides are in elements. Every op computes each output
// element in a fixed order whatever the thread count, so results are bit-identical for any pool.
#pragma once

#include <cstdint>
#include <string_view>

namespace zqat {
class ThreadPool;
struct PackedWeight;
}  // namespace zqat

namespace zqat::ops {

// C[M,N] = A[M,K] . W[N,K]^T (+ bias[N] when bias != nullptr). W is a linear weight [out, in].
void gemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* W,
             int64_t ldw, const float* bias, float* C, int64_t ldc, ThreadPool* pool);

// Per row of x [M, D]: y = x / sqrt(mean(x^2) + eps) * w. y may alias x.
void rmsnorm(int64_t M, int64_t D, const float* x, const float* w, float eps, float* y);

// Per row of x [M, D]: y = (x - mean) / sqrt(var + eps) * w + b (biased variance). y may alias x.
void layernorm(int64_t M, int64_t D, const float* x, const float* w, const float* b, float eps,
               float* y);

// Rotary embedding in place, GPT-NeoX / HF "rotate_half" layout: within each head, element i and
// i + rot_dim/2 form a pair, i < rot_dim/2, angle = pos * theta^(-2i/rot_dim).
// x [n_tok, n_head, head_dim] with row stride x_stride between tokens; pos [n_tok].
void rope_neox(int64_t n_tok, int64_t n_head, int64_t head_dim, int64_t rot_dim, const int32_t* pos,
               float theta, float* x, int64_t x_stride);

// Causal multi-head attention with grouped KV heads, one sequence:
//   q [T, H, D] (token stride q_stride), k, v [S, Hkv, D] (token strides k_stride, v_stride),
//   out [T, H, D] (token stride out_stride). Query t sits at position S - T + t and attends to
//   keys 0 ..= S - T + t. Head h uses KV head h / (H / Hkv). p = softmax(scale * q.k).
void attention_causal(int64_t T, int64_t S, int64_t H, int64_t Hkv, int64_t D, const float* q,
                      int64_t q_stride, const float* k, int64_t k_stride, const float* v,
                      int64_t v_stride, float* out, int64_t out_stride, float scale,
                      ThreadPool* pool);

// y = silu(gate) * up over n elements (SwiGLU). y may alias gate or up.
void silu_mul(int64_t n, const float* gate, const float* up, float* y);
// x = max(x, 0) in place.
void relu(int64_t n, float* x);
// y = a + b. y may alias a or b.
void add(int64_t n, const float* a, const float* b, float* y);

// nll[i] = logsumexp(logits[i, :]) - logits[i, target[i]] for logits [M, V] (row stride V).
// Accumulates in double per row so the value does not depend on the kernel's vector width.
void cross_entropy(int64_t M, int64_t V, const float* logits, const int32_t* target, float* nll,
                   ThreadPool* pool);

// ---- Quantization (METHOD.md s1). Rounding is round-half-to-even everywhere. ----------------
//
// Weights, per group of `group` consecutive inputs of one row of W [rows, cols] (row stride ldw;
// group divides cols), with LWC factors gamma, beta [rows, cols / group] (nullptr: all 1):
//   hi = max(gamma * max(x), 0)       lo = min(beta * min(x), 0)     (the range always holds 0)
//   asym: delta = fp16(max(hi - lo, 1e-5) / qmax)   zp = clamp(round(-lo / delta), 0, qmax)
//   sym:  delta = fp16(max(max(hi, -lo), 1e-5) / (2^(bits-1) - 1))   zp = 2^(bits-1)
//   q = clamp(round(x / delta) + zp, 0, qmax),  w_hat = (q - zp) * delta,  qmax = 2^bits - 1.
// delta is rounded to fp16 (the stored form) before q is computed and a delta that rounds to 0
// becomes the smallest fp16 subnormal, so fake quantization equals packed storage bit for bit.
// Outputs (each may be nullptr): codes [rows, cols] one byte per element; scales, zeros
// [rows, cols / group] as fp16 bits; w_hat [rows, cols] (row stride cols), the fake-quant weight.
void quantize_weight(int64_t rows, int64_t cols, const float* W, int64_t ldw, int bits,
                     int64_t group, bool sym, const float* gamma, const float* beta, uint8_t* codes,
                     uint16_t* scales, uint16_t* zeros, float* w_hat, ThreadPool* pool);

// Activations: dynamic per-token (per row of x [M, D], row stride ld) asymmetric fake
// quantization in place, exactly METHOD.md s1 in float32:
//   delta = max(hi - lo, 1e-5) / qmax, zp = round(-lo / delta),
//   hi = clip * max(row), lo = clip * min(row)   (clip = 1: METHOD's min/max; clip < 1 clips
//   the token's range, values outside land on the end codes; a row of one sign has its range
//   moved towards 0 rather than narrowed),
//   x = (clamp(round(x / delta) + zp, 0, qmax) - zp) * delta.
void fake_quant_act(int64_t M, int64_t D, float* x, int64_t ld, int bits, float clip,
                    ThreadPool* pool);

// Block Hadamard rotation (QuaRot-style, zqat quantize --rotate): every row of x [M, D] (row
// stride ld) is multiplied in place by H = diag(H_b, ..., H_b), H_b the orthonormal Sylvester
// Hadamard matrix of order b = hadamard_block(D), H_b[i][j] = (-1)^popcount(i & j) / sqrt(b).
// H is symmetric and H H = I, so (x H)(W H)^T = x W^T: rotating a linear's input and its weight
// rows leaves the product unchanged and spreads an outlier channel over b channels before
// per-token quantization. The fast path is the butterfly (fast Walsh-Hadamard transform).
void hadamard_rows(int64_t M, int64_t D, float* x, int64_t ld, ThreadPool* pool);
// The largest power of two that divides D (1 for odd D: no rotation).
int64_t hadamard_block(int64_t D);

// C[M, N] = A[M, K] . W^T (+ bias) for a packed weight W [N, K] (core/packed.h), dequantized on
// the fly. Blocking and summation order equal gemm_nt's, so the result is bit-identical to
// gemm_nt on W.dequantize_rows(...).
void gemm_nt_packed(int64_t M, const float* A, int64_t lda, const PackedWeight& W,
                    const float* bias, float* C, int64_t ldc, ThreadPool* pool);

// One row of a perturbed, LET-scaled weight before quantization (ZeroQAT, train/qat_model.h):
//   v[k] = w[k] + pe * z[k]   (product and sum rounded separately; z == nullptr: v = w)
//   out[k] = v[k] * cs[k]     (cs == nullptr: out = v)
// and, when d != nullptr, returns sum_k v[k] d[k] in float over 16 lanes: element k goes to lane
// k % 16 (acc = acc + v * d, not fused), then the lanes are added as a fixed tree
// (l[i] + l[i+8], then + 4, + 2, + 1); 0 when d is null. out must not alias w, z, cs or d.
float perturb_row(int64_t n, const float* w, const float* z, float pe, const float* cs,
                  const float* d, float* out);

// out[i] = normal_at(seed, tensor_id, first + i) for i < n (core/rng.h), on the calling thread:
// the AVX-512 path is bit-identical to the scalar reference zqat::fill_normal.
void fill_normal(uint64_t seed, uint32_t tensor_id, uint64_t first, int64_t n, float* out);

// Which implementation the fast entry points use: "avx512", "avx2" or "generic".
std::string_view isa();
// Force a level (for tests and benchmarks): "avx512", "avx2", "generic" or "auto".
// Asking for a level the CPU lacks falls back to the best available one; returns what is in use.
std::string_view set_isa(std::string_view level);

namespace ref {
// Scalar references, same contracts as above (single-threaded; pool arguments dropped).
void gemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* W,
             int64_t ldw, const float* bias, float* C, int64_t ldc);
void rmsnorm(int64_t M, int64_t D, const float* x, const float* w, float eps, float* y);
void layernorm(int64_t M, int64_t D, const float* x, const float* w, const float* b, float eps,
               float* y);
void rope_neox(int64_t n_tok, int64_t n_head, int64_t head_dim, int64_t rot_dim, const int32_t* pos,
               float theta, float* x, int64_t x_stride);
void attention_causal(int64_t T, int64_t S, int64_t H, int64_t Hkv, int64_t D, const float* q,
                      int64_t q_stride, const float* k, int64_t k_stride, const float* v,
                      int64_t v_stride, float* out, int64_t out_stride, float scale);
void silu_mul(int64_t n, const float* gate, const float* up, float* y);
void relu(int64_t n, float* x);
void add(int64_t n, const float* a, const float* b, float* y);
void cross_entropy(int64_t M, int64_t V, const float* logits, const int32_t* target, float* nll);
void quantize_weight(int64_t rows, int64_t cols, const float* W, int64_t ldw, int bits,
                     int64_t group, bool sym, const float* gamma, const float* beta, uint8_t* codes,
                     uint16_t* scales, uint16_t* zeros, float* w_hat);
void fake_quant_act(int64_t M, int64_t D, float* x, int64_t ld, int bits, float clip);
// Explicit H_b products in double, rounded once: equal to the butterflies to ~1e-6 relative,
// not bit for bit (the butterflies round after every stage).
void hadamard_rows(int64_t M, int64_t D, float* x, int64_t ld);
float perturb_row(int64_t n, const float* w, const float* z, float pe, const float* cs,
                  const float* d, float* out);
}  // namespace ref

}  // namespace zqat::ops
