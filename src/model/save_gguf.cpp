// save_gguf: a Model back to a GGUF file of its source's architecture (llama or qwen2), with
// packed low-bit linears stored as .qcodes/.qscales/.qzeros triplets (docs/FORMAT.md).
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <vector>

#include "zqat/core/error.h"
#include "zqat/io/gguf.h"
#include "zqat/io/gguf_write.h"
#include "zqat/model/save.h"

namespace zqat {

void rope_permute_rows(const void* src, void* dst, int64_t rows, int64_t row_bytes, int64_t n_head,
                       bool to_gguf) {
    ZQAT_ASSERT(n_head > 0 && rows % n_head == 0 && (rows / n_head) % 2 == 0);
    const int64_t D = rows / n_head;
    const auto* s = static_cast<const uint8_t*>(src);
    auto* d = static_cast<uint8_t*>(dst);
    for (int64_t h = 0; h < n_head; ++h)
        for (int64_t i = 0; i < D / 2; ++i)
            for (int64_t k = 0; k < 2; ++k) {
                const int64_t g = h * D + 2 * i + k, hf = h * D + k * D / 2 + i;
                const int64_t from = to_gguf ? hf : g, to = to_gguf ? g : hf;
                std::memcpy(d + to * row_bytes, s + from * row_bytes, size_t(row_bytes));
            }
}

namespace {

bool valid_bits(int b) {
    return b == 2 || b == 3 || b == 4 || b == 6 || b == 8;
}

class Saver {
  public:
    Saver(const Model& m, const std::string& out) : m_(m), out_(out) {}

    void run() {
        namespace fs = std::filesystem;
        const ModelConfig& c = m_.cfg;
        std::error_code ec;
        if (m_.source.empty() || !fs::is_regular_file(m_.source, ec) ||
            m_.source.ends_with(".safetensors") || m_.source.ends_with(".json"))
            fail("model",
                 "{}: saving currently needs a GGUF source model (its tokenizer and metadata are "
                 "copied); this model was loaded from '{}'",
                 out_, m_.source);
        if (c.arch != Arch::llama)
            fail("model", "{}: only llama-family models (llama, qwen2) can be saved as GGUF", out_);
        const gguf::File src = gguf::File::open(m_.source);
        const std::string arch = src.get_string("general.architecture");
        if (arch != "llama" && arch != "qwen2")
            fail("model", "{}: source '{}' has architecture '{}' (llama or qwen2 expected)", out_,
                 m_.source, arch);
        if (src.get_uint_or(arch + ".block_count", 0) != uint64_t(c.n_layer) ||
            src.get_uint_or(arch + ".embedding_length", 0) != uint64_t(c.n_embd) ||
            m_.layers.size() != size_t(c.n_layer))
            fail("model", "{}: the model's shape no longer matches its source '{}'", out_,
                 m_.source);
        permute_ = arch == "llama";

        for (const auto& [k, v] : src.metadata())
            if (!k.starts_with("zqat.") && k != "general.alignment") w_.set(k, v);
        if (w_.find("general.file_type")) w_.set_u32("general.file_type", 0);  // all F32
        w_.set_string("zqat.quant.qspec", c.qspec.str());
        w_.set_string("zqat.quant.method", c.quant_method);
        if (c.hadamard) w_.set_string("zqat.quant.rotation", "hadamard");
        w_.set_u32("zqat.quant.version", 1);

        const int64_t E = c.n_embd, D = c.head_dim, F = c.n_ff, V = c.n_vocab;
        const int64_t Q = c.n_head * D, KV = c.n_head_kv * D;
        add_f32("token_embd.weight", m_.tok_embd, {V, E});
        add_f32("output_norm.weight", m_.out_norm, {E});
        // A head that no longer shares the embedding's storage is written even if it was tied.
        if (!c.tie_embeddings || m_.lm_head.data != m_.tok_embd.data)
            add_f32("output.weight", m_.lm_head, {V, E});
        for (int64_t l = 0; l < c.n_layer; ++l) {
            const LayerWeights& L = m_.layers[size_t(l)];
            const std::string p = "blk." + std::to_string(l) + ".";
            const int64_t hq = permute_ ? c.n_head : 0, hk = permute_ ? c.n_head_kv : 0;
            add_f32(p + "attn_norm.weight", L.attn_norm, {E});
            add_linear(p + "attn_q", L.wq, L.bq, Q, E, hq);
            add_linear(p + "attn_k", L.wk, L.bk, KV, E, hk);
            add_linear(p + "attn_v", L.wv, L.bv, KV, E, 0);
            add_linear(p + "attn_output", L.wo, L.bo, E, Q, 0);
            add_f32(p + "ffn_norm.weight", L.ffn_norm, {E});
            add_linear(p + "ffn_gate", L.w_gate, L.b_gate, F, E, 0);
            add_linear(p + "ffn_up", L.w_up, L.b_up, F, E, 0);
            add_linear(p + "ffn_down", L.w_down, L.b_down, E, F, 0);
            if (!L.attn_shift.empty()) add_f32(p + "attn_shift", L.attn_shift, {E});
            if (!L.ffn_shift.empty()) add_f32(p + "ffn_shift", L.ffn_shift, {E});
            if (!L.act_clip.empty()) add_f32(p + "act_clip", L.act_clip, {kActClipSites});
        }
        if (bits_ != 0) w_.set_u32("zqat.quant.weight_bits", uint32_t(bits_));
        w_.write(out_);
    }

  private:
    const Model& m_;
    const std::string& out_;
    gguf::Writer w_;
    bool permute_ = false;
    int bits_ = 0;  // of the packed weights (all share it); 0 while none seen

    void check_shape(const std::string& name, const Tensor& t, const std::vector<int64_t>& shape) {
        if (t.empty()) fail("model", "{}: tensor '{}' is missing from the model", out_, name);
        if (t.shape != shape) {
            Tensor want;
            want.shape = shape;
            fail("model", "{}: tensor '{}' has shape {}, expected {}", out_, name, t.shape_str(),
                 want.shape_str());
        }
    }

    // An owned F32 copy when t is not F32 already; else t's own bytes (kept alive by its owner).
    void add_f32(const std::string& name, const Tensor& t, const std::vector<int64_t>& shape,
                 int64_t permute_heads = 0) {
        check_shape(name, t, shape);
        if (t.is_packed())
            fail("model", "{}: tensor '{}' is packed; only linear weights may be", out_, name);
        const Tensor f = t.dtype == DType::F32 ? t : t.to_f32();
        const uint64_t nbytes = uint64_t(f.numel()) * 4;
        if (permute_heads > 0) {
            std::vector<uint8_t> b(nbytes);
            const int64_t row_bytes = shape.size() > 1 ? shape[1] * 4 : 4;
            rope_permute_rows(f.data, b.data(), shape[0], row_bytes, permute_heads, true);
            w_.add_tensor(name, shape, DType::F32, std::move(b));
        } else {
            w_.add_tensor(name, shape, DType::F32, f.data, nbytes, f.owner);
        }
    }

    // A packed [rows, row_bytes]-style array, permuted into GGUF row order when asked.
    void add_raw(const std::string& name, std::vector<int64_t> shape, DType type, const void* data,
                 uint64_t row_bytes, int64_t permute_heads, std::shared_ptr<const void> keep) {
        const int64_t rows = shape[0];
        if (permute_heads > 0) {
            std::vector<uint8_t> b(uint64_t(rows) * row_bytes);
            rope_permute_rows(data, b.data(), rows, int64_t(row_bytes), permute_heads, true);
            w_.add_tensor(name, std::move(shape), type, std::move(b));
        } else {
            w_.add_tensor(name, std::move(shape), type, data, uint64_t(rows) * row_bytes,
                          std::move(keep));
        }
    }

    // base = "blk.N.attn_q": writes base.weight (or its packed triplet) and base.bias if set.
    void add_linear(const std::string& base, const Tensor& w, const Tensor& b, int64_t rows,
                    int64_t cols, int64_t permute_heads) {
        const std::string name = base + ".weight";
        check_shape(name, w, {rows, cols});
        if (!w.is_packed()) {
            add_f32(name, w, {rows, cols}, permute_heads);
        } else {
            const PackedWeight& p = *w.packed;
            if (p.rows != rows || p.cols != cols || !valid_bits(p.bits) || p.group <= 0 ||
                cols % p.group != 0 || p.row_bytes != PackedWeight::row_bytes_for(cols, p.bits) ||
                !p.codes || !p.scales || !p.zeros)
                fail("model",
                     "{}: packed tensor '{}' is inconsistent (rows {}, cols {}, bits {}, group {}, "
                     "row_bytes {}; expected [{}, {}])",
                     out_, name, p.rows, p.cols, p.bits, p.group, p.row_bytes, rows, cols);
            if (bits_ != 0 && bits_ != p.bits)
                fail("model", "{}: packed tensor '{}' has {} bits, others {}: one width per file",
                     out_, name, p.bits, bits_);
            bits_ = p.bits;
            const int64_t ng = p.n_groups();
            add_raw(name + ".qcodes", {rows, p.row_bytes}, DType::I8, p.codes,
                    uint64_t(p.row_bytes), permute_heads, w.packed);
            add_raw(name + ".qscales", {rows, ng}, DType::F16, p.scales, uint64_t(ng) * 2,
                    permute_heads, w.packed);
            add_raw(name + ".qzeros", {rows, ng}, DType::F16, p.zeros, uint64_t(ng) * 2,
                    permute_heads, w.packed);
        }
        if (!b.empty()) add_f32(base + ".bias", b, {rows}, permute_heads);
    }
};

}  // namespace

void save_gguf(const Model& m, const std::string& out_path) {
    Saver(m, out_path).run();
}

}  // namespace zqat
