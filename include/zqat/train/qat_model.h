// The trainable state of a quantized model for ZeroQAT (METHOD.md s2-s4) and the two things the
// trainer does with it: materialize one decoder layer's fake-quantized weights for a forward,
// optionally perturbed by eps * z, and apply theta -= c * z. z is never stored: it is regenerated
// from (seed, tensor id, element) by ops::fill_normal.
//
// Parameter groups, per decoder layer (linears in slot order q, k, v, o, gate, up, down; OPT has
// no gate):
//   weights  the fp32 master weight of each linear, LET of the initialisation already folded in
//   clip     LWC logits a, c per (row, group): gamma = sigmoid(a), beta = sigmoid(c)
//   smooth   LET on top of the initialisation's: a per-channel scale s (starts at 1) and shift d
//            (starts at 0; only with activation quantization, as in the init) before q/k/v and
//            gate/up, and a scale before o_proj (v rows / s, o columns * s)
//   act_clip the activation clipping ratio r of each linear input site (attn_in, attn_out,
//            ffn_in, ffn_out; LayerWeights::act_clip), only with activation quantization; starts
//            at the init's ratios (1 where it has none: METHOD.md s1's min/max). Its z is
//            shared by all layers: a step moves a site's ratio by the same amount everywhere
// What a layer's forward sees, for a perturbation sign p in {+1, 0, -1}:
//   s~ = max(s + p eps_s z_s, 1e-3), d~ = d + p eps_s z_d, W~ = W + p eps_w z_W,
//   norm weight = norm0 / s~, Llama shift = (shift0 + d~) / s~ (OPT: norm bias = (b0 - d~) / s~),
//   bias = b0 + W~ d~, weight = Q(W~ diag(s~); sigmoid(a + p eps_c z_a), sigmoid(c + p eps_c z_c)),
//   act_clip = clamp(r + p eps_r z_r, 0.05, 2)
// At W16 (no weight quantization: MeZO on the FP model) the weights are used as they are and
// there is no clip group.
// Tensor ids: layer * 64 + slot (weights), + 8 + slot (a), + 16 + slot (c), + 24 .. 28 for s_attn,
// d_attn, s_ffn, d_ffn, s_vo; act_clip's is 32 in every layer.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "zqat/model/model.h"

namespace zqat {

class ThreadPool;

enum class ParamGroup { weights = 0, clip = 1, smooth = 2, act_clip = 3 };
constexpr int kParamGroups = 4;
constexpr int kSlots = 7;  // q, k, v, o, gate, up, down

struct TrainableGroups {
    bool weights = true, clip = true, smooth = true;
    bool act_clip = false;  // needs activation quantization
    // Linears (slot order) whose weights train. The others are frozen: quantized and packed
    // once at construction, their fp32 master freed (the lightweight variant: q and v train,
    // the rest sits in packed storage). Freezing a linear needs clip and smooth frozen too,
    // since both change every linear's quantized weight.
    std::array<bool, kSlots> slots{true, true, true, true, true, true, true};
};

// One update theta_g -= lr_g * g_g * z (METHOD.md s4) for the direction drawn from `seed`;
// g = (1/n) clip(l+ - l-, -2c, 2c) / (2 eps_g) per group.
struct ZoUpdate {
    uint64_t seed = 0;
    std::array<float, kParamGroups> g{}, lr{};
};

class QatModel {
  public:
    // m: a model whose decoder linears are fp32 with the initialisation's LET folded in
    // (quantize_model with keep_float); clip: that call's QuantReport::clip, turned into logits
    // (a ratio of 1 becomes 20, whose sigmoid is exactly 1). A linear without ratios starts its
    // trainable logits at unclipped_logit (the trainer: 20 after the init, which found clipping
    // does not help there, so training starts exactly at the init; 4, OmniQuant's start,
    // after rtn or smoothquant). Takes the linears out of m (their memory becomes the master
    // weights).
    QatModel(Model m, const std::vector<std::vector<std::vector<float>>>& clip,
             TrainableGroups groups, ThreadPool& pool, float unclipped_logit = 4.0f);

    // The model a Forward runs. Only layer l's tensors are valid, and only between
    // materialize(l, ...) and the next materialize call.
    const Model& work() const { return work_; }
    // Writes layer l's forward tensors (fake-quantized weights) for perturbation sign (+1, 0, -1)
    // of direction `seed` with per-group eps. A perturbed call makes both signs in one pass over
    // the layer's weights; the next call for the other sign (same l, seed, eps, no apply or
    // load_state between) only swaps its tensors in.
    void materialize(int64_t l, int sign, uint64_t seed,
                     const std::array<float, kParamGroups>& eps);
    // Applies one step's updates (its directions, in order) to layer l: theta -= lr g z each;
    // with momentum > 0, m = beta m + sum g z per element, then theta -= lr m (lr of updates[0]).
    void apply(int64_t l, const std::vector<ZoUpdate>& updates, float momentum);
    void apply_all(const std::vector<ZoUpdate>& updates, float momentum);

    // Q(theta): decoder linears packed (core/packed.h), LET folded into norms, shifts and biases.
    // The deployable model; shares the embeddings and head with work() (no tokenizer: save_gguf
    // copies it from the source file). Uses the layer scratch, like materialize.
    Model export_packed();

    TrainableGroups groups() const { return groups_; }
    uint64_t n_trainable(ParamGroup g) const;
    uint64_t state_bytes() const;    // master weights + LWC + LET (+ momentum)
    uint64_t frozen_bytes() const;   // the frozen linears' packed storage
    uint64_t scratch_bytes() const;  // one layer's forward tensors for both signs, and z

    // Checkpoint: every array of the state (the frozen linears' norms and biases included; their
    // packed weights are rebuilt by the constructor, not stored), the step it belongs to and a
    // fingerprint of the frozen packed linears, written to a temp file and renamed. load checks
    // magic, fingerprint, every length and the checksum in a first pass that stores nothing,
    // then reads the arrays in place (no second copy of the state in memory); errors name the
    // file and offset.
    void save_state(const std::string& path, int64_t step) const;
    int64_t load_state(const std::string& path);

  private:
    struct Layer {
        std::array<std::vector<float>, kSlots> w, a, c, bias;
        std::array<Tensor, kSlots> frozen;  // packed (fp32 at W16) weights of frozen linears
        std::vector<float> s_attn, d_attn, s_ffn, d_ffn, s_vo;
        std::vector<float> attn_norm, attn_norm_b, ffn_norm, ffn_norm_b, attn_shift, ffn_shift;
        std::vector<float> ac;  // act_clip ratios [kActClipSites] (empty: 1, not trained)
        std::vector<std::vector<float>> mom;  // momentum per trainable array (empty: unused)
    };
    struct Param {  // one trainable array of a layer
        std::vector<float>* v;
        uint32_t id;
        ParamGroup group;
    };
    struct LetEff;  // s~, d~ of a layer under a perturbation
    // One output of linear_out: the linear under sign `sign` and LET `let`, as fp32 fake-quant
    // weights (w_hat [rows, cols]) and/or packed codes [rows, cols], scales and zeros [rows,
    // groups]; bias [rows] (the shift's term). Null pointers are not written.
    struct LinearOut {
        int sign = 0;
        const LetEff* let = nullptr;
        float* w_hat = nullptr;
        uint8_t* codes = nullptr;
        uint16_t *scales = nullptr, *zeros = nullptr;
        float* bias = nullptr;
    };
    std::vector<Param> params(int64_t l);  // trainable arrays of layer l in fixed order
    QatModel& self() const;                // for the read-only walks over params / arrays
    template <class F>
    void visit_arrays(Layer& L, F&& f);  // every array of L in checkpoint order
    LetEff let_eff(int64_t l, int sign, const std::array<float, kParamGroups>& eps) const;
    // Linear (l, slot) for every output in one pass over its master weight (z of direction
    // `seed` made once per block of rows, shared by the outputs).
    void linear_out(int64_t l, int slot, uint64_t seed, const std::array<float, kParamGroups>& eps,
                    std::span<const LinearOut> outs) const;
    void layer_norms(int64_t l, const LetEff& let, LayerWeights& scratch, LayerWeights& out) const;
    // Q(W) of linear (l, slot) without perturbation: packed (an fp32 tensor at W16).
    Tensor quantized_linear(int64_t l, int slot, const LetEff& let, float* bias_out) const;
    const float* z_of(uint32_t id) const;  // z of tensor id in z_, or nullptr
    std::array<int64_t, 2> shape(int slot) const;
    bool has(int slot) const;
    bool needs_bias(int64_t l, int slot) const;

    TrainableGroups groups_;
    ThreadPool& pool_;
    Model work_;
    QSpec spec_;
    std::vector<Layer> layers_;
    // The tensors work_.layers[l] points at after materialize(l): [0] the sign asked for, [1]
    // the other sign of a perturbed call.
    LayerWeights scratch_[2];
    struct Other {  // the other sign's tensors of the last perturbed materialize (layer -1: none)
        int64_t layer = -1;
        uint64_t seed = 0;
        int sign = 0;
        std::array<float, kParamGroups> eps{};
        LayerWeights tensors;
    } other_;
    std::vector<std::array<std::string, kSlots>> names_;  // tensor names of the linears
    // z of the materialized layer's small arrays (LWC, LET), tensor after tensor
    std::vector<float> z_;
    std::vector<std::pair<uint32_t, size_t>> z_at_;  // (tensor id, offset in z_)
    uint64_t frozen_hash_ = 0;                       // fingerprint of the frozen linears (0: none)
};

}  // namespace zqat
