// ZeroQAT training (train/qat_model.h, train/trainer.h) on the tiny synthetic Llama
// (tests/data/synthetic/llama.gguf, 2 layers, vocab 256), with token streams from a seeded
// generator instead of text: resume equivalence, thread-count determinism, non-finite losses,
// the perturbation and the update moving along the same z, the checkpoint's checks, and the
// estimator's expectation on a smooth toy loss.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "zqat/core/error.h"
#include "zqat/core/ops.h"
#include "zqat/core/packed.h"
#include "zqat/core/rng.h"
#include "zqat/core/thread_pool.h"
#include "zqat/io/mmap.h"
#include "zqat/model/forward.h"
#include "zqat/model/model.h"
#include "zqat/quant/quantize.h"
#include "zqat/train/qat_model.h"
#include "zqat/train/trainer.h"

namespace zqat {
namespace {

namespace fs = std::filesystem;
const std::string kModel = std::string(ZQAT_TEST_DATA) + "/synthetic/llama.gguf";

// Token streams with some structure (a noisy repeating pattern), so the loss is learnable.
std::vector<int32_t> stream(uint64_t seed, size_t n) {
    std::mt19937_64 rng(seed);
    std::vector<int32_t> s(n);
    for (size_t i = 0; i < n; ++i)
        s[i] = (rng() % 4 == 0) ? int32_t(rng() % 256) : int32_t((i * 7 + seed) % 64);
    return s;
}

TrainConfig small_config(const std::string& qspec = "W4A4") {
    TrainConfig c;
    c.model = kModel;
    c.qspec = qspec;
    c.init = "init";
    c.steps = 8;
    c.ctx = 24;
    c.bsz = 2;
    c.lr = 1e-3;  // big enough to move a 2-layer model in a few steps
    c.lr_clip = 1e-2;
    c.lr_smooth = 1e-2;
    c.eval_every = 4;
    c.eval_windows = 2;
    c.eval_ctx = 32;
    c.final_eval = "subset";
    c.save_every = 3;
    c.init_nsamples = 4;
    c.init_ctx = 24;
    return c;
}

TrainOptions small_options(int threads) {
    TrainOptions o;
    o.threads = threads;
    o.train_streams = {stream(1, 4000), stream(2, 4000)};
    o.eval_tokens = stream(3, 200);
    return o;
}

std::string temp_dir(const std::string& name) {
    const fs::path p =
        fs::temp_directory_path() / ("zqat_train_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(p);
    return p.string();
}

// metrics.jsonl without the timings.
std::vector<nlohmann::json> metrics_of(const std::string& dir) {
    std::vector<nlohmann::json> out;
    std::ifstream f(dir + "/metrics.jsonl");
    std::string line;
    while (std::getline(f, line)) {
        nlohmann::json j = nlohmann::json::parse(line);
        j.erase("seconds");
        out.push_back(j);
    }
    return out;
}

// Runs cfg whole in `a` and, in `b`, stopped after step 5 with a torn metrics line, then resumed:
// both must log and save the same bits.
void expect_resume_equals_uninterrupted(const TrainConfig& cfg, const std::string& a,
                                        const std::string& b) {
    train(cfg, a, small_options(2));
    TrainOptions stop = small_options(2);
    stop.stop_after = 5;  // state.bin holds step 3; steps 4, 5 are only in the logs
    train(cfg, b, stop);
    {  // a torn line, as kill -9 in the middle of a write leaves
        std::ofstream f(b + "/metrics.jsonl", std::ios::app);
        f << "{\"step\": 6, \"loss_pl";
    }
    TrainOptions res = small_options(2);
    res.resume = true;
    train(load_run_config(b), b, res);

    EXPECT_EQ(metrics_of(a), metrics_of(b));
    EXPECT_EQ(read_file(a + "/seeds.tsv"), read_file(b + "/seeds.tsv"));
    EXPECT_EQ(read_file(a + "/state.bin"), read_file(b + "/state.bin"));
    EXPECT_EQ(read_file(a + "/model.gguf"), read_file(b + "/model.gguf"));
}

// --rotate: the master weights are the rotated ones, on resume too; the saved model says so.
TEST(Train, RotatedResumeEqualsUninterrupted) {
    TrainConfig cfg = small_config();
    cfg.rotate = true;
    cfg.train_smooth = false;
    const std::string a = temp_dir("rot_full"), b = temp_dir("rot_resumed");
    expect_resume_equals_uninterrupted(cfg, a, b);
    EXPECT_TRUE(Model::load(a + "/model.gguf").cfg.hadamard);
    const auto m = metrics_of(a);
    EXPECT_NE(m.front()["eval_ppl"], m.back()["eval_ppl"]);
    fs::remove_all(a);
    fs::remove_all(b);
    cfg.train_smooth = true;  // LET acts on unrotated channels: refused
    EXPECT_THROW(validate(cfg), Error);
}

TEST(Train, ResumeEqualsUninterrupted) {
    const TrainConfig cfg = small_config();
    const std::string a = temp_dir("full"), b = temp_dir("resumed");
    expect_resume_equals_uninterrupted(cfg, a, b);
    TrainOptions stop = small_options(2);
    stop.stop_after = 5;
    TrainOptions res = small_options(2);
    res.resume = true;

    // A seed log that lost a line after the checkpoint cannot be replayed: an error, not a
    // silently different model.
    const std::string c = temp_dir("holed");
    train(cfg, c, stop);
    std::string seeds = read_file(c + "/seeds.tsv");
    const size_t cut = seeds.find("\n4\t");
    ASSERT_NE(cut, std::string::npos);
    seeds.erase(cut + 1, seeds.find('\n', cut + 1) - cut);
    write_file_atomic(c + "/seeds.tsv", seeds);
    try {
        train(load_run_config(c), c, res);
        FAIL() << "a holed seed log must be refused";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("seeds.tsv"), std::string::npos) << e.what();
    }
    fs::remove_all(c);
    // The run moved: the final eval differs from the start.
    const auto m = metrics_of(a);
    EXPECT_NE(m.front()["eval_ppl"], m.back()["eval_ppl"]);
    fs::remove_all(a);
    fs::remove_all(b);
}

// Activation clipping (the act_clip group, searched by the init and trained): resumes bit-exactly;
// the ratios move, by the same amount in every layer (one z for all layers), from the init's.
TEST(Train, ActClipResumeEqualsUninterrupted) {
    TrainConfig cfg = small_config();
    cfg.train_act_clip = true;
    cfg.init_act_clip = true;
    cfg.lr_act_clip = 0.01;  // small enough that no ratio reaches a bound in 8 steps
    cfg.eps_act_clip = 0.05;
    cfg.momentum = 0.5;  // the act_clip momentum buffer is checkpointed too
    cfg.val_windows = 2;
    const std::string a = temp_dir("ac_full"), b = temp_dir("ac_resumed");
    expect_resume_equals_uninterrupted(cfg, a, b);
    const Model end = Model::load(a + "/model.gguf");
    // Step 0's model: the init's ratios.
    TrainConfig zero = cfg;
    zero.steps = 1;
    zero.lr = zero.lr_clip = zero.lr_smooth = zero.lr_act_clip = 0;
    const std::string c = temp_dir("ac_start");
    train(zero, c, small_options(1));
    const Model start = Model::load(c + "/model.gguf");
    ASSERT_FALSE(start.layers[0].act_clip.empty());
    bool searched = false;  // the init's search chose some ratio below 1
    for (const LayerWeights& L : start.layers)
        for (int64_t s = 0; s < kActClipSites; ++s) searched = searched || L.act_clip.f32()[s] < 1;
    EXPECT_TRUE(searched);
    for (size_t s = 0; s < size_t(kActClipSites); ++s) {
        const float d0 = end.layers[0].act_clip.f32()[s] - start.layers[0].act_clip.f32()[s];
        EXPECT_NE(d0, 0.0f) << "site " << s << " did not train";
        for (size_t l = 1; l < end.layers.size(); ++l)
            EXPECT_NEAR(end.layers[l].act_clip.f32()[s] - start.layers[l].act_clip.f32()[s], d0,
                        1e-6f)
                << "layer " << l << " site " << s;
    }
    // The validation score (on the training streams) is logged with every evaluation.
    for (const auto& j : metrics_of(a)) {
        if (j.contains("eval_ppl")) {
            EXPECT_GT(j.value("val_ppl", 0.0), 1.0);
        }
    }
    fs::remove_all(a);
    fs::remove_all(b);
    fs::remove_all(c);
    auto refused = [](const TrainConfig& bad_cfg, const std::string& what) {
        try {
            validate(bad_cfg);
            ADD_FAILURE() << "accepted: " << what;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
        }
    };
    TrainConfig bad = small_config("W4A16");
    bad.train_act_clip = true;  // no activation quantization: nothing to clip
    refused(bad, "--act-clip needs activation quantization");
    bad.train_act_clip = false;
    bad.init_act_clip = true;
    refused(bad, "--init-act-clip needs");
    bad = small_config();
    bad.eps_act_clip = 1e-46;  // 0 as the float the step computes with
    refused(bad, "--eps-act-clip must be > 0");
    bad = small_config();
    bad.lr_act_clip = 1e39;  // infinite as a float
    refused(bad, "learning rates must be >= 0 and finite");
}

// --init-act-clip alone: the init's ratios are part of the state (not trained), and come back
// from a checkpoint on resume.
TEST(Train, InitActClipAloneResumes) {
    TrainConfig cfg = small_config();
    cfg.init_act_clip = true;
    const std::string a = temp_dir("iac_full"), b = temp_dir("iac_resumed");
    expect_resume_equals_uninterrupted(cfg, a, b);
    EXPECT_FALSE(Model::load(a + "/model.gguf").layers[0].act_clip.empty());
    fs::remove_all(a);
    fs::remove_all(b);
}

// 64-bit FNV-1a over 8-byte words as QatModel's checkpoint checksum (the tail of each write
// zero-padded), to rewrite a checkpoint in an older layout.
struct Fnv {
    uint64_t h = 0xcbf29ce484222325ull;
    void add(const std::string& s, size_t at, size_t n) {
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            std::memcpy(&w, s.data() + at + i, 8);
            h = (h ^ w) * 0x100000001b3ull;
        }
        if (i < n) {
            uint64_t w = 0;
            std::memcpy(&w, s.data() + at + i, n - i);
            h = (h ^ w) * 0x100000001b3ull;
        }
    }
};

// A run made before the act_clip group (9-field seed lines, a version-02 checkpoint without the
// act_clip arrays) resumes, and logs what an uninterrupted run does.
TEST(Train, ResumesRunsFromBeforeActClip) {
    const TrainConfig cfg = small_config();
    const std::string a = temp_dir("old_full"), b = temp_dir("old_resumed");
    train(cfg, a, small_options(2));
    TrainOptions stop = small_options(2);
    stop.stop_after = 5;
    train(cfg, b, stop);
    // seeds.tsv: drop act_clip's g and lr (fields 7 and 11).
    std::istringstream in(read_file(b + "/seeds.tsv"));
    std::string line, old;
    while (std::getline(in, line)) {
        std::vector<std::string> f;
        std::istringstream ls(line);
        for (std::string x; std::getline(ls, x, '\t');) f.push_back(x);
        ASSERT_EQ(f.size(), 11u);
        f.erase(f.begin() + 10);
        f.erase(f.begin() + 6);
        for (size_t i = 0; i < f.size(); ++i) old += f[i] + (i + 1 < f.size() ? "\t" : "\n");
    }
    write_file_atomic(b + "/seeds.tsv", old);
    // config.json without the keys added with act_clip and val_windows.
    nlohmann::json conf = nlohmann::json::parse(read_file(b + "/config.json"));
    for (const char* k :
         {"train_act_clip", "lr_act_clip", "eps_act_clip", "init_act_clip", "val_windows"})
        ASSERT_EQ(conf.erase(k), 1u) << k;
    write_file_atomic(b + "/config.json", conf.dump(2) + "\n");
    // state.bin: version 02 has no act_clip array (each layer's last, empty here).
    const std::string s = read_file(b + "/state.bin");
    std::string v2 = s.substr(0, 32);
    v2[7] = '2';
    Fnv sum;
    sum.add(v2, 0, 8);
    sum.add(v2, 8, 24);
    size_t at = 32;
    uint64_t layers;
    std::memcpy(&layers, s.data() + 16, 8);
    auto copy_array = [&](bool keep) {
        uint64_t n;
        std::memcpy(&n, s.data() + at, 8);
        if (keep) {
            const size_t o = v2.size();
            v2 += s.substr(at, 8 + size_t(n) * 4);
            sum.add(v2, o, 8);
            sum.add(v2, o + 8, size_t(n) * 4);
        } else {
            ASSERT_EQ(n, 0u);
        }
        at += 8 + size_t(n) * 4;
    };
    for (uint64_t l = 0; l < layers; ++l) {
        for (int i = 0; i < 40; ++i) copy_array(i != 39);
        uint64_t nm;
        std::memcpy(&nm, s.data() + at, 8);
        copy_array(true);  // the momentum count: 8 bytes, read as a 0-length "array" here
        ASSERT_EQ(nm, 0u);
    }
    ASSERT_EQ(at + 8, s.size());
    v2.append(reinterpret_cast<const char*>(&sum.h), 8);
    write_file_atomic(b + "/state.bin", v2);
    TrainOptions res = small_options(2);
    res.resume = true;
    train(load_run_config(b), b, res);
    EXPECT_EQ(metrics_of(a), metrics_of(b));
    EXPECT_EQ(read_file(a + "/model.gguf"), read_file(b + "/model.gguf"));
    // The resumed run appended 11-field lines after the 9-field ones; a 9-field line after an
    // 11-field one is a damaged log.
    const std::string mixed = read_file(b + "/seeds.tsv");
    ASSERT_NE(mixed.find("\n6\t"), std::string::npos);
    write_file_atomic(b + "/seeds.tsv", mixed + old.substr(0, old.find('\n') + 1));
    try {
        train(load_run_config(b), b, res);
        ADD_FAILURE() << "a 9-field line after 11-field ones must be refused";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("9 fields after lines of 11"), std::string::npos)
            << e.what();
    }
    fs::remove_all(a);
    fs::remove_all(b);
}

TEST(Train, SameLogsForAnyThreadCount) {
    for (const char* qspec : {"W4A4", "W3A16g32"}) {
        TrainConfig cfg = small_config(qspec);
        cfg.train_act_clip = QSpec::parse(qspec).quant_acts();
        cfg.directions = 2;
        cfg.momentum = 0.5;
        cfg.schedule = "cosine";
        cfg.warmup = 2;
        const std::string a = temp_dir("t1"), b = temp_dir("t2");
        train(cfg, a, small_options(1));
        train(cfg, b, small_options(2));
        EXPECT_EQ(metrics_of(a), metrics_of(b)) << qspec;
        EXPECT_EQ(read_file(a + "/state.bin"), read_file(b + "/state.bin")) << qspec;
        fs::remove_all(a);
        fs::remove_all(b);
    }
}

TEST(Train, OptModelSameLogsForAnyThreadCount) {
    // OPT: LayerNorm bias takes the LET shift, fc1 has no gate (the clip ratios' slots differ).
    TrainConfig cfg = small_config("W4A8g32");
    cfg.model = std::string(ZQAT_TEST_DATA) + "/synthetic/opt";
    cfg.steps = 4;
    const std::string a = temp_dir("opt1"), b = temp_dir("opt2");
    const TrainSummary s = train(cfg, a, small_options(1));
    train(cfg, b, small_options(2));
    EXPECT_TRUE(std::isfinite(s.final_ppl) && s.final_ppl > 1) << s.final_ppl;
    EXPECT_EQ(metrics_of(a), metrics_of(b));
    EXPECT_EQ(read_file(a + "/state.bin"), read_file(b + "/state.bin"));
    fs::remove_all(a);
    fs::remove_all(b);
}

TEST(Train, NonFiniteLossesSkipThenStop) {
    TrainConfig cfg = small_config();
    cfg.lr = 1e12;  // the first update throws the weights far outside fp16 scales
    cfg.max_nonfinite = 3;
    cfg.steps = 20;
    cfg.eval_every = 0;
    const std::string d = temp_dir("nan");
    try {
        train(cfg, d, small_options(2));
        FAIL() << "a diverged run must stop";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("non-finite losses in a row"), std::string::npos)
            << e.what();
    }
    const auto m = metrics_of(d);
    int skipped = 0;
    for (const auto& j : m) skipped += j.value("skipped", false) ? 1 : 0;
    EXPECT_EQ(skipped, 3);
    EXPECT_TRUE(m.back()["skipped"].get<bool>());
    EXPECT_TRUE(m.back()["loss_plus"].is_null());
    fs::remove_all(d);
}

TEST(Train, RefusesExistingRunAndBadConfig) {
    const std::string d = temp_dir("exists");
    TrainConfig cfg = small_config();
    cfg.steps = 1;
    cfg.final_eval = "none";
    train(cfg, d, small_options(1));
    EXPECT_THROW(train(cfg, d, small_options(1)), Error);
    fs::remove_all(d);
    TrainConfig bad = small_config();
    bad.schedule = "exponential";
    EXPECT_THROW(validate(bad), Error);
    bad = small_config();
    bad.init = "gptq";
    EXPECT_THROW(validate(bad), Error);
    bad = small_config();
    bad.qspec = "W5A4";
    EXPECT_THROW(validate(bad), Error);
}

// Loss of the materialized model on tokens [1, T].
double loss_of(QatModel& qm, Forward& fwd, const std::vector<int32_t>& tok, int sign, uint64_t seed,
               const std::array<float, kParamGroups>& eps) {
    const int64_t E = qm.work().cfg.n_embd, T = int64_t(tok.size());
    std::vector<float> x(size_t(T * E)), nll(size_t(T - 1));
    fwd.embed(tok.data(), x.data());
    for (int64_t l = 0; l < qm.work().cfg.n_layer; ++l) {
        qm.materialize(l, sign, seed, eps);
        fwd.run_layer(l, x.data());
    }
    fwd.head_nll(x.data(), tok.data(), nll.data());
    double s = 0;
    for (float v : nll) s += v;
    return s / double(nll.size());
}

// The synthetic model's QatModel after a W4A8 RTN start, every group trainable.
QatModel rtn_w4a8_qat(ThreadPool& pool) {
    Model m = Model::load(kModel);
    QuantOptions qo;
    qo.spec = QSpec::parse("W4A8");
    qo.method = QuantMethod::rtn;
    qo.keep_float = true;
    const QuantReport rep = quantize_model(m, qo, {}, pool);
    return QatModel(std::move(m), rep.clip, TrainableGroups{}, pool);
}

TEST(QatModel, PerturbationAndUpdateShareZ) {
    ThreadPool pool(2);
    QatModel qm = rtn_w4a8_qat(pool);
    Forward fwd(qm.work(), 1, 20, pool);
    const std::vector<int32_t> tok = stream(9, 20);
    const std::array<float, kParamGroups> eps = {1e-2f, 1e-2f, 1e-2f};
    const double plus = loss_of(qm, fwd, tok, +1, 77, eps);
    const double zero = loss_of(qm, fwd, tok, 0, 0, eps);
    EXPECT_NE(plus, zero);
    // theta -= (lr g) z with lr = -eps, g = 1 is theta + eps z: the + perturbation, exactly.
    ZoUpdate u;
    u.seed = 77;
    u.g = {1, 1, 1};
    u.lr = {-eps[0], -eps[1], -eps[2]};
    qm.apply_all({u}, 0);
    EXPECT_EQ(loss_of(qm, fwd, tok, 0, 0, eps), plus);

    // The packed export runs the same numbers as the fake-quant forward.
    const Model packed = qm.export_packed();
    Forward pf(packed, 1, 20, pool);
    std::vector<float> nll(19);
    pf.nll(tok.data(), nll.data());
    double s = 0;
    for (float v : nll) s += v;
    EXPECT_EQ(s / 19, plus);
}

// The act_clip group alone: its perturbation and its update move the ratios along the same z,
// which is one z for all layers; the ratios reach the forward (and the packed export).
TEST(QatModel, ActClipPerturbationAndUpdateShareZ) {
    ThreadPool pool(2);
    Model m = Model::load(kModel);
    QuantOptions qo;
    qo.spec = QSpec::parse("W4A4");
    qo.keep_float = true;
    const QuantReport rep = quantize_model(m, qo, {}, pool);
    TrainableGroups g;
    g.weights = g.clip = g.smooth = false;
    g.act_clip = true;
    QatModel qm(std::move(m), rep.clip, g, pool);
    EXPECT_EQ(qm.n_trainable(ParamGroup::act_clip), uint64_t(2 * kActClipSites));
    Forward fwd(qm.work(), 1, 20, pool);
    const std::vector<int32_t> tok = stream(9, 20);
    const std::array<float, kParamGroups> eps = {0, 0, 0, 0.1f};
    const double zero = loss_of(qm, fwd, tok, 0, 0, eps);
    const double plus = loss_of(qm, fwd, tok, +1, 77, eps);
    EXPECT_NE(plus, zero);
    qm.materialize(0, +1, 77, eps);
    const std::vector<float> r0(qm.work().layers[0].act_clip.f32(),
                                qm.work().layers[0].act_clip.f32() + kActClipSites);
    qm.materialize(1, +1, 77, eps);
    const std::vector<float> r1(qm.work().layers[1].act_clip.f32(),
                                qm.work().layers[1].act_clip.f32() + kActClipSites);
    EXPECT_EQ(r0, r1);  // both started at 1 and share z
    EXPECT_NE(r0, std::vector<float>(size_t(kActClipSites), 1.0f));
    ZoUpdate u;
    u.seed = 77;
    u.g = {0, 0, 0, 1};
    u.lr = {0, 0, 0, -eps[3]};
    qm.apply_all({u}, 0);
    EXPECT_EQ(loss_of(qm, fwd, tok, 0, 0, eps), plus);
    const Model packed = qm.export_packed();
    ASSERT_FALSE(packed.layers[1].act_clip.empty());
    EXPECT_EQ(std::vector<float>(packed.layers[1].act_clip.f32(),
                                 packed.layers[1].act_clip.f32() + kActClipSites),
              r1);
    // A spec without activation quantization has nothing to clip.
    Model m2 = Model::load(kModel);
    qo.spec = QSpec::parse("W4A16");
    const QuantReport rep2 = quantize_model(m2, qo, {}, pool);
    EXPECT_THROW(QatModel(std::move(m2), rep2.clip, g, pool), Error);
}

// A perturbed materialize makes both signs at once and hands out the other sign on the next
// call: those tensors equal the ones a call for that sign alone makes, and an update between
// the two calls is not lost (the other sign is made again from the updated weights).
TEST(QatModel, PairedSignsEqualSingleCallsAndSeeUpdates) {
    ThreadPool pool(2);
    QatModel qm = rtn_w4a8_qat(pool);
    const std::array<float, kParamGroups> eps = {1e-2f, 1e-2f, 1e-2f};
    const int64_t l = 1;
    // Every forward tensor of layer l, as numbers.
    auto layer = [&]() {
        const LayerWeights& w = qm.work().layers[size_t(l)];
        std::vector<float> v;
        for (const Tensor* t :
             {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down, &w.bq, &w.bk, &w.bv,
              &w.b_up, &w.attn_norm, &w.ffn_norm, &w.attn_shift, &w.ffn_shift})
            if (!t->empty()) v.insert(v.end(), t->f32(), t->f32() + t->numel());
        return v;
    };
    qm.materialize(l, +1, 5, eps);
    const std::vector<float> plus = layer();
    qm.materialize(l, -1, 5, eps);  // the other sign of the pair
    const std::vector<float> minus = layer();
    EXPECT_NE(plus, minus);
    qm.materialize(l, 0, 0, eps);
    qm.materialize(l, -1, 5, eps);  // alone: makes the pair with - first
    EXPECT_EQ(layer(), minus);
    qm.materialize(l, +1, 5, eps);
    EXPECT_EQ(layer(), plus);

    ZoUpdate u;
    u.seed = 9;
    u.g = {1, 1, 1};
    u.lr = {1e-2f, 1e-2f, 1e-2f};
    qm.materialize(l, +1, 5, eps);
    qm.apply(l, {u}, 0);
    qm.materialize(l, -1, 5, eps);
    const std::vector<float> minus_after = layer();
    EXPECT_NE(minus_after, minus);
    qm.materialize(l, 0, 0, eps);
    qm.materialize(l, -1, 5, eps);
    EXPECT_EQ(layer(), minus_after);
}

// The lightweight variant's storage: frozen linears are packed once, equal to RTN's packed
// weights bit for bit, untouched by updates and checkpoints; only q and v move.
TEST(QatModel, FrozenLinearsStayPackedAndBitIdentical) {
    ThreadPool pool(2);
    auto packed_bytes = [](const Tensor& t) {
        const PackedWeight& p = *t.packed;
        std::string b(reinterpret_cast<const char*>(p.codes), p.code_bytes());
        b.append(reinterpret_cast<const char*>(p.scales), size_t(p.rows * p.n_groups()) * 2);
        b.append(reinterpret_cast<const char*>(p.zeros), size_t(p.rows * p.n_groups()) * 2);
        return b;
    };
    Model ref = Model::load(kModel);
    QuantOptions qo;
    qo.spec = QSpec::parse("W4A8g32");
    qo.method = QuantMethod::rtn;
    quantize_model(ref, qo, {}, pool);  // packed RTN

    Model m = Model::load(kModel);
    qo.keep_float = true;
    const QuantReport rep = quantize_model(m, qo, {}, pool);
    TrainableGroups g;
    g.clip = g.smooth = false;
    g.slots = {true, false, true, false, false, false, false};
    QatModel qm(std::move(m), rep.clip, g, pool);
    TrainableGroups all = g;
    all.slots.fill(true);
    {
        Model m2 = Model::load(kModel);
        quantize_model(m2, qo, {}, pool);
        QatModel full(std::move(m2), rep.clip, all, pool);
        EXPECT_LT(qm.state_bytes(), full.state_bytes() / 2);
        EXPECT_EQ(full.frozen_bytes(), 0u);
    }
    EXPECT_GT(qm.frozen_bytes(), 0u);
    const Model before = qm.export_packed();
    ZoUpdate u;
    u.seed = 5;
    u.g = {3, 0, 0};
    u.lr = {1e-2f, 0, 0};
    qm.apply_all({u, u}, 0);
    const std::string d = temp_dir("frozen");
    fs::create_directories(d);
    qm.save_state(d + "/s.bin", 1);
    qm.load_state(d + "/s.bin");
    const Model after = qm.export_packed();
    for (size_t l = 0; l < after.layers.size(); ++l) {
        const LayerWeights &A = after.layers[l], &B = before.layers[l], &R = ref.layers[l];
        for (auto w : {&LayerWeights::wk, &LayerWeights::wo, &LayerWeights::w_gate,
                       &LayerWeights::w_up, &LayerWeights::w_down}) {
            ASSERT_TRUE((A.*w).is_packed());
            EXPECT_EQ((A.*w).packed, (B.*w).packed) << "a frozen linear was rebuilt";
            EXPECT_EQ(packed_bytes(A.*w), packed_bytes(R.*w)) << (A.*w).name;
        }
        EXPECT_EQ(packed_bytes(B.wq), packed_bytes(R.wq));  // q starts at RTN's too
        EXPECT_NE(packed_bytes(A.wq), packed_bytes(B.wq)) << "q did not train";
        EXPECT_NE(packed_bytes(A.wv), packed_bytes(B.wv)) << "v did not train";
    }
    // Freezing a linear while clipping trains is refused (clipping changes every linear).
    Model m3 = Model::load(kModel);
    quantize_model(m3, qo, {}, pool);
    TrainableGroups bad = g;
    bad.clip = true;
    EXPECT_THROW(QatModel(std::move(m3), rep.clip, bad, pool), Error);
}

TEST(QatModel, CheckpointDetectsCorruption) {
    ThreadPool pool(1);
    Model m = Model::load(kModel);
    QuantOptions qo;
    qo.spec = QSpec::parse("W4A16");
    qo.keep_float = true;
    const QuantReport rep = quantize_model(m, qo, {}, pool);
    QatModel qm(std::move(m), rep.clip, TrainableGroups{}, pool);
    const std::string d = temp_dir("ckpt");
    fs::create_directories(d);
    qm.save_state(d + "/s.bin", 12);
    EXPECT_EQ(qm.load_state(d + "/s.bin"), 12);
    std::string bytes = read_file(d + "/s.bin");
    bytes[bytes.size() / 2] ^= 0x40;
    write_file_atomic(d + "/bad.bin", bytes);
    EXPECT_THROW(qm.load_state(d + "/bad.bin"), Error);
    // A checkpoint of another spec (per-channel LWC logits into a g32 model) is refused.
    {
        Model m2 = Model::load(kModel);
        qo.spec = QSpec::parse("W4A16g32");
        const QuantReport rep2 = quantize_model(m2, qo, {}, pool);
        QatModel other(std::move(m2), rep2.clip, TrainableGroups{}, pool);
        try {
            other.load_state(d + "/s.bin");
            FAIL() << "a checkpoint of another qspec must be refused";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("elements, the model"), std::string::npos)
                << e.what();
        }
    }
    write_file_atomic(d + "/short.bin", bytes.substr(0, 100));
    try {
        qm.load_state(d + "/short.bin");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("short.bin"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("offset"), std::string::npos);
    }
    fs::remove_all(d);
}

// E[g z] = grad of the Gaussian-smoothed loss; for a quadratic that is the true gradient. The
// estimate uses the trainer's own pieces: projected_grad and the z of fill_normal.
TEST(Estimator, ExpectationMatchesTrueGradient) {
    const int d = 6;
    const double a[d] = {1.0, 2.0, 0.5, 3.0, 1.5, 0.25}, b[d] = {0.3, -0.2, 0.1, 0.0, -0.4, 0.05};
    const double theta[d] = {0.5, -1.0, 2.0, 0.1, -0.3, 1.0};
    auto loss = [&](const double* x) {
        double s = 0;
        for (int i = 0; i < d; ++i) s += 0.5 * a[i] * x[i] * x[i] + b[i] * x[i];
        return s;
    };
    const double eps = 1e-3;
    const int n = 40000;
    double mean[d] = {}, sq[d] = {};
    std::vector<float> z(d);
    for (int k = 0; k < n; ++k) {
        fill_normal(step_seed(5, uint64_t(k), 0), 0, 0, d, z.data());
        double xp[d], xm[d];
        for (int i = 0; i < d; ++i) {
            xp[i] = theta[i] + eps * z[size_t(i)];
            xm[i] = theta[i] - eps * z[size_t(i)];
        }
        const double g = projected_grad(loss(xp), loss(xm), eps, 1e9);
        for (int i = 0; i < d; ++i) {
            const double e = g * z[size_t(i)];
            mean[i] += e / n;
            sq[i] += e * e / n;
        }
    }
    for (int i = 0; i < d; ++i) {
        const double truth = a[i] * theta[i] + b[i];
        const double se = std::sqrt((sq[i] - mean[i] * mean[i]) / n);
        EXPECT_NEAR(mean[i], truth, 4 * se + 1e-9) << "coordinate " << i;
    }
    // Clipping bounds the projected gradient at c / eps.
    EXPECT_EQ(projected_grad(10.0, 0.0, 1e-3, 0.2), 200.0);
    EXPECT_EQ(projected_grad(0.0, 10.0, 1e-3, 0.2), -200.0);
}

TEST(Schedule, Shapes) {
    EXPECT_DOUBLE_EQ(schedule_factor("constant", 7, 10, 0), 1.0);
    EXPECT_DOUBLE_EQ(schedule_factor("linear", 1, 10, 0), 1.0);
    EXPECT_GT(schedule_factor("linear", 10, 10, 0), 0.0);  // the last step still moves
    EXPECT_LT(schedule_factor("linear", 10, 10, 0), 0.2);
    EXPECT_DOUBLE_EQ(schedule_factor("cosine", 3, 10, 4), 0.75);  // warmup
    EXPECT_NEAR(schedule_factor("cosine", 10, 10, 0), 0.0, 1e-12);
}

}  // namespace
}  // namespace zqat
