// The shared ZO engine pieces: see zo_engine.h.
#include "zo_engine.h"

#include <algorithm>

#include "zqat/core/error.h"
#include "zqat/core/log.h"
#include "zqat/model/forward.h"
#include "zqat/quant/quantize.h"

namespace zqat {

std::unique_ptr<QatModel> start_qat_model(Model base, const QSpec& spec, const std::string& init,
                                          bool rotate, bool act_clip, int64_t search_windows,
                                          const std::vector<std::vector<int32_t>>& calib,
                                          TrainableGroups groups, ThreadPool& pool,
                                          const std::function<void(int64_t, int64_t)>& progress) {
    base.cfg.qspec = spec;
    if (!spec.quant_weights())
        return std::make_unique<QatModel>(
            std::move(base), std::vector<std::vector<std::vector<float>>>{}, groups, pool);
    QuantOptions qo;
    qo.spec = spec;
    qo.method = parse_quant_method(init);
    qo.keep_float = true;
    qo.rotate = rotate;
    qo.act_clip = act_clip;
    qo.search_windows = std::min<int64_t>(search_windows, int64_t(calib.size()));
    if (progress)
        qo.progress = [&](std::string_view, int64_t done, int64_t total) { progress(done, total); };
    log_info("initialising {} with {} ({} calibration windows)", spec.str(), init, calib.size());
    const QuantReport rep = quantize_model(base, qo, calib, pool);
    return std::make_unique<QatModel>(std::move(base), rep.clip, groups, pool,
                                      qo.method == QuantMethod::init ? 20.0f : 4.0f);
}

void PairBuffers::plan(int64_t rows, int64_t T, int64_t n_embd) {
    xp.assign(size_t(rows * T * n_embd), 0.f);
    xm.assign(xp.size(), 0.f);
    nll.assign(size_t(rows * (T - 1)), 0.f);
}

std::pair<double, double> zo_pair(QatModel& qm, Forward& fwd, const int32_t* tokens, uint64_t seed,
                                  const std::array<float, kParamGroups>& eps,
                                  const std::vector<ZoUpdate>* pending, float momentum,
                                  PairBuffers& buf,
                                  const std::function<double(const std::vector<float>&)>& loss,
                                  std::span<const ScoredToken> at) {
    if (buf.nll.size() < at.size()) buf.nll.resize(at.size());
    fwd.embed(tokens, buf.xp.data());
    // Only the rows of the forward's current shape (the buffers hold its largest).
    const int64_t n = fwd.batch() * fwd.ctx() * qm.work().cfg.n_embd;
    ZQAT_ASSERT(size_t(n) <= buf.xm.size());
    std::copy_n(buf.xp.data(), n, buf.xm.data());
    for (int64_t l = 0; l < qm.work().cfg.n_layer; ++l) {
        if (pending) qm.apply(l, *pending, momentum);
        qm.materialize(l, +1, seed, eps);
        fwd.run_layer(l, buf.xp.data());
        qm.materialize(l, -1, seed, eps);
        fwd.run_layer(l, buf.xm.data());
    }
    auto head = [&](const std::vector<float>& x) {
        if (at.empty())
            fwd.head_nll(x.data(), tokens, buf.nll.data());
        else
            fwd.head_nll_at(x.data(), at, buf.nll.data());
        return loss(buf.nll);
    };
    const double lp = head(buf.xp);
    const double lm = head(buf.xm);
    return {lp, lm};
}

void zo_nll(QatModel& qm, Forward& fwd, const int32_t* tokens, PairBuffers& buf,
            std::span<const ScoredToken> at) {
    if (buf.nll.size() < at.size()) buf.nll.resize(at.size());
    const std::array<float, kParamGroups> no_eps{};
    fwd.embed(tokens, buf.xp.data());
    for (int64_t l = 0; l < qm.work().cfg.n_layer; ++l) {
        qm.materialize(l, 0, 0, no_eps);
        fwd.run_layer(l, buf.xp.data());
    }
    if (at.empty())
        fwd.head_nll(buf.xp.data(), tokens, buf.nll.data());
    else
        fwd.head_nll_at(buf.xp.data(), at, buf.nll.data());
}

}  // namespace zqat
