// A loaded model: configuration, float32 weights (dequantized at load) and its tokenizer.
// Sources: a GGUF file (llama architecture), or a Hugging Face checkpoint folder (config.json,
// *.safetensors or model.safetensors.index.json shards, tokenizer.json) for LlamaForCausalLM,
// Qwen2ForCausalLM and OPTForCausalLM.
// Inside the program weights are in HF layout: a linear is [out, in], q/k rows in HF's rotate_half
// RoPE order (GGUF llama q/k rows are permuted back at load).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "zqat/core/qspec.h"
#include "zqat/core/tensor.h"
#include "zqat/io/tokenizer.h"

namespace zqat {

enum class Arch { llama, opt };  // llama covers Llama, Mistral-style and Qwen2 (qkv bias)

struct ModelConfig {
    Arch arch = Arch::llama;
    std::string name;  // e.g. general.name or the HF folder name
    int64_t n_vocab = 0, n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, head_dim = 0;
    int64_t n_ff = 0;
    int64_t n_ctx_train = 0;  // max positions the model was trained for
    float norm_eps = 1e-5f;
    float rope_theta = 10000.f;
    int64_t rope_dim = 0;  // rotated dims per head (= head_dim for Llama)
    bool tie_embeddings = false;
    bool qkv_bias = false;  // Qwen2
    // OPT only
    int64_t word_embed_proj_dim = 0;  // == n_embd unless project_in/out exist
    bool do_layer_norm_before = true;
    bool final_norm = true;   // false for post-LN (OPT-350m style) models: no final LayerNorm
    bool norm_affine = true;  // false: LayerNorms have no weight/bias (tensors left null)
    int64_t pos_offset = 2;   // OPT's learned positions start at index 2
    // Quantization of the decoder linears (W16A16: none). a_bits < 16 makes the forward
    // fake-quantize every decoder linear's input per token; weights are quantized in the tensors
    // themselves (packed, or fake-quantized fp32).
    QSpec qspec;
    std::string quant_method;  // "rtn", "gptq", ... as recorded in a quantized file
    // Hadamard rotation (quantize --rotate): every decoder linear's weight is stored as W H and
    // the forward multiplies the linear's input by H (ops::hadamard_rows) before quantizing it,
    // so the product is unchanged and outlier channels are spread out. GGUF key
    // zqat.quant.rotation = "hadamard".
    bool hadamard = false;
};

constexpr int64_t kActClipSites = 4;  // LayerWeights::act_clip: one ratio per linear input site

struct LayerWeights {
    // Llama: attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down (+ bq, bk, bv for Qwen2).
    // OPT:   attn_norm(+_b) = self_attn_layer_norm, w{q,k,v,o} + b{q,k,v,o},
    //        ffn_norm(+_b) = final_layer_norm, w_up/b_up = fc1, w_down/b_down = fc2.
    Tensor attn_norm, attn_norm_b;
    Tensor wq, wk, wv, wo, bq, bk, bv, bo;  // [out, in]
    Tensor ffn_norm, ffn_norm_b;
    Tensor w_gate, w_up, w_down, b_up, b_down;
    // Llama with a LET shift (quant/let.h): gate/up biases b = W d, and the per-channel shifts
    // [n_embd] subtracted from the normalised input of q/k/v and gate/up before quantization.
    // Empty when unused.
    Tensor b_gate;
    Tensor attn_shift, ffn_shift;
    // Activation clipping (quant/quantize.h, QuantOptions::act_clip; ZeroQAT's act_clip group):
    // [4] ratios r, in LinearSite order (attn_in, attn_out, ffn_in, ffn_out), by which each
    // token's max and min are scaled before its activations are quantized (ops::fake_quant_act).
    // Empty: 1 everywhere (METHOD.md s1's min/max). Only read when activations are quantized.
    Tensor act_clip;
};

struct Model {
    ModelConfig cfg;
    Tensor tok_embd;                 // [n_vocab, word_embed_proj_dim or n_embd]
    Tensor pos_embd;                 // OPT: [max_pos + 2, n_embd]
    Tensor project_in, project_out;  // OPT when word_embed_proj_dim != n_embd
    std::vector<LayerWeights> layers;
    Tensor out_norm, out_norm_b;         // final norm
    Tensor lm_head;                      // [n_vocab, ...]; shares tok_embd's storage when tied
    std::optional<Tokenizer> tokenizer;  // absent when the checkpoint ships none
    std::string source;                  // path it was loaded from
    uint64_t source_bytes = 0;           // bytes of the weight files on disk

    // Dispatches on the path: *.gguf, or a folder / *.safetensors with config.json beside it.
    // Throws Error naming the file and field on anything malformed or unsupported.
    static Model load(const std::string& path);

    uint64_t n_params() const;  // weights counted once (tied embeddings once)
};

// A human summary for `zqat inspect`: architecture, shapes, dtypes, metadata, bytes.
std::string describe_model_file(const std::string& path);

}  // namespace zqat
