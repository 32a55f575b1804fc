#include "zqat/eval/perplexity.h"

#include <chrono>
#include <cmath>
#include <vector>

#include "zqat/core/error.h"
#include "zqat/io/dataset.h"
#include "zqat/model/forward.h"
#include "zqat/model/model.h"

namespace zqat {

PplProtocol parse_ppl_protocol(std::string_view s) {
    if (s == "gptq") return PplProtocol::gptq;
    if (s == "llamacpp") return PplProtocol::llamacpp;
    fail("eval", "unknown perplexity protocol '{}' (expected gptq or llamacpp)", s);
}

std::string ppl_text(const std::string& file_contents, PplProtocol protocol) {
    if (protocol == PplProtocol::llamacpp) return file_contents;
    return join_lines_gptq(file_contents);
}

PplResult perplexity(const Model& model, std::span<const int32_t> tokens, const PplOptions& opt,
                     ThreadPool& pool) {
    if (opt.ctx < 2) fail("eval", "--ctx must be at least 2, got {}", opt.ctx);
    if (opt.batch < 1) fail("eval", "batch must be at least 1, got {}", opt.batch);
    const int64_t n_tok = int64_t(tokens.size());
    int64_t n_win = n_tok / opt.ctx;
    if (n_win == 0)
        fail("eval", "text has {} tokens, fewer than one window of --ctx {}", n_tok, opt.ctx);
    if (opt.limit_windows >= 0 && opt.limit_windows < n_win) n_win = opt.limit_windows;
    if (n_win == 0) fail("eval", "--limit-windows 0 leaves nothing to score");

    const int64_t T = opt.ctx;
    const int64_t B = std::min(opt.batch, n_win);
    // Index (within a window) of the first predicted token that is scored: gptq scores tokens
    // 1..T-1; llama-perplexity takes the logits at positions n_ctx/2 .. n_ctx-2, i.e. it scores
    // tokens T/2+1 .. T-1.
    const int64_t first = opt.protocol == PplProtocol::gptq ? 1 : T / 2 + 1;
    const bool bos = opt.protocol == PplProtocol::llamacpp && model.tokenizer &&
                     model.tokenizer->add_bos() && model.tokenizer->bos_id() >= 0;

    Forward fwd(model, B, T, pool);
    std::vector<int32_t> batch(size_t(B * T));
    std::vector<float> nll(size_t(B * (T - 1)));
    double sum = 0;  // summed in window order: the same for any thread count and batch size
    int64_t count = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t w0 = 0; w0 < n_win; w0 += B) {
        const int64_t nb = std::min(B, n_win - w0);
        for (int64_t b = 0; b < B; ++b) {
            // A short last batch repeats its last window; the repeats are not scored.
            const int64_t w = w0 + std::min(b, nb - 1);
            std::copy_n(tokens.data() + w * T, T, batch.data() + b * T);
            if (bos) batch[size_t(b * T)] = model.tokenizer->bos_id();
        }
        fwd.nll(batch.data(), nll.data());
        for (int64_t b = 0; b < nb; ++b) {
            for (int64_t t = first; t < T; ++t) sum += nll[size_t(b * (T - 1) + t - 1)];
            count += T - first;
        }
        if (opt.progress) opt.progress(w0 + nb, n_win, sum / double(count));
    }
    PplResult r;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.nll = sum / double(count);
    r.ppl = std::exp(r.nll);
    r.tokens = count;
    r.windows = n_win;
    r.stream_tokens = n_tok;
    r.arena_bytes = fwd.arena_bytes();
    return r;
}

}  // namespace zqat
