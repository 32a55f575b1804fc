// Model::load for GGUF files of the llama architecture family (llama, qwen2).
#include <algorithm>
#include <vector>

#include "load_common.h"
#include "zqat/core/error.h"
#include "zqat/io/gguf.h"

namespace zqat {

namespace {

// llama.cpp's converter stores Llama q/k rows permuted for interleaved-pair RoPE:
//   gguf row h*D + 2i + s  <-  HF row h*D + s*D/2 + i     (s in {0,1}, i < D/2)
// Undo it so the forward uses HF's rotate_half RoPE for every source. w [n_head*D, in].
Tensor unpermute_rope_rows(const Tensor& w, int64_t n_head) {
    const int64_t rows = w.dim(0), in = w.dim(1), D = rows / n_head;
    Tensor out = Tensor::zeros(w.name, w.shape);
    const float* src = w.f32();
    float* dst = out.mutable_f32();
    for (int64_t h = 0; h < n_head; ++h)
        for (int64_t i = 0; i < D / 2; ++i)
            for (int64_t s = 0; s < 2; ++s)
                std::copy_n(src + (h * D + 2 * i + s) * in, in, dst + (h * D + s * D / 2 + i) * in);
    return out;
}

}  // namespace

Model load_gguf_model(const std::string& path) {
    gguf::File f = gguf::File::open(path);
    const std::string arch = f.get_string("general.architecture");
    if (arch != "llama" && arch != "qwen2")
        fail("model", "{}: architecture '{}' is not supported (llama, qwen2)", path, arch);
    auto key = [&](const char* k) { return arch + "." + k; };

    Model m;
    ModelConfig& c = m.cfg;
    c.arch = Arch::llama;
    c.qkv_bias = arch == "qwen2";
    c.name = f.get_string_or("general.name", arch);
    c.n_layer = int64_t(f.get_uint(key("block_count")));
    c.n_embd = int64_t(f.get_uint(key("embedding_length")));
    c.n_ff = int64_t(f.get_uint(key("feed_forward_length")));
    c.n_head = int64_t(f.get_uint(key("attention.head_count")));
    c.n_head_kv = int64_t(f.get_uint_or(key("attention.head_count_kv"), uint64_t(c.n_head)));
    c.n_ctx_train = int64_t(f.get_uint_or(key("context_length"), 2048));
    c.norm_eps = float(f.get_float(key("attention.layer_norm_rms_epsilon")));
    c.rope_theta = float(f.get_float_or(key("rope.freq_base"), 10000.0));
    if (c.n_head <= 0 || c.n_embd % c.n_head != 0)
        fail("model", "{}: embedding_length {} is not a multiple of head_count {}", path, c.n_embd,
             c.n_head);
    c.head_dim = int64_t(f.get_uint_or(key("attention.key_length"), uint64_t(c.n_embd / c.n_head)));
    c.rope_dim = int64_t(f.get_uint_or(key("rope.dimension_count"), uint64_t(c.head_dim)));
    check_config(c, path);

    TensorSource src{path, [&](const std::string& name) -> std::optional<Tensor> {
                         const gguf::TensorInfo* t = f.find_tensor(name);
                         if (!t) return std::nullopt;
                         return f.tensor(*t);
                     }};
    const int64_t E = c.n_embd, D = c.head_dim, F = c.n_ff;
    m.tok_embd = src.get("token_embd.weight", {-1, E});
    c.n_vocab = m.tok_embd.dim(0);
    m.out_norm = src.get("output_norm.weight", {E});
    c.tie_embeddings = !src.has("output.weight");
    m.lm_head = c.tie_embeddings ? m.tok_embd : src.get("output.weight", {c.n_vocab, E});
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        LayerWeights L;
        L.attn_norm = src.get(p + "attn_norm.weight", {E});
        L.wq = src.get(p + "attn_q.weight", {c.n_head * D, E});
        L.wk = src.get(p + "attn_k.weight", {c.n_head_kv * D, E});
        L.wv = src.get(p + "attn_v.weight", {c.n_head_kv * D, E});
        L.wo = src.get(p + "attn_output.weight", {E, c.n_head * D});
        if (c.qkv_bias) {
            L.bq = src.get(p + "attn_q.bias", {c.n_head * D});
            L.bk = src.get(p + "attn_k.bias", {c.n_head_kv * D});
            L.bv = src.get(p + "attn_v.bias", {c.n_head_kv * D});
        } else {
            L.wq = unpermute_rope_rows(L.wq, c.n_head);
            L.wk = unpermute_rope_rows(L.wk, c.n_head_kv);
        }
        L.ffn_norm = src.get(p + "ffn_norm.weight", {E});
        L.w_gate = src.get(p + "ffn_gate.weight", {F, E});
        L.w_up = src.get(p + "ffn_up.weight", {F, E});
        L.w_down = src.get(p + "ffn_down.weight", {E, F});
        m.layers.push_back(std::move(L));
    }
    if (f.has("tokenizer.ggml.model")) m.tokenizer = Tokenizer::from_gguf(f);
    m.source = path;
    m.source_bytes = f.file_size();
    return m;
}

}  // namespace zqat
