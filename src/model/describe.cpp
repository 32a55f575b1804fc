// `zqat inspect`: a readable summary of a model file without loading its weights.
#include <filesystem>
#include <map>

#include <fmt/format.h>

#include "load_common.h"
#include "zqat/core/error.h"
#include "zqat/io/gguf.h"
#include "zqat/io/safetensors.h"
#include "zqat/model/model.h"

namespace zqat {

namespace {

std::string human_bytes(uint64_t b) {
    if (b >= (uint64_t(1) << 30)) return fmt::format("{:.2f} GiB", double(b) / double(1 << 30));
    if (b >= (uint64_t(1) << 20)) return fmt::format("{:.1f} MiB", double(b) / double(1 << 20));
    return fmt::format("{} B", b);
}

std::string value_str(const gguf::Value& v) {
    using gguf::ValueType;
    switch (v.type) {
        case ValueType::STRING:
            return v.s.size() > 80
                       ? fmt::format("\"{}...\" ({} bytes)", v.s.substr(0, 60), v.s.size())
                       : fmt::format("\"{}\"", v.s);
        case ValueType::FLOAT32:
        case ValueType::FLOAT64:
            return fmt::format("{}", v.f);
        case ValueType::BOOL:
            return v.b ? "true" : "false";
        case ValueType::ARRAY: {
            const size_t n = v.strs.size() + v.ints.size() + v.floats.size();
            std::string head;
            for (size_t i = 0; i < std::min<size_t>(n, 4); ++i) {
                if (i) head += ", ";
                if (!v.strs.empty())
                    head += fmt::format("\"{}\"", v.strs[i]);
                else if (!v.ints.empty())
                    head += std::to_string(v.ints[i]);
                else
                    head += fmt::format("{}", v.floats[i]);
            }
            return fmt::format("[{}{}] ({} x {})", head, n > 4 ? ", ..." : "", n,
                               gguf::type_name(v.elem_type));
        }
        case ValueType::INT8:
        case ValueType::INT16:
        case ValueType::INT32:
        case ValueType::INT64:
            return std::to_string(v.i);
        default:
            return std::to_string(v.u);
    }
}

template <class Info>
void tensor_table(std::string& out, const std::vector<Info>& tensors) {
    std::map<std::string, std::pair<int, uint64_t>> by_type;
    uint64_t total = 0, params = 0;
    for (const auto& t : tensors) {
        auto& e = by_type[std::string(dtype_info(t.dtype).name)];
        e.first++;
        e.second += t.nbytes;
        total += t.nbytes;
        int64_t n = 1;
        for (int64_t d : t.shape) n *= d;
        params += uint64_t(n);
    }
    out += fmt::format("tensors: {} ({:.1f} M parameters, {} of data)\n", tensors.size(),
                       double(params) / 1e6, human_bytes(total));
    for (const auto& [name, e] : by_type)
        out += fmt::format("  {:<6} {:>5} tensors  {}\n", name, e.first, human_bytes(e.second));
    out += "tensors outside blocks and in the first block (shape in [out, in] order):\n";
    for (const auto& t : tensors) {
        const bool block =
            t.name.starts_with("blk.") || t.name.find(".layers.") != std::string::npos;
        const bool first =
            t.name.starts_with("blk.0.") || t.name.find(".layers.0.") != std::string::npos;
        if (block && !first) continue;
        Tensor shape_only;
        shape_only.shape = t.shape;
        out += fmt::format("  {:<50} {:<6} {:<16} {}\n", t.name, dtype_info(t.dtype).name,
                           shape_only.shape_str(), human_bytes(t.nbytes));
    }
}

// Files written by save_gguf: the quantization and the packed linears (a .qcodes/.qscales/.qzeros
// triplet each; docs/FORMAT.md), with the bits per weight they cost including scales and zeros.
void quant_summary(std::string& out, const gguf::File& f) {
    if (!f.has("zqat.quant.version")) return;
    const uint64_t bits = f.get_uint_or("zqat.quant.weight_bits", 0);
    out += fmt::format(
        "quantization: qspec {}, method '{}', rotation {}, format version {}, weight bits {}\n",
        f.get_string_or("zqat.quant.qspec", "?"), f.get_string_or("zqat.quant.method", ""),
        f.get_string_or("zqat.quant.rotation", "none"), f.get_uint("zqat.quant.version"), bits);
    if (bits == 0) return;
    struct Row {
        std::string name;
        int64_t rows, cols, n_groups;
        uint64_t nbytes;
    };
    std::vector<Row> packed;
    uint64_t total = 0, weights = 0;
    const std::string suffix = ".qcodes";
    for (const auto& t : f.tensors()) {
        if (!t.name.ends_with(suffix) || t.shape.size() != 2) continue;
        const std::string base = t.name.substr(0, t.name.size() - suffix.size());
        const gguf::TensorInfo* sc = f.find_tensor(base + ".qscales");
        const gguf::TensorInfo* zp = f.find_tensor(base + ".qzeros");
        if (!sc || !zp || sc->shape.size() != 2 || sc->shape[1] <= 0) continue;
        const int64_t ng = sc->shape[1];
        // The file stores row_bytes = ceil(cols * bits / 8): exact for cols * bits % 8 == 0.
        int64_t cols = t.shape[1] * 8 / int64_t(bits);
        while (cols > 0 && cols % ng != 0) --cols;
        const uint64_t nbytes = t.nbytes + sc->nbytes + zp->nbytes;
        packed.push_back({base, t.shape[0], cols, ng, nbytes});
        total += nbytes;
        weights += uint64_t(t.shape[0] * cols);
    }
    out +=
        fmt::format("packed linears: {} ({} weights in {}, {:.3f} bits per weight with scales)\n",
                    packed.size(), weights, human_bytes(total),
                    weights ? 8.0 * double(total) / double(weights) : 0.0);
    for (const Row& r : packed) {
        if (r.name.starts_with("blk.") && !r.name.starts_with("blk.0.")) continue;
        out += fmt::format("  {:<50} int{} [{}, {}] group {:<6} {}\n", r.name, bits, r.rows, r.cols,
                           r.cols / r.n_groups, human_bytes(r.nbytes));
    }
}

}  // namespace

std::string describe_model_file(const std::string& path) {
    namespace fs = std::filesystem;
    std::string out;
    if (fs::is_directory(path) || path.ends_with(".safetensors")) {
        // Loading checks every shape against config.json; weights are converted, which is fine
        // for inspection-sized models.
        const Model m = Model::load(path);
        const ModelConfig& c = m.cfg;
        out += fmt::format("file: {} (Hugging Face checkpoint, {})\n", path,
                           human_bytes(m.source_bytes));
        out += fmt::format("architecture: {}\n", c.arch == Arch::llama ? "llama" : "opt");
        out +=
            fmt::format("layers {}, n_embd {}, heads {} (kv {}), head_dim {}, ff {}, vocab {}\n",
                        c.n_layer, c.n_embd, c.n_head, c.n_head_kv, c.head_dim, c.n_ff, c.n_vocab);
        out += fmt::format("parameters: {:.1f} M, tied embeddings: {}\n",
                           double(m.n_params()) / 1e6, c.tie_embeddings);
        if (c.arch == Arch::llama)
            out += fmt::format("rope theta {}, rms eps {}, qkv bias {}, max positions {}\n",
                               c.rope_theta, c.norm_eps, c.qkv_bias, c.n_ctx_train);
        else
            out += fmt::format(
                "pre-LN {}, word_embed_proj_dim {}, norm affine {}, max positions {}\n",
                c.do_layer_norm_before, c.word_embed_proj_dim, c.norm_affine, c.n_ctx_train);
        if (m.tokenizer)
            out +=
                fmt::format("tokenizer: {} ({} tokens, bos {}, eos {})\n", m.tokenizer->kind(),
                            m.tokenizer->n_vocab(), m.tokenizer->bos_id(), m.tokenizer->eos_id());
        std::vector<safetensors::TensorInfo> all;
        for (const std::string& shard : hf_weight_files(path)) {
            const safetensors::File f = safetensors::File::open(shard);
            all.insert(all.end(), f.tensors().begin(), f.tensors().end());
        }
        tensor_table(out, all);
        return out;
    }
    const gguf::File f = gguf::File::open(path);
    out += fmt::format("file: {} (GGUF v{}, {}, alignment {})\n", path, f.version(),
                       human_bytes(f.file_size()), f.alignment());
    out += fmt::format("metadata: {} keys\n", f.metadata().size());
    for (const auto& [k, v] : f.metadata()) out += fmt::format("  {:<42} {}\n", k, value_str(v));
    tensor_table(out, f.tensors());
    quant_summary(out, f);
    return out;
}

}  // namespace zqat
