// The forward pass against Hugging Face transformers: tiny random-weight Llama, Qwen2 and OPT
// models (pre-LN, post-LN, with project_in/out) and the Llama one also as a GGUF written the way
// llama.cpp's converter writes it. Golden logits come from scripts/make_golden_models.py.
#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "zqat/core/error.h"
#include "zqat/core/thread_pool.h"
#include "zqat/model/forward.h"
#include "zqat/model/model.h"

using namespace zqat;
namespace fs = std::filesystem;

namespace {

const std::string kDir = std::string(ZQAT_TEST_DATA) + "/golden/";
constexpr int64_t B = 2, T = 11;
// Tolerance on logits: fp32 everywhere, different summation orders than PyTorch.
constexpr double kTol = 1e-4;

template <class X>
std::vector<X> read_raw(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    EXPECT_TRUE(f.good()) << path;
    std::vector<char> b{std::istreambuf_iterator<char>(f), {}};
    std::vector<X> v(b.size() / sizeof(X));
    std::memcpy(v.data(), b.data(), v.size() * sizeof(X));
    return v;
}

// max |a - b| / max(1, max |b|)
double rel_err(const float* a, const float* b, size_t n) {
    double d = 0, m = 1;
    for (size_t i = 0; i < n; ++i) {
        d = std::max(d, double(std::fabs(a[i] - b[i])));
        m = std::max(m, double(std::fabs(b[i])));
    }
    return d / m;
}

void check_model(const std::string& model_path, const std::string& golden) {
    SCOPED_TRACE(model_path);
    const Model m = Model::load(model_path);
    const auto ids = read_raw<int32_t>(kDir + golden + "/ids.i32");
    const auto ref = read_raw<float>(kDir + golden + "/logits.f32");
    const int64_t V = m.cfg.n_vocab;
    ASSERT_EQ(int64_t(ids.size()), B * T);
    ASSERT_EQ(int64_t(ref.size()), B * T * V);

    ThreadPool pool2(2), pool1(1);
    Forward fwd(m, B, T, pool2);
    std::vector<float> logits(size_t(B * T * V));
    fwd.logits(ids.data(), logits.data());
    const double err = rel_err(logits.data(), ref.data(), ref.size());
    EXPECT_LE(err, kTol);
    std::printf("  %-28s logits rel. error vs transformers %.2e\n", golden.c_str(), err);

    // nll == -log_softmax(reference logits)[next token]
    std::vector<float> nll(size_t(B * (T - 1)));
    fwd.nll(ids.data(), nll.data());
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t + 1 < T; ++t) {
            const float* row = ref.data() + (b * T + t) * V;
            double mx = *std::max_element(row, row + V), z = 0;
            for (int64_t v = 0; v < V; ++v) z += std::exp(double(row[v]) - mx);
            const double want = std::log(z) + mx - row[ids[size_t(b * T + t + 1)]];
            EXPECT_NEAR(nll[size_t(b * (T - 1) + t)], want, kTol * std::max(1.0, want));
        }

    // The same losses with one thread, bit for bit.
    Forward fwd1(m, B, T, pool1);
    std::vector<float> nll1(nll.size());
    fwd1.nll(ids.data(), nll1.data());
    EXPECT_EQ(0, std::memcmp(nll.data(), nll1.data(), nll.size() * sizeof(float)));

    // KV-cache session: a 6-token prompt, then one token at a time, matches every position.
    Session s(m, T, pool2);
    std::span<const float> last = s.eval(std::span<const int32_t>(ids.data(), 6));
    EXPECT_LE(rel_err(last.data(), ref.data() + 5 * V, size_t(V)), kTol);
    for (int64_t t = 6; t < T; ++t) {
        last = s.eval(std::span<const int32_t>(ids.data() + t, 1));
        EXPECT_LE(rel_err(last.data(), ref.data() + t * V, size_t(V)), kTol) << "position " << t;
    }
    EXPECT_THROW(s.eval(std::span<const int32_t>(ids.data(), 1)), Error);  // context full
}

}  // namespace

TEST(ModelHf, LlamaSafetensors) {
    check_model(kDir + "llama", "llama");
}
TEST(ModelHf, LlamaGgufF32) {
    check_model(kDir + "llama.gguf", "llama");
}
TEST(ModelHf, Qwen2TiedWithQkvBias) {
    check_model(kDir + "qwen2", "qwen2");
}
TEST(ModelHf, OptPreLn) {
    check_model(kDir + "opt", "opt");
}
TEST(ModelHf, OptProjectInOut) {
    check_model(kDir + "opt_proj", "opt_proj");
}
TEST(ModelHf, OptPostLn) {
    check_model(kDir + "opt_postln", "opt_postln");
}

// Broken checkpoints: errors name the file and the field or tensor.
TEST(ModelHf, BrokenCheckpointsAreErrors) {
    const fs::path tmp = fs::temp_directory_path() / ("zqat_hf_" + std::to_string(::getpid()));
    fs::remove_all(tmp);
    fs::copy(kDir + "llama", tmp);
    auto error_of = [&] {
        try {
            Model::load(tmp.string());
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    const std::string cfg = (tmp / "config.json").string();
    const std::string orig = [&] {
        std::ifstream f(cfg);
        return std::string{std::istreambuf_iterator<char>(f), {}};
    }();
    auto write_cfg = [&](std::string s) { std::ofstream(cfg) << s; };

    std::string s = orig;
    s.replace(s.find("\"num_hidden_layers\""), 19, "\"num_hidden_layerz\"");
    write_cfg(s);
    EXPECT_NE(error_of().find("num_hidden_layers"), std::string::npos) << error_of();

    s = orig;
    s.replace(s.find("\"hidden_size\": 64"), 17, "\"hidden_size\": 1e30");
    write_cfg(s);
    EXPECT_NE(error_of().find("hidden_size"), std::string::npos) << error_of();

    s = orig;  // a shape that disagrees with the weights
    s.replace(s.find("\"intermediate_size\": 96"), 23, "\"intermediate_size\": 97");
    write_cfg(s);
    const std::string e = error_of();
    EXPECT_NE(e.find("mlp.gate_proj.weight"), std::string::npos) << e;
    EXPECT_NE(e.find("config.json"), std::string::npos) << e;

    s = orig;
    s.replace(s.find("LlamaForCausalLM"), 16, "GPTJForCausalLMx");
    write_cfg(s);
    EXPECT_NE(error_of().find("not supported"), std::string::npos) << error_of();

    write_cfg(orig);
    fs::remove(tmp / "model.safetensors");
    EXPECT_NE(error_of().find("no model.safetensors"), std::string::npos) << error_of();
    fs::remove_all(tmp);
}

// The real default model: finite, thread-count independent, and it knows its capitals.
TEST(ModelReal, SmolLM2) {
    const char* path = std::getenv("ZQAT_MODEL");
    if (!path) GTEST_SKIP() << "ZQAT_MODEL not set";
    const Model m = Model::load(path);
    ASSERT_TRUE(m.tokenizer.has_value());
    const auto ids = m.tokenizer->encode("The capital of France is", true);
    ThreadPool pool1(1), pool2(2);
    std::vector<float> a(ids.size() - 1), b(ids.size() - 1);
    Forward(m, 1, int64_t(ids.size()), pool1).nll(ids.data(), a.data());
    Forward(m, 1, int64_t(ids.size()), pool2).nll(ids.data(), b.data());
    for (float x : a) EXPECT_TRUE(std::isfinite(x));
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
    Session s(m, 64, pool2);
    std::span<const float> logits = s.eval(ids);
    std::string text;
    for (int i = 0; i < 4; ++i) {
        const int32_t next =
            int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
        text += m.tokenizer->token_bytes(next);
        logits = s.eval(std::span<const int32_t>(&next, 1));
    }
    EXPECT_NE(text.find("Paris"), std::string::npos) << text;
}
