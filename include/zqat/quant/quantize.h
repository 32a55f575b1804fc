// Post-training quantization of a model's decoder linears, and ZeroQAT's backprop-free
// initialisation. Every method ends the same way: each decoder linear weight is replaced by its
// packed low-bit form (core/packed.h) and m.cfg.qspec is set, so the forward fake-quantizes
// activations per token when the spec asks for it. Methods (METHOD.md s5, issue 3):
//   rtn          round to nearest, no calibration data
//   smoothquant  SmoothQuant: s_j = max|X_j|^alpha / max|W_:,j|^(1-alpha) before q/k/v and
//                gate/up (activation maxima of the FP model on the calibration windows), then RTN
//   gptq         GPTQ, weight-only specs: layers in order, each linear group on the inputs the
//                already-quantized model gives it (1% damping, blocks of 128, act-order with
//                static groups by default)
//   init         block by block, on the quantized model's inputs: LET with the SmoothQuant alpha
//                searched per block (identity included) and the OS+ shift (A < 16 only), then LWC
//                clipping ratios grid-searched per group on the layer's output error, kept only
//                when they lower the block's output error against the FP model's (OmniQuant's
//                targets: the FP model's own block outputs); with QuantOptions::act_clip, then
//                the activation clipping ratio of each linear input site, searched likewise
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "zqat/core/qspec.h"

namespace zqat {

struct Model;
class ThreadPool;

enum class QuantMethod { rtn, smoothquant, gptq, init };
QuantMethod parse_quant_method(std::string_view s);  // throws Error listing the known methods
std::string_view quant_method_name(QuantMethod m);
bool quant_method_needs_calibration(QuantMethod m);

struct QuantOptions {
    QSpec spec;
    QuantMethod method = QuantMethod::rtn;
    float alpha = 0.5f;  // smoothquant
    // gptq
    double gptq_damp = 0.01;
    int64_t gptq_block = 128;
    bool act_order = true;  // with static groups; see GptqOptions
    // Positions [0, gptq_skip_first) of every calibration window are left out of GPTQ's
    // Hessians (their inputs still flow to the next layers). Position 0 is the attention sink:
    // its massive activations carry up to 99% of tr(X^T X) at some down_proj inputs, so GPTQ
    // fits that one token (scripts/gptq_heldout.sh). An experiment: leaving it out scores worse
    // on SmolLM2 (docs/RESULTS.md, gptq-nosink). 0: every position.
    int64_t gptq_skip_first = 0;
    // init: candidates for the per-block alpha (identity = no LET is always tried too), the
    // clipping ratios for LWC, and how many calibration windows the alpha search scores on.
    std::vector<float> alpha_grid = {0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
    std::vector<float> clip_grid = {1.0f,  0.97f, 0.94f, 0.91f, 0.88f, 0.85f, 0.82f, 0.79f,
                                    0.76f, 0.73f, 0.7f,  0.65f, 0.6f,  0.55f, 0.5f};
    int64_t search_windows = 16;
    // init with activation quantization (A < 16): after LET and LWC, search each layer's
    // activation clipping ratios (LayerWeights::act_clip), one linear input site after the other
    // in forward order, each the grid value that minimises the block's output error on the
    // search windows (1, i.e. min/max, always among them). Not in the paper (an extension).
    bool act_clip = false;
    std::vector<float> act_clip_grid = {1.0f, 0.95f, 0.9f, 0.85f, 0.8f, 0.75f, 0.7f};
    // Leave the decoder linears in fp32 (LET folded, not rounded) and return each linear's
    // clipping ratios in QuantReport::clip instead of packing: ZeroQAT training starts from
    // here (train/trainer.h). rtn, smoothquant and init only.
    bool keep_float = false;
    // Hadamard-rotate every decoder linear first (W := W H, ModelConfig::hadamard). Not with
    // smoothquant; init then skips its LET search (LET scales act on the unrotated channels)
    // and keeps the clipping search.
    bool rotate = false;
    // Progress: stage ("layer"), units done, units total.
    std::function<void(std::string_view stage, int64_t done, int64_t total)> progress;
};

struct LayerQuantReport {
    double mse_before = 0;  // init: block output MSE with RTN and no LET (identity candidate)
    double mse_after = 0;   // init: with the chosen LET and clipping
    float alpha = 0;        // init/smoothquant: chosen alpha (0 = identity)
    bool clipped = false;   // init: LWC kept (it lowered the block's error on the search windows)
    std::vector<float> act_clip;  // init with act_clip: the ratio chosen per site (else empty)
};

struct QuantReport {
    std::vector<LayerQuantReport> layers;
    // keep_float: per layer, per linear (q, k, v, o, [gate,] up, down), the LWC ratio of each
    // (row, group), [rows * groups] (gamma = beta); empty for a linear left unclipped.
    std::vector<std::vector<std::vector<float>>> clip;
    uint64_t packed_bytes = 0;  // bytes of all packed decoder linears (codes + scales + zeros)
    uint64_t packed_elems = 0;  // weights they hold
    double seconds = 0;
};

// Quantizes m in place. calib: windows of equal length (ignored by rtn; required by the others,
// an Error otherwise). Deterministic for a given (model, options, windows), any thread count.
QuantReport quantize_model(Model& m, const QuantOptions& opt,
                           std::span<const std::vector<int32_t>> calib, ThreadPool& pool);

// Every packed decoder linear replaced by its fp32 dequantization (fake quantization: the same
// numbers, computed by gemm_nt instead of gemm_nt_packed). For tests and comparisons.
void unpack_model(Model& m);

}  // namespace zqat
