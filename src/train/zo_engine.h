// What the pre-training run (trainer.cpp) and task fine-tuning (finetune.cpp) share: the
// starting QatModel from a base model, and the lock-step pair of perturbed forwards of one SPSA
// direction. Internal to src/train.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "zqat/model/forward.h"
#include "zqat/train/qat_model.h"

namespace zqat {

class ThreadPool;

// quantize_model(base, method `init` at `spec`, keep_float) on the calibration windows, then
// the QatModel of that start (LWC logits from the init's ratios; 20 where the init found no
// clipping helps, 4 after rtn / smoothquant). rotate, act_clip: QuantOptions'. At W16 nothing
// is quantized.
std::unique_ptr<QatModel> start_qat_model(Model base, const QSpec& spec, const std::string& init,
                                          bool rotate, bool act_clip, int64_t search_windows,
                                          const std::vector<std::vector<int32_t>>& calib,
                                          TrainableGroups groups, ThreadPool& pool,
                                          const std::function<void(int64_t, int64_t)>& progress);

// Scratch of one pair: the residual streams [rows * T, n_embd] of the + and - forwards and the
// NLL [rows, T - 1] the loss reads.
struct PairBuffers {
    std::vector<float> xp, xm, nll;
    void plan(int64_t rows, int64_t T, int64_t n_embd);
    uint64_t bytes() const { return (xp.size() + xm.size() + nll.size()) * sizeof(float); }
};

// The + and - losses of direction `seed`, the two forwards in lock step layer by layer (z of a
// layer made once for both). pending, when given, is applied to each layer just before that
// layer's first forward (the update, then both signs' perturbation, back to back).
// loss(nll) -> a scalar, from nll [rows, T - 1] of `tokens`; with `at`, from nll [at.size()] of
// only those positions (as Forward::nll_at).
std::pair<double, double> zo_pair(QatModel& qm, Forward& fwd, const int32_t* tokens, uint64_t seed,
                                  const std::array<float, kParamGroups>& eps,
                                  const std::vector<ZoUpdate>* pending, float momentum,
                                  PairBuffers& buf,
                                  const std::function<double(const std::vector<float>&)>& loss,
                                  std::span<const ScoredToken> at = {});

// nll [rows, T - 1] of `tokens` through the unperturbed model, layer by layer (no copy of it);
// `at` as in zo_pair.
void zo_nll(QatModel& qm, Forward& fwd, const int32_t* tokens, PairBuffers& buf,
            std::span<const ScoredToken> at = {});

}  // namespace zqat
