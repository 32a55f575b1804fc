// The ZeroQAT run loop and its run directory (train/trainer.h).
#include "zqat/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "zo_engine.h"
#include "zqat/core/error.h"
#include "zqat/core/log.h"
#include "zqat/core/qspec.h"
#include "zqat/core/rng.h"
#include "zqat/core/thread_pool.h"
#include "zqat/eval/perplexity.h"
#include "zqat/io/dataset.h"
#include "zqat/io/mmap.h"
#include "zqat/model/forward.h"
#include "zqat/model/model.h"
#include "zqat/model/save.h"
#include "zqat/quant/quantize.h"
#include "zqat/train/qat_model.h"

namespace zqat {

using json = nlohmann::json;
namespace fs = std::filesystem;

// ---- config ------------------------------------------------------------------------------------

json to_json(const TrainConfig& c) {
    return {{"model", c.model},
            {"qspec", c.qspec},
            {"init", c.init},
            {"steps", c.steps},
            {"bsz", c.bsz},
            {"ctx", c.ctx},
            {"directions", c.directions},
            {"lr", c.lr},
            {"lr_clip", c.lr_clip},
            {"lr_smooth", c.lr_smooth},
            {"eps", c.eps},
            {"eps_clip", c.eps_clip},
            {"eps_smooth", c.eps_smooth},
            {"lr_act_clip", c.lr_act_clip},
            {"eps_act_clip", c.eps_act_clip},
            {"train_act_clip", c.train_act_clip},
            {"init_act_clip", c.init_act_clip},
            {"schedule", c.schedule},
            {"warmup", c.warmup},
            {"momentum", c.momentum},
            {"grad_clip", c.grad_clip},
            {"seed", c.seed},
            {"train_weights", c.train_weights},
            {"train_clip", c.train_clip},
            {"train_smooth", c.train_smooth},
            {"rotate", c.rotate},
            {"eval_every", c.eval_every},
            {"eval_windows", c.eval_windows},
            {"eval_ctx", c.eval_ctx},
            {"val_windows", c.val_windows},
            {"final_eval", c.final_eval},
            {"save_every", c.save_every},
            {"snapshot_every", c.snapshot_every},
            {"max_nonfinite", c.max_nonfinite},
            {"init_nsamples", c.init_nsamples},
            {"init_ctx", c.init_ctx},
            {"init_search_windows", c.init_search_windows},
            {"data_dir", c.data_dir}};
}

TrainConfig train_config_from_json(const json& j, const std::string& where) {
    if (!j.is_object()) fail("train", "{}: not a JSON object", where);
    TrainConfig c;
    auto get = [&](const char* key, auto& field) {
        if (!j.contains(key)) fail("train", "{}: missing field '{}'", where, key);
        try {
            j.at(key).get_to(field);
        } catch (const json::exception&) {
            fail("train", "{}: field '{}' has the wrong type ({})", where, key, j.at(key).dump());
        }
    };
    get("model", c.model);
    get("qspec", c.qspec);
    get("init", c.init);
    get("steps", c.steps);
    get("bsz", c.bsz);
    get("ctx", c.ctx);
    get("directions", c.directions);
    get("lr", c.lr);
    get("lr_clip", c.lr_clip);
    get("lr_smooth", c.lr_smooth);
    get("eps", c.eps);
    get("eps_clip", c.eps_clip);
    get("eps_smooth", c.eps_smooth);
    get("schedule", c.schedule);
    get("warmup", c.warmup);
    get("momentum", c.momentum);
    get("grad_clip", c.grad_clip);
    get("seed", c.seed);
    get("train_weights", c.train_weights);
    get("train_clip", c.train_clip);
    get("train_smooth", c.train_smooth);
    if (j.contains("rotate")) get("rotate", c.rotate);  // optional: run dirs from before it
    if (j.contains("val_windows")) get("val_windows", c.val_windows);  // likewise
    if (j.contains("init_act_clip")) get("init_act_clip", c.init_act_clip);
    if (j.contains("train_act_clip")) {
        get("train_act_clip", c.train_act_clip);
        get("lr_act_clip", c.lr_act_clip);
        get("eps_act_clip", c.eps_act_clip);
    }
    get("eval_every", c.eval_every);
    get("eval_windows", c.eval_windows);
    get("eval_ctx", c.eval_ctx);
    get("final_eval", c.final_eval);
    get("save_every", c.save_every);
    get("snapshot_every", c.snapshot_every);
    get("max_nonfinite", c.max_nonfinite);
    get("init_nsamples", c.init_nsamples);
    get("init_ctx", c.init_ctx);
    get("init_search_windows", c.init_search_windows);
    get("data_dir", c.data_dir);
    return c;
}

void validate(const TrainConfig& c) {
    const QSpec spec = QSpec::parse(c.qspec);
    if (!spec.quant_weights()) fail("train", "--qspec {} quantizes no weights", c.qspec);
    const QuantMethod m = parse_quant_method(c.init);
    if (m == QuantMethod::gptq) fail("train", "--init must be init, rtn or smoothquant (got gptq)");
    if (c.schedule != "constant" && c.schedule != "linear" && c.schedule != "cosine")
        fail("train", "--schedule must be constant, linear or cosine (got '{}')", c.schedule);
    if (c.final_eval != "full" && c.final_eval != "subset" && c.final_eval != "none")
        fail("train", "--final-eval must be full, subset or none (got '{}')", c.final_eval);
    // Checked as the float the step computes with: 1e-46 is 0 there, 1e39 infinite.
    auto positive = [](const char* name, double v) {
        if (!(float(v) > 0) || !std::isfinite(float(v)))
            fail("train", "{} must be > 0 and finite as a float (got {})", name, v);
    };
    positive("--steps", double(c.steps));
    positive("--bsz", double(c.bsz));
    positive("--directions", double(c.directions));
    positive("--eps", c.eps);
    positive("--eps-clip", c.eps_clip);
    positive("--eps-smooth", c.eps_smooth);
    positive("--eps-act-clip", c.eps_act_clip);
    positive("--grad-clip", c.grad_clip);
    positive("--max-nonfinite", double(c.max_nonfinite));
    positive("--init-nsamples", double(c.init_nsamples));
    positive("--init-search-windows", double(c.init_search_windows));
    positive("--eval-windows", double(c.eval_windows));
    if (c.ctx < 2 || c.eval_ctx < 2 || c.init_ctx < 2)
        fail("train", "--ctx, --eval-ctx and --init-ctx must be >= 2");
    for (double v : {c.lr, c.lr_clip, c.lr_smooth, c.lr_act_clip})
        if (!(v >= 0) || !std::isfinite(float(v)))
            fail("train", "learning rates must be >= 0 and finite as a float (got {})", v);
    if (!(c.momentum >= 0 && c.momentum < 1)) fail("train", "--momentum must be in [0, 1)");
    if (c.warmup < 0 || c.eval_every < 0 || c.save_every < 0 || c.snapshot_every < 0 ||
        c.val_windows < 0)
        fail("train",
             "--warmup, --eval-every, --save-every, --snapshot-every and --val-windows must be "
             ">= 0");
    if (c.rotate && (c.train_smooth || m == QuantMethod::smoothquant))
        fail("train",
             "--rotate needs --no-smooth and --init rtn or init: LET scales act on the "
             "unrotated channels");
    if (c.init_act_clip && (m != QuantMethod::init || !spec.quant_acts()))
        fail("train", "--init-act-clip needs --init init and activation quantization");
    if (c.train_act_clip && !spec.quant_acts())
        fail("train", "--act-clip needs activation quantization ({} keeps activations at 16 bits)",
             c.qspec);
    if (!c.train_weights && !c.train_clip && !c.train_smooth && !c.train_act_clip)
        fail("train",
             "nothing to train: weights, clipping, smoothing and activation clipping are all off");
}

double schedule_factor(const std::string& schedule, int64_t t, int64_t steps, int64_t warmup) {
    if (warmup > 0 && t <= warmup) return double(t) / double(warmup);
    if (schedule == "constant") return 1.0;
    const double span = double(std::max<int64_t>(1, steps - warmup));
    const double p = std::clamp(double(t - warmup) / span, 0.0, 1.0);
    if (schedule == "linear") return 1.0 - p + 1.0 / span;  // the last step still moves
    return 0.5 * (1.0 + std::cos(M_PI * p));
}

double projected_grad(double loss_plus, double loss_minus, double eps, double c) {
    return std::clamp((loss_plus - loss_minus) / (2 * eps), -c / eps, c / eps);
}

TrainConfig load_run_config(const std::string& run_dir) {
    const std::string path = run_dir + "/config.json";
    if (!fs::exists(path))
        fail("train", "{}: no such file (is {} a run directory?)", path, run_dir);
    json j;
    try {
        j = json::parse(read_file(path));
    } catch (const json::parse_error& e) {
        fail("train", "{}: invalid JSON at byte offset {}: {}", path, e.byte, e.what());
    }
    TrainConfig c = train_config_from_json(j, path);
    try {
        validate(c);
    } catch (const Error& e) {
        fail("train", "{}: {}", path, e.what());
    }
    return c;
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Complete lines of a log (a torn last line, without its '\n', is dropped).
std::vector<std::string> read_lines(const std::string& path) {
    std::vector<std::string> out;
    if (!fs::exists(path)) return out;
    const std::string s = read_file(path);
    size_t at = 0;
    while (true) {
        const size_t nl = s.find('\n', at);
        if (nl == std::string::npos) break;
        out.push_back(s.substr(at, nl - at));
        at = nl + 1;
    }
    return out;
}

struct SeedLine {
    int64_t step = 0, dir = 0;
    ZoUpdate u;
    int groups = kParamGroups;  // 3 in lines from before the act_clip group
};

std::string seed_line(int64_t step, int64_t dir, const ZoUpdate& u) {
    char buf[320];
    std::snprintf(buf, sizeof buf,
                  "%" PRId64 "\t%" PRId64 "\t%016" PRIx64 "\t%a\t%a\t%a\t%a\t%a\t%a\t%a\t%a\n",
                  step, dir, u.seed, double(u.g[0]), double(u.g[1]), double(u.g[2]), double(u.g[3]),
                  double(u.lr[0]), double(u.lr[1]), double(u.lr[2]), double(u.lr[3]));
    return buf;
}

// 11 fields (step, direction, seed, g and lr of the 4 groups), or 9 in runs from before the
// act_clip group (3 groups; act_clip's g and lr are then 0).
SeedLine parse_seed_line(const std::string& line, const std::string& path, size_t lineno) {
    SeedLine s;
    std::istringstream in(line);
    std::string seed, f[2 * kParamGroups], extra;
    int n = 0;
    if (in >> s.step >> s.dir >> seed)
        while (n < 2 * kParamGroups && in >> f[n]) ++n;
    if ((n != 2 * kParamGroups && n != 2 * (kParamGroups - 1)) || in >> extra)
        fail("train", "{}: line {}: expected 11 tab-separated fields (9 in older runs)", path,
             lineno);
    const int groups = n / 2;
    s.groups = groups;
    char* end = nullptr;
    s.u.seed = std::strtoull(seed.c_str(), &end, 16);
    if (*end) fail("train", "{}: line {}: bad seed '{}'", path, lineno, seed);
    for (int i = 0; i < n; ++i) {
        const double v = std::strtod(f[i].c_str(), &end);
        if (*end || !std::isfinite(v))
            fail("train", "{}: line {}: field {} '{}' is not a finite number", path, lineno, i + 4,
                 f[i]);
        (i < groups ? s.u.g[size_t(i)] : s.u.lr[size_t(i - groups)]) = float(v);
    }
    return s;
}

class Appender {
  public:
    void open(const std::string& path) {
        f_ = std::fopen(path.c_str(), "ab");
        if (!f_) fail("train", "{}: cannot append", path);
        path_ = path;
    }
    ~Appender() {
        if (f_) std::fclose(f_);
    }
    void write(const std::string& s) {
        if (std::fwrite(s.data(), 1, s.size(), f_) != s.size() || std::fflush(f_) != 0)
            fail("train", "{}: write failed (disk full?)", path_);
    }
    void sync() { ::fsync(::fileno(f_)); }

  private:
    std::FILE* f_ = nullptr;
    std::string path_;
};

// The training text: token streams of the calibration sources, cut into windows per step.
struct Batches {
    std::vector<std::vector<int32_t>> streams;
    uint64_t seed;
    int64_t B, T;
    std::vector<int32_t> at(int64_t step) const {
        std::mt19937_64 rng(step_seed(seed ^ 0xda7a5eedull, uint64_t(step), 0));
        std::vector<int32_t> out(size_t(B * T));
        for (int64_t b = 0; b < B; ++b) {
            const auto& s = streams[size_t((step * B + b) % int64_t(streams.size()))];
            const uint64_t start = rng() % uint64_t(int64_t(s.size()) - T);
            std::copy_n(s.begin() + int64_t(start), T, out.begin() + b * T);
        }
        return out;
    }
};

double mean_nll(const std::vector<float>& nll) {
    double s = 0;
    for (float v : nll) s += double(v);
    return s / double(nll.size());
}

}  // namespace

// ---- the run -----------------------------------------------------------------------------------

TrainSummary train(const TrainConfig& cfg_in, const std::string& run_dir, const TrainOptions& opt) {
    const auto t_run = std::chrono::steady_clock::now();
    TrainConfig cfg = cfg_in;
    validate(cfg);
    const std::string config_path = run_dir + "/config.json",
                      metrics_path = run_dir + "/metrics.jsonl",
                      seeds_path = run_dir + "/seeds.tsv", state_path = run_dir + "/state.bin";
    if (!opt.resume)
        for (const std::string& p : {metrics_path, seeds_path, state_path})
            if (fs::exists(p))
                fail("train", "{} already holds a run ({}); use --resume {} or a new --run-dir",
                     run_dir, fs::path(p).filename().string(), run_dir);
    if (opt.resume && !fs::exists(state_path))
        fail("train", "{}: no state.bin to resume from", run_dir);
    const QSpec spec = QSpec::parse(cfg.qspec);
    ThreadPool pool(opt.threads);
    auto report = [&](TrainProgress p) {
        if (opt.progress) opt.progress(p);
    };

    Model base = Model::load(cfg.model);
    const bool own_data = !opt.train_streams.empty();
    for (size_t i = 0; i < opt.train_streams.size(); ++i)
        if (int64_t(opt.train_streams[i].size()) <= std::max(cfg.ctx, cfg.init_ctx))
            fail("train", "training stream {} has {} tokens, too short for windows of {}", i,
                 opt.train_streams[i].size(), std::max(cfg.ctx, cfg.init_ctx));
    if (!base.tokenizer && !own_data) fail("train", "{}: the model has no tokenizer", cfg.model);
    const Tokenizer* tok = base.tokenizer ? &*base.tokenizer : nullptr;  // re-pointed below
    // Group sizes must divide every linear before any work.
    for (const LayerWeights& L : base.layers)
        for (const Tensor* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_up, &L.w_down})
            spec.group_for(w->dim(1), w->name);

    TrainableGroups groups{cfg.train_weights, cfg.train_clip, cfg.train_smooth, cfg.train_act_clip};
    std::unique_ptr<QatModel> qm;
    int64_t state_step = 0;
    if (opt.resume) {
        base.cfg.qspec = spec;
        base.cfg.hadamard = cfg.rotate;  // the checkpoint's master weights are the rotated ones
        qm = std::make_unique<QatModel>(
            std::move(base), std::vector<std::vector<std::vector<float>>>{}, groups, pool);
        state_step = qm->load_state(state_path);
    } else {
        fs::create_directories(run_dir);
        write_file_atomic(config_path, to_json(cfg).dump(2) + "\n");
        std::vector<std::vector<int32_t>> calib;
        if (quant_method_needs_calibration(parse_quant_method(cfg.init))) {
            CalibOptions co;
            co.nsamples = cfg.init_nsamples;
            co.ctx = cfg.init_ctx;
            co.seed = cfg.seed;
            co.data_dir = cfg.data_dir;
            if (own_data) {
                Batches b{opt.train_streams, cfg.seed ^ 0xca11b, 1, cfg.init_ctx};
                for (int64_t i = 0; i < cfg.init_nsamples; ++i) calib.push_back(b.at(i));
            } else {
                calib = calibration_windows(*tok, co);
            }
        }
        qm = start_qat_model(std::move(base), spec, cfg.init, cfg.rotate, cfg.init_act_clip,
                             cfg.init_search_windows, calib, groups, pool,
                             [&](int64_t done, int64_t total) {
                                 report({done, total, 0, 0, 0, "init"});
                             });
        qm->save_state(state_path, 0);
    }
    tok = qm->work().tokenizer ? &*qm->work().tokenizer : nullptr;

    // Data: training windows and the evaluation text.
    Batches batches;
    batches.seed = cfg.seed;
    batches.B = cfg.bsz;
    batches.T = cfg.ctx;
    if (own_data) {
        batches.streams = opt.train_streams;
    } else {
        for (const char* src : {"wikitext2", "c4"})
            batches.streams.push_back(calibration_stream(*tok, src, cfg.data_dir));
    }
    for (size_t i = 0; i < batches.streams.size(); ++i)
        if (int64_t(batches.streams[i].size()) <= std::max(cfg.ctx, cfg.init_ctx))
            fail("train", "training stream {} has {} tokens, too short for windows of {}", i,
                 batches.streams[i].size(), std::max(cfg.ctx, cfg.init_ctx));
    const std::vector<int32_t> test_ids =
        own_data ? opt.eval_tokens
                 : tok->encode(ppl_text(read_file(cfg.data_dir + "/wikitext-2-raw/wiki.test.raw"),
                                        PplProtocol::gptq),
                               false);
    // Validation windows: fixed offsets in the training streams, back to back (perplexity cuts
    // them apart again).
    std::vector<int32_t> val_ids;
    for (int64_t i = 0; i < cfg.val_windows; ++i) {
        const auto& s = batches.streams[size_t(i % int64_t(batches.streams.size()))];
        if (int64_t(s.size()) <= cfg.eval_ctx)
            fail("train",
                 "training stream {} has {} tokens, too short for validation windows of {}",
                 i % int64_t(batches.streams.size()), s.size(), cfg.eval_ctx);
        std::mt19937_64 rng(step_seed(cfg.seed ^ 0x7a11da7eull, uint64_t(i), 0));
        const uint64_t start = rng() % uint64_t(int64_t(s.size()) - cfg.eval_ctx);
        val_ids.insert(val_ids.end(), s.begin() + int64_t(start),
                       s.begin() + int64_t(start) + cfg.eval_ctx);
    }
    auto evaluate = [&](int64_t windows, const char* stage, int64_t step, double* val_ppl) {
        report({step, cfg.steps, 0, 0, 0, stage});
        const Model packed = qm->export_packed();
        PplOptions po;
        po.ctx = cfg.eval_ctx;
        if (val_ppl && !val_ids.empty()) *val_ppl = perplexity(packed, val_ids, po, pool).ppl;
        po.limit_windows = windows;
        return perplexity(packed, test_ids, po, pool);
    };

    // Logs: cut back to the last step both hold (resume), then append.
    int64_t last = 0;
    bool have_start = false;  // the step-0 evaluation line
    if (opt.resume) {
        std::vector<std::string> metrics = read_lines(metrics_path);
        std::vector<std::string> kept;
        for (size_t i = 0; i < metrics.size(); ++i) {
            json j;
            try {
                j = json::parse(metrics[i]);
            } catch (const json::parse_error& e) {
                fail("train", "{}: line {}: invalid JSON at byte offset {}", metrics_path, i + 1,
                     e.byte);
            }
            if (!j.contains("step") || !j["step"].is_number_integer())
                fail("train", "{}: line {}: no integer 'step'", metrics_path, i + 1);
            last = j["step"].get<int64_t>();
            have_start = have_start || last == 0;
            kept.push_back(metrics[i]);
        }
        std::vector<std::string> seeds = read_lines(seeds_path), seeds_kept;
        std::vector<SeedLine> parsed;
        for (size_t i = 0; i < seeds.size(); ++i) {
            SeedLine s = parse_seed_line(seeds[i], seeds_path, i + 1);
            // An old run resumed by this version has its 9-field lines first, never after.
            if (s.groups < kParamGroups && !parsed.empty() && parsed.back().groups == kParamGroups)
                fail("train", "{}: line {}: 9 fields after lines of 11 (a damaged seed log?)",
                     seeds_path, i + 1);
            if (s.step > last) break;
            parsed.push_back(s);
            seeds_kept.push_back(seeds[i]);
        }
        if (state_step > last)
            fail("train", "{}: the checkpoint is at step {} but the logs end at step {}",
                 state_path, state_step, last);
        std::string mtext, stext;
        for (const auto& l : kept) mtext += l + "\n";
        for (const auto& l : seeds_kept) stext += l + "\n";
        write_file_atomic(metrics_path, mtext);
        write_file_atomic(seeds_path, stext);
        // Every step after the checkpoint that was not skipped has its n directions in
        // seeds.tsv, with the seeds the run's seed gives: otherwise the replay would be wrong.
        std::map<int64_t, int64_t> dirs;
        for (size_t i = 0; i < parsed.size(); ++i) {
            const SeedLine& sl = parsed[i];
            if (sl.dir != dirs[sl.step] ||
                sl.u.seed != step_seed(cfg.seed, uint64_t(sl.step), uint64_t(sl.dir)))
                fail("train", "{}: line {}: step {} direction {} does not follow the run's seeds",
                     seeds_path, i + 1, sl.step, sl.dir);
            ++dirs[sl.step];
        }
        for (size_t i = 0; i < kept.size(); ++i) {
            const json j = json::parse(kept[i]);
            const int64_t st = j["step"].get<int64_t>();
            if (st <= state_step || st == 0 || j.value("skipped", false)) continue;
            if (dirs[st] != cfg.directions)
                fail("train", "{}: step {} has {} of its {} directions (metrics.jsonl line {})",
                     seeds_path, st, dirs[st], cfg.directions, i + 1);
        }
        // Replay the updates logged after the checkpoint, step by step.
        int64_t replayed = 0;
        for (size_t i = 0; i < parsed.size();) {
            const int64_t st = parsed[i].step;
            std::vector<ZoUpdate> ups;
            for (; i < parsed.size() && parsed[i].step == st; ++i) ups.push_back(parsed[i].u);
            if (st <= state_step) continue;
            qm->apply_all(ups, float(cfg.momentum));
            ++replayed;
        }
        log_info("train: resumed {} at step {} (checkpoint {}, {} steps replayed from seeds.tsv)",
                 run_dir, last, state_step, replayed);
    }
    if (opt.resume && last >= cfg.steps && fs::exists(run_dir + "/final.json")) {
        log_info("train: {} is complete ({} steps); nothing to do", run_dir, last);
        TrainSummary done;
        json fin;
        try {
            fin = json::parse(read_file(run_dir + "/final.json"));
        } catch (const json::parse_error& e) {
            fail("train", "{}/final.json: invalid JSON at byte offset {}", run_dir, e.byte);
        }
        done.steps_done = last;
        done.final_ppl = fin.value("final_ppl", 0.0);
        done.step_seconds = fin.value("step_seconds_mean", 0.0);
        done.seconds = fin.value("seconds", 0.0);
        done.state_bytes = fin.value("state_bytes", uint64_t(0));
        return done;
    }
    Appender metrics, seeds;
    metrics.open(metrics_path);
    seeds.open(seeds_path);

    TrainSummary sum;
    double last_eval = 0, loss_ema = 0;
    if (!have_start) {
        double val = 0;
        const PplResult r = evaluate(cfg.eval_windows, "eval", 0, &val);
        last_eval = r.ppl;
        sum.start_ppl = r.ppl;
        json line = {{"step", 0}, {"eval_ppl", r.ppl}, {"eval_tokens", r.tokens}};
        if (cfg.val_windows > 0) line["val_ppl"] = val;
        metrics.write(line.dump() + "\n");
        log_info("train: step 0 eval PPL {:.4f} over {} windows of {}", r.ppl, r.windows,
                 cfg.eval_ctx);
        if (cfg.snapshot_every > 0 && cfg.model.ends_with(".gguf"))
            save_gguf(qm->export_packed(), run_dir + "/model-0.gguf");
    }

    Forward fwd(qm->work(), cfg.bsz, cfg.ctx, pool);
    PairBuffers buf;
    buf.plan(cfg.bsz, cfg.ctx, qm->work().cfg.n_embd);
    const std::array<float, kParamGroups> eps = {float(cfg.eps), float(cfg.eps_clip),
                                                 float(cfg.eps_smooth), float(cfg.eps_act_clip)};
    const std::array<double, kParamGroups> base_lr = {cfg.lr, cfg.lr_clip, cfg.lr_smooth,
                                                      cfg.lr_act_clip};
    std::vector<ZoUpdate> pending;
    int64_t nonfinite_run = 0;
    double step_seconds = 0;
    int64_t timed = 0;
    auto flush = [&]() {
        qm->apply_all(pending, float(cfg.momentum));
        pending.clear();
    };

    for (int64_t t = last + 1; t <= cfg.steps; ++t) {
        const auto t0 = std::chrono::steady_clock::now();
        const double f = schedule_factor(cfg.schedule, t, cfg.steps, cfg.warmup);
        std::array<float, kParamGroups> lr{};
        for (int g = 0; g < kParamGroups; ++g) lr[size_t(g)] = float(base_lr[size_t(g)] * f);
        const std::vector<int32_t> tokens = batches.at(t);
        std::vector<ZoUpdate> now;
        double lp_sum = 0, lm_sum = 0, pg_sum = 0;
        bool finite = true;
        for (int64_t i = 0; i < cfg.directions; ++i) {
            const uint64_t seed = step_seed(cfg.seed, uint64_t(t), uint64_t(i));
            const auto [lp, lm] =
                zo_pair(*qm, fwd, tokens.data(), seed, eps, i == 0 ? &pending : nullptr,
                        float(cfg.momentum), buf, mean_nll);
            lp_sum += lp;
            lm_sum += lm;
            if (!std::isfinite(lp) || !std::isfinite(lm)) {
                finite = false;
                continue;
            }
            ZoUpdate u;
            u.seed = seed;
            for (int g = 0; g < kParamGroups; ++g) {
                const double pg = projected_grad(lp, lm, eps[size_t(g)], cfg.grad_clip);
                u.g[size_t(g)] = float(pg / double(cfg.directions));
                u.lr[size_t(g)] = lr[size_t(g)];
            }
            pg_sum += projected_grad(lp, lm, eps[0], cfg.grad_clip);
            now.push_back(u);
        }
        pending.clear();  // applied layer by layer above
        if (finite) {
            pending = now;
            nonfinite_run = 0;
        } else {
            ++nonfinite_run;
            log_warn("train: step {}: non-finite loss (l+ {}, l- {}); update skipped", t, lp_sum,
                     lm_sum);
        }
        const double lp = lp_sum / double(cfg.directions), lm = lm_sum / double(cfg.directions);
        json line = {{"step", t},
                     {"loss_plus", finite ? json(lp) : json(nullptr)},
                     {"loss_minus", finite ? json(lm) : json(nullptr)},
                     {"pg", finite ? pg_sum / double(cfg.directions) : 0.0},
                     {"lr", lr[0]},
                     {"lr_clip", lr[1]},
                     {"lr_smooth", lr[2]},
                     {"skipped", !finite}};
        if (cfg.train_act_clip) line["lr_act_clip"] = lr[3];
        if (finite)
            loss_ema =
                (t == 1 || loss_ema == 0) ? (lp + lm) / 2 : 0.95 * loss_ema + 0.05 * (lp + lm) / 2;
        const bool eval_now = cfg.eval_every > 0 && (t % cfg.eval_every == 0 || t == cfg.steps);
        const bool save_now = cfg.save_every > 0 && t % cfg.save_every == 0;
        const bool snap_now = cfg.snapshot_every > 0 && t % cfg.snapshot_every == 0;
        const double train_s = seconds_since(t0);
        if (eval_now || save_now || snap_now) flush();
        if (eval_now) {
            double val = 0;
            const PplResult r = evaluate(cfg.eval_windows, "eval", t, &val);
            last_eval = r.ppl;
            line["eval_ppl"] = r.ppl;
            if (cfg.val_windows > 0) line["val_ppl"] = val;
        }
        for (size_t i = 0; i < now.size() && finite; ++i)
            seeds.write(seed_line(t, int64_t(i), now[i]));
        line["seconds"] = train_s;
        metrics.write(line.dump() + "\n");
        if (save_now) {  // the logs reach the disk before the checkpoint that follows them
            seeds.sync();
            metrics.sync();
            qm->save_state(state_path, t);
        }
        if (snap_now)
            save_gguf(qm->export_packed(), run_dir + "/model-" + std::to_string(t) + ".gguf");
        step_seconds += train_s;
        ++timed;
        report({t, cfg.steps, loss_ema, last_eval, step_seconds / double(timed), "train"});
        sum.steps_done = t;
        if (nonfinite_run >= cfg.max_nonfinite)
            fail("train",
                 "{} non-finite losses in a row (last at step {}): the run diverged; lower --lr "
                 "or --eps (the run dir keeps the steps so far)",
                 nonfinite_run, t);
        if (opt.stop_after >= 0 && t >= opt.stop_after) return sum;
    }
    flush();
    sum.step_seconds = timed ? step_seconds / double(timed) : 0;
    sum.state_bytes = qm->state_bytes();
    json fin = {{"steps", cfg.steps},
                {"step_seconds_mean", sum.step_seconds},
                {"threads", opt.threads},
                {"state_bytes", sum.state_bytes}};
    if (cfg.final_eval != "none") {
        const PplResult r = evaluate(cfg.final_eval == "full" ? -1 : cfg.eval_windows, "final-eval",
                                     cfg.steps, nullptr);
        sum.final_ppl = r.ppl;
        fin["final_ppl"] = r.ppl;
        fin["final_windows"] = r.windows;
        fin["final_tokens"] = r.tokens;
        fin["final_eval"] = cfg.final_eval;
        log_info("train: final PPL {:.4f} over {} windows of {}", r.ppl, r.windows, cfg.eval_ctx);
    }
    qm->save_state(state_path, cfg.steps);
    const Model packed = qm->export_packed();
    if (packed.source.ends_with(".gguf")) save_gguf(packed, run_dir + "/model.gguf");
    if (!packed.layers.empty() && !packed.layers[0].act_clip.empty()) {
        json ac = json::array();  // the final activation clipping ratios, per layer
        for (const LayerWeights& L : packed.layers)
            ac.push_back(std::vector<float>(L.act_clip.f32(), L.act_clip.f32() + kActClipSites));
        fin["act_clip"] = ac;
    }
    sum.seconds = seconds_since(t_run);
    fin["seconds"] = sum.seconds;
    write_file_atomic(run_dir + "/final.json", fin.dump(2) + "\n");
    return sum;
}

}  // namespace zqat
