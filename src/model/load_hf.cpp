// Model::load for Hugging Face checkpoints: config.json + model.safetensors (or sharded via
// model.safetensors.index.json) + tokenizer.json, for LlamaForCausalLM, Qwen2ForCausalLM (q/k/v
// biases) and OPTForCausalLM.
#include <algorithm>
#include <filesystem>
#include <map>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "load_common.h"
#include "zqat/core/error.h"
#include "zqat/io/mmap.h"
#include "zqat/io/safetensors.h"

namespace zqat {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_json(const std::string& path) {
    try {
        return json::parse(read_file(path));
    } catch (const json::parse_error& e) {
        fail("model", "{}: invalid JSON at byte {}: {}", path, e.byte, e.what());
    } catch (const json::exception& e) {  // e.g. a number out of range
        fail("model", "{}: invalid JSON: {}", path, e.what());
    }
}

template <class T>
T field(const json& j, const char* key, const std::string& path) {
    if (!j.contains(key) || j[key].is_null()) fail("model", "{}: missing field '{}'", path, key);
    const json& v = j[key];
    // Check the JSON type first: nlohmann converts e.g. 1e30 to int64 with undefined behaviour.
    bool ok;
    if constexpr (std::is_same_v<T, bool>)
        ok = v.is_boolean();
    else if constexpr (std::is_integral_v<T>)
        ok = v.is_number_integer();
    else if constexpr (std::is_floating_point_v<T>)
        ok = v.is_number();
    else
        ok = v.is_string();
    if (!ok) fail("model", "{}: field '{}' has the wrong type ({})", path, key, v.dump());
    try {
        return v.get<T>();
    } catch (const json::exception&) {
        fail("model", "{}: field '{}' has the wrong type ({})", path, key, j[key].dump());
    }
}

template <class T>
T field_or(const json& j, const char* key, T dflt, const std::string& path) {
    return j.contains(key) && !j[key].is_null() ? field<T>(j, key, path) : dflt;
}

}  // namespace

std::vector<std::string> hf_weight_files(const std::string& path_in) {
    const fs::path dir =
        fs::is_directory(path_in) ? fs::path(path_in) : fs::path(path_in).parent_path();
    // One file, or the shards an index names (each once, in first-mention order).
    std::vector<std::string> shards;
    if (fs::is_regular_file(path_in) && path_in.ends_with(".safetensors")) {
        shards.push_back(path_in);
    } else if (fs::exists(dir / "model.safetensors")) {
        shards.push_back((dir / "model.safetensors").string());
    } else if (fs::exists(dir / "model.safetensors.index.json")) {
        const std::string idx_path = (dir / "model.safetensors.index.json").string();
        const json idx = read_json(idx_path);
        if (!idx.contains("weight_map") || !idx["weight_map"].is_object())
            fail("model", "{}: missing object 'weight_map'", idx_path);
        std::map<std::string, int> seen;
        for (auto& [name, file] : idx["weight_map"].items()) {
            if (!file.is_string())
                fail("model", "{}: weight_map['{}'] is not a string", idx_path, name);
            const std::string f = file.get<std::string>();
            if (f.find('/') != std::string::npos || f.find("..") != std::string::npos)
                fail("model", "{}: weight_map['{}'] = '{}' is not a file name", idx_path, name, f);
            if (seen.emplace(f, 0).second) shards.push_back((dir / f).string());
        }
    } else {
        fail("model", "{}: no model.safetensors or model.safetensors.index.json", dir.string());
    }
    return shards;
}

Model load_hf_model(const std::string& path_in) {
    const fs::path dir =
        fs::is_directory(path_in) ? fs::path(path_in) : fs::path(path_in).parent_path();
    const std::string cfg_path = (dir / "config.json").string();
    if (!fs::exists(cfg_path)) fail("model", "{}: no config.json beside the weights", cfg_path);
    const json cfg = read_json(cfg_path);

    const std::vector<std::string> shards = hf_weight_files(path_in);
    std::vector<safetensors::File> files;
    uint64_t bytes = 0;
    for (const std::string& s : shards) {
        files.push_back(safetensors::File::open(s));
        bytes += fs::file_size(s);
    }
    // Errors about a tensor name the weight file it is read from (the index when sharded) and
    // config.json, which the expected shapes come from.
    const std::string weights =
        shards.size() == 1 ? shards[0] : (dir / "model.safetensors.index.json").string();
    TensorSource src{fmt::format("{} (shapes per config.json)", weights),
                     [&](const std::string& name) -> std::optional<Tensor> {
                         for (const auto& f : files)
                             if (const auto* t = f.find_tensor(name)) return f.tensor(*t);
                         return std::nullopt;
                     }};

    Model m;
    ModelConfig& c = m.cfg;
    const json archs = cfg.value("architectures", json::array());
    const std::string arch = archs.is_array() && !archs.empty() && archs[0].is_string()
                                 ? archs[0].get<std::string>()
                                 : field<std::string>(cfg, "model_type", cfg_path);
    c.name = dir.filename().string();
    c.n_vocab = field<int64_t>(cfg, "vocab_size", cfg_path);
    c.n_embd = field<int64_t>(cfg, "hidden_size", cfg_path);
    c.n_layer = field<int64_t>(cfg, "num_hidden_layers", cfg_path);
    c.n_head = field<int64_t>(cfg, "num_attention_heads", cfg_path);
    c.n_head_kv = field_or<int64_t>(cfg, "num_key_value_heads", c.n_head, cfg_path);
    c.tie_embeddings =
        field_or<bool>(cfg, "tie_word_embeddings", arch.starts_with("OPT"), cfg_path);
    if (c.n_head <= 0 || c.n_embd % c.n_head != 0)
        fail("model", "{}: hidden_size {} is not a multiple of num_attention_heads {}", cfg_path,
             c.n_embd, c.n_head);
    c.head_dim = field_or<int64_t>(cfg, "head_dim", c.n_embd / c.n_head, cfg_path);
    const int64_t E = c.n_embd, D = c.head_dim;

    if (arch == "LlamaForCausalLM" || arch == "Qwen2ForCausalLM" || arch == "MistralForCausalLM") {
        c.arch = Arch::llama;
        const bool qwen = arch == "Qwen2ForCausalLM";
        c.n_ff = field<int64_t>(cfg, "intermediate_size", cfg_path);
        c.norm_eps = float(field_or<double>(cfg, "rms_norm_eps", 1e-6, cfg_path));
        // transformers < 5 writes rope_theta (and rope_scaling); 5.x writes rope_parameters.
        c.rope_theta = float(field_or<double>(cfg, "rope_theta", 10000.0, cfg_path));
        if (cfg.contains("rope_parameters") && cfg["rope_parameters"].is_object()) {
            const json& rp = cfg["rope_parameters"];
            if (rp.value("rope_type", std::string("default")) != "default")
                fail("model", "{}: rope_parameters.rope_type '{}' is not supported (default)",
                     cfg_path, rp["rope_type"].dump());
            c.rope_theta = float(field_or<double>(rp, "rope_theta", c.rope_theta, cfg_path));
        }
        c.rope_dim = D;
        c.n_ctx_train = field_or<int64_t>(cfg, "max_position_embeddings", 2048, cfg_path);
        c.qkv_bias = qwen || field_or<bool>(cfg, "attention_bias", false, cfg_path);
        const bool o_bias = !qwen && field_or<bool>(cfg, "attention_bias", false, cfg_path);
        if (cfg.contains("rope_scaling") && !cfg["rope_scaling"].is_null())
            fail("model", "{}: rope_scaling is not supported", cfg_path);
        if (field_or<bool>(cfg, "mlp_bias", false, cfg_path))
            fail("model", "{}: mlp_bias is not supported", cfg_path);
        const std::string act = field_or<std::string>(cfg, "hidden_act", "silu", cfg_path);
        if (act != "silu")
            fail("model", "{}: hidden_act '{}' is not supported (silu)", cfg_path, act);
        check_config(c, cfg_path);
        m.tok_embd = src.get("model.embed_tokens.weight", {c.n_vocab, E});
        m.out_norm = src.get("model.norm.weight", {E});
        m.lm_head = c.tie_embeddings ? m.tok_embd : src.get("lm_head.weight", {c.n_vocab, E});
        const int64_t F = c.n_ff;
        for (int64_t l = 0; l < c.n_layer; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            LayerWeights L;
            L.attn_norm = src.get(p + "input_layernorm.weight", {E});
            L.wq = src.get(p + "self_attn.q_proj.weight", {c.n_head * D, E});
            L.wk = src.get(p + "self_attn.k_proj.weight", {c.n_head_kv * D, E});
            L.wv = src.get(p + "self_attn.v_proj.weight", {c.n_head_kv * D, E});
            L.wo = src.get(p + "self_attn.o_proj.weight", {E, c.n_head * D});
            if (c.qkv_bias) {
                L.bq = src.get(p + "self_attn.q_proj.bias", {c.n_head * D});
                L.bk = src.get(p + "self_attn.k_proj.bias", {c.n_head_kv * D});
                L.bv = src.get(p + "self_attn.v_proj.bias", {c.n_head_kv * D});
            }
            if (o_bias) L.bo = src.get(p + "self_attn.o_proj.bias", {E});
            L.ffn_norm = src.get(p + "post_attention_layernorm.weight", {E});
            L.w_gate = src.get(p + "mlp.gate_proj.weight", {F, E});
            L.w_up = src.get(p + "mlp.up_proj.weight", {F, E});
            L.w_down = src.get(p + "mlp.down_proj.weight", {E, F});
            m.layers.push_back(std::move(L));
        }
    } else if (arch == "OPTForCausalLM") {
        c.arch = Arch::opt;
        c.n_ff = field<int64_t>(cfg, "ffn_dim", cfg_path);
        c.norm_eps = 1e-5f;  // OPT's nn.LayerNorm default
        c.n_ctx_train = field<int64_t>(cfg, "max_position_embeddings", cfg_path);
        c.do_layer_norm_before = field_or<bool>(cfg, "do_layer_norm_before", true, cfg_path);
        c.word_embed_proj_dim = field_or<int64_t>(cfg, "word_embed_proj_dim", E, cfg_path);
        const std::string act = field_or<std::string>(cfg, "activation_function", "relu", cfg_path);
        if (act != "relu")
            fail("model", "{}: activation_function '{}' is not supported (relu)", cfg_path, act);
        // enable_bias = false drops every linear's bias; layer_norm_elementwise_affine = false
        // gives LayerNorms without weight and bias (null tensors: the forward uses 1 and 0).
        const bool bias = field_or<bool>(cfg, "enable_bias", true, cfg_path);
        const bool affine = field_or<bool>(cfg, "layer_norm_elementwise_affine", true, cfg_path);
        check_config(c, cfg_path);
        auto get_bias = [&](const std::string& name, int64_t n) {
            return bias ? src.get(name, {n}) : Tensor();
        };
        auto get_norm = [&](const std::string& name, Tensor& w, Tensor& b) {
            w = affine ? src.get(name + ".weight", {E}) : Tensor();
            b = affine ? src.get(name + ".bias", {E}) : Tensor();
        };
        const std::string p0 =
            src.has("model.decoder.embed_tokens.weight") ? "model.decoder." : "decoder.";
        const int64_t W = c.word_embed_proj_dim;
        m.tok_embd = src.get(p0 + "embed_tokens.weight", {c.n_vocab, W});
        m.pos_embd = src.get(p0 + "embed_positions.weight", {c.n_ctx_train + c.pos_offset, E});
        if (W != E) {
            m.project_in = src.get(p0 + "project_in.weight", {E, W});
            m.project_out = src.get(p0 + "project_out.weight", {W, E});
        }
        // HF drops the final LayerNorm for post-LN (350m-style) models.
        c.final_norm = c.do_layer_norm_before &&
                       !field_or<bool>(cfg, "_remove_final_layer_norm", false, cfg_path);
        c.norm_affine = affine;
        if (c.final_norm) get_norm(p0 + "final_layer_norm", m.out_norm, m.out_norm_b);
        m.lm_head = c.tie_embeddings || !src.has("lm_head.weight")
                        ? m.tok_embd
                        : src.get("lm_head.weight", {c.n_vocab, W});
        const int64_t F = c.n_ff;
        for (int64_t l = 0; l < c.n_layer; ++l) {
            const std::string p = p0 + "layers." + std::to_string(l) + ".";
            LayerWeights L;
            get_norm(p + "self_attn_layer_norm", L.attn_norm, L.attn_norm_b);
            L.wq = src.get(p + "self_attn.q_proj.weight", {E, E});
            L.bq = get_bias(p + "self_attn.q_proj.bias", E);
            L.wk = src.get(p + "self_attn.k_proj.weight", {E, E});
            L.bk = get_bias(p + "self_attn.k_proj.bias", E);
            L.wv = src.get(p + "self_attn.v_proj.weight", {E, E});
            L.bv = get_bias(p + "self_attn.v_proj.bias", E);
            L.wo = src.get(p + "self_attn.out_proj.weight", {E, E});
            L.bo = get_bias(p + "self_attn.out_proj.bias", E);
            get_norm(p + "final_layer_norm", L.ffn_norm, L.ffn_norm_b);
            L.w_up = src.get(p + "fc1.weight", {F, E});
            L.b_up = get_bias(p + "fc1.bias", F);
            L.w_down = src.get(p + "fc2.weight", {E, F});
            L.b_down = get_bias(p + "fc2.bias", E);
            m.layers.push_back(std::move(L));
        }
    } else {
        fail("model",
             "{}: architecture '{}' is not supported (LlamaForCausalLM, "
             "Qwen2ForCausalLM, MistralForCausalLM, OPTForCausalLM)",
             cfg_path, arch);
    }
    const fs::path tok = dir / "tokenizer.json";
    if (fs::exists(tok)) m.tokenizer = Tokenizer::from_hf_json(tok.string());
    m.source = path_in;
    m.source_bytes = bytes;
    return m;
}

}  // namespace zqat
