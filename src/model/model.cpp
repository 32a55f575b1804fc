#include "zqat/model/model.h"

#include <filesystem>
#include <set>

#include "load_common.h"
#include "zqat/core/error.h"

namespace zqat {

Tensor TensorSource::get(const std::string& name, const std::vector<int64_t>& shape) const {
    std::optional<Tensor> t = find(name);
    if (!t) fail("model", "{}: missing tensor '{}'", path, name);
    bool ok = t->shape.size() == shape.size();
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || shape[i] == t->shape[i];
    if (!ok) {
        Tensor want;
        want.shape = shape;
        fail("model", "{}: tensor '{}' has shape {}, expected {}", path, name, t->shape_str(),
             want.shape_str());
    }
    return t->to_f32();
}

void check_config(const ModelConfig& c, const std::string& path) {
    auto pos = [&](int64_t v, const char* what) {
        if (v <= 0 || v > (int64_t(1) << 24))
            fail("model", "{}: {} = {} is out of range", path, what, v);
    };
    pos(c.n_layer, "layer count");
    pos(c.n_embd, "hidden size");
    pos(c.n_ff, "feed-forward size");
    pos(c.n_head, "head count");
    pos(c.n_head_kv, "kv head count");
    pos(c.head_dim, "head dim");
    if (c.n_head % c.n_head_kv != 0)
        fail("model", "{}: head count {} is not a multiple of kv head count {}", path, c.n_head,
             c.n_head_kv);
    if (c.arch == Arch::llama && (c.rope_dim <= 0 || c.rope_dim > c.head_dim || c.rope_dim % 2))
        fail("model", "{}: rope dimension {} must be even and <= head dim {}", path, c.rope_dim,
             c.head_dim);
    if (!(c.norm_eps > 0.f)) fail("model", "{}: norm epsilon must be > 0", path);
}

Model Model::load(const std::string& path) {
    namespace fs = std::filesystem;
    if (fs::is_directory(path) || path.ends_with(".safetensors") || path.ends_with(".json"))
        return load_hf_model(path);
    return load_gguf_model(path);
}

uint64_t Model::n_params() const {
    // Each distinct storage once: a tied head, or OPT's shared LayerNorm ones, is not recounted.
    std::set<const void*> seen;
    uint64_t n = 0;
    auto count = [&](const Tensor& t) {
        const void* storage = t.data ? t.data : static_cast<const void*>(t.packed.get());
        if (storage && seen.insert(storage).second) n += uint64_t(t.numel());
    };
    for (const Tensor* t :
         {&tok_embd, &pos_embd, &project_in, &project_out, &out_norm, &out_norm_b, &lm_head})
        count(*t);
    for (const LayerWeights& L : layers)
        for (const Tensor* t : {&L.attn_norm, &L.attn_norm_b, &L.wq, &L.wk, &L.wv, &L.wo, &L.bq,
                                &L.bk, &L.bv, &L.bo, &L.ffn_norm, &L.ffn_norm_b, &L.w_gate, &L.w_up,
                                &L.w_down, &L.b_up, &L.b_down, &L.b_gate})
            count(*t);
    return n;
}

}  // namespace zqat
