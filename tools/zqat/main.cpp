// zqat: the command line. Argument parsing (CLI11) and progress output only; the work is library
// calls. Human output goes to stderr, `--json` prints one JSON object on stdout.
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

#include <fmt/ranges.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "progress.h"
#include "zqat/core/error.h"
#include "zqat/core/log.h"
#include "zqat/core/ops.h"
#include "zqat/core/thread_pool.h"
#include "zqat/eval/generate.h"
#include "zqat/eval/perplexity.h"
#include "zqat/eval/scoring.h"
#include "zqat/eval/tasks.h"
#include "zqat/io/dataset.h"
#include "zqat/io/mmap.h"
#include "zqat/model/forward.h"
#include "zqat/model/model.h"
#include "zqat/model/save.h"
#include "zqat/quant/quantize.h"
#include "zqat/train/finetune.h"
#include "zqat/train/trainer.h"

using namespace zqat;
using json = nlohmann::json;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double peak_rss_mib() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

const Tokenizer& require_tokenizer(const Model& m) {
    if (!m.tokenizer) fail("cli", "{}: the model has no tokenizer", m.source);
    return *m.tokenizer;
}

Model load_model_logged(const std::string& path) {
    const auto t0 = std::chrono::steady_clock::now();
    Model m = Model::load(path);
    log_info("loaded {} ({} layers, n_embd {}, {:.1f} M params) in {:.2f}s", path, m.cfg.n_layer,
             m.cfg.n_embd, double(m.n_params()) / 1e6, seconds_since(t0));
    return m;
}

struct Common {
    int threads = 0;
    bool json = false;
    bool quiet = false;
    void add(CLI::App* app) {
        app->add_option("--threads,-t", threads, "Worker threads (default: all hardware threads)")
            ->check(CLI::NonNegativeNumber);
        app->add_flag("--json", json, "Print one JSON object with the results on stdout");
        app->add_flag("--quiet,-q", quiet, "No progress or info messages on stderr");
    }
    int n_threads() const { return threads > 0 ? threads : hardware_threads(); }
};

// ---- inspect ---------------------------------------------------------------------------------
int cmd_inspect(const std::string& path) {
    std::cout << describe_model_file(path);
    return 0;
}

// ---- eval-ppl --------------------------------------------------------------------------------
struct EvalPplArgs {
    Common common;
    std::string model, text, protocol = "gptq", c4_half;
    int64_t ctx = 2048, limit_windows = -1, batch = 1;
};

// The text to score: a file with one paragraph per line (wiki.test.raw), or a JSON-lines file of
// {"text": ...} documents joined with blank lines (C4). --c4-half picks which half of the
// documents: the calibration windows are drawn from the first, so evaluate on "heldout".
std::string eval_text(const EvalPplArgs& a, PplProtocol protocol) {
    if (!a.text.ends_with(".jsonl")) {
        if (!a.c4_half.empty()) fail("cli", "--c4-half needs a .jsonl --text");
        return ppl_text(read_file(a.text), protocol);
    }
    std::vector<std::string> docs = read_jsonl_texts(a.text);
    if (!a.c4_half.empty()) docs = c4_split(docs, a.c4_half == "heldout");
    return join_paragraphs(docs);
}

int cmd_eval_ppl(const EvalPplArgs& a) {
    const auto t_all = std::chrono::steady_clock::now();
    const PplProtocol protocol = parse_ppl_protocol(a.protocol);
    Model model = load_model_logged(a.model);
    const Tokenizer& tok = require_tokenizer(model);

    const auto t_tok = std::chrono::steady_clock::now();
    const std::string text = eval_text(a, protocol);
    // llama-perplexity tokenizes with BOS when the model asks for it; the GPTQ protocol never does.
    const std::vector<int32_t> ids = tok.encode(text, protocol == PplProtocol::llamacpp);
    const double tokenize_s = seconds_since(t_tok);
    log_info("tokenized {} ({} bytes) into {} tokens in {:.2f}s", a.text, text.size(), ids.size(),
             tokenize_s);

    ThreadPool pool(a.common.n_threads());
    PplOptions opt;
    opt.ctx = a.ctx;
    opt.limit_windows = a.limit_windows;
    opt.batch = a.batch;
    opt.protocol = protocol;
    cli::Progress progress("eval-ppl", !a.common.quiet);
    opt.progress = [&](int64_t done, int64_t total, double mean_nll) {
        progress.update(done, total, fmt::format("ppl {:.4f}", std::exp(mean_nll)));
    };
    const PplResult r = perplexity(model, ids, opt, pool);
    progress.finish();

    const double tok_per_s = double(r.windows * a.ctx) / r.seconds;
    if (a.common.json) {
        json j = {{"model", a.model},
                  {"text", a.text},
                  {"protocol", a.protocol},
                  {"ctx", a.ctx},
                  {"ppl", r.ppl},
                  {"nll", r.nll},
                  {"tokens", r.tokens},
                  {"windows", r.windows},
                  {"stream_tokens", r.stream_tokens},
                  {"seconds", r.seconds},
                  {"tokenize_seconds", tokenize_s},
                  {"total_seconds", seconds_since(t_all)},
                  {"tokens_per_second", tok_per_s},
                  {"threads", pool.size()},
                  {"isa", std::string(ops::isa())},
                  {"peak_rss_mib", peak_rss_mib()},
                  {"arena_mib", double(r.arena_bytes) / (1 << 20)},
                  {"model_file_bytes", model.source_bytes},
                  {"qspec", model.cfg.qspec.str()},
                  {"quant_method", model.cfg.quant_method},
                  {"rotation", model.cfg.hadamard ? "hadamard" : "none"}};
        std::cout << j.dump() << std::endl;
    } else {
        std::cout << fmt::format(
            "ppl {:.4f}  (mean nll {:.6f} over {} tokens, {} windows of {}, protocol {})\n"
            "{:.1f}s forward ({:.0f} tokens/s, {} threads, {}), peak RSS {:.0f} MiB\n",
            r.ppl, r.nll, r.tokens, r.windows, a.ctx, a.protocol, r.seconds, tok_per_s, pool.size(),
            ops::isa(), peak_rss_mib());
    }
    return 0;
}

// ---- eval-task -------------------------------------------------------------------------------
struct EvalTaskArgs {
    Common common;
    std::string model, task, data_dir = "../shared/data", predictions, split = "all";
    int64_t limit = -1, n_test = 1000, batch_tokens = 4096, max_len = 2048, max_new = 50;
    bool fake_quant = false;
};

int cmd_eval_task(const EvalTaskArgs& a) {
    const auto t_all = std::chrono::steady_clock::now();
    if (!is_choice_task(a.task) && !is_gen_task(a.task))
        fail("cli", "unknown --task '{}' (choice tasks: {}; generation tasks: {})", a.task,
             fmt::join(choice_task_names(), ", "), fmt::join(gen_task_names(), ", "));
    Model model = load_model_logged(a.model);
    require_tokenizer(model);
    if (a.fake_quant) unpack_model(model);  // packed weights -> their fp32 fake-quant values
    ThreadPool pool(a.common.n_threads());
    cli::Progress progress("eval-task " + a.task, !a.common.quiet);
    auto on_progress = [&](int64_t done, int64_t total) { progress.update(done, total); };
    json j = {{"model", a.model},
              {"task", a.task},
              {"qspec", model.cfg.qspec.str()},
              {"quant_method", model.cfg.quant_method},
              {"fake_quant", a.fake_quant},
              {"threads", pool.size()},
              {"isa", std::string(ops::isa())}};
    std::string human;
    const auto t0 = std::chrono::steady_clock::now();
    if (is_choice_task(a.task)) {
        ChoiceTask task = load_choice_task(a.task, a.data_dir, a.limit);
        if (a.split == "test") {  // the fine-tuning test set (finetune's test_acc)
            task.docs = choice_splits(a.task, a.data_dir, 0, 1, 1, a.n_test).test;
            if (a.limit >= 0 && a.limit < int64_t(task.docs.size()))
                task.docs.resize(size_t(a.limit));
        }
        if (task.docs.empty()) fail("cli", "--limit {} leaves nothing to score", a.limit);
        ScoreOptions opt;
        opt.batch_tokens = a.batch_tokens;
        opt.max_len = a.max_len;
        opt.progress = on_progress;
        const ChoiceMetrics m = evaluate_choice_task(model, task, opt, pool);
        progress.finish();
        if (!a.predictions.empty()) {
            std::string lines;
            size_t k = 0;
            for (size_t i = 0; i < task.docs.size(); ++i) {
                const size_t n_opt = task.docs[i].options.size();
                const std::vector<double> ll(m.ll.begin() + std::ptrdiff_t(k),
                                             m.ll.begin() + std::ptrdiff_t(k + n_opt));
                k += n_opt;
                lines += json{{"doc", i},
                              {"gold", task.docs[i].gold},
                              {"pred", m.pred[i]},
                              {"pred_norm", m.pred_norm[i]},
                              {"pred_tok", m.pred_tok[i]},
                              {"ll", ll}}
                             .dump() +
                         "\n";
            }
            write_file_atomic(a.predictions, lines);
        }
        j["file"] = task.path;
        j["split"] = a.split;
        j["n"] = m.n;
        j["acc"] = m.acc;
        j["acc_stderr"] = m.acc_stderr;
        j["acc_tok"] = m.acc_tok;  // MeZO's criterion, finetune's accuracy
        j["acc_tok_stderr"] = m.acc_tok_stderr;
        if (task.has_norm) {
            j["acc_norm"] = m.acc_norm;
            j["acc_norm_stderr"] = m.acc_norm_stderr;
        }
        human = fmt::format("{}: acc {:.4f} +- {:.4f}", a.task, m.acc, m.acc_stderr);
        if (task.has_norm)
            human += fmt::format(", acc_norm {:.4f} +- {:.4f}", m.acc_norm, m.acc_norm_stderr);
        human += fmt::format(", acc_tok {:.4f}  ({} docs)", m.acc_tok, m.n);
    } else {
        std::vector<GenDoc> docs = load_gen_task(a.task, a.data_dir, a.limit);
        if (a.split == "test") {  // the fine-tuning test set (finetune's test_f1)
            docs = gen_splits(a.task, a.data_dir, 0, 1, 1, a.n_test).test;
            if (a.limit >= 0 && a.limit < int64_t(docs.size())) docs.resize(size_t(a.limit));
        }
        if (docs.empty()) fail("cli", "--limit {} leaves nothing to score", a.limit);
        GenOptions opt;
        opt.max_new = a.max_new;
        opt.max_len = a.max_len;
        opt.progress = on_progress;
        const GenMetrics m = evaluate_gen_task(model, docs, opt, pool);
        progress.finish();
        if (!a.predictions.empty()) {
            std::string lines;
            for (size_t i = 0; i < docs.size(); ++i)
                lines += json{{"doc", i},
                              {"id", docs[i].id},
                              {"answer", m.answers[i]},
                              {"references", docs[i].answers}}
                             .dump() +
                         "\n";
            write_file_atomic(a.predictions, lines);
        }
        j["n"] = m.n;
        j["f1"] = m.f1;
        j["exact_match"] = m.exact;
        human = fmt::format(
            "{}: F1 {:.4f}, exact match {:.4f}  ({} questions, greedy, {} new "
            "tokens at most)",
            a.task, m.f1, m.exact, m.n, a.max_new);
    }
    j["seconds"] = seconds_since(t0);
    j["total_seconds"] = seconds_since(t_all);
    j["peak_rss_mib"] = peak_rss_mib();
    if (a.common.json) {
        std::cout << j.dump() << std::endl;
    } else {
        std::cout << human
                  << fmt::format("\n{:.1f}s ({} threads, {}), peak RSS {:.0f} MiB\n",
                                 j["seconds"].get<double>(), pool.size(), ops::isa(),
                                 peak_rss_mib());
    }
    return 0;
}

// ---- finetune ------------------------------------------------------------------------------
struct FinetuneArgs {
    Common common;
    FinetuneConfig cfg;
    std::string run_dir;
};

int cmd_finetune(const FinetuneArgs& a) {
    validate(a.cfg);
    if (a.run_dir.empty()) fail("cli", "finetune needs --run-dir DIR");
    FinetuneOptions opt;
    opt.threads = a.common.n_threads();
    // One bar for the steps (its ETA spans the evaluations between them), one for the stage
    // in progress otherwise: the initialisation or an evaluation.
    std::optional<cli::Progress> steps_bar, stage_bar;
    std::string stage;
    opt.progress = [&](const FinetuneProgress& p) {
        if (p.stage != stage || (p.stage != "train" && p.step == 0)) {  // a new stage
            if (steps_bar) steps_bar->finish();
            if (stage_bar) stage_bar->finish();
            stage_bar.reset();
            stage = p.stage;
        }
        if (p.stage == "train") {
            if (!steps_bar) steps_bar.emplace("finetune", !a.common.quiet);
            steps_bar->update(p.step, p.steps,
                              fmt::format("loss {:.4f}, val {} {:.3f}, {:.2f} s/step", p.loss_ema,
                                          p.metric, p.last_val, p.seconds_per_step));
            return;
        }
        if (!stage_bar) stage_bar.emplace("finetune " + p.stage, !a.common.quiet);
        stage_bar->update(p.step, p.steps, p.stage == "eval" ? p.metric : "");
    };
    const FinetuneSummary s = finetune(a.cfg, a.run_dir, opt);
    if (steps_bar) steps_bar->finish();
    if (stage_bar) stage_bar->finish();
    if (a.common.json) {
        json j = json::parse(read_file(a.run_dir + "/final.json"));
        j["run_dir"] = a.run_dir;
        std::cout << j.dump() << std::endl;
    } else {
        std::cout << fmt::format(
            "{} {} {}: test {} {:.4f} (start {:.4f}); best val {} {:.4f} at step {}\n"
            "train {} / val {} / test {}; {:.2f} s/step, {:.0f}s in all ({} threads)\n"
            "memory: fp32 {:.1f} MiB, packed {:.1f} MiB, arena {:.1f} MiB; peak RSS {:.0f} MiB "
            "(fine-tuning phase {:.0f} MiB)\n",
            a.cfg.task, a.cfg.variant, a.cfg.variant == "fp" ? "W16A16" : a.cfg.qspec, s.metric,
            s.test, s.start_test, s.metric, s.best_val, s.best_step, s.n_train, s.n_val, s.n_test,
            s.step_seconds, s.seconds, opt.threads, double(s.fp_bytes) / (1 << 20),
            double(s.packed_bytes) / (1 << 20), double(s.arena_bytes) / (1 << 20), s.peak_rss_mib,
            s.train_peak_rss_mib);
    }
    return 0;
}

// ---- tokenize -------------------------------------------------------------------------------
struct TokenizeArgs {
    Common common;
    std::string model, text_file, prompt;
    bool special = false, bos = false;
};

int cmd_tokenize(const TokenizeArgs& a) {
    Model model = load_model_logged(a.model);
    const Tokenizer& tok = require_tokenizer(model);
    const std::string text = a.text_file.empty() ? a.prompt : read_file(a.text_file);
    const std::vector<int32_t> ids = tok.encode(text, a.bos, a.special);
    if (a.common.json) {
        std::cout << json{{"n_tokens", ids.size()}, {"ids", ids}}.dump() << std::endl;
        return 0;
    }
    for (int32_t id : ids) {
        json piece = tok.token_bytes(id);
        std::cout << id << "\t" << piece.dump(-1, ' ', false, json::error_handler_t::replace)
                  << "\n";
    }
    log_info("{} tokens", ids.size());
    return 0;
}

// ---- generate --------------------------------------------------------------------------------
struct GenerateArgs {
    Common common;
    std::string model, prompt;
    int64_t n = 64;
    SampleOptions sample;
    bool raw_prompt = false;
};

int cmd_generate(const GenerateArgs& a) {
    Model model = load_model_logged(a.model);
    const Tokenizer& tok = require_tokenizer(model);
    const std::vector<int32_t> prompt = tok.encode(a.prompt, true, /*parse_special=*/true);
    if (prompt.empty()) fail("cli", "--prompt encodes to no tokens");
    ThreadPool pool(a.common.n_threads());
    Session session(model, int64_t(prompt.size()) + a.n, pool);

    const bool stream = !a.common.json;
    if (stream) {
        std::cout << a.prompt;
        std::cout.flush();
    }
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int32_t> out =
        generate(model, session, prompt, a.n, a.sample, [&](int32_t id) {
            if (stream) {
                std::cout << tok.token_bytes(id);
                std::cout.flush();
            }
        });
    const double s = seconds_since(t0);
    if (a.common.json) {
        json j = {{"prompt", a.prompt},    {"prompt_tokens", prompt.size()},
                  {"tokens", out},         {"text", tok.decode(out)},
                  {"seconds", s},          {"tokens_per_second", double(out.size()) / s},
                  {"threads", pool.size()}};
        std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << std::endl;
    } else {
        std::cout << "\n";
        log_info("{} prompt + {} new tokens in {:.2f}s ({:.1f} tokens/s)", prompt.size(),
                 out.size(), s, double(out.size()) / s);
    }
    return 0;
}

// ---- quantize --------------------------------------------------------------------------------
struct QuantizeArgs {
    Common common;
    std::string model, qspec, method = "rtn", calib = "wikitext2,c4", out,
                              data_dir = "../shared/data";
    int64_t nsamples = 128, ctx = 2048, search_windows = 16, gptq_skip_first = 0;
    uint64_t seed = 0;
    float alpha = 0.5f;
    bool act_order = true, rotate = false, act_clip = false;
};

std::vector<std::string> split_commas(const std::string& s) {
    std::vector<std::string> out;
    size_t at = 0;
    while (at <= s.size()) {
        const size_t comma = std::min(s.find(',', at), s.size());
        if (comma > at) out.push_back(s.substr(at, comma - at));
        at = comma + 1;
    }
    return out;
}

int cmd_quantize(const QuantizeArgs& a) {
    const auto t_all = std::chrono::steady_clock::now();
    // Everything that can be checked without work is checked first, so a bad flag costs nothing
    // and leaves no output behind.
    QuantOptions opt;
    opt.spec = QSpec::parse(a.qspec);
    opt.method = parse_quant_method(a.method);
    if (!opt.spec.quant_weights()) fail("cli", "--qspec {} quantizes no weights", a.qspec);
    if (opt.method == QuantMethod::gptq && opt.spec.quant_acts())
        fail("cli", "gptq is weight-only: use an A16 spec (got {})", opt.spec.str());
    opt.alpha = a.alpha;
    opt.act_order = a.act_order;
    opt.gptq_skip_first = a.gptq_skip_first;
    if (a.gptq_skip_first > 0 && opt.method != QuantMethod::gptq)
        fail("cli", "--gptq-skip-first is for --method gptq (got {})", a.method);
    if (a.gptq_skip_first >= a.ctx)
        fail("cli", "--gptq-skip-first {} must be below --ctx {}", a.gptq_skip_first, a.ctx);
    opt.rotate = a.rotate;
    opt.act_clip = a.act_clip;
    if (a.act_clip && (opt.method != QuantMethod::init || !opt.spec.quant_acts()))
        fail("cli", "--act-clip is searched by --method init at an A < 16 spec (got {} {})",
             a.method, opt.spec.str());
    opt.search_windows = a.search_windows;
    Model model = load_model_logged(a.model);
    const Tokenizer& tok = require_tokenizer(model);

    std::vector<std::vector<int32_t>> calib;
    if (quant_method_needs_calibration(opt.method)) {
        CalibOptions co;
        co.nsamples = a.nsamples;
        co.ctx = a.ctx;
        co.seed = a.seed;
        co.sources = split_commas(a.calib);
        co.data_dir = a.data_dir;
        calib = calibration_windows(tok, co);
        log_info("calibration: {} windows of {} tokens from {} (seed {})", calib.size(), a.ctx,
                 a.calib, a.seed);
    }
    ThreadPool pool(a.common.n_threads());
    cli::Progress progress("quantize " + a.method + " " + opt.spec.str(), !a.common.quiet);
    opt.progress = [&](std::string_view stage, int64_t done, int64_t total) {
        progress.update(done, total, std::string(stage));
    };
    const QuantReport rep = quantize_model(model, opt, calib, pool);
    progress.finish();
    save_gguf(model, a.out);
    const uint64_t out_bytes = std::filesystem::file_size(a.out);
    if (a.common.json) {
        json layers = json::array();
        for (const LayerQuantReport& l : rep.layers)
            layers.push_back({{"alpha", l.alpha},
                              {"clipped", l.clipped},
                              {"mse_rtn", l.mse_before},
                              {"mse", l.mse_after},
                              {"act_clip", l.act_clip}});
        json j = {{"model", a.model},
                  {"out", a.out},
                  {"qspec", opt.spec.str()},
                  {"method", a.method},
                  {"rotation", a.rotate ? "hadamard" : "none"},
                  {"nsamples", calib.size()},
                  {"ctx", a.ctx},
                  {"seed", a.seed},
                  {"calib", a.calib},
                  {"gptq_skip_first", a.gptq_skip_first},
                  {"packed_bytes", rep.packed_bytes},
                  {"packed_elems", rep.packed_elems},
                  {"n_params", model.n_params()},
                  // bits-plus-scales arithmetic: packed linears + 4 bytes per fp32 weight
                  {"expected_bytes", rep.packed_bytes + 4 * (model.n_params() - rep.packed_elems)},
                  {"out_bytes", out_bytes},
                  {"quantize_seconds", rep.seconds},
                  {"total_seconds", seconds_since(t_all)},
                  {"threads", pool.size()},
                  {"peak_rss_mib", peak_rss_mib()},
                  {"layers", layers}};
        std::cout << j.dump() << std::endl;
    } else {
        std::cout << fmt::format(
            "wrote {} ({:.1f} MiB; packed linears {:.1f} MiB), {} {} in {:.1f}s, peak RSS "
            "{:.0f} MiB\n",
            a.out, double(out_bytes) / (1 << 20), double(rep.packed_bytes) / (1 << 20), a.method,
            opt.spec.str(), rep.seconds, peak_rss_mib());
    }
    return 0;
}

// ---- train -------------------------------------------------------------------------------------
struct TrainArgs {
    Common common;
    TrainConfig cfg;
    std::string run_dir, resume;
    bool no_weights = false, no_clip = false, no_smooth = false, rotate = false;
    int64_t stop_after = -1;
};

std::string fmt_duration(double s) {
    if (s < 90) return fmt::format("{:.0f}s", s);
    if (s < 5400) return fmt::format("{:.0f}m", s / 60);
    return fmt::format("{:.1f}h", s / 3600);
}

int cmd_train(TrainArgs& a) {
    TrainOptions opt;
    opt.threads = a.common.n_threads();
    opt.stop_after = a.stop_after;
    std::string dir = a.run_dir;
    TrainConfig cfg = a.cfg;
    if (!a.resume.empty()) {
        dir = a.resume;
        cfg = load_run_config(dir);
        opt.resume = true;
    } else {
        if (dir.empty()) fail("cli", "train needs --run-dir DIR (or --resume DIR)");
        if (cfg.model.empty()) fail("cli", "train needs --model");
        cfg.train_weights = !a.no_weights;
        cfg.train_clip = !a.no_clip;
        cfg.train_smooth = !a.no_smooth;
        cfg.rotate = a.rotate;
    }
    const bool tty = isatty(2) != 0;
    int64_t last_line = -1;
    opt.progress = [&](const TrainProgress& p) {
        if (a.common.quiet) return;
        std::string msg;
        if (p.stage == "init") {
            msg = fmt::format("init {}/{} layers", p.step, p.steps);
        } else if (p.stage != "train") {
            msg = fmt::format("{} at step {}", p.stage, p.step);
        } else {
            const double eta = p.seconds_per_step * double(p.steps - p.step);
            msg = fmt::format("step {}/{}  loss {:.4f}  eval ppl {:.3f}  {:.2f} s/step  ETA {}",
                              p.step, p.steps, p.loss_ema, p.last_eval_ppl, p.seconds_per_step,
                              fmt_duration(eta));
            // Without a TTY: a line every 1% of the run.
            const int64_t every = std::max<int64_t>(1, p.steps / 100);
            if (!tty && p.step % every != 0 && p.step != p.steps) return;
        }
        if (tty)
            std::fprintf(stderr, "\r\033[K%s", msg.c_str());
        else if (p.step != last_line || p.stage != "train")
            std::fprintf(stderr, "%s\n", msg.c_str());
        last_line = p.step;
    };
    const TrainSummary s = train(cfg, dir, opt);
    if (tty && !a.common.quiet) std::fprintf(stderr, "\n");
    if (a.common.json) {
        std::cout << json{{"run_dir", dir},
                          {"steps_done", s.steps_done},
                          {"start_ppl", s.start_ppl},
                          {"final_ppl", s.final_ppl},
                          {"step_seconds", s.step_seconds},
                          {"seconds", s.seconds},
                          {"state_bytes", s.state_bytes},
                          {"threads", opt.threads},
                          {"isa", std::string(ops::isa())},
                          {"peak_rss_mib", peak_rss_mib()}}
                         .dump()
                  << std::endl;
    } else {
        std::cout << fmt::format(
            "{}: {} steps, final PPL {:.4f}, {:.2f} s/step, peak RSS {:.0f} MiB\n", dir,
            s.steps_done, s.final_ppl, s.step_seconds, peak_rss_mib());
    }
    return 0;
}

// ---- plot --------------------------------------------------------------------------------------
// Loss (EMA of (l+ + l-) / 2) and eval PPL (with val PPL on a second axis when the run has it)
// against step, from metrics.jsonl, drawn by gnuplot.
int cmd_plot(const std::string& dir, std::string out) {
    const std::string path = dir + "/metrics.jsonl";
    if (!std::filesystem::exists(path)) fail("cli", "{}: no such file", path);
    if (out.empty()) out = dir + "/curves.png";
    std::string loss, ppl, val;
    std::istringstream in(read_file(path));
    std::string line;
    int64_t lineno = 0;
    double ema = 0;
    while (std::getline(in, line)) {
        ++lineno;
        json j;
        try {
            j = json::parse(line);
        } catch (const json::parse_error& e) {
            fail("cli", "{}: line {}: invalid JSON at byte offset {}", path, lineno, e.byte);
        }
        const int64_t step = j.value("step", int64_t(-1));
        if (j.contains("loss_plus") && j["loss_plus"].is_number()) {
            const double l = (j["loss_plus"].get<double>() + j["loss_minus"].get<double>()) / 2;
            ema = ema == 0 ? l : 0.98 * ema + 0.02 * l;
            loss += fmt::format("{} {} {}\n", step, l, ema);
        }
        if (j.contains("eval_ppl"))
            ppl += fmt::format("{} {}\n", step, j["eval_ppl"].get<double>());
        if (j.contains("val_ppl")) val += fmt::format("{} {}\n", step, j["val_ppl"].get<double>());
    }
    if (loss.empty() && ppl.empty()) fail("cli", "{}: no steps logged yet", path);
    const std::string tmp_dir = out + ".d";
    std::filesystem::create_directories(tmp_dir);
    write_file_atomic(tmp_dir + "/loss.dat", loss.empty() ? "0 nan nan\n" : loss);
    write_file_atomic(tmp_dir + "/ppl.dat", ppl.empty() ? "0 nan\n" : ppl);
    if (!val.empty()) write_file_atomic(tmp_dir + "/val.dat", val);
    const std::string title = std::filesystem::path(dir).filename().string();
    const std::string script = fmt::format(
        "set terminal pngcairo size 1200,450 font ',10'\n"
        "set output '{0}.tmp'\n"
        "set multiplot layout 1,2 title 'zqat train: {1}'\n"
        "set xlabel 'step'; set ylabel 'loss (nats)'; set grid\n"
        "plot '{2}/loss.dat' u 1:2 w p pt 7 ps 0.2 lc rgb '#bbbbbb' t '(l+ + l-)/2', "
        "'' u 1:3 w l lw 2 lc rgb '#1f77b4' t 'EMA'\n"
        "set ylabel 'WikiText-2 PPL (eval subset)'\n"
        "{3}"
        "plot '{2}/ppl.dat' u 1:2 w lp pt 7 lw 2 lc rgb '#d62728' t 'eval PPL'{4}\n"
        "unset multiplot\n",
        out, title, tmp_dir,
        val.empty() ? "" : "set y2label 'val PPL (training text)'; set y2tics\n",
        val.empty() ? ""
                    : ", '" + tmp_dir +
                          "/val.dat' u 1:2 axes x1y2 w lp pt 5 lw 2 lc rgb "
                          "'#2ca02c' t 'val PPL (right axis)'");
    write_file_atomic(tmp_dir + "/plot.gp", script);
    const std::string cmd = "gnuplot '" + tmp_dir + "/plot.gp'";
    const int rc = std::system(cmd.c_str());
    std::filesystem::remove_all(tmp_dir);
    if (rc != 0)
        fail("cli", "gnuplot failed (exit {}); install it with apt-get install gnuplot-nox", rc);
    std::filesystem::rename(out + ".tmp", out);
    std::cout << "wrote " << out << "\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"zqat: quantization-aware training of LLMs without backpropagation", "zqat"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "zqat 0.1.0");

    std::string inspect_path;
    CLI::App* inspect =
        app.add_subcommand("inspect", "Show a model file's architecture, tensors and metadata");
    inspect->add_option("model", inspect_path, "GGUF file or Hugging Face checkpoint folder")
        ->required();

    EvalPplArgs ep;
    CLI::App* eval_ppl = app.add_subcommand("eval-ppl", "Perplexity of a model on a text file");
    eval_ppl->add_option("--model,-m", ep.model, "GGUF file or Hugging Face checkpoint folder")
        ->required();
    eval_ppl
        ->add_option("--text", ep.text, "Text file, one paragraph per line (e.g. wiki.test.raw)")
        ->required();
    eval_ppl->add_option("--ctx,-c", ep.ctx, "Window length in tokens")
        ->capture_default_str()
        ->check(CLI::Range(int64_t(2), int64_t(1) << 20));
    eval_ppl->add_option("--limit-windows", ep.limit_windows, "Score only the first K windows");
    eval_ppl->add_option("--batch,-b", ep.batch, "Windows per forward pass")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    eval_ppl
        ->add_option("--ppl-protocol", ep.protocol,
                     "gptq: every position after the first of each window; llamacpp: BOS-led "
                     "windows, second half scored (as llama-perplexity)")
        ->capture_default_str()
        ->check(CLI::IsMember({"gptq", "llamacpp"}));
    eval_ppl
        ->add_option("--c4-half", ep.c4_half,
                     "For a .jsonl --text: score only the calibration or the held-out half of "
                     "its documents")
        ->check(CLI::IsMember({"calib", "heldout"}));
    ep.common.add(eval_ppl);

    EvalTaskArgs et;
    CLI::App* eval_task = app.add_subcommand(
        "eval-task",
        "Zero-shot task score: multiple choice by log-likelihood (acc, acc_norm as "
        "lm-eval-harness), or greedy answers (SQuAD F1 / exact match)");
    eval_task->add_option("--model,-m", et.model, "GGUF file or Hugging Face checkpoint folder")
        ->required();
    eval_task
        ->add_option("--task", et.task,
                     "piqa, arc_easy, arc_challenge, hellaswag (first 1000), winogrande, sst2, cb, "
                     "boolq, squad, drop")
        ->required();
    eval_task->add_option("--limit", et.limit, "Score only the first N documents")
        ->check(CLI::NonNegativeNumber);
    eval_task->add_option("--data-dir", et.data_dir, "Folder holding tasks/")
        ->capture_default_str();
    eval_task->add_option("--batch-tokens", et.batch_tokens, "Tokens per forward pass, about")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    eval_task
        ->add_option("--max-len", et.max_len,
                     "Longest sequence; longer ones lose context from the left")
        ->capture_default_str()
        ->check(CLI::Range(int64_t(2), int64_t(1) << 20));
    eval_task->add_option("--max-new", et.max_new, "Generation tasks: new tokens at most")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    eval_task->add_option("--predictions", et.predictions,
                          "Write one JSON line per document (prediction, log-likelihoods)");
    eval_task
        ->add_option("--split", et.split,
                     "all: every document of the file; test: the fine-tuning test set of "
                     "`zqat finetune` (choice and generation tasks)")
        ->capture_default_str()
        ->check(CLI::IsMember({"all", "test"}));
    eval_task->add_option("--n-test", et.n_test, "With --split test: its size (as finetune's)")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    eval_task->add_flag("--fake-quant", et.fake_quant,
                        "Unpack a quantized model's packed weights into fp32 (fake quantization)");
    et.common.add(eval_task);

    QuantizeArgs qa;
    CLI::App* quant = app.add_subcommand(
        "quantize",
        "Quantize a model's decoder linears (RTN, SmoothQuant, GPTQ or the ZeroQAT "
        "init) and save it as a packed GGUF");
    quant->add_option("--model,-m", qa.model, "GGUF file or Hugging Face checkpoint folder")
        ->required();
    quant->add_option("--qspec", qa.qspec, "W{2,3,4,6,8}A{4,6,8,16}[g{32,64,128}][sym], e.g. W4A4")
        ->required();
    quant->add_option("--method", qa.method, "rtn, smoothquant, gptq (A16 only) or init")
        ->capture_default_str();
    quant->add_option("--calib", qa.calib, "Calibration sources, comma separated: wikitext2, c4")
        ->capture_default_str();
    quant->add_option("--nsamples", qa.nsamples, "Calibration windows (half from each source)")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    quant->add_option("--ctx,-c", qa.ctx, "Tokens per calibration window")
        ->capture_default_str()
        ->check(CLI::Range(int64_t(2), int64_t(1) << 20));
    quant->add_option("--seed", qa.seed, "Seed for drawing the calibration windows")
        ->capture_default_str();
    quant->add_option("--alpha", qa.alpha, "SmoothQuant migration strength")
        ->capture_default_str()
        ->check(CLI::Range(0.0f, 1.0f));
    quant->add_flag("--act-order,!--no-act-order", qa.act_order,
                    "GPTQ: quantize columns by decreasing Hessian diagonal, with group scales "
                    "fixed up front (static groups); on by default: SmolLM2's outlier channels "
                    "make in-order GPTQ little better than RTN");
    quant
        ->add_option("--gptq-skip-first", qa.gptq_skip_first,
                     "GPTQ: leave the first N positions of every calibration window out of the "
                     "Hessians (1: the attention-sink token, whose massive activations dominate "
                     "some down_proj inputs; an experiment, worse on SmolLM2: docs/RESULTS.md)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    quant->add_flag("--rotate", qa.rotate,
                    "Hadamard-rotate every decoder linear's input and weight (rtn, gptq): the "
                    "product is unchanged, outlier channels are spread before rounding (block: "
                    "the largest power of two dividing the input width)");
    quant->add_flag("--act-clip", qa.act_clip,
                    "init, A < 16: also search a clipping ratio for each layer's linear inputs "
                    "(the token's min/max scaled before activation quantization; not in the "
                    "paper)");
    quant
        ->add_option("--search-windows", qa.search_windows,
                     "init: calibration windows the per-block alpha search is scored on")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    quant->add_option("--data-dir", qa.data_dir, "Folder holding wikitext-2/ and c4/")
        ->capture_default_str();
    quant->add_option("--out,-o", qa.out, "Output GGUF file (written atomically)")->required();
    qa.common.add(quant);

    GenerateArgs g;
    CLI::App* gen = app.add_subcommand("generate", "Generate text from a prompt (KV cache)");
    gen->add_option("--model,-m", g.model, "GGUF file or Hugging Face checkpoint folder")
        ->required();
    gen->add_option("--prompt,-p", g.prompt, "Prompt text")->required();
    gen->add_option("-n,--n-predict", g.n, "Tokens to generate")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    gen->add_option("--temp", g.sample.temperature, "Temperature; 0 is greedy")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    gen->add_option("--top-k", g.sample.top_k, "Keep the k most likely tokens (0: all)")
        ->capture_default_str();
    gen->add_option("--top-p", g.sample.top_p, "Nucleus: smallest set with this mass")
        ->capture_default_str()
        ->check(CLI::Range(0.0f, 1.0f));
    gen->add_option("--seed", g.sample.seed, "Sampling seed")->capture_default_str();
    g.common.add(gen);

    TokenizeArgs tk;
    CLI::App* tokenize = app.add_subcommand("tokenize", "Show the token ids of a text");
    tokenize->add_option("--model,-m", tk.model, "GGUF file or Hugging Face checkpoint folder")
        ->required();
    auto* tk_text = tokenize->add_option("--text", tk.text_file, "Text file to tokenize");
    auto* tk_prompt = tokenize->add_option("--prompt,-p", tk.prompt, "Text to tokenize");
    tk_text->excludes(tk_prompt);
    tokenize->add_flag("--special", tk.special, "Match special-token strings such as <|im_start|>");
    tokenize->add_flag("--bos", tk.bos, "Prepend BOS when the model asks for it");
    tk.common.add(tokenize);

    TrainArgs ta;
    CLI::App* train_cmd = app.add_subcommand(
        "train", "ZeroQAT: quantization-aware training from forward passes only (SPSA)");
    TrainConfig& tc = ta.cfg;
    train_cmd->add_option("--model,-m", tc.model, "Base model: GGUF file or HF checkpoint folder");
    train_cmd->add_option("--qspec", tc.qspec, "W{2,3,4,6,8}A{4,6,8,16}[g{32,64,128}][sym]")
        ->capture_default_str();
    train_cmd->add_option("--init", tc.init, "Starting point: init, rtn or smoothquant")
        ->capture_default_str();
    train_cmd->add_option("--steps", tc.steps, "Training steps")->capture_default_str();
    train_cmd->add_option("--bsz,-b", tc.bsz, "Windows per step")->capture_default_str();
    train_cmd->add_option("--ctx,-c", tc.ctx, "Tokens per training window")->capture_default_str();
    train_cmd->add_option("--directions,-n", tc.directions, "SPSA directions per step")
        ->capture_default_str();
    train_cmd->add_option("--lr", tc.lr, "Learning rate of the weights")->capture_default_str();
    train_cmd->add_option("--lr-clip", tc.lr_clip, "Learning rate of the LWC logits")
        ->capture_default_str();
    train_cmd->add_option("--lr-smooth", tc.lr_smooth, "Learning rate of LET scale and shift")
        ->capture_default_str();
    train_cmd->add_option("--eps", tc.eps, "Perturbation size of the weights")
        ->capture_default_str();
    train_cmd->add_option("--eps-clip", tc.eps_clip, "Perturbation size of the LWC logits")
        ->capture_default_str();
    train_cmd->add_option("--eps-smooth", tc.eps_smooth, "Perturbation size of LET")
        ->capture_default_str();
    train_cmd
        ->add_flag("--act-clip", tc.train_act_clip,
                   "Train a clipping ratio per layer and linear input for the activations (A < "
                   "16; not in the paper), starting at 1 (min/max)")
        ->capture_default_str();
    train_cmd->add_option("--lr-act-clip", tc.lr_act_clip, "Learning rate of activation clipping")
        ->capture_default_str();
    train_cmd->add_flag("--init-act-clip", tc.init_act_clip,
                        "The init searches the activation clipping ratios (as quantize "
                        "--act-clip)");
    train_cmd
        ->add_option("--eps-act-clip", tc.eps_act_clip,
                     "Perturbation size of activation clipping (ratio units)")
        ->capture_default_str();
    train_cmd->add_option("--schedule", tc.schedule, "constant, linear (decay to 0) or cosine")
        ->capture_default_str();
    train_cmd->add_option("--warmup", tc.warmup, "Linear warmup steps")->capture_default_str();
    train_cmd
        ->add_option("--momentum", tc.momentum,
                     "Momentum (0: none; > 0 keeps a buffer the size of the weights)")
        ->capture_default_str();
    train_cmd->add_option("--grad-clip", tc.grad_clip, "Clip the projected gradient to +-c/eps")
        ->capture_default_str();
    train_cmd->add_option("--seed", tc.seed, "Run seed: data order, perturbations, calibration")
        ->capture_default_str();
    train_cmd->add_flag("--no-weights", ta.no_weights, "Freeze the weights (train LWC/LET only)");
    train_cmd->add_flag("--no-clip", ta.no_clip, "Freeze LWC (clipping)");
    train_cmd->add_flag("--no-smooth", ta.no_smooth, "Freeze LET (smoothing)");
    train_cmd->add_flag("--rotate", ta.rotate,
                        "Hadamard-rotate the decoder linears before the init (as quantize "
                        "--rotate); needs --no-smooth and --init rtn or init");
    train_cmd->add_option("--eval-every", tc.eval_every, "Evaluate every N steps (0: never)")
        ->capture_default_str();
    train_cmd
        ->add_option("--eval-windows", tc.eval_windows,
                     "WikiText-2 test windows in a periodic evaluation")
        ->capture_default_str();
    train_cmd
        ->add_option("--val-windows", tc.val_windows,
                     "Training-text windows scored at each evaluation (val_ppl; 0: none)")
        ->capture_default_str();
    train_cmd->add_option("--eval-ctx", tc.eval_ctx, "Evaluation window length")
        ->capture_default_str();
    train_cmd->add_option("--final-eval", tc.final_eval, "full (every test window), subset or none")
        ->capture_default_str();
    train_cmd->add_option("--save-every", tc.save_every, "Checkpoint state.bin every N steps")
        ->capture_default_str();
    train_cmd
        ->add_option("--snapshot-every", tc.snapshot_every,
                     "Write a packed model-<step>.gguf every N steps (0: only model.gguf)")
        ->capture_default_str();
    train_cmd
        ->add_option("--max-nonfinite", tc.max_nonfinite,
                     "Stop after this many non-finite losses in a row")
        ->capture_default_str();
    train_cmd->add_option("--init-nsamples", tc.init_nsamples, "Calibration windows of the init")
        ->capture_default_str();
    train_cmd->add_option("--init-ctx", tc.init_ctx, "Tokens per calibration window of the init")
        ->capture_default_str();
    train_cmd
        ->add_option("--init-search-windows", tc.init_search_windows,
                     "Calibration windows the init's alpha search scores on")
        ->capture_default_str();
    train_cmd
        ->add_option("--data-dir", tc.data_dir, "Folder holding wikitext-2/, wikitext-2-raw/, c4/")
        ->capture_default_str();
    train_cmd->add_option("--run-dir", ta.run_dir, "New run directory (config, logs, checkpoints)");
    train_cmd->add_option("--resume", ta.resume, "Continue the run in this directory, bit-exactly");
    train_cmd->add_option("--stop-after", ta.stop_after, "Stop after this step (for tests)")
        ->group("");
    ta.common.add(train_cmd);

    FinetuneArgs fa;
    FinetuneConfig& fc = fa.cfg;
    CLI::App* ft = app.add_subcommand(
        "finetune",
        "Fine-tune on a task while quantized (MeZO protocol, ZeroQAT engine): choice tasks by "
        "accuracy, squad/drop by greedy-answer F1, alpaca by response NLL");
    ft->add_option("--model,-m", fc.model, "Base model: GGUF file or HF checkpoint folder")
        ->required();
    ft->add_option("--task", fc.task,
                   "sst2, cb, boolq (or another choice task), squad, drop, alpaca")
        ->capture_default_str();
    ft->add_option("--qspec", fc.qspec, "W{2,3,4,6,8}A{4,6,8,16}[g{32,64,128}][sym]")
        ->capture_default_str();
    ft->add_option("--variant", fc.variant,
                   "lightweight (q/v train, the rest packed), full (every linear), fp (MeZO "
                   "on the unquantized model)")
        ->capture_default_str();
    ft->add_option("--init", fc.init, "Quantized start: init, rtn or smoothquant")
        ->capture_default_str();
    ft->add_flag("--rotate", fc.rotate,
                 "Hadamard-rotate the decoder linears before the init (as quantize --rotate); "
                 "needs --init rtn or init");
    ft->add_option("--steps", fc.steps, "Training steps")->capture_default_str();
    ft->add_option("--bsz,-b", fc.bsz, "Examples per step")->capture_default_str();
    ft->add_option("--lr", fc.lr, "Learning rate of the weights")->capture_default_str();
    ft->add_option("--eps", fc.eps, "Perturbation size")->capture_default_str();
    ft->add_option("--schedule", fc.schedule, "constant, linear or cosine")->capture_default_str();
    ft->add_option("--grad-clip", fc.grad_clip, "Clip the projected gradient to +-c/eps")
        ->capture_default_str();
    ft->add_option("--seed", fc.seed, "Run seed: train/val sample, order, perturbations")
        ->capture_default_str();
    ft->add_option("--n-train", fc.n_train, "Training examples (at most)")->capture_default_str();
    ft->add_option("--n-val", fc.n_val, "Validation examples (at most)")->capture_default_str();
    ft->add_option("--n-test", fc.n_test, "Test examples (at most)")->capture_default_str();
    ft->add_option("--eval-every", fc.eval_every, "Validate every N steps")->capture_default_str();
    ft->add_option("--max-len", fc.max_len, "Longest example in tokens")->capture_default_str();
    ft->add_option("--init-nsamples", fc.init_nsamples, "Calibration windows of the init")
        ->capture_default_str();
    ft->add_option("--init-ctx", fc.init_ctx, "Tokens per calibration window")
        ->capture_default_str();
    ft->add_option("--init-search-windows", fc.init_search_windows,
                   "Calibration windows the init's alpha search scores on")
        ->capture_default_str();
    ft->add_option("--data-dir", fc.data_dir, "Folder holding tasks/, wikitext-2/, c4/")
        ->capture_default_str();
    ft->add_option("--run-dir", fa.run_dir, "New run directory")->required();
    fa.common.add(ft);

    std::string plot_dir, plot_out;
    CLI::App* plot =
        app.add_subcommand("plot", "PNG of a run's loss and eval-PPL curves (gnuplot)");
    plot->add_option("run_dir", plot_dir, "Run directory of zqat train")->required();
    plot->add_option("--out,-o", plot_out, "Output PNG (default: RUN_DIR/curves.png)");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        for (Common* c :
             {&ep.common, &et.common, &fa.common, &g.common, &tk.common, &qa.common, &ta.common})
            if (c->quiet) set_log_level(LogLevel::warn);
        if (*inspect) return cmd_inspect(inspect_path);
        if (*eval_ppl) return cmd_eval_ppl(ep);
        if (*eval_task) return cmd_eval_task(et);
        if (*quant) return cmd_quantize(qa);
        if (*train_cmd) return cmd_train(ta);
        if (*ft) return cmd_finetune(fa);
        if (*plot) return cmd_plot(plot_dir, plot_out);
        if (*gen) return cmd_generate(g);
        if (*tokenize) {
            if (tk.text_file.empty() && tk.prompt.empty())
                fail("cli", "tokenize needs --text FILE or --prompt TEXT");
            return cmd_tokenize(tk);
        }
    } catch (const Error& e) {
        std::fprintf(stderr, "zqat: error: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "zqat: error: %s\n", e.what());
        return 1;
    }
    return 1;
}
