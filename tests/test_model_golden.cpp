// The forward pass equals Hugging Face transformers (float32, eager attention) on tiny
// random-weight models made by scripts/make_synthetic_models.py (tests/data/synthetic/):
// Llama, Qwen2 (q/k/v bias, tied), OPT pre-LN / post-LN / project_in-out, a Llama whose head_dim
// is not n_embd / n_head with one kv head, and GGUF F32 copies written the way llama.cpp's
// converter writes them (llama: q/k rows permuted; qwen2: biases, not permuted).
//
// Tolerances (fp32 everywhere, other summation orders than PyTorch):
//   logits: max |ours - ref| <= 1e-4 * max(1, max |ref|)   over the whole [B, T, V] block
//   nll:    |ours - (-log_softmax(ref)[target])| <= 1e-4     (reference computed in double)
// Thread counts: 1- and 2-thread results are bit-identical.
#include <gtest/gtest.h>

#include "model_test_util.h"

#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <vector>

#include "zqat/core/error.h"
#include "zqat/core/thread_pool.h"
#include "zqat/io/tokenizer.h"
#include "zqat/model/forward.h"
#include "zqat/model/model.h"

using namespace zqat;
namespace fs = std::filesystem;

namespace {

const std::string kDir = std::string(ZQAT_TEST_DATA) + "/synthetic/";
constexpr int64_t kB = 2, kT = 11, kPrompt = 6;
constexpr double kLogitTol = 1e-4;  // relative to max(1, max |ref|)
constexpr double kNllTol = 1e-4;    // absolute

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) ADD_FAILURE() << "cannot read " << path;
    return {std::istreambuf_iterator<char>(f), {}};
}

void spit(const std::string& path, const std::string& s) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << s;
}

template <class X>
std::vector<X> read_raw(const std::string& path) {
    const std::string b = slurp(path);
    std::vector<X> v(b.size() / sizeof(X));
    std::memcpy(v.data(), b.data(), v.size() * sizeof(X));
    return v;
}

struct Golden {
    std::vector<int32_t> ids;  // [kB, kT]
    std::vector<float> ref;    // [kB, kT, V]
};

Golden read_golden(const std::string& name) {
    return {read_raw<int32_t>(kDir + name + "/ids.i32"),
            read_raw<float>(kDir + name + "/logits.f32")};
}

using test::ref_nll;
using test::rel_err;

// Everything one model must satisfy against its golden logits; returns the logits error.
void check_model(const std::string& model_path, const std::string& golden) {
    SCOPED_TRACE(model_path);
    const Model m = Model::load(model_path);
    EXPECT_FALSE(m.tokenizer.has_value());  // the synthetic checkpoints ship none
    const Golden g = read_golden(golden);
    const int64_t V = m.cfg.n_vocab;
    ASSERT_EQ(V, 256);
    ASSERT_EQ(int64_t(g.ids.size()), kB * kT);
    ASSERT_EQ(int64_t(g.ref.size()), kB * kT * V);

    ThreadPool pool1(1), pool2(2);

    // Batched logits [2, 11, 256].
    Forward fwd(m, kB, kT, pool2);
    std::vector<float> logits(g.ref.size());
    fwd.logits(g.ids.data(), logits.data());
    const double err = rel_err(logits.data(), g.ref.data(), g.ref.size());
    EXPECT_LE(err, kLogitTol);

    // nll [2, 10] against -log_softmax of the reference logits.
    std::vector<float> nll(size_t(kB * (kT - 1)));
    fwd.nll(g.ids.data(), nll.data());
    double nll_err = 0;
    for (int64_t b = 0; b < kB; ++b)
        for (int64_t t = 0; t + 1 < kT; ++t) {
            const double want =
                ref_nll(g.ref.data() + (b * kT + t) * V, V, g.ids[size_t(b * kT + t + 1)]);
            const double got = nll[size_t(b * (kT - 1) + t)];
            nll_err = std::max(nll_err, std::fabs(got - want));
            EXPECT_NEAR(got, want, kNllTol) << "row " << b << " position " << t;
        }

    // One thread: the same bits, for nll and logits.
    Forward fwd1(m, kB, kT, pool1);
    std::vector<float> nll1(nll.size()), logits1(logits.size());
    fwd1.nll(g.ids.data(), nll1.data());
    EXPECT_EQ(0, std::memcmp(nll.data(), nll1.data(), nll.size() * sizeof(float)));
    fwd1.logits(g.ids.data(), logits1.data());
    EXPECT_EQ(0, std::memcmp(logits.data(), logits1.data(), logits.size() * sizeof(float)));

    // A batch of one (row 1 alone) gives row 1's logits: rows do not leak into each other.
    Forward fwd_row(m, 1, kT, pool2);
    std::vector<float> row1(size_t(kT * V));
    fwd_row.logits(g.ids.data() + kT, row1.data());
    EXPECT_LE(rel_err(row1.data(), g.ref.data() + kT * V, row1.size()), kLogitTol);

    // KV-cache session over each row: a 6-token prompt, then one token at a time.
    Session s(m, kT, pool2);
    double sess_err = 0;
    for (int64_t b = 0; b < kB; ++b) {
        s.reset();
        const int32_t* row = g.ids.data() + b * kT;
        const float* ref_row = g.ref.data() + b * kT * V;
        std::span<const float> last = s.eval(std::span<const int32_t>(row, kPrompt));
        ASSERT_EQ(int64_t(last.size()), V);
        double e = rel_err(last.data(), ref_row + (kPrompt - 1) * V, size_t(V));
        EXPECT_LE(e, kLogitTol) << "row " << b << " prompt";
        sess_err = std::max(sess_err, e);
        for (int64_t t = kPrompt; t < kT; ++t) {
            last = s.eval(std::span<const int32_t>(row + t, 1));
            e = rel_err(last.data(), ref_row + t * V, size_t(V));
            EXPECT_LE(e, kLogitTol) << "row " << b << " position " << t;
            sess_err = std::max(sess_err, e);
        }
        EXPECT_EQ(s.n_past(), kT);
    }
    EXPECT_THROW(s.eval(std::span<const int32_t>(g.ids.data(), 1)), Error);  // context full

    // Uneven chunks (1, 3, 2, 5 tokens): a later call longer than the earlier ones re-plans the
    // session's buffers while the cache keeps what came before.
    s.reset();
    int64_t at = 0;
    for (const int64_t n : {1, 3, 2, 5}) {
        const std::span<const float> last =
            s.eval(std::span<const int32_t>(g.ids.data() + at, size_t(n)));
        at += n;
        sess_err = std::max(sess_err, rel_err(last.data(), g.ref.data() + (at - 1) * V, size_t(V)));
        EXPECT_LE(rel_err(last.data(), g.ref.data() + (at - 1) * V, size_t(V)), kLogitTol)
            << "chunk ending at " << at;
    }

    std::printf("  %-26s logits %.2e  nll %.2e  session %.2e  (rel. to max(1,|ref|)=%.2f)\n",
                fs::path(model_path).filename().c_str(), err, nll_err, sess_err,
                double(*std::max_element(g.ref.begin(), g.ref.end(), [](float a, float b) {
                    return std::fabs(a) < std::fabs(b);
                })));
}

}  // namespace

TEST(ModelGolden, Llama) {
    check_model(kDir + "llama", "llama");
}
TEST(ModelGolden, LlamaGgufPermutedQK) {
    check_model(kDir + "llama.gguf", "llama");
}
TEST(ModelGolden, Qwen2TiedQkvBias) {
    check_model(kDir + "qwen2", "qwen2");
}
TEST(ModelGolden, Qwen2Gguf) {
    check_model(kDir + "qwen2.gguf", "qwen2");
}
TEST(ModelGolden, OptPreLn) {
    check_model(kDir + "opt", "opt");
}
TEST(ModelGolden, OptProjectInOut) {
    check_model(kDir + "opt_proj", "opt_proj");
}
TEST(ModelGolden, OptPostLn) {
    check_model(kDir + "opt_postln", "opt_postln");
}
TEST(ModelGolden, LlamaHeadDimMqaTied) {
    check_model(kDir + "llama_hd", "llama_hd");
}
TEST(ModelGolden, LlamaHeadDimMqaTiedGguf) {
    check_model(kDir + "llama_hd.gguf", "llama_hd");
}

// The loaded configuration is what the script wrote.
TEST(ModelGolden, Configs) {
    const Model l = Model::load(kDir + "llama");
    EXPECT_EQ(l.cfg.arch, Arch::llama);
    EXPECT_EQ(l.cfg.n_layer, 2);
    EXPECT_EQ(l.cfg.n_head_kv, 2);
    EXPECT_EQ(l.cfg.n_ff, 96);
    EXPECT_FALSE(l.cfg.tie_embeddings);
    EXPECT_FLOAT_EQ(l.cfg.rope_theta, 10000.f);
    EXPECT_FLOAT_EQ(l.cfg.norm_eps, 1e-5f);
    const Model lg = Model::load(kDir + "llama.gguf");
    EXPECT_EQ(lg.n_params(), l.n_params());
    EXPECT_EQ(lg.cfg.n_ctx_train, 128);
    const Model q = Model::load(kDir + "qwen2.gguf");
    EXPECT_TRUE(q.cfg.tie_embeddings);
    EXPECT_TRUE(q.cfg.qkv_bias);
    EXPECT_FLOAT_EQ(q.cfg.rope_theta, 1e6f);
    EXPECT_EQ(q.n_params(), Model::load(kDir + "qwen2").n_params());
    const Model h = Model::load(kDir + "llama_hd.gguf");
    EXPECT_EQ(h.cfg.head_dim, 16);
    EXPECT_EQ(h.cfg.n_embd, 48);
    EXPECT_EQ(h.cfg.n_head_kv, 1);
    const Model o = Model::load(kDir + "opt_proj");
    EXPECT_EQ(o.cfg.arch, Arch::opt);
    EXPECT_EQ(o.cfg.word_embed_proj_dim, 32);
    EXPECT_FALSE(Model::load(kDir + "opt_postln").out_norm.data);
}

// Corrupt copies of a checkpoint: Error whose message names the file and the field or tensor.
class ModelGoldenBroken : public ::testing::Test {
  protected:
    void SetUp() override {
        tmp_ = fs::temp_directory_path() /
               ("zqat_golden_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(tmp_);
    }
    void TearDown() override { fs::remove_all(tmp_); }

    // A copy of tests/data/synthetic/<name> in the temp dir.
    fs::path copy_of(const std::string& name) {
        fs::create_directories(tmp_);
        fs::copy(kDir + name, tmp_ / name);
        return tmp_ / name;
    }
    static std::string error_of(const fs::path& p) {
        try {
            Model::load(p.string());
        } catch (const Error& e) {
            return e.what();
        }
        return "(no error)";
    }
    fs::path tmp_;
};

TEST_F(ModelGoldenBroken, ConfigMissingField) {
    const fs::path dir = copy_of("llama");
    const std::string cfg = (dir / "config.json").string(), orig = slurp(cfg);
    for (const std::string key : {"num_attention_heads", "vocab_size", "intermediate_size"}) {
        std::string s = orig;
        const size_t at = s.find("\"" + key + "\"");
        ASSERT_NE(at, std::string::npos) << key;
        s.replace(at + 1, key.size(), key + "_gone");  // the field is no longer there
        spit(cfg, s);
        const std::string e = error_of(dir);
        EXPECT_NE(e.find(cfg), std::string::npos) << e;
        EXPECT_NE(e.find(key), std::string::npos) << e;
    }
    const fs::path opt = copy_of("opt");
    const std::string ocfg = (opt / "config.json").string();
    std::string s = slurp(ocfg);
    s.replace(s.find("\"ffn_dim\""), 9, "\"ffn_dxm\"");
    spit(ocfg, s);
    const std::string e = error_of(opt);
    EXPECT_NE(e.find(ocfg), std::string::npos) << e;
    EXPECT_NE(e.find("ffn_dim"), std::string::npos) << e;
}

// safetensors header edited so one weight has the transposed shape (same bytes, same offsets).
TEST_F(ModelGoldenBroken, WeightWithWrongShape) {
    struct Case {
        const char* model;
        const char* tensor;
        const char* shape;
        const char* wrong;
        const char* printed;  // the wrong shape as the message prints it
    };
    for (const Case c :
         {Case{"llama", "model.layers.1.mlp.up_proj.weight", "[96,64]", "[64,96]", "[64, 96]"},
          Case{"opt", "model.decoder.layers.0.fc1.weight", "[128,64]", "[64,128]", "[64, 128]"}}) {
        SCOPED_TRACE(c.model);
        const fs::path dir = copy_of(c.model);
        const std::string st = (dir / "model.safetensors").string();
        std::string bytes = slurp(st);
        const size_t name_at = bytes.find(std::string("\"") + c.tensor + "\"");
        ASSERT_NE(name_at, std::string::npos);
        const size_t shape_at = bytes.find(c.shape, name_at);
        ASSERT_NE(shape_at, std::string::npos);
        ASSERT_LT(shape_at, bytes.find('}', name_at));  // inside this tensor's entry
        bytes.replace(shape_at, std::strlen(c.shape), c.wrong);
        spit(st, bytes);
        const std::string e = error_of(dir);
        EXPECT_NE(e.find(st), std::string::npos) << e;
        EXPECT_NE(e.find(c.tensor), std::string::npos) << e;
        EXPECT_NE(e.find(c.printed), std::string::npos) << e;
    }
}

TEST_F(ModelGoldenBroken, MissingWeight) {
    const fs::path dir = copy_of("qwen2");
    const std::string st = (dir / "model.safetensors").string();
    std::string bytes = slurp(st);
    const std::string name = "model.layers.0.self_attn.k_proj.bias";
    const size_t at = bytes.find("\"" + name + "\"");
    ASSERT_NE(at, std::string::npos);
    bytes[at + 1 + name.size() - 4] = 'X';  // "...k_proj.Xias": the bias is gone
    spit(st, bytes);
    const std::string e = error_of(dir);
    EXPECT_NE(e.find(name), std::string::npos) << e;
    EXPECT_NE(e.find(dir.filename().string()), std::string::npos) << e;
}

// The real default model (SmolLM2-135M-Instruct Q4_1 GGUF) when ZQAT_MODEL names it.
TEST(ModelGoldenReal, SmolLM2) {
    const char* path = std::getenv("ZQAT_MODEL");
    if (!path || !fs::exists(path)) GTEST_SKIP() << "ZQAT_MODEL not set or missing";
    const Model m = Model::load(path);
    ASSERT_TRUE(m.tokenizer.has_value());

    std::vector<int32_t> ids = m.tokenizer->encode(
        "The capital of France is Paris. The capital of Italy is Rome, and the capital of Spain "
        "is Madrid.",
        true);
    ASSERT_GE(ids.size(), 16u);
    ids.resize(16);
    ThreadPool pool1(1), pool2(2);
    std::vector<float> a(15), b(15);
    Forward(m, 1, 16, pool1).nll(ids.data(), a.data());
    Forward(m, 1, 16, pool2).nll(ids.data(), b.data());
    for (float x : a) EXPECT_TRUE(std::isfinite(x)) << x;
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));

    const std::vector<int32_t> prompt = m.tokenizer->encode("The capital of France is", true);
    Session s(m, 64, pool2);
    std::span<const float> logits = s.eval(prompt);
    std::string text;
    for (int i = 0; i < 4; ++i) {
        const int32_t next =
            int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
        text += m.tokenizer->token_bytes(next);
        logits = s.eval(std::span<const int32_t>(&next, 1));
    }
    std::string shown;  // the continuation on one line
    for (const char ch : text) shown += ch == '\n' ? std::string("\\n") : std::string(1, ch);
    std::printf("  greedy continuation: '%s'\n", shown.c_str());
    EXPECT_NE(text.find(" Paris"), std::string::npos) << text;
}
