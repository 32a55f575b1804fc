// Task scoring: see include/zqat/eval/scoring.h.
#include "zqat/eval/scoring.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <numeric>

#include "zqat/core/error.h"
#include "zqat/io/tokenizer.h"
#include "zqat/model/forward.h"
#include "zqat/model/model.h"

namespace zqat {

LoglikRequest encode_pair(const Tokenizer& tok, std::string_view context,
                          std::string_view continuation) {
    std::string ctx(context), cont(continuation);
    const size_t keep = ctx.find_last_not_of(" \t\r\n");
    const size_t n_space = keep == std::string::npos ? ctx.size() : ctx.size() - keep - 1;
    if (n_space > 0) {
        cont = ctx.substr(ctx.size() - n_space) + cont;
        ctx.resize(ctx.size() - n_space);
    }
    LoglikRequest r;
    if (ctx.empty()) {
        if (tok.eos_id() < 0) fail("eval", "an empty context needs an EOS token to stand in");
        r.context = {tok.eos_id()};
        r.continuation = tok.encode(cont, /*add_bos=*/false);
    } else {
        r.context = tok.encode(ctx, /*add_bos=*/false);
        const std::vector<int32_t> whole = tok.encode(ctx + cont, /*add_bos=*/false);
        // A merge across the boundary can make whole's prefix differ from context's tokens; as
        // lm-eval, the continuation is what follows |context| tokens of whole.
        if (whole.size() > r.context.size())
            r.continuation.assign(whole.begin() + std::ptrdiff_t(r.context.size()), whole.end());
    }
    if (r.continuation.empty())
        fail("eval", "the continuation '{}' encodes to no tokens after its context", continuation);
    return r;
}

std::vector<double> loglikelihoods(const Model& model, std::span<const LoglikRequest> reqs,
                                   const ScoreOptions& opt, ThreadPool& pool) {
    if (opt.max_len < 2) fail("eval", "max_len must be at least 2, got {}", opt.max_len);
    if (opt.batch_tokens < 1)
        fail("eval", "batch_tokens must be positive, got {}", opt.batch_tokens);
    const int64_t n = int64_t(reqs.size());
    // The scored sequence of request i: the last max_len tokens of context + continuation.
    auto seq_len = [&](int64_t i) {
        const auto& r = reqs[size_t(i)];
        return std::min<int64_t>(opt.max_len, int64_t(r.context.size() + r.continuation.size()));
    };
    for (int64_t i = 0; i < n; ++i) {
        const auto& r = reqs[size_t(i)];
        if (r.continuation.empty() || r.context.empty())
            fail("eval", "request {}: context and continuation must be non-empty", i);
        if (int64_t(r.continuation.size()) >= opt.max_len)
            fail("eval", "request {}: continuation of {} tokens leaves no context in max_len {}", i,
                 r.continuation.size(), opt.max_len);
    }
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return seq_len(a) > seq_len(b); });

    std::vector<double> out(static_cast<size_t>(n), 0.0);
    std::unique_ptr<Forward> fwd;
    std::vector<int32_t> tokens;
    std::vector<float> nll;
    for (int64_t i0 = 0; i0 < n;) {
        // Lengths fall along `order`, so the first request of a batch is its longest; T rounds up
        // to a multiple of 16 so that nearby lengths share one planned forward.
        const int64_t T = std::min(opt.max_len, (seq_len(order[size_t(i0)]) + 15) / 16 * 16);
        // Fewer rows than a full batch when fewer requests are left (no rows of padding).
        const int64_t B = std::clamp<int64_t>(opt.batch_tokens / T, 1, n - i0);
        if (!fwd || fwd->ctx() != T || fwd->batch() != B) {
            fwd.reset();  // release the old arena before planning the new one
            fwd = std::make_unique<Forward>(model, B, T, pool);
            tokens.assign(size_t(B * T), 0);
            nll.assign(size_t(B * (T - 1)), 0.f);
        }
        const int64_t nb = B;
        for (int64_t b = 0; b < B; ++b) {
            const auto& r = reqs[size_t(order[size_t(i0 + b)])];  // right padding: its last token
            std::vector<int32_t> s(r.context);
            s.insert(s.end(), r.continuation.begin(), r.continuation.end());
            const int64_t L = std::min<int64_t>(T, int64_t(s.size()));
            int32_t* row = tokens.data() + b * T;
            std::copy(s.end() - L, s.end(), row);
            std::fill(row + L, row + T, s.back());
        }
        fwd->nll(tokens.data(), nll.data());
        for (int64_t b = 0; b < nb; ++b) {
            const int64_t i = order[size_t(i0 + b)];
            const int64_t L = seq_len(i);
            const int64_t C = int64_t(reqs[size_t(i)].continuation.size());
            double sum = 0;  // nll[t - 1] scores token t; continuation tokens are [L - C, L)
            for (int64_t t = L - C; t < L; ++t) sum += nll[size_t(b * (T - 1) + t - 1)];
            out[size_t(i)] = -sum;
        }
        i0 += nb;
        if (opt.progress) opt.progress(i0, n);
    }
    return out;
}

int argmax_first(std::span<const double> v) {
    ZQAT_ASSERT(!v.empty());
    return int(std::max_element(v.begin(), v.end()) - v.begin());  // first of the maxima
}

ChoiceMetrics choice_metrics(std::span<const ChoiceDoc> docs, std::span<const double> ll) {
    ChoiceMetrics m;
    m.n = int64_t(docs.size());
    size_t k = 0;
    int64_t hit = 0, hit_norm = 0;
    for (const auto& d : docs) {
        const size_t n_opt = d.options.size();
        ZQAT_ASSERT(k + n_opt <= ll.size());
        std::vector<double> raw(ll.begin() + std::ptrdiff_t(k),
                                ll.begin() + std::ptrdiff_t(k + n_opt));
        std::vector<double> norm(n_opt);
        for (size_t j = 0; j < n_opt; ++j) norm[j] = raw[j] / double(d.options[j].norm_bytes);
        m.pred.push_back(argmax_first(raw));
        m.pred_norm.push_back(argmax_first(norm));
        hit += m.pred.back() == d.gold;
        hit_norm += m.pred_norm.back() == d.gold;
        k += n_opt;
    }
    ZQAT_ASSERT(k == ll.size());
    // lm-eval: mean, and the sample standard error of the mean, sqrt(p (1 - p) / (n - 1)).
    auto stderr_of = [&](double p) {
        return m.n > 1 ? std::sqrt(p * (1 - p) / double(m.n - 1)) : 0.0;
    };
    if (m.n > 0) {
        m.acc = double(hit) / double(m.n);
        m.acc_norm = double(hit_norm) / double(m.n);
    }
    m.acc_stderr = stderr_of(m.acc);
    m.acc_norm_stderr = stderr_of(m.acc_norm);
    return m;
}

ChoiceMetrics evaluate_choice_task(const Model& model, const ChoiceTask& task,
                                   const ScoreOptions& opt, ThreadPool& pool) {
    if (!model.tokenizer) fail("eval", "{}: the model has no tokenizer", model.source);
    std::vector<LoglikRequest> reqs;
    for (const auto& d : task.docs)
        for (const auto& o : d.options)
            reqs.push_back(encode_pair(*model.tokenizer, o.context, o.continuation));
    std::vector<double> ll = loglikelihoods(model, reqs, opt, pool);
    ChoiceMetrics m = choice_metrics(task.docs, ll);
    m.ll = std::move(ll);
    return m;
}

// ---- SQuAD metrics ---------------------------------------------------------------------------

namespace {

bool ascii_punct(unsigned char c) {  // Python's string.punctuation
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
           (c >= 123 && c <= 126);
}

bool word_char(unsigned char c) {  // regex \w: alnum, '_', and (approximately) any non-ASCII byte
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           c >= 0x80;
}

bool is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::vector<std::string> split_ws(std::string_view s) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && is_space(static_cast<unsigned char>(s[i]))) ++i;
        size_t j = i;
        while (j < s.size() && !is_space(static_cast<unsigned char>(s[j]))) ++j;
        if (j > i) out.emplace_back(s.substr(i, j - i));
        i = j;
    }
    return out;
}

}  // namespace

std::string squad_normalize(std::string_view s) {
    // white_space_fix(remove_articles(remove_punc(lower(s)))), as the official script.
    std::string t;
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (ascii_punct(c)) continue;
        t += (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : ch;
    }
    std::string u;  // re.sub(r"\b(a|an|the)\b", " ", t)
    for (size_t i = 0; i < t.size();) {
        bool matched = false;
        if (i == 0 || !word_char(static_cast<unsigned char>(t[i - 1]))) {
            for (std::string_view art : {"the", "an", "a"}) {
                const size_t e = i + art.size();
                if (t.compare(i, art.size(), art) == 0 &&
                    (e == t.size() || !word_char(static_cast<unsigned char>(t[e])))) {
                    u += ' ';
                    i = e;
                    matched = true;
                    break;
                }
            }
        }
        if (!matched) u += t[i++];
    }
    std::string out;
    for (const auto& w : split_ws(u)) out += (out.empty() ? "" : " ") + w;
    return out;
}

double squad_f1(std::string_view prediction, std::string_view reference) {
    const auto p = split_ws(squad_normalize(prediction));
    const auto g = split_ws(squad_normalize(reference));
    std::map<std::string, int64_t> count;
    for (const auto& w : g) ++count[w];
    int64_t same = 0;
    for (const auto& w : p) {
        auto it = count.find(w);
        if (it != count.end() && it->second > 0) {
            --it->second;
            ++same;
        }
    }
    if (same == 0) return 0.0;
    const double precision = double(same) / double(p.size());
    const double recall = double(same) / double(g.size());
    return 2 * precision * recall / (precision + recall);
}

bool squad_exact(std::string_view prediction, std::string_view reference) {
    return squad_normalize(prediction) == squad_normalize(reference);
}

GenMetrics evaluate_gen_task(const Model& model, std::span<const GenDoc> docs,
                             const GenOptions& opt, ThreadPool& pool) {
    if (!model.tokenizer) fail("eval", "{}: the model has no tokenizer", model.source);
    if (opt.max_new < 1 || opt.max_len <= opt.max_new)
        fail("eval", "need 1 <= max_new < max_len, got max_new {} and max_len {}", opt.max_new,
             opt.max_len);
    const Tokenizer& tok = *model.tokenizer;
    Session session(model, opt.max_len, pool);
    GenMetrics m;
    m.n = int64_t(docs.size());
    double f1 = 0, em = 0;
    for (size_t i = 0; i < docs.size(); ++i) {
        std::vector<int32_t> prompt = tok.encode(docs[i].prompt, /*add_bos=*/false);
        const int64_t room = opt.max_len - opt.max_new;
        if (int64_t(prompt.size()) > room)
            prompt.erase(prompt.begin(), prompt.end() - std::ptrdiff_t(room));
        session.reset();
        std::span<const float> logits = session.eval(prompt);
        std::vector<int32_t> out;
        std::string text;
        for (int64_t k = 0; k < opt.max_new; ++k) {
            const auto t = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
            if (t == tok.eos_id()) break;
            out.push_back(t);
            text = tok.decode(out);
            // MeZO stops generating at the newline token; the answer is the text before it.
            if (text.find('\n') != std::string::npos) break;
            if (k + 1 < opt.max_new) logits = session.eval(std::span<const int32_t>(&t, 1));
        }
        std::string_view ans_view(text);
        ans_view = ans_view.substr(0, ans_view.find('\n'));
        const size_t b = ans_view.find_first_not_of(" \t\r");
        const size_t e = ans_view.find_last_not_of(" \t\r");
        std::string ans =
            b == std::string_view::npos ? "" : std::string(ans_view.substr(b, e - b + 1));
        double best_f1 = 0, best_em = 0;
        for (const auto& ref : docs[i].answers) {
            best_f1 = std::max(best_f1, squad_f1(ans, ref));
            best_em = std::max(best_em, squad_exact(ans, ref) ? 1.0 : 0.0);
        }
        f1 += best_f1;
        em += best_em;
        m.answers.push_back(std::move(ans));
        if (opt.progress) opt.progress(int64_t(i + 1), m.n);
    }
    if (m.n > 0) {
        m.f1 = f1 / double(m.n);
        m.exact = em / double(m.n);
    }
    return m;
}

}  // namespace zqat
