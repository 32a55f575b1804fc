// save_gguf + load of quantized GGUF files: the synthetic llama (q/k rows permuted in GGUF) and
// qwen2 (biases, no permutation) with their decoder linears replaced by random packed weights,
// random biases and LET shifts, survive load(save(m)) bit for bit (packed codes/scales/zeros,
// fp32 bytes, qspec, logits), a full-precision save reproduces the source's tensor bytes, and
// corrupted files (wrong shapes, a missing part, bad bits or qspec) fail naming file and tensor.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "zqat/core/error.h"
#include "zqat/core/thread_pool.h"
#include "zqat/io/gguf.h"
#include "zqat/io/gguf_write.h"
#include "zqat/model/forward.h"
#include "zqat/model/model.h"
#include "zqat/model/save.h"

using namespace zqat;
namespace fs = std::filesystem;

namespace {

const std::string kDir = std::string(ZQAT_TEST_DATA) + "/synthetic/";

struct TempDir {
    fs::path dir;
    TempDir() {
        dir = fs::temp_directory_path() /
              ("zqat_save_" + std::to_string(::getpid()) + "_" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir);
        fs::create_directories(dir);
    }
    ~TempDir() { fs::remove_all(dir); }
    std::string operator/(const std::string& name) const { return (dir / name).string(); }
};

// A packed weight with random codes, scales and zero points (heap-owned).
Tensor random_packed(const std::string& name, int64_t rows, int64_t cols, int bits, int64_t group,
                     std::mt19937& rng) {
    struct Buf {
        std::vector<uint8_t> codes;
        std::vector<uint16_t> scales, zeros;
    };
    auto b = std::make_shared<Buf>();
    PackedWeight p;
    p.bits = bits;
    p.rows = rows;
    p.cols = cols;
    p.group = group;
    p.row_bytes = PackedWeight::row_bytes_for(cols, bits);
    b->codes.resize(size_t(rows * p.row_bytes));
    for (auto& c : b->codes) c = uint8_t(rng());
    std::uniform_real_distribution<float> scale(1e-3f, 5e-2f);
    for (int64_t i = 0; i < rows * p.n_groups(); ++i) {
        b->scales.push_back(f32_to_fp16(scale(rng)));
        b->zeros.push_back(f32_to_fp16(float(rng() % (1u << bits))));
    }
    p.codes = b->codes.data();
    p.scales = b->scales.data();
    p.zeros = b->zeros.data();
    p.owner = b;
    Tensor t;
    t.name = name;
    t.shape = {rows, cols};
    t.nbytes = p.nbytes();
    t.packed = std::make_shared<const PackedWeight>(p);
    return t;
}

Tensor random_f32(const std::string& name, int64_t n, std::mt19937& rng) {
    Tensor t = Tensor::zeros(name, {n});
    std::normal_distribution<float> d(0.f, 0.02f);
    for (int64_t i = 0; i < n; ++i) t.mutable_f32()[i] = d(rng);
    return t;
}

// Every decoder linear packed with (bits, group); every optional bias and both shifts set.
void quantize_randomly(Model& m, int bits, int64_t group, std::mt19937& rng) {
    for (size_t l = 0; l < m.layers.size(); ++l) {
        LayerWeights& L = m.layers[l];
        for (Tensor* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) {
            const int64_t cols = w->dim(1);
            *w = random_packed(w->name, w->dim(0), cols, bits, group ? group : cols, rng);
        }
        L.bq = random_f32("bq", L.wq.dim(0), rng);
        L.bk = random_f32("bk", L.wk.dim(0), rng);
        L.bv = random_f32("bv", L.wv.dim(0), rng);
        L.bo = random_f32("bo", L.wo.dim(0), rng);
        L.b_gate = random_f32("b_gate", L.w_gate.dim(0), rng);
        L.b_up = random_f32("b_up", L.w_up.dim(0), rng);
        L.b_down = random_f32("b_down", L.w_down.dim(0), rng);
        L.attn_shift = random_f32("attn_shift", m.cfg.n_embd, rng);
        L.ffn_shift = random_f32("ffn_shift", m.cfg.n_embd, rng);
    }
}

void expect_same_tensor(const std::string& what, const Tensor& a, const Tensor& b) {
    SCOPED_TRACE(what);
    ASSERT_EQ(a.empty(), b.empty());
    if (a.empty()) return;
    ASSERT_EQ(a.shape, b.shape);
    ASSERT_EQ(a.is_packed(), b.is_packed());
    if (a.is_packed()) {
        const PackedWeight &p = *a.packed, &q = *b.packed;
        EXPECT_EQ(p.bits, q.bits);
        EXPECT_EQ(p.rows, q.rows);
        EXPECT_EQ(p.cols, q.cols);
        EXPECT_EQ(p.group, q.group);
        ASSERT_EQ(p.row_bytes, q.row_bytes);
        EXPECT_EQ(0, std::memcmp(p.codes, q.codes, p.code_bytes()));
        const size_t n = size_t(p.rows * p.n_groups()) * 2;
        EXPECT_EQ(0, std::memcmp(p.scales, q.scales, n));
        EXPECT_EQ(0, std::memcmp(p.zeros, q.zeros, n));
        return;
    }
    ASSERT_EQ(a.dtype, DType::F32);
    ASSERT_EQ(b.dtype, DType::F32);
    EXPECT_EQ(0, std::memcmp(a.data, b.data, size_t(a.numel()) * 4));
}

void expect_same_model(const Model& a, const Model& b) {
    EXPECT_EQ(a.cfg.qspec, b.cfg.qspec);
    EXPECT_EQ(a.cfg.quant_method, b.cfg.quant_method);
    EXPECT_EQ(a.cfg.tie_embeddings, b.cfg.tie_embeddings);
    EXPECT_EQ(a.cfg.qkv_bias, b.cfg.qkv_bias);
    EXPECT_EQ(a.cfg.n_vocab, b.cfg.n_vocab);
    expect_same_tensor("tok_embd", a.tok_embd, b.tok_embd);
    expect_same_tensor("out_norm", a.out_norm, b.out_norm);
    expect_same_tensor("lm_head", a.lm_head, b.lm_head);
    ASSERT_EQ(a.layers.size(), b.layers.size());
    for (size_t l = 0; l < a.layers.size(); ++l) {
        const LayerWeights &x = a.layers[l], &y = b.layers[l];
        SCOPED_TRACE("layer " + std::to_string(l));
        const std::vector<std::pair<const char*, const Tensor LayerWeights::*>> fields = {
            {"attn_norm", &LayerWeights::attn_norm},
            {"wq", &LayerWeights::wq},
            {"wk", &LayerWeights::wk},
            {"wv", &LayerWeights::wv},
            {"wo", &LayerWeights::wo},
            {"bq", &LayerWeights::bq},
            {"bk", &LayerWeights::bk},
            {"bv", &LayerWeights::bv},
            {"bo", &LayerWeights::bo},
            {"ffn_norm", &LayerWeights::ffn_norm},
            {"w_gate", &LayerWeights::w_gate},
            {"w_up", &LayerWeights::w_up},
            {"w_down", &LayerWeights::w_down},
            {"b_gate", &LayerWeights::b_gate},
            {"b_up", &LayerWeights::b_up},
            {"b_down", &LayerWeights::b_down},
            {"attn_shift", &LayerWeights::attn_shift},
            {"ffn_shift", &LayerWeights::ffn_shift},
            {"act_clip", &LayerWeights::act_clip},
        };
        for (const auto& [name, f] : fields) expect_same_tensor(name, x.*f, y.*f);
    }
}

std::vector<float> logits_of(const Model& m) {
    ThreadPool pool(2);
    const int64_t B = 2, T = 7;
    std::vector<int32_t> ids(size_t(B * T));
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 37 + 11) % size_t(m.cfg.n_vocab));
    std::vector<float> out(size_t(B * T * m.cfg.n_vocab));
    Forward(m, B, T, pool).logits(ids.data(), out.data());
    return out;
}

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
}

void round_trip(const std::string& src, int bits, int64_t group, const std::string& qspec) {
    SCOPED_TRACE(src + " " + qspec);
    TempDir tmp;
    std::mt19937 rng(uint32_t(bits * 1000 + group));
    Model m = Model::load(kDir + src);
    quantize_randomly(m, bits, group, rng);
    m.cfg.qspec = QSpec::parse(qspec);
    m.cfg.quant_method = "test-random";
    m.cfg.hadamard = bits == 2;  // the flag round-trips (the weights are random either way)
    const std::string out = tmp / "q.gguf";
    save_gguf(m, out);
    EXPECT_EQ(std::distance(fs::directory_iterator(tmp.dir), fs::directory_iterator()), 1);

    const Model r = Model::load(out);
    expect_same_model(m, r);
    EXPECT_EQ(r.cfg.qspec.str(), qspec);
    EXPECT_EQ(r.cfg.hadamard, m.cfg.hadamard);

    // The source's metadata is carried over, plus the zqat.quant keys.
    const gguf::File s = gguf::File::open(kDir + src), g = gguf::File::open(out);
    for (const auto& [k, v] : s.metadata()) {
        if (k != "general.alignment") {
            EXPECT_TRUE(g.has(k)) << k;
        }
    }
    EXPECT_EQ(g.get_uint("zqat.quant.version"), 1u);
    EXPECT_EQ(g.get_uint("zqat.quant.weight_bits"), uint64_t(bits));
    EXPECT_EQ(g.get_string("zqat.quant.method"), "test-random");
    EXPECT_FALSE(g.find_tensor("blk.0.attn_q.weight"));
    ASSERT_TRUE(g.find_tensor("blk.0.attn_q.weight.qcodes"));
    EXPECT_EQ(g.find_tensor("blk.0.attn_q.weight.qcodes")->dtype, DType::I8);
    EXPECT_EQ(g.find_tensor("blk.0.attn_q.weight.qscales")->dtype, DType::F16);

    // Non-permuted packed weights are views into the mapping: their arrays sit as far apart as
    // the tensors do in the file.
    const size_t last = r.layers.size() - 1;
    const PackedWeight& v = *r.layers[last].wv.packed;
    const auto off = [&](const char* part) {
        return int64_t(
            g.find_tensor("blk." + std::to_string(last) + ".attn_v.weight." + part)->offset);
    };
    EXPECT_EQ(reinterpret_cast<const uint8_t*>(v.scales) - v.codes, off("qscales") - off("qcodes"));
    EXPECT_EQ(reinterpret_cast<const uint8_t*>(v.zeros) - v.codes, off("qzeros") - off("qcodes"));

    // File size: packed codes + 4 bytes per group (fp16 scale + zero), 4 bytes per fp32 element.
    uint64_t expect_data = 0;
    for (const gguf::TensorInfo& t : g.tensors()) expect_data += t.nbytes;
    EXPECT_GE(g.file_size(), expect_data);

    // Saving the loaded model again gives the same bytes.
    const std::string again = tmp / "q2.gguf";
    save_gguf(r, again);
    EXPECT_EQ(slurp(again), slurp(out));

    // And the forward sees the same model.
    EXPECT_EQ(logits_of(m), logits_of(r));
}

// Rewrites `in` to `out` with edit() applied to the tensor list and metadata.
void rewrite(const std::string& in, const std::string& out,
             const std::function<void(gguf::Writer&, const gguf::TensorInfo&, const Tensor&)>& edit,
             const std::function<void(gguf::Writer&)>& meta = {}) {
    const gguf::File f = gguf::File::open(in);
    gguf::Writer w;
    for (const auto& [k, v] : f.metadata()) w.set(k, v);
    if (meta) meta(w);
    for (const gguf::TensorInfo& t : f.tensors()) edit(w, t, f.tensor(t));
    w.write(out);
}

void copy_tensor(gguf::Writer& w, const gguf::TensorInfo& t, const Tensor& x) {
    w.add_tensor(t.name, t.shape, t.dtype, x.data, x.nbytes, x.owner);
}

void expect_load_error(const std::string& path, const std::vector<std::string>& parts) {
    try {
        (void)Model::load(path);
        ADD_FAILURE() << "loading " << path << " succeeded";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(path), std::string::npos) << msg;
        for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
    }
}

}  // namespace

TEST(ModelSave, FullPrecisionLlamaReproducesSourceTensors) {
    TempDir tmp;
    const Model m = Model::load(kDir + "llama.gguf");
    const std::string out = tmp / "fp.gguf";
    save_gguf(m, out);
    const Model r = Model::load(out);
    expect_same_model(m, r);
    EXPECT_EQ(r.cfg.qspec, QSpec{});
    // q/k are permuted back into llama.cpp's order: every tensor's bytes equal the source's.
    const gguf::File s = gguf::File::open(kDir + "llama.gguf"), g = gguf::File::open(out);
    EXPECT_EQ(g.tensors().size(), s.tensors().size());
    for (const gguf::TensorInfo& t : s.tensors()) {
        SCOPED_TRACE(t.name);
        ASSERT_EQ(t.dtype, DType::F32);
        const gguf::TensorInfo* u = g.find_tensor(t.name);
        ASSERT_TRUE(u);
        EXPECT_EQ(u->shape, t.shape);
        ASSERT_EQ(u->nbytes, t.nbytes);
        EXPECT_EQ(0, std::memcmp(s.tensor(t).data, g.tensor(*u).data, t.nbytes));
    }
    EXPECT_FALSE(g.has("zqat.quant.weight_bits"));
    EXPECT_EQ(g.get_string("zqat.quant.qspec"), QSpec{}.str());
    EXPECT_EQ(logits_of(m), logits_of(r));
}

TEST(ModelSave, LlamaPackedInt4PerChannel) {
    round_trip("llama.gguf", 4, 0, "W4A16");
}

TEST(ModelSave, LlamaPackedInt2Group32) {
    round_trip("llama.gguf", 2, 32, "W2A16g32");
}

TEST(ModelSave, LlamaHeadDimPackedInt3) {
    round_trip("llama_hd.gguf", 3, 16, "W3A8");  // head_dim 16 != 48 / 4, one kv head
}

TEST(ModelSave, Qwen2PackedInt8Group32) {
    round_trip("qwen2.gguf", 8, 32, "W8A8g32sym");
}

TEST(ModelSave, PermutedRowsMatchLlamaCppOrder) {
    // A llama q bias and a packed q weight (codes, scales, zeros) are saved in llama.cpp's row
    // order: HF row s*D/2 + i of head h lands at GGUF row h*D + 2i + s.
    TempDir tmp;
    std::mt19937 rng(7);
    Model m = Model::load(kDir + "llama.gguf");
    LayerWeights& L = m.layers[0];
    L.bq = random_f32("bq", L.wq.dim(0), rng);
    L.wq = random_packed("wq", L.wq.dim(0), L.wq.dim(1), 4, 32, rng);
    const std::string out = tmp / "b.gguf";
    save_gguf(m, out);
    const gguf::File g = gguf::File::open(out);
    auto data = [&](const char* n) { return g.tensor(*g.find_tensor(n)).data; };
    const auto* gb = static_cast<const float*>(data("blk.0.attn_q.bias"));
    const auto* gc = static_cast<const uint8_t*>(data("blk.0.attn_q.weight.qcodes"));
    const auto* gs = static_cast<const uint16_t*>(data("blk.0.attn_q.weight.qscales"));
    const auto* gz = static_cast<const uint16_t*>(data("blk.0.attn_q.weight.qzeros"));
    const PackedWeight& p = *L.wq.packed;
    const int64_t D = m.cfg.head_dim, rb = p.row_bytes, ng = p.n_groups();
    for (int64_t h = 0; h < m.cfg.n_head; ++h)
        for (int64_t i = 0; i < D / 2; ++i)
            for (int64_t s = 0; s < 2; ++s) {
                const int64_t gr = h * D + 2 * i + s, hr = h * D + s * D / 2 + i;
                EXPECT_EQ(gb[gr], L.bq.f32()[hr]);
                EXPECT_EQ(0, std::memcmp(gc + gr * rb, p.codes + hr * rb, size_t(rb)));
                EXPECT_EQ(0, std::memcmp(gs + gr * ng, p.scales + hr * ng, size_t(ng) * 2));
                EXPECT_EQ(0, std::memcmp(gz + gr * ng, p.zeros + hr * ng, size_t(ng) * 2));
            }
    expect_same_model(m, Model::load(out));
}

TEST(ModelSave, NeedsGgufSource) {
    TempDir tmp;
    const Model m = Model::load(kDir + "llama");  // a Hugging Face folder
    const std::string out = tmp / "x.gguf";
    try {
        save_gguf(m, out);
        ADD_FAILURE() << "saving an HF-sourced model succeeded";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("needs a GGUF source model"), std::string::npos)
            << e.what();
    }
    EXPECT_FALSE(fs::exists(out));
}

TEST(ModelSave, RejectsMixedBitsAndBadPackedWeights) {
    TempDir tmp;
    std::mt19937 rng(3);
    Model m = Model::load(kDir + "llama.gguf");
    quantize_randomly(m, 4, 0, rng);
    m.layers[1].w_up = random_packed("w_up", m.layers[1].w_up.dim(0), m.cfg.n_embd, 2, 32, rng);
    EXPECT_THROW(save_gguf(m, tmp / "mixed.gguf"), Error);
    m.layers[1].w_up = random_packed("w_up", m.layers[1].w_up.dim(0), m.cfg.n_embd - 8, 4, 8, rng);
    EXPECT_THROW(save_gguf(m, tmp / "shape.gguf"), Error);
    EXPECT_EQ(std::distance(fs::directory_iterator(tmp.dir), fs::directory_iterator()), 0);
}

// Activation clipping ratios (LayerWeights::act_clip) are saved per layer and read back; the
// forward uses them (ratios of 1 are the same numbers as none); a ratio outside (0, 2] in a file
// is an error naming the tensor and element.
TEST(ModelSave, ActClipRoundTripsAndIsChecked) {
    TempDir tmp;
    std::mt19937 rng(7);
    Model m = Model::load(kDir + "llama.gguf");
    quantize_randomly(m, 4, 32, rng);
    m.cfg.qspec = QSpec::parse("W4A4g32");
    const std::vector<float> before = logits_of(m);
    for (LayerWeights& L : m.layers) {
        L.act_clip = Tensor::zeros("act_clip", {kActClipSites});
        std::fill_n(L.act_clip.mutable_f32(), kActClipSites, 1.0f);
    }
    EXPECT_EQ(logits_of(m), before);  // ratio 1 is min/max
    const float r[kActClipSites] = {0.9f, 0.75f, 1.0f, 0.6f};
    std::copy_n(r, kActClipSites, m.layers[1].act_clip.mutable_f32());
    const std::vector<float> clipped = logits_of(m);
    EXPECT_NE(clipped, before);
    const std::string good = tmp / "good.gguf";
    save_gguf(m, good);
    const Model back = Model::load(good);
    expect_same_model(m, back);
    EXPECT_EQ(logits_of(back), clipped);

    const std::string bad = tmp / "bad.gguf";
    for (const float v : {0.0f, -0.5f, 2.5f, std::nanf("")}) {
        rewrite(good, bad, [&](gguf::Writer& w, const gguf::TensorInfo& t, const Tensor& x) {
            if (t.name != "blk.1.act_clip") return copy_tensor(w, t, x);
            std::vector<float> b(x.f32(), x.f32() + x.numel());
            b[2] = v;
            std::vector<uint8_t> bytes(b.size() * 4);
            std::memcpy(bytes.data(), b.data(), bytes.size());
            w.add_tensor(t.name, t.shape, DType::F32, bytes);
        });
        expect_load_error(bad, {"blk.1.act_clip", "element 2", "(0, 2]"});
    }
    // And one of the wrong length.
    rewrite(good, bad, [&](gguf::Writer& w, const gguf::TensorInfo& t, const Tensor& x) {
        if (t.name != "blk.0.act_clip") return copy_tensor(w, t, x);
        w.add_tensor(t.name, {3}, DType::F32, std::vector<uint8_t>(12));
    });
    expect_load_error(bad, {"blk.0.act_clip"});
}

TEST(ModelSave, CorruptFilesNameFileAndTensor) {
    TempDir tmp;
    std::mt19937 rng(5);
    Model m = Model::load(kDir + "llama.gguf");
    quantize_randomly(m, 4, 32, rng);
    m.cfg.qspec = QSpec::parse("W4A16g32");
    const std::string good = tmp / "good.gguf";
    save_gguf(m, good);
    const std::string bad = tmp / "bad.gguf";

    // qcodes of the wrong shape.
    rewrite(good, bad, [](gguf::Writer& w, const gguf::TensorInfo& t, const Tensor& x) {
        if (t.name != "blk.0.attn_v.weight.qcodes") return copy_tensor(w, t, x);
        w.add_tensor(t.name, {t.shape[0], t.shape[1] - 1}, DType::I8,
                     std::vector<uint8_t>(size_t(t.shape[0] * (t.shape[1] - 1))));
    });
    expect_load_error(bad, {"blk.0.attn_v.weight.qcodes", "expected I8 [32, 32]"});

    // qcodes of the wrong type.
    rewrite(good, bad, [](gguf::Writer& w, const gguf::TensorInfo& t, const Tensor& x) {
        if (t.name != "blk.1.ffn_down.weight.qcodes") return copy_tensor(w, t, x);
        w.add_tensor(t.name, {t.shape[0], t.shape[1] / 2}, DType::F16, x.data, x.nbytes, x.owner);
    });
    expect_load_error(bad, {"blk.1.ffn_down.weight.qcodes", "F16"});

    // A missing qzeros.
    rewrite(good, bad, [](gguf::Writer& w, const gguf::TensorInfo& t, const Tensor& x) {
        if (t.name != "blk.1.ffn_up.weight.qzeros") copy_tensor(w, t, x);
    });
    expect_load_error(bad, {"blk.1.ffn_up.weight", "blk.1.ffn_up.weight.qzeros"});

    // Scales whose group count does not divide the row (3 groups of 64 columns).
    rewrite(good, bad, [](gguf::Writer& w, const gguf::TensorInfo& t, const Tensor& x) {
        if (t.name != "blk.0.ffn_gate.weight.qscales") return copy_tensor(w, t, x);
        w.add_tensor(t.name, {t.shape[0], 3}, DType::F16,
                     std::vector<uint8_t>(size_t(t.shape[0] * 3 * 2)));
    });
    expect_load_error(bad, {"blk.0.ffn_gate.weight.qscales", "dividing 64"});

    // Zeros of another shape than the scales.
    rewrite(good, bad, [](gguf::Writer& w, const gguf::TensorInfo& t, const Tensor& x) {
        if (t.name != "blk.0.attn_output.weight.qzeros") return copy_tensor(w, t, x);
        w.add_tensor(t.name, {t.shape[0], 1}, DType::F16,
                     std::vector<uint8_t>(size_t(t.shape[0] * 2)));
    });
    expect_load_error(bad, {"blk.0.attn_output.weight.qzeros", "F16 [64, 2]"});

    // Both the plain tensor and its packed triplet.
    rewrite(good, bad, [](gguf::Writer& w, const gguf::TensorInfo& t, const Tensor& x) {
        copy_tensor(w, t, x);
        if (t.name == "blk.0.attn_norm.weight")
            w.add_tensor("blk.0.attn_q.weight", {64, 64}, DType::F32,
                         std::vector<uint8_t>(64 * 64 * 4));
    });
    expect_load_error(bad, {"blk.0.attn_q.weight", "both plain and packed"});

    // Bad and missing weight bits: named with the first packed tensor.
    rewrite(good, bad, copy_tensor,
            [](gguf::Writer& w) { w.set_u32("zqat.quant.weight_bits", 5); });
    expect_load_error(bad, {"blk.0.attn_q.weight.qcodes", "zqat.quant.weight_bits", "= 5"});
    rewrite(good, bad, copy_tensor, [](gguf::Writer& w) { w.remove("zqat.quant.weight_bits"); });
    expect_load_error(bad, {"blk.0.attn_q.weight.qcodes", "zqat.quant.weight_bits", "missing"});
    // 2 bits do not match the 4-bit codes' row length.
    rewrite(good, bad, copy_tensor,
            [](gguf::Writer& w) { w.set_u32("zqat.quant.weight_bits", 2); });
    expect_load_error(bad, {"blk.0.attn_q.weight.qcodes", "64 columns of 2 bits"});

    // A qspec string that does not parse.
    rewrite(good, bad, copy_tensor,
            [](gguf::Writer& w) { w.set_string("zqat.quant.qspec", "W5A16"); });
    expect_load_error(bad, {"zqat.quant.qspec", "W5A16"});

    // A rotation this reader does not know.
    rewrite(good, bad, copy_tensor,
            [](gguf::Writer& w) { w.set_string("zqat.quant.rotation", "givens"); });
    expect_load_error(bad, {"zqat.quant.rotation", "givens", "offset"});

    // A NaN scale and a zero point that is no code: errors naming the element, not NaN weights.
    auto poke = [&](const std::string& tensor, uint16_t value) {
        rewrite(good, bad, [&](gguf::Writer& w, const gguf::TensorInfo& t, const Tensor& x) {
            if (t.name != tensor) return copy_tensor(w, t, x);
            std::vector<uint8_t> b(static_cast<const uint8_t*>(x.data),
                                   static_cast<const uint8_t*>(x.data) + x.nbytes);
            std::memcpy(b.data() + 10, &value, 2);  // element 5
            w.add_tensor(t.name, t.shape, DType::F16, b);
        });
    };
    poke("blk.1.attn_k.weight.qscales", 0x7e00);  // NaN
    expect_load_error(bad, {"blk.1.attn_k.weight.qscales", "element 5", "positive finite scale"});
    poke("blk.0.ffn_up.weight.qzeros", f32_to_fp16(3.5f));
    expect_load_error(bad, {"blk.0.ffn_up.weight.qzeros", "element 5", "integer zero point"});
    poke("blk.0.ffn_up.weight.qzeros", f32_to_fp16(16.0f));  // 4-bit codes end at 15
    expect_load_error(bad, {"blk.0.ffn_up.weight.qzeros", "[0, 15]"});

    // The untouched file still loads.
    EXPECT_NO_THROW((void)Model::load(good));
}
