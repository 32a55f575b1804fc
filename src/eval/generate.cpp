#include "zqat/eval/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "zqat/core/error.h"
#include "zqat/model/forward.h"
#include "zqat/model/model.h"

namespace zqat {

int32_t sample_token(std::span<const float> logits, const SampleOptions& opt,
                     std::mt19937_64& rng) {
    ZQAT_ASSERT(!logits.empty());
    if (opt.temperature <= 0.f)
        return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());

    std::vector<int32_t> ids(logits.size());
    std::iota(ids.begin(), ids.end(), 0);
    // Highest logit first; ties broken by id so the order is fully determined.
    auto by_logit = [&](int32_t a, int32_t b) {
        return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
    };
    size_t keep = ids.size();
    if (opt.top_k > 0 && size_t(opt.top_k) < keep) {
        keep = size_t(opt.top_k);
        std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), by_logit);
    } else {
        std::sort(ids.begin(), ids.end(), by_logit);
    }
    std::vector<double> p(keep);
    const double mx = logits[ids[0]];
    double z = 0;
    for (size_t i = 0; i < keep; ++i) z += p[i] = std::exp((logits[ids[i]] - mx) / opt.temperature);
    if (opt.top_p < 1.f) {  // smallest prefix whose mass reaches top_p
        double acc = 0;
        for (size_t i = 0; i < keep; ++i) {
            acc += p[i] / z;
            if (acc >= opt.top_p) {
                keep = i + 1;
                break;
            }
        }
        p.resize(keep);
    }
    std::discrete_distribution<size_t> dist(p.begin(), p.end());
    return ids[dist(rng)];
}

std::vector<int32_t> generate(const Model& model, Session& session, std::span<const int32_t> prompt,
                              int64_t n_new, const SampleOptions& opt,
                              const std::function<void(int32_t)>& on_token) {
    if (prompt.empty()) fail("eval", "generation needs a non-empty prompt");
    std::mt19937_64 rng(opt.seed);
    std::vector<int32_t> out;
    const int32_t eos = model.tokenizer ? model.tokenizer->eos_id() : -1;
    std::span<const float> logits = session.eval(prompt);
    for (int64_t i = 0; i < n_new; ++i) {
        const int32_t tok = sample_token(logits, opt, rng);
        if (tok == eos) break;
        out.push_back(tok);
        if (on_token) on_token(tok);
        if (i + 1 < n_new) logits = session.eval(std::span<const int32_t>(&tok, 1));
    }
    return out;
}

}  // namespace zqat
