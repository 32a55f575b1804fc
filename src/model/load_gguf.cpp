// Model::load for GGUF files of the llama architecture family (llama, qwen2), including the
// quantized files save_gguf writes (docs/FORMAT.md): a linear is either "<name>" (any dtype,
// converted to F32) or the packed triplet <name>.qcodes / .qscales / .qzeros, kept packed and
// zero-copy from the mapping.
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "load_common.h"
#include "zqat/core/error.h"
#include "zqat/io/gguf.h"
#include "zqat/model/save.h"

namespace zqat {

namespace {

// llama.cpp's converter stores Llama q/k rows (and their biases) permuted for interleaved-pair
// RoPE (see rope_permute_rows). Undo it so the forward uses HF's rotate_half RoPE for every
// source. t [n_head*D] or [n_head*D, in], F32.
Tensor unpermute_rope_rows(const Tensor& t, int64_t n_head) {
    Tensor out = Tensor::zeros(t.name, t.shape);
    const int64_t row = t.shape.size() > 1 ? t.dim(1) : 1;
    rope_permute_rows(t.f32(), out.mutable_f32(), t.dim(0), row * 4, n_head, false);
    return out;
}

// Heap copies of a packed weight's arrays (un-permuted q/k, or fp16 arrays at an odd address).
struct PackedCopy {
    std::vector<uint8_t> codes;
    std::vector<uint16_t> scales, zeros;
};

class GgufLinears {
  public:
    GgufLinears(const gguf::File& f, const std::string& path) : f_(f), path_(path) {}

    // "<name>" as F32 or its packed triplet; rows are un-permuted when permute_heads > 0.
    Tensor get(const TensorSource& src, const std::string& name, int64_t rows, int64_t cols,
               int64_t permute_heads) {
        const gguf::TensorInfo* codes = f_.find_tensor(name + ".qcodes");
        const gguf::TensorInfo* scales = f_.find_tensor(name + ".qscales");
        const gguf::TensorInfo* zeros = f_.find_tensor(name + ".qzeros");
        if (!codes && !scales && !zeros) {
            Tensor w = src.get(name, {rows, cols});
            return permute_heads > 0 ? unpermute_rope_rows(w, permute_heads) : w;
        }
        if (f_.find_tensor(name))
            fail("model", "{}: tensor '{}' is stored both plain and packed (.qcodes)", path_, name);
        for (auto [t, suffix] :
             {std::pair{codes, ".qcodes"}, {scales, ".qscales"}, {zeros, ".qzeros"}})
            if (!t)
                fail("model",
                     "{}: packed tensor '{}' has no '{}{}' (a packed linear needs .qcodes, "
                     ".qscales and .qzeros)",
                     path_, name, name, suffix);
        const int bits = weight_bits(codes->name);
        PackedWeight p;
        p.bits = bits;
        p.rows = rows;
        p.cols = cols;
        p.row_bytes = PackedWeight::row_bytes_for(cols, bits);
        expect(*codes, DType::I8, {rows, p.row_bytes},
               fmt::format("I8 [{}, {}] ({} columns of {} bits)", rows, p.row_bytes, cols, bits));
        const bool grouped =
            scales->shape.size() == 2 && scales->shape[1] > 0 && cols % scales->shape[1] == 0;
        const int64_t ng = grouped ? scales->shape[1] : 1;
        const std::string want_sz =
            fmt::format("F16 [{}, n_groups] with n_groups dividing {}", rows, cols);
        expect(*scales, DType::F16, {rows, grouped ? ng : -2}, want_sz);  // -2: fails
        expect(*zeros, DType::F16, {rows, ng},
               fmt::format("F16 [{}, {}] like '{}'", rows, ng, scales->name));
        p.group = cols / ng;

        const Tensor c = f_.tensor(*codes), s = f_.tensor(*scales), z = f_.tensor(*zeros);
        auto fp16_at = [](const void* base, int64_t i) {
            uint16_t h;
            std::memcpy(&h, static_cast<const uint8_t*>(base) + i * 2, 2);
            return fp16_to_f32(h);
        };
        // Checked in file order (before any un-permutation), so indices and offsets are the
        // file's. A scale must be a positive finite step and a zero point an integer code, or the
        // weights would silently become NaN or garbage.
        const int64_t qmax = (int64_t(1) << bits) - 1;
        for (int64_t i = 0; i < rows * ng; ++i) {
            const float d = fp16_at(s.data, i), zp = fp16_at(z.data, i);
            if (!(d > 0.0f) || !std::isfinite(d))
                fail("model",
                     "{}: tensor '{}' element {} (offset {}) is {}, expected a positive "
                     "finite scale",
                     path_, scales->name, i, scales->offset + uint64_t(i) * 2, d);
            if (!(zp >= 0.0f && zp <= float(qmax) && zp == std::nearbyint(zp)))
                fail("model",
                     "{}: tensor '{}' element {} (offset {}) is {}, expected an integer "
                     "zero point in [0, {}]",
                     path_, zeros->name, i, zeros->offset + uint64_t(i) * 2, zp, qmax);
        }
        auto aligned = [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data) % 2 == 0; };
        if (permute_heads <= 0 && aligned(s) && aligned(z)) {
            // Zero-copy: the arrays live in the mapping, which the owner keeps alive.
            p.codes = static_cast<const uint8_t*>(c.data);
            p.scales = static_cast<const uint16_t*>(s.data);
            p.zeros = static_cast<const uint16_t*>(z.data);
            p.owner = c.owner;
        } else {
            auto copy = std::make_shared<PackedCopy>();
            copy->codes.resize(c.nbytes);
            copy->scales.resize(size_t(rows * ng));
            copy->zeros.resize(size_t(rows * ng));
            if (permute_heads > 0) {
                rope_permute_rows(c.data, copy->codes.data(), rows, p.row_bytes, permute_heads,
                                  false);
                rope_permute_rows(s.data, copy->scales.data(), rows, ng * 2, permute_heads, false);
                rope_permute_rows(z.data, copy->zeros.data(), rows, ng * 2, permute_heads, false);
            } else {
                std::memcpy(copy->codes.data(), c.data, c.nbytes);
                std::memcpy(copy->scales.data(), s.data, s.nbytes);
                std::memcpy(copy->zeros.data(), z.data, z.nbytes);
            }
            p.codes = copy->codes.data();
            p.scales = copy->scales.data();
            p.zeros = copy->zeros.data();
            p.owner = copy;
        }
        Tensor w;
        w.name = name;
        w.shape = {rows, cols};
        w.nbytes = p.nbytes();
        w.packed = std::make_shared<const PackedWeight>(std::move(p));
        return w;
    }

  private:
    const gguf::File& f_;
    const std::string& path_;
    int bits_ = 0;  // zqat.quant.weight_bits, read at the first packed tensor

    int weight_bits(const std::string& tensor) {
        if (bits_ != 0) return bits_;
        const char* key = "zqat.quant.weight_bits";
        if (!f_.has(key))
            fail("model", "{}: tensor '{}' is packed but metadata key '{}' is missing", path_,
                 tensor, key);
        const uint64_t b = f_.get_uint(key);
        if (b != 2 && b != 3 && b != 4 && b != 6 && b != 8)
            fail("model", "{}: tensor '{}': metadata key '{}' = {} (expected 2, 3, 4, 6 or 8)",
                 path_, tensor, key, b);
        bits_ = int(b);
        return bits_;
    }

    // shape: -1 matches any extent, -2 none.
    void expect(const gguf::TensorInfo& t, DType type, const std::vector<int64_t>& shape,
                const std::string& want) const {
        bool ok = t.dtype == type && t.shape.size() == shape.size();
        for (size_t i = 0; ok && i < shape.size(); ++i)
            ok = shape[i] == -1 || shape[i] == t.shape[i];
        if (!ok) {
            Tensor got;
            got.shape = t.shape;
            fail("model", "{}: tensor '{}' is {} {}, expected {}", path_, t.name,
                 dtype_info(t.dtype).name, got.shape_str(), want);
        }
    }
};

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
    const bool permute = !c.qkv_bias;  // llama q/k rows are stored permuted
    if (permute && c.head_dim % 2 != 0)
        fail("model", "{}: head dim {} must be even for llama's permuted q/k rows", path,
             c.head_dim);
    if (const gguf::Value* q = f.find("zqat.quant.qspec")) {
        const std::string& s = f.get_string("zqat.quant.qspec");
        try {
            c.qspec = QSpec::parse(s);
        } catch (const Error& e) {
            fail("model", "{}: metadata key 'zqat.quant.qspec' at offset {} = '{}' is invalid: {}",
                 path, q->offset, s, e.what());
        }
    }
    c.quant_method = f.get_string_or("zqat.quant.method", "");
    if (const gguf::Value* r = f.find("zqat.quant.rotation")) {
        const std::string& s = f.get_string("zqat.quant.rotation");
        if (s != "hadamard" && s != "none")
            fail("model",
                 "{}: metadata key 'zqat.quant.rotation' at offset {} = '{}' (hadamard or none "
                 "expected)",
                 path, r->offset, s);
        c.hadamard = s == "hadamard";
    }

    TensorSource src{path, [&](const std::string& name) -> std::optional<Tensor> {
                         const gguf::TensorInfo* t = f.find_tensor(name);
                         if (!t) return std::nullopt;
                         return f.tensor(*t);
                     }};
    GgufLinears lin(f, path);
    // An optional [n] vector (bias, shift), un-permuted like q/k rows when permute_heads > 0.
    auto opt = [&](const std::string& name, int64_t n, int64_t permute_heads = 0) -> Tensor {
        if (!src.has(name)) return {};
        Tensor t = src.get(name, {n});
        return permute_heads > 0 ? unpermute_rope_rows(t, permute_heads) : t;
    };
    const int64_t E = c.n_embd, D = c.head_dim, F = c.n_ff;
    const int64_t Q = c.n_head * D, KV = c.n_head_kv * D;
    const int64_t hq = permute ? c.n_head : 0, hk = permute ? c.n_head_kv : 0;
    m.tok_embd = src.get("token_embd.weight", {-1, E});
    c.n_vocab = m.tok_embd.dim(0);
    m.out_norm = src.get("output_norm.weight", {E});
    c.tie_embeddings = !src.has("output.weight");
    m.lm_head = c.tie_embeddings ? m.tok_embd : src.get("output.weight", {c.n_vocab, E});
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        LayerWeights L;
        L.attn_norm = src.get(p + "attn_norm.weight", {E});
        L.wq = lin.get(src, p + "attn_q.weight", Q, E, hq);
        L.wk = lin.get(src, p + "attn_k.weight", KV, E, hk);
        L.wv = lin.get(src, p + "attn_v.weight", KV, E, 0);
        L.wo = lin.get(src, p + "attn_output.weight", E, Q, 0);
        if (c.qkv_bias) {
            L.bq = src.get(p + "attn_q.bias", {Q});
            L.bk = src.get(p + "attn_k.bias", {KV});
            L.bv = src.get(p + "attn_v.bias", {KV});
        } else {  // llama has none, unless a folded LET shift made them
            L.bq = opt(p + "attn_q.bias", Q, hq);
            L.bk = opt(p + "attn_k.bias", KV, hk);
            L.bv = opt(p + "attn_v.bias", KV);
        }
        L.bo = opt(p + "attn_output.bias", E);
        L.ffn_norm = src.get(p + "ffn_norm.weight", {E});
        L.w_gate = lin.get(src, p + "ffn_gate.weight", F, E, 0);
        L.w_up = lin.get(src, p + "ffn_up.weight", F, E, 0);
        L.w_down = lin.get(src, p + "ffn_down.weight", E, F, 0);
        L.b_gate = opt(p + "ffn_gate.bias", F);
        L.b_up = opt(p + "ffn_up.bias", F);
        L.b_down = opt(p + "ffn_down.bias", E);
        L.attn_shift = opt(p + "attn_shift", E);
        L.ffn_shift = opt(p + "ffn_shift", E);
        L.act_clip = opt(p + "act_clip", kActClipSites);
        if (L.act_clip.data)
            for (int64_t i = 0; i < kActClipSites; ++i) {
                const float r = L.act_clip.f32()[i];
                if (!(r > 0.0f && r <= 2.0f))
                    fail("model",
                         "{}: tensor '{}act_clip' element {} is {}, expected a clipping "
                         "ratio in (0, 2]",
                         path, p, i, r);
            }
        m.layers.push_back(std::move(L));
    }
    if (f.has("tokenizer.ggml.model")) m.tokenizer = Tokenizer::from_gguf(f);
    m.source = path;
    m.source_bytes = f.file_size();
    return m;
}

}  // namespace zqat
