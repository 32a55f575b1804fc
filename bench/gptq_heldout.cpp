// Diagnostic behind the GPTQ-vs-RTN paragraph of docs/RESULTS.md (issue 3): GPTQ minimises each
// linear's output error tr(dW H dW^T), H = X^T X / n of its calibration inputs. Does the advantage
// over RTN that it has on those inputs hold on held-out text, and how much of H is the first token
// of each window (the attention sink, whose activations are orders of magnitude larger)?
//
// Every layer sees the FP model's activations (not quantize's sequential, quantized inputs), so
// each linear is judged alone. For every decoder linear it quantizes W by GPTQ (H from the
// calibration windows, the defaults of `zqat quantize`), by GPTQ with position 0 of every window
// left out of H (`--gptq-skip-first 1`) and by RTN, and scores each under six
// H: {calibration, wiki.test.raw, C4 held-out} x {all positions, position 0 left out}; plus the
// share of tr(H) that position 0 carries. Prints one JSON object on stdout.
//
// Usage: gptq_heldout --model M [--data ../shared/data] [--bits 4] [--group 64] [--nsamples 32]
//                     [--ctx 2048] [--heldout-windows 8] [--no-act-order] [--threads N]
#include <CLI/CLI.hpp>
#include <array>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "zqat/core/error.h"
#include "zqat/core/thread_pool.h"
#include "zqat/eval/perplexity.h"
#include "zqat/io/dataset.h"
#include "zqat/io/mmap.h"
#include "zqat/io/tokenizer.h"
#include "zqat/model/forward.h"
#include "zqat/model/model.h"
#include "zqat/quant/gptq.h"
#include "zqat/quant/hessian.h"

using namespace zqat;

namespace {

// Scored under: text x {all positions, position 0 left out}. Accumulated: text x {all, position 0}.
constexpr const char* kSetNames[] = {"calib",       "calib_nopos0", "wiki",
                                     "wiki_nopos0", "c4",           "c4_nopos0"};
constexpr int kSets = 6;

struct Layer {
    std::array<std::array<std::unique_ptr<Hessian>, kLinearSites>, kSets> h;
};

std::vector<std::vector<int32_t>> windows_of(const std::vector<int32_t>& ids, int64_t ctx,
                                             int64_t n) {
    std::vector<std::vector<int32_t>> w;
    for (int64_t i = 0; i < n && (i + 1) * ctx <= int64_t(ids.size()); ++i)
        w.emplace_back(ids.begin() + i * ctx, ids.begin() + (i + 1) * ctx);
    return w;
}

double trace(const Hessian& h) {
    double t = 0;
    for (int64_t i = 0; i < h.cols(); ++i) t += h.sum()[size_t(i * h.cols() + i)];
    return t;
}

int run(int argc, char** argv) {
    std::string model_path, data = "../shared/data";
    int bits = 4;
    int64_t group = 64, nsamples = 32, ctx = 2048, heldout = 8;
    bool no_act = false;
    int threads = 0;
    CLI::App app{"GPTQ vs RTN per-layer output error on calibration and held-out text"};
    app.add_option("--model", model_path, "model file (GGUF or safetensors dir)")->required();
    app.add_option("--data", data, "shared data dir");
    app.add_option("--bits", bits, "weight bits");
    app.add_option("--group", group, "group size along the input");
    app.add_option("--nsamples", nsamples, "calibration windows (half WikiText-2 valid, half C4)");
    app.add_option("--ctx", ctx, "tokens per window");
    app.add_option("--heldout-windows", heldout, "windows of each held-out text");
    app.add_flag("--no-act-order", no_act, "GPTQ columns in order");
    app.add_option("--threads", threads, "threads (0: all cores)");
    CLI11_PARSE(app, argc, argv);

    Model m = Model::load(model_path);
    const Tokenizer& tok = *m.tokenizer;
    CalibOptions co;
    co.nsamples = nsamples;
    co.ctx = ctx;
    co.data_dir = data;
    std::array<std::vector<std::vector<int32_t>>, 3> texts;
    texts[0] = calibration_windows(tok, co);
    texts[1] = windows_of(
        tok.encode(ppl_text(read_file(data + "/wikitext-2-raw/wiki.test.raw"), PplProtocol::gptq),
                   false),
        ctx, heldout);
    texts[2] = windows_of(
        tok.encode(join_paragraphs(c4_split(read_jsonl_texts(data + "/c4/c4_demo.jsonl"), true)),
                   false),
        ctx, heldout);

    ThreadPool pool(threads > 0 ? threads : int(std::thread::hardware_concurrency()));
    const int64_t n_layer = m.cfg.n_layer;
    std::vector<Layer> layers(static_cast<size_t>(n_layer));
    Forward f(m, 1, ctx, pool);
    int text = 0;
    // Per text: the Hessian of all positions, and of position 0 alone (one row per window, so
    // cheap); the "nopos0" H is their difference.
    f.set_hook([&](int64_t l, LinearSite s, const float* in, int64_t rows, int64_t cols) {
        for (int pos0 = 0; pos0 < 2; ++pos0) {
            auto& h = layers[size_t(l)].h[size_t(2 * text + pos0)][size_t(s)];
            if (!h) h = std::make_unique<Hessian>(cols);
            h->add(in, pos0 ? 1 : rows, cols, &pool);
        }
    });
    std::vector<float> nll(size_t(ctx - 1));
    for (text = 0; text < 3; ++text) {
        std::fprintf(stderr, "gptq_heldout: %s, %zu windows\n", kSetNames[2 * text],
                     texts[size_t(text)].size());
        for (const auto& w : texts[size_t(text)]) f.nll(w.data(), nll.data());
    }
    f.set_hook({});

    GptqOptions go;
    go.act_order = !no_act;
    nlohmann::json out = {
        {"model", model_path},  {"bits", bits},      {"group", group},
        {"nsamples", nsamples}, {"ctx", ctx},        {"heldout_windows", heldout},
        {"act_order", !no_act}, {"sets", kSetNames}, {"layers", nlohmann::json::array()}};
    for (int64_t l = 0; l < n_layer; ++l) {
        const LayerWeights& L = m.layers[size_t(l)];
        std::vector<std::pair<const Tensor*, LinearSite>> lin = {
            {&L.wq, LinearSite::attn_in},  {&L.wk, LinearSite::attn_in},
            {&L.wv, LinearSite::attn_in},  {&L.wo, LinearSite::attn_out},
            {&L.w_up, LinearSite::ffn_in}, {&L.w_down, LinearSite::ffn_out}};
        if (!L.w_gate.empty()) lin.insert(lin.begin() + 4, {&L.w_gate, LinearSite::ffn_in});
        nlohmann::json jl = {{"layer", l},
                             {"pos0_share", nlohmann::json::object()},
                             {"linears", nlohmann::json::array()}};
        for (int s = 0; s < kLinearSites; ++s) {
            std::vector<double> share;
            for (int t = 0; t < 3; ++t)
                share.push_back(trace(*layers[size_t(l)].h[size_t(2 * t + 1)][size_t(s)]) /
                                trace(*layers[size_t(l)].h[size_t(2 * t)][size_t(s)]));
            jl["pos0_share"][std::to_string(s)] = share;
        }
        for (const auto& [w, site] : lin) {
            std::vector<std::vector<double>> H(kSets);
            for (int t = 0; t < 3; ++t) {
                const Hessian& all = *layers[size_t(l)].h[size_t(2 * t)][size_t(site)];
                const Hessian& p0 = *layers[size_t(l)].h[size_t(2 * t + 1)][size_t(site)];
                H[size_t(2 * t)] = all.mean();
                std::vector<double>& rest = H[size_t(2 * t + 1)];
                rest.resize(all.sum().size());
                const double n = double(all.n_samples() - p0.n_samples());
                for (size_t i = 0; i < rest.size(); ++i) rest[i] = (all.sum()[i] - p0.sum()[i]) / n;
            }
            const int64_t rows = w->dim(0), cols = w->dim(1);
            // GPTQ fitted on every position (as `zqat quantize`), GPTQ fitted without position 0
            // (--gptq-skip-first 1), RTN.
            const QuantizedWeight q[3] = {
                gptq_quantize(w->f32(), rows, cols, H[0], bits, group, false, go, &pool),
                gptq_quantize(w->f32(), rows, cols, H[1], bits, group, false, go, &pool),
                rtn_quantize(w->f32(), rows, cols, bits, group, false, &pool)};
            std::vector<std::vector<double>> e(3, std::vector<double>(kSets));
            pool.parallel_for(3 * kSets, [&](int64_t t, int) {
                const int64_t k = t % kSets, v = t / kSets;
                e[size_t(v)][size_t(k)] =
                    layer_output_error(w->f32(), q[v].w_hat.data(), rows, cols, H[size_t(k)]);
            });
            jl["linears"].push_back({{"name", w->name},
                                     {"site", int(site)},
                                     {"gptq", e[0]},
                                     {"gptq_nopos0", e[1]},
                                     {"rtn", e[2]}});
        }
        layers[size_t(l)] = Layer{};  // its Hessians are done with
        out["layers"].push_back(jl);
        std::fprintf(stderr, "gptq_heldout: layer %ld/%ld\n", long(l + 1), long(n_layer));
    }
    std::printf("%s\n", out.dump().c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "gptq_heldout: %s\n", e.what());
        return 1;
    }
}
