// Task fine-tuning with the ZeroQAT engine (train/finetune.h).
#include "zqat/train/finetune.h"

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include <nlohmann/json.hpp>

#include "zo_engine.h"
#include "zqat/core/error.h"
#include "zqat/core/log.h"
#include "zqat/core/rng.h"
#include "zqat/core/thread_pool.h"
#include "zqat/eval/scoring.h"
#include "zqat/eval/tasks.h"
#include "zqat/io/dataset.h"
#include "zqat/io/mmap.h"
#include "zqat/model/forward.h"
#include "zqat/model/model.h"
#include "zqat/model/save.h"
#include "zqat/quant/quantize.h"
#include "zqat/train/trainer.h"

namespace zqat {

using json = nlohmann::json;
namespace fs = std::filesystem;

json to_json(const FinetuneConfig& c) {
    return {{"model", c.model},
            {"task", c.task},
            {"qspec", c.qspec},
            {"variant", c.variant},
            {"init", c.init},
            {"rotate", c.rotate},
            {"steps", c.steps},
            {"bsz", c.bsz},
            {"lr", c.lr},
            {"eps", c.eps},
            {"schedule", c.schedule},
            {"grad_clip", c.grad_clip},
            {"seed", c.seed},
            {"n_train", c.n_train},
            {"n_val", c.n_val},
            {"n_test", c.n_test},
            {"eval_every", c.eval_every},
            {"max_len", c.max_len},
            {"init_nsamples", c.init_nsamples},
            {"init_ctx", c.init_ctx},
            {"init_search_windows", c.init_search_windows},
            {"data_dir", c.data_dir}};
}

void validate(const FinetuneConfig& c) {
    if (c.model.empty()) fail("finetune", "no --model given");
    if (!is_choice_task(c.task) && !is_gen_task(c.task) && c.task != "alpaca")
        fail("finetune", "unknown --task '{}' (choice tasks: {}; generation tasks: {}; alpaca)",
             c.task, fmt::join(choice_task_names(), ", "), fmt::join(gen_task_names(), ", "));
    if (c.variant != "lightweight" && c.variant != "full" && c.variant != "fp")
        fail("finetune", "unknown --variant '{}' (expected lightweight, full or fp)", c.variant);
    const QSpec spec = QSpec::parse(c.qspec);
    if (c.variant != "fp" && !spec.quant_weights())
        fail("finetune", "--variant {} needs a quantized --qspec, got {}", c.variant, c.qspec);
    parse_quant_method(c.init);
    if (c.init == "gptq")
        fail("finetune", "--init gptq is not a ZeroQAT start (init, rtn, smoothquant)");
    if (c.rotate && (c.variant == "fp" || c.init == "smoothquant"))
        fail("finetune",
             "--rotate needs a quantized --variant (lightweight, full) and --init rtn or init: "
             "SmoothQuant's scales act on the unrotated channels");
    if (c.schedule != "constant" && c.schedule != "linear" && c.schedule != "cosine")
        fail("finetune", "unknown --schedule '{}' (constant, linear, cosine)", c.schedule);
    auto positive = [](const char* name, double v) {
        if (!(v > 0)) fail("finetune", "--{} must be positive, got {}", name, v);
    };
    positive("bsz", double(c.bsz));
    positive("eps", c.eps);
    positive("grad-clip", c.grad_clip);
    positive("n-train", double(c.n_train));
    positive("n-val", double(c.n_val));
    positive("n-test", double(c.n_test));
    positive("eval-every", double(c.eval_every));
    positive("init-nsamples", double(c.init_nsamples));
    if (c.lr < 0) fail("finetune", "--lr must not be negative, got {}", c.lr);
    if (c.steps < 0) fail("finetune", "--steps must not be negative, got {}", c.steps);
    if (c.max_len < 8) fail("finetune", "--max-len must be at least 8, got {}", c.max_len);
    positive("init-ctx", double(c.init_ctx));
    positive("init-search-windows", double(c.init_search_windows));
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Linux: VmHWM (peak RSS) in MiB; clear_peak() restarts it (writing 5 to clear_refs).
double vm_hwm_mib() {
    std::ifstream f("/proc/self/status");
    std::string key;
    while (f >> key) {
        if (key == "VmHWM:") {
            double kib = 0;
            f >> kib;
            return kib / 1024.0;
        }
        std::string rest;
        std::getline(f, rest);
    }
    return -1;
}
bool clear_peak() {
    malloc_trim(0);  // return the freed FP model to the system first
    std::ofstream f("/proc/self/clear_refs");
    f << "5";
    return bool(f.flush());
}

// An example as token rows and, per option, the answer tokens it scores: answer j reads
// tokens[k] predicted at position pos + k of its row. Options that share one context and whose
// answers differ only in their last token (the label words of SST-2, CB, BoolQ; CB's answers
// are "\n" + label, the context's trailing newline moved into the answer as lm-eval does) share
// one row, the context and the answers' common prefix, each answer's last token scored at the
// row's last position: one forward row per example instead of one per option, the same numbers
// (a causal row's positions do not see what follows them).
struct Answer {
    int32_t row = 0, pos = 0;
    std::vector<int32_t> tokens;
};
struct Example {
    std::vector<std::vector<int32_t>> rows;  // each at most max_len tokens
    std::vector<Answer> answers;             // per option
    int gold = 0;
    int64_t longest() const {
        int64_t n = 0;
        for (const auto& r : rows) n = std::max<int64_t>(n, int64_t(r.size()));
        return n;
    }
};

Example encode_doc(const Tokenizer& tok, const ChoiceDoc& d, int64_t max_len) {
    std::vector<LoglikRequest> reqs;
    for (const auto& o : d.options) {
        reqs.push_back(encode_pair(tok, o.context, o.continuation));
        if (int64_t(reqs.back().continuation.size()) >= max_len)
            fail("finetune", "an answer of {} tokens leaves no context in --max-len {}",
                 reqs.back().continuation.size(), max_len);
    }
    Example e;
    e.gold = d.gold;
    const std::vector<int32_t>& a0 = reqs[0].continuation;
    const bool shared = std::all_of(reqs.begin(), reqs.end(), [&](const LoglikRequest& r) {
        return r.context == reqs[0].context && r.continuation.size() == a0.size() &&
               std::equal(a0.begin(), a0.end() - 1, r.continuation.begin());
    });
    if (shared) {  // the window the one-row-per-option layout would see, less its last token
        std::vector<int32_t> s = reqs[0].context;
        s.insert(s.end(), a0.begin(), a0.end() - 1);
        const int64_t keep = std::min<int64_t>(int64_t(s.size()), max_len - 1);
        e.rows.emplace_back(s.end() - keep, s.end());
        for (const auto& r : reqs)
            e.answers.push_back({0, int32_t(keep - int64_t(a0.size())), r.continuation});
        return e;
    }
    for (const auto& r : reqs) {
        std::vector<int32_t> s = r.context;
        s.insert(s.end(), r.continuation.begin(), r.continuation.end());
        if (int64_t(s.size()) > max_len) s.erase(s.begin(), s.end() - max_len);
        const int64_t C = int64_t(r.continuation.size());
        e.answers.push_back(
            {int32_t(e.rows.size()), int32_t(int64_t(s.size()) - C - 1), r.continuation});
        e.rows.push_back(std::move(s));
    }
    return e;
}

// A generation or instruction example: one row, prompt then target, the loss on the target.
// Over max_len, the prompt loses tokens from the left, down to half the row; past that the
// target loses its tail (a long Alpaca response), as a truncating SFT collator would.
Example encode_target(const Tokenizer& tok, std::string_view prompt, std::string_view target,
                      int64_t max_len) {
    const LoglikRequest r = encode_pair(tok, prompt, target);
    const int64_t P = int64_t(r.context.size()), C = int64_t(r.continuation.size());
    const int64_t c_keep = std::min(C, max_len - std::min(P, max_len / 2));
    const int64_t p_keep = std::min(P, max_len - c_keep);
    Example e;
    std::vector<int32_t> row(r.context.end() - p_keep, r.context.end());
    row.insert(row.end(), r.continuation.begin(), r.continuation.begin() + c_keep);
    e.rows.push_back(std::move(row));
    e.answers.push_back(
        {0, int32_t(p_keep - 1), {r.continuation.begin(), r.continuation.begin() + c_keep}});
    return e;
}

Example encode_doc(const Tokenizer& tok, const GenDoc& d, int64_t max_len) {
    // The first reference, then the newline generation stops at (evaluate_gen_task).
    return encode_target(tok, d.prompt, " " + d.answers.at(0) + "\n", max_len);
}

Example encode_doc(const Tokenizer& tok, const InstructDoc& d, int64_t max_len) {
    return encode_target(tok, d.prompt, d.response, max_len);
}

template <class Doc>
std::vector<Example> encode_docs(const Tokenizer& tok, const std::vector<Doc>& docs,
                                 int64_t max_len) {
    std::vector<Example> out;
    for (const auto& d : docs) out.push_back(encode_doc(tok, d, max_len));
    return out;
}

// A batch: the examples' rows in order as tokens [R, T] (fill_row), T the longest row rounded
// up to 16 so that nearby lengths share one planned forward; `at` lists every answer token of
// every option, options in order, the only positions the loss reads.
struct Batch {
    std::vector<int32_t> tokens;
    std::vector<const Example*> ex;
    std::vector<ScoredToken> at;
    int64_t R = 0, T = 0;
};

Batch lay_out(const std::vector<const Example*>& ex, int64_t max_len) {
    Batch b;
    b.ex = ex;
    for (const Example* e : ex) {
        b.R += int64_t(e->rows.size());
        b.T = std::max(b.T, e->longest());
    }
    b.T = padded_len(std::max<int64_t>(2, b.T), max_len);
    b.tokens.assign(size_t(b.R * b.T), 0);
    int64_t r0 = 0;
    for (const Example* e : ex) {
        for (size_t j = 0; j < e->rows.size(); ++j)
            fill_row(e->rows[j], b.tokens.data() + (r0 + int64_t(j)) * b.T, b.T);
        for (const Answer& a : e->answers)
            for (size_t k = 0; k < a.tokens.size(); ++k)
                b.at.push_back({int32_t((r0 + a.row) * b.T + a.pos + int64_t(k)), a.tokens[k]});
        r0 += int64_t(e->rows.size());
    }
    return b;
}

// Summed log-likelihood of each option of each example of the batch, from nll [b.at.size()].
std::vector<std::vector<double>> option_ll(const Batch& b, const std::vector<float>& nll) {
    std::vector<std::vector<double>> out;
    size_t i = 0;
    for (const Example* e : b.ex) {
        std::vector<double> ll;
        for (const Answer& a : e->answers) {
            double s = 0;
            for (size_t k = 0; k < a.tokens.size(); ++k) s += nll[i++];
            ll.push_back(-s);
        }
        out.push_back(std::move(ll));
    }
    return out;
}

// MeZO's option score: the mean log-probability per continuation token.
std::vector<std::vector<double>> per_token(const Batch& b, std::vector<std::vector<double>> ll) {
    for (size_t i = 0; i < ll.size(); ++i)
        for (size_t j = 0; j < ll[i].size(); ++j)
            ll[i][j] /= double(b.ex[i]->answers[j].tokens.size());
    return ll;
}

std::vector<std::vector<double>> option_score(const Batch& b, const std::vector<float>& nll) {
    return per_token(b, option_ll(b, nll));
}

// Mean over the batch of -log softmax(score)[gold] (MeZO's train_as_classification).
double choice_loss(const Batch& b, const std::vector<float>& nll) {
    const auto ll = option_score(b, nll);
    double sum = 0;
    for (size_t i = 0; i < ll.size(); ++i) {
        const double mx = *std::max_element(ll[i].begin(), ll[i].end());
        double z = 0;
        for (double v : ll[i]) z += std::exp(v - mx);
        sum += std::log(z) + mx - ll[i][size_t(b.ex[i]->gold)];
    }
    return sum / double(ll.size());
}

// Mean NLL per target token of the batch, every example's tokens pooled (a causal LM's loss),
// from nll [b.at.size()] (the buffer may be longer).
double target_loss(const Batch& b, const std::vector<float>& nll) {
    double s = 0;
    for (size_t i = 0; i < b.at.size(); ++i) s += nll[i];
    return s / double(std::max<size_t>(1, b.at.size()));
}

// What a task is scored by: accuracy (choice), token F1 of the greedy answer (generation; its
// exact match alongside), mean NLL per response token (instruction data; lower is better).
enum class Kind { choice, gen, instruct };
Kind kind_of(const std::string& task) {
    return is_choice_task(task) ? Kind::choice : is_gen_task(task) ? Kind::gen : Kind::instruct;
}
const char* metric_name(Kind k) {
    return k == Kind::choice ? "acc" : k == Kind::gen ? "f1" : "loss";
}

// The splits of any task, encoded as rows; a generation task's validation and test examples
// stay docs (their answers are generated, not scored as rows).
struct Data {
    std::vector<Example> train, val, test;
    std::vector<GenDoc> gen_val, gen_test;
};
Data load_data(const FinetuneConfig& c, Kind kind, const Tokenizer& tok) {
    Data d;
    auto encode = [&](const auto& sp) {
        d.train = encode_docs(tok, sp.train, c.max_len);
        d.val = encode_docs(tok, sp.val, c.max_len);
        d.test = encode_docs(tok, sp.test, c.max_len);
    };
    if (kind == Kind::choice) {
        encode(choice_splits(c.task, c.data_dir, c.seed, c.n_train, c.n_val, c.n_test));
    } else if (kind == Kind::instruct) {
        encode(alpaca_splits(c.data_dir, c.seed, c.n_train, c.n_val, c.n_test));
    } else {
        Splits<GenDoc> sp = gen_splits(c.task, c.data_dir, c.seed, c.n_train, c.n_val, c.n_test);
        d.train = encode_docs(tok, sp.train, c.max_len);
        d.gen_val = std::move(sp.val);
        d.gen_test = std::move(sp.test);
    }
    return d;
}

}  // namespace

FinetuneSummary finetune(const FinetuneConfig& cfg, const std::string& run_dir,
                         const FinetuneOptions& opt) {
    const auto t_run = std::chrono::steady_clock::now();
    validate(cfg);
    const std::string metrics_path = run_dir + "/metrics.jsonl", best_path = run_dir + "/best.bin";
    for (const std::string& p : {metrics_path, run_dir + "/final.json"})
        if (fs::exists(p))
            fail("finetune", "{} already holds a run ({}); use a new --run-dir", run_dir,
                 fs::path(p).filename().string());
    const QSpec spec = QSpec::parse(cfg.variant == "fp" ? "W16A16" : cfg.qspec);
    ThreadPool pool(opt.threads);
    auto report = [&](FinetuneProgress p) {
        if (opt.progress) opt.progress(p);
    };

    Model base = Model::load(cfg.model);
    if (!base.tokenizer) fail("finetune", "{}: the model has no tokenizer", cfg.model);
    for (const LayerWeights& L : base.layers)
        for (const Tensor* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_up, &L.w_down})
            spec.group_for(w->dim(1), w->name);
    const Kind kind = kind_of(cfg.task);
    const std::string metric = metric_name(kind);
    const Data data = load_data(cfg, kind, *base.tokenizer);
    const std::vector<Example>&train = data.train, &val = data.val, &test = data.test;
    int64_t T = 2, n_rows = 1;
    for (const auto* set : {&train, &val, &test})
        for (const Example& e : *set) {
            n_rows = std::max<int64_t>(n_rows, int64_t(e.rows.size()));
            T = std::max(T, e.longest());
        }
    log_info("finetune: {} {} (train {}, val {}, test {}), up to {} rows of {} tokens per forward",
             cfg.task, cfg.variant, train.size(), val.size(), test.size(), cfg.bsz * n_rows, T);

    fs::create_directories(run_dir);
    write_file_atomic(run_dir + "/config.json", to_json(cfg).dump(2) + "\n");
    std::vector<std::vector<int32_t>> calib;
    if (spec.quant_weights() && quant_method_needs_calibration(parse_quant_method(cfg.init))) {
        CalibOptions co;
        co.nsamples = cfg.init_nsamples;
        co.ctx = cfg.init_ctx;
        co.seed = cfg.seed;
        co.data_dir = cfg.data_dir;
        calib = calibration_windows(*base.tokenizer, co);
    }
    TrainableGroups groups;
    groups.clip = groups.smooth = false;  // quantization parameters frozen (METHOD.md s6)
    if (cfg.variant == "lightweight")
        groups.slots = {true, false, true, false, false, false, false};  // q and v
    std::unique_ptr<QatModel> qm =
        start_qat_model(std::move(base), spec, cfg.init, cfg.rotate, false, cfg.init_search_windows,
                        calib, groups, pool, [&](int64_t done, int64_t total) {
                            report({done, total, 0, -1, 0, "init", ""});
                        });
    calib.clear();
    calib.shrink_to_fit();
    const Tokenizer& tok = *qm->work().tokenizer;  // the base model's, moved in with it
    const double init_peak = vm_hwm_mib();         // the initialisation's (FP model in memory)
    const bool peak_reset = clear_peak();

    // The loss reads only the answer positions (a few per example), so a small LM-head chunk
    // costs no extra passes over the head and keeps its logits to kHeadRows x n_vocab.
    constexpr int64_t kHeadRows = 64;
    // One forward planned for the largest batch (bsz examples of the longest rows); each batch
    // runs at its own shape (rows x padded length) within that arena, so a batch of short
    // examples does not pay for the longest one.
    Forward fwd(qm->work(), cfg.bsz * n_rows, padded_len(T, cfg.max_len), pool, kHeadRows);
    PairBuffers buf;
    buf.plan(fwd.batch(), fwd.ctx(), qm->work().cfg.n_embd);

    auto by_length = [](const std::vector<Example>& set) {
        std::vector<const Example*> v;
        for (const Example& e : set) v.push_back(&e);
        std::stable_sort(v.begin(), v.end(), [](const Example* a, const Example* b) {
            return a->longest() > b->longest();
        });
        return v;
    };
    const std::vector<const Example*> val_sorted = by_length(val), test_sorted = by_length(test);

    // The task's score of a split and, when `pred` is given, its answers as the lines of
    // test_predictions.jsonl (in split order). Choice: accuracy, argmax of the mean
    // log-probability per token (MeZO's, eval-task's acc_tok); instruction data: mean NLL per
    // response token; both on the training forward, in batches of examples of similar length.
    // Generation: the greedy answers of the packed export (what model.gguf would say: a KV-cache
    // session, which the lock-step forward has no use for), token F1 and exact match.
    // Peak RSS of the fine-tuning phase counts steps only: an export is a copy of every linear.
    double step_peak = -1;
    struct Score {
        double value = 0, em = -1;  // em: exact match, generation tasks only
    };
    auto evaluate = [&](bool on_test, std::vector<std::string>* pred) {
        auto eval_progress = [&](int64_t done, int64_t total) {
            report({done, total, 0, -1, 0, "eval", metric});
        };
        eval_progress(0, int64_t(kind == Kind::gen ? (on_test ? data.gen_test : data.gen_val).size()
                                                   : (on_test ? test : val).size()));
        Score sc;
        if (kind == Kind::gen) {
            const std::vector<GenDoc>& docs = on_test ? data.gen_test : data.gen_val;
            if (peak_reset) step_peak = std::max(step_peak, vm_hwm_mib());
            GenOptions go;
            go.max_len = cfg.max_len;
            go.progress = eval_progress;
            const GenMetrics m = evaluate_gen_task(qm->export_packed(), tok, docs, go, pool);
            if (peak_reset) clear_peak();
            sc = {m.f1, m.exact};
            if (pred)
                for (size_t i = 0; i < docs.size(); ++i)
                    pred->push_back(json{{"doc", i},
                                         {"id", docs[i].id},
                                         {"answer", m.answers[i]},
                                         {"references", docs[i].answers}}
                                        .dump());
            return sc;
        }
        const std::vector<Example>& set = on_test ? test : val;
        const std::vector<const Example*>& sorted = on_test ? test_sorted : val_sorted;
        if (pred) pred->assign(set.size(), "");
        int64_t hit = 0, n_tok = 0;
        double nll_sum = 0;
        for (size_t i0 = 0; i0 < sorted.size(); i0 += size_t(cfg.bsz)) {
            if (i0 > 0) eval_progress(int64_t(i0), int64_t(sorted.size()));
            const std::vector<const Example*> ex(
                sorted.begin() + std::ptrdiff_t(i0),
                sorted.begin() + std::ptrdiff_t(std::min(sorted.size(), i0 + size_t(cfg.bsz))));
            const Batch b = lay_out(ex, cfg.max_len);
            fwd.reshape(b.R, b.T);
            zo_nll(*qm, fwd, b.tokens.data(), buf, b.at);
            const auto sums = option_ll(b, buf.nll);
            const auto score = per_token(b, sums);
            for (size_t i = 0; i < ex.size(); ++i) {
                const size_t doc = size_t(ex[i] - set.data());
                if (kind == Kind::choice) {
                    const int p = argmax_first(score[i]);
                    hit += p == ex[i]->gold;
                    if (pred)
                        (
                            *pred)[doc] = json{
                            {"doc", doc},
                            {"gold", ex[i]->gold},
                            {"pred_tok", p},
                            {"ll", sums[i]}}.dump();
                } else {
                    const int64_t n = int64_t(ex[i]->answers[0].tokens.size());
                    nll_sum -= sums[i][0];
                    n_tok += n;
                    if (pred)
                        (*pred)[doc] =
                            json{{"doc", doc}, {"tokens", n}, {"nll", -sums[i][0]}}.dump();
                }
            }
        }
        if (kind == Kind::choice)
            sc.value = set.empty() ? 0.0 : double(hit) / double(set.size());
        else
            sc.value = n_tok ? nll_sum / double(n_tok) : 0.0;
        return sc;
    };
    // Is a better than b? Ties keep the earlier (and cheaper) state.
    auto better = [&](double a, double b) { return kind == Kind::instruct ? a < b : a > b; };
    auto scored = [&](json& j, const std::string& key, const Score& sc) {
        j[key + "_" + metric] = sc.value;
        if (sc.em >= 0) j[key + "_em"] = sc.em;
    };

    FinetuneSummary sum;
    sum.metric = metric;
    sum.n_train = int64_t(train.size());
    sum.n_val = int64_t(kind == Kind::gen ? data.gen_val.size() : val.size());
    sum.n_test = int64_t(kind == Kind::gen ? data.gen_test.size() : test.size());
    if (train.empty()) fail("finetune", "{}: no training examples", cfg.task);

    std::ofstream metrics(metrics_path, std::ios::app);
    if (!metrics) fail("finetune", "{}: cannot write", metrics_path);
    auto log_line = [&](const json& j) {
        metrics << j.dump() << "\n";
        metrics.flush();
    };
    const Score start_val = evaluate(false, nullptr), start_test = evaluate(true, nullptr);
    sum.start_val = start_val.value;
    sum.start_test = start_test.value;
    sum.best_val = sum.start_val;
    qm->save_state(best_path, 0);
    {
        json line = {{"step", 0}};
        scored(line, "val", start_val);
        scored(line, "test", start_test);
        log_line(line);
    }
    log_info("finetune: step 0 val {} {:.4f}, test {} {:.4f}", metric, sum.start_val, metric,
             sum.start_test);

    // Examples of step t: epochs of a permutation of the train set drawn from (seed, epoch).
    std::map<int64_t, std::vector<int64_t>> perms;
    auto example_at = [&](int64_t pos) -> const Example* {
        const int64_t n = int64_t(train.size()), epoch = pos / n;
        auto it = perms.find(epoch);
        if (it == perms.end()) {
            perms.clear();
            std::vector<int64_t> p(static_cast<size_t>(n));
            for (int64_t i = 0; i < n; ++i) p[size_t(i)] = i;
            std::mt19937_64 rng(step_seed(cfg.seed ^ 0xf1e7ull, uint64_t(epoch), 0));
            for (size_t i = p.size(); i > 1; --i) std::swap(p[i - 1], p[size_t(rng() % i)]);
            it = perms.emplace(epoch, std::move(p)).first;
        }
        return &train[size_t(it->second[size_t(pos % n)])];
    };

    const std::array<float, kParamGroups> eps = {float(cfg.eps), 0.f, 0.f, 0.f};  // weights only
    std::vector<ZoUpdate> pending;
    double loss_ema = 0, step_seconds = 0, last_val = sum.start_val;
    for (int64_t t = 1; t <= cfg.steps; ++t) {
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<const Example*> ex;
        for (int64_t k = 0; k < cfg.bsz; ++k) ex.push_back(example_at((t - 1) * cfg.bsz + k));
        const Batch b = lay_out(ex, cfg.max_len);
        const uint64_t seed = step_seed(cfg.seed, uint64_t(t), 0);
        fwd.reshape(b.R, b.T);
        const auto [lp, lm] = zo_pair(
            *qm, fwd, b.tokens.data(), seed, eps, &pending, 0.f, buf,
            [&](const std::vector<float>& nll) {
                return kind == Kind::choice ? choice_loss(b, nll) : target_loss(b, nll);
            },
            b.at);
        pending.clear();
        const double lr = cfg.lr * schedule_factor(cfg.schedule, t, cfg.steps, 0);
        const bool finite = std::isfinite(lp) && std::isfinite(lm);
        double pg = 0;
        if (finite) {
            pg = projected_grad(lp, lm, cfg.eps, cfg.grad_clip);
            ZoUpdate u;
            u.seed = seed;
            u.g[0] = float(pg);
            u.lr[0] = float(lr);
            pending.push_back(u);
            loss_ema = t == 1 ? (lp + lm) / 2 : 0.95 * loss_ema + 0.05 * (lp + lm) / 2;
        } else {
            log_warn("finetune: step {}: non-finite loss; update skipped", t);
        }
        const double secs = seconds_since(t0);
        step_seconds += secs;
        json line = {{"step", t},
                     {"loss_plus", finite ? json(lp) : json(nullptr)},
                     {"loss_minus", finite ? json(lm) : json(nullptr)},
                     {"pg", pg},
                     {"lr", lr},
                     {"skipped", !finite},
                     {"seconds", secs}};
        if (t % cfg.eval_every == 0 || t == cfg.steps) {
            qm->apply_all(pending, 0.f);
            pending.clear();
            const Score v = evaluate(false, nullptr);
            last_val = v.value;
            scored(line, "val", v);
            if (better(last_val, sum.best_val)) {
                sum.best_val = last_val;
                sum.best_step = t;
                qm->save_state(best_path, t);
            }
        }
        log_line(line);
        report({t, cfg.steps, loss_ema, last_val, step_seconds / double(t), "train", metric});
    }
    qm->apply_all(pending, 0.f);
    pending.clear();
    sum.step_seconds = cfg.steps > 0 ? step_seconds / double(cfg.steps) : 0;
    qm->load_state(best_path);
    std::vector<std::string> pred;
    const Score test_score = evaluate(true, &pred);
    sum.test = test_score.value;
    {  // the best state's answers, in test-split order (as eval-task --predictions writes them)
        std::string all;
        for (const std::string& l : pred) all += l + "\n";
        write_file_atomic(run_dir + "/test_predictions.jsonl", all);
    }
    log_info("finetune: best val {} {:.4f} at step {}; its test {} {:.4f} (start {:.4f})", metric,
             sum.best_val, sum.best_step, metric, sum.test, sum.start_test);

    const Model& w = qm->work();
    sum.packed_bytes = qm->frozen_bytes();
    sum.fp_bytes = qm->state_bytes() + qm->scratch_bytes() + w.tok_embd.nbytes +
                   (w.cfg.tie_embeddings ? 0 : w.lm_head.nbytes) + w.pos_embd.nbytes +
                   w.out_norm.nbytes + w.out_norm_b.nbytes;
    sum.arena_bytes = fwd.arena_bytes() + buf.bytes();
    // The peak of fine-tuning itself, before the export below (a copy of every linear at fp).
    sum.train_peak_rss_mib = peak_reset ? std::max(step_peak, vm_hwm_mib()) : -1;
    {
        Model packed = qm->export_packed();
        if (!spec.quant_weights()) packed.cfg.quant_method.clear();  // fp: a plain FP model
        if (packed.source.ends_with(".gguf")) save_gguf(packed, run_dir + "/model.gguf");
    }
    sum.peak_rss_mib = std::max(init_peak, vm_hwm_mib());
    sum.seconds = seconds_since(t_run);
    json fin = {{"task", cfg.task},
                {"variant", cfg.variant},
                {"qspec", spec.str()},
                {"n_train", sum.n_train},
                {"n_val", sum.n_val},
                {"n_test", sum.n_test},
                {"metric", metric},
                {"start_val_" + metric, sum.start_val},
                {"start_test_" + metric, sum.start_test},
                {"best_val_" + metric, sum.best_val},
                {"best_step", sum.best_step},
                {"test_" + metric, sum.test},
                {"start_test_em", start_test.em >= 0 ? json(start_test.em) : json(nullptr)},
                {"test_em", test_score.em >= 0 ? json(test_score.em) : json(nullptr)},
                {"steps", cfg.steps},
                {"rows", cfg.bsz * n_rows},
                {"ctx", T},
                {"step_seconds_mean", sum.step_seconds},
                {"seconds", sum.seconds},
                {"threads", opt.threads},
                {"fp_bytes", sum.fp_bytes},
                {"packed_bytes", sum.packed_bytes},
                {"arena_bytes", sum.arena_bytes},
                {"train_peak_rss_mib", sum.train_peak_rss_mib},
                {"peak_rss_mib", sum.peak_rss_mib}};
    write_file_atomic(run_dir + "/final.json", fin.dump(2) + "\n");
    return sum;
}

}  // namespace zqat
