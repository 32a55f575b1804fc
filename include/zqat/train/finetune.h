// Quantized fine-tuning on a task (METHOD.md s6, s8; MeZO's protocol) with the ZeroQAT engine:
// the same lock-step SPSA step as train/trainer.h, on a task loss.
//
// Variants (what trains, what sits in memory):
//   lightweight  q_proj and v_proj weights train in fp32, fake-quantized in the forward; every
//                other linear is quantized once and kept packed (QatModel frozen slots);
//                clipping and smoothing frozen at the initialisation's values
//   full         every decoder linear trains in fp32, fake-quantized (clipping and smoothing
//                frozen): ZeroQAT fine-tuning without the memory cut
//   fp           MeZO on the unquantized model (W16A16): the start of the PTQ rows
//                (fine-tune in FP, then quantize with RTN / SmoothQuant)
// Data (eval/tasks.h, *_splits): train and validation examples drawn with the run's seed, a test
// set fixed for the task. No BOS is added (SmolLM2's tokenizer adds none; MeZO's OPT tokenizer
// prepends </s>). Tasks, their loss and their metric (higher is better but for loss):
//   choice (sst2, cb, boolq, piqa, arc_*, hellaswag, winogrande): an option's score is MeZO's,
//     the mean log-probability of its continuation tokens; the loss of an example is MeZO's
//     train_as_classification, -log softmax(score)[gold], a step's loss the mean over bsz
//     examples (all options of an example in one batch); metric "acc", argmax of the score
//     (eval-task's acc_tok).
//   generation (squad, drop): the prompt, then " " + the first reference + "\n" (the newline
//     the greedy answer stops at); loss = mean NLL per target token, tokens of the batch pooled
//     (MeZO's non-classification loss on the answer only); metric "f1", token F1 of the greedy
//     answer of the packed export (eval-task's), exact match ("em") alongside.
//   instruction (alpaca): the Alpaca prompt, then the response; loss as generation; metric
//     "loss", mean NLL per response token of the split (lower is better).
// Validation every eval_every steps (and at step 0: the quantized start, i.e. zero-shot); the
// best state is kept (best.bin) and scored on the test set at the end.
// Run directory: config.json, metrics.jsonl (step, loss_plus, loss_minus, pg, lr, seconds;
// val_<metric> on evaluation steps), best.bin, model.gguf when the base model is a GGUF file (the
// best state, packed; fp32 for fp), test_predictions.jsonl (the best state's answers per test
// example as eval-task --predictions writes them: choice doc, gold, pred_tok, ll = each
// option's summed log-likelihood; generation doc, id, answer, references; alpaca doc, tokens,
// nll), final.json (metric, start_test_<metric> and test_<metric> of the best state, memory).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace zqat {

struct FinetuneConfig {
    std::string model;  // base model path
    std::string task = "sst2";
    std::string qspec = "W4A4";
    std::string variant = "lightweight";  // lightweight, full, fp
    std::string init = "init";            // init, rtn or smoothquant
    bool rotate = false;  // Hadamard-rotate the linears before the init (QuantOptions::rotate)
    int64_t steps = 500, bsz = 16;
    double lr = 1e-6, eps = 1e-3;  // MeZO's eps; its lr for OPT full fine-tuning is 1e-6 / 1e-7
    std::string schedule = "constant";
    double grad_clip = 0.2;
    uint64_t seed = 0;
    int64_t n_train = 1000, n_val = 500, n_test = 1000;  // MeZO's; capped by the task's data
    int64_t eval_every = 100;
    int64_t max_len = 2048;  // longer examples lose context from the left (as eval-task)
    int64_t init_nsamples = 32, init_ctx = 512, init_search_windows = 16;
    std::string data_dir = "../shared/data";
};

nlohmann::json to_json(const FinetuneConfig& c);
void validate(const FinetuneConfig& c);  // Error naming the first bad field

struct FinetuneProgress {
    int64_t step = 0, steps = 0;
    double loss_ema = 0, last_val = -1, seconds_per_step = 0;
    std::string stage;   // "init", "train", "eval"
    std::string metric;  // of last_val: "acc", "f1" or "loss"
};

struct FinetuneSummary {
    std::string metric;  // "acc", "f1" or "loss" (see above)
    int64_t n_train = 0, n_val = 0, n_test = 0;
    double start_val = 0, start_test = 0;  // the quantized start: zero-shot
    double best_val = 0, test = 0;         // the best validation state on the test set
    int64_t best_step = 0;
    double seconds = 0, step_seconds = 0;
    // Memory: fp32 state (trainable master weights, norms, embeddings, head, one layer's
    // forward scratch and z), packed frozen linears, activations (the forward's arena and the
    // two residual streams of the pair); peak RSS of the whole process and of the fine-tuning
    // phase alone (after the initialisation, which needs the FP model in memory; before the
    // final export).
    uint64_t fp_bytes = 0, packed_bytes = 0, arena_bytes = 0;
    double peak_rss_mib = 0, train_peak_rss_mib = -1;
};

struct FinetuneOptions {
    int threads = 1;
    std::function<void(const FinetuneProgress&)> progress;
};

// A new run in run_dir (refused when it already holds one). Throws Error on bad input.
FinetuneSummary finetune(const FinetuneConfig& cfg, const std::string& run_dir,
                         const FinetuneOptions& opt);

}  // namespace zqat
