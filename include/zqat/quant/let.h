// Learnable equivalent transformation (LET, METHOD.md s3), folded exactly into a decoder layer.
// For Y = X W^T + b with a per-input-channel scale s > 0 and shift d:
//   X~ = (X - d) / s,   W~ = W diag(s),   b~ = b + W d      =>   X~ W~^T + b~ == X W^T + b
// Sites and where 1/s and -d go:
//   attn (q, k, v input) and ffn (gate/up or fc1 input), after a norm:
//     LayerNorm (OPT): ln.weight /= s, ln.bias = (ln.bias - d) / s;
//     RMSNorm (Llama): ln.weight /= s; the shift becomes an explicit per-channel subtraction of
//     d / s before activation quantization (LayerWeights::attn_shift / ffn_shift);
//   vo (o_proj input = attention over V): v_proj rows and bias / s, o_proj columns * s (scale
//     only; s is per KV channel [n_head_kv * head_dim], shared by the query heads of a group).
// down_proj / fc2 inputs follow a nonlinearity: no LET there. Post-LN OPT models have no norm in
// front of q/k/v, so LET is refused for them.
#pragma once

#include <cstdint>
#include <vector>

namespace zqat {

struct Model;

struct LetParams {  // one decoder layer; an empty vector means identity (s = 1 / d = 0)
    std::vector<float> attn_s, attn_d;  // [n_embd]
    std::vector<float> ffn_s, ffn_d;    // [n_embd]
    std::vector<float> vo_s;            // [n_head_kv * head_dim]
};

// Folds p into layer `layer` of m (fp32 weights; new tensors replace the touched ones, so
// shallow copies of the old LayerWeights stay valid). Throws Error on a packed weight, s <= 0,
// wrong sizes, or a post-LN model.
void apply_let(Model& m, int64_t layer, const LetParams& p);

}  // namespace zqat
