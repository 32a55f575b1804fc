// ZeroQAT training runs (METHOD.md s4): SPSA with n directions over every trainable group of a
// QatModel (train/qat_model.h), two forwards per direction, resumable from a run directory.
//
// One step t (1-based):
//   tokens: bsz windows of ctx tokens, window b from source (t * bsz + b) mod 2 (WikiText-2
//     valid, C4-demo documents 0-149) at an offset drawn from (seed, t): no state to resume.
//   for direction i < n: seed_i = step_seed(seed, t, i); the + and - forwards run in lock step,
//     layer by layer, so z of a layer is generated once for both; before a layer's first forward
//     of the step the previous step's updates are applied to it. Two passes over a layer's theta
//     per step, back to back: the update, then both signs' perturbation (MeZO makes four over
//     the whole model: perturb, flip, restore, update).
//   g_i,group = clip(l+ - l-, -2c, 2c) / (2 eps_group) / n, i.e. clip(proj. grad, +-c/eps)
//   theta_group -= lr_group(t) * g_i,group * z_i (lr_group(t) = base lr * schedule(t)).
//   A non-finite loss skips the step's update; max_nonfinite in a row stop the run.
// Run directory:
//   config.json    the resolved TrainConfig (resume reads it back)
//   metrics.jsonl  one line per step: step, loss_plus, loss_minus, pg (the weights' clipped
//                  projected gradient), lr, lr_clip, lr_smooth (lr_act_clip when it trains),
//                  skipped, seconds; eval_ppl (and val_ppl with val_windows) on evaluation
//                  steps (step 0 is the starting point)
//   seeds.tsv      step, direction, seed, then g per group and lr per group (weights, clip,
//                  smooth, act_clip) as hex floats: with the start state it reproduces the
//                  trained model exactly (replayed on resume). Runs from before the act_clip
//                  group have 9 fields a line (3 groups), and still resume.
//   state.bin      checkpoint of the whole QatModel every save_every steps (temp + rename)
//   model-<step>.gguf snapshots every snapshot_every steps (and model-0.gguf, the starting
//                  point), model.gguf at the end: packed, loadable by every command
//   final.json     the final evaluation and run totals (and the activation clipping ratios per
//                  layer, when the model has them)
// Lines are appended and flushed after every step; on resume a torn last line is dropped, the
// logs are cut back to the last step both hold, state.bin is loaded and seeds.tsv replayed up
// to that step, so an interrupted and resumed run logs what an uninterrupted one does.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace zqat {

struct TrainConfig {
    std::string model;           // base model path
    std::string qspec = "W4A4";  // core/qspec.h
    std::string init = "init";   // init, rtn or smoothquant (quant/quantize.h)
    int64_t steps = 1000, bsz = 1, ctx = 512, directions = 1;
    // Per group (weights, clip = LWC, smooth = LET): base learning rate and perturbation size.
    // The paper's Table C.1, with its smaller weight rate: at 1e-7 and 256 tokens per step the
    // weights' update noise raised SmolLM2's W4A4 PPL within 50 steps.
    double lr = 1e-8, lr_clip = 1e-5, lr_smooth = 5e-6;
    double eps = 1e-3, eps_clip = 1e-3, eps_smooth = 1e-3;
    // Activation clipping ratios (QatModel's act_clip group; not in the paper): off unless
    // train_act_clip. eps and lr in ratio units.
    double lr_act_clip = 1e-3, eps_act_clip = 1e-2;
    std::string schedule = "linear";  // constant, linear (decay), cosine (after warmup)
    int64_t warmup = 0;               // steps of linear warmup (cosine and linear)
    double momentum = 0;              // > 0 keeps a buffer the size of theta
    double grad_clip = 0.2;           // c: the projected gradient is clipped to +-c/eps
    uint64_t seed = 0;
    bool train_weights = true, train_clip = true, train_smooth = true;
    bool train_act_clip = false;  // needs activation quantization
    bool init_act_clip = false;   // the init searches the ratios (QuantOptions::act_clip)
    // Hadamard rotation of the decoder linears before the init (quantize --rotate); needs
    // train_smooth off and init rtn or init (LET acts on the unrotated channels).
    bool rotate = false;
    int64_t eval_every = 100, eval_windows = 4, eval_ctx = 2048;  // WikiText-2 test windows
    // Validation on the training text: windows of eval_ctx tokens at fixed offsets of the training
    // streams (alternating, drawn from the seed), scored as val_ppl at step 0 and with every
    // periodic evaluation (not the final one). For choosing settings without looking at the
    // test text. 0: none.
    int64_t val_windows = 0;
    std::string final_eval = "full";               // full, subset or none
    int64_t save_every = 100, snapshot_every = 0;  // 0: no snapshots
    int64_t max_nonfinite = 5;
    int64_t init_nsamples = 32, init_ctx = 512;  // calibration windows of the initialisation
    int64_t init_search_windows = 16;            // of which the init's alpha search scores on
    std::string data_dir = "../shared/data";
};

nlohmann::json to_json(const TrainConfig& c);
// Throws Error naming `where` and the field for a missing or mistyped field.
TrainConfig train_config_from_json(const nlohmann::json& j, const std::string& where);
// Checks ranges and names (qspec, init, schedule, final_eval): Error on the first bad field.
void validate(const TrainConfig& c);

// lr multiplier at step t of `steps` (1-based): warmup ramps linearly from 1/warmup to 1; then
// constant 1, linear from 1 down to 1/(steps - warmup) at the last step (which still moves), or
// cosine 1 -> 0.
double schedule_factor(const std::string& schedule, int64_t t, int64_t steps, int64_t warmup);

// The clipped projected gradient of one direction: clip((l+ - l-) / (2 eps), -c/eps, +c/eps).
double projected_grad(double loss_plus, double loss_minus, double eps, double c);

struct TrainProgress {
    int64_t step = 0, steps = 0;
    double loss_ema = 0, last_eval_ppl = 0, seconds_per_step = 0;
    std::string stage;  // "init", "train", "eval", "final-eval"
};

struct TrainOptions {
    int threads = 1;
    bool resume = false;
    int64_t stop_after = -1;  // tests: stop after this step as if killed (no final work)
    std::function<void(const TrainProgress&)> progress;
    // Token streams to train on and the evaluation stream, instead of the data files (tests on
    // models without a tokenizer); the init's calibration windows come from train_streams too.
    std::vector<std::vector<int32_t>> train_streams;
    std::vector<int32_t> eval_tokens;
};

struct TrainSummary {
    int64_t steps_done = 0;
    double start_ppl = 0, final_ppl = 0;   // subset PPL at step 0; final evaluation (0: none)
    double seconds = 0, step_seconds = 0;  // wall time of the run; mean seconds per step
    uint64_t state_bytes = 0;
};

// Runs (or, with opt.resume, continues) the run in run_dir. A new run refuses a run_dir that
// already holds metrics. Throws Error with a clear message on bad input, a corrupt run dir or
// max_nonfinite non-finite losses in a row.
TrainSummary train(const TrainConfig& cfg, const std::string& run_dir, const TrainOptions& opt);

// The config of an existing run (run_dir/config.json).
TrainConfig load_run_config(const std::string& run_dir);

}  // namespace zqat
