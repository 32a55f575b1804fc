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
    std::vector<int32_t> tokens, seq;
    std::vector<ScoredToken> at;
    std::vector<float> nll;
    for (int64_t i0 = 0; i0 < n;) {
        // Lengths fall along `order`, so the first request of a batch is its longest.
        const int64_t T = padded_len(seq_len(order[size_t(i0)]), opt.max_len);
        // Fewer rows than a full batch when fewer requests are left (no rows of padding).
        const int64_t B = std::clamp<int64_t>(opt.batch_tokens / T, 1, n - i0);
        if (!fwd || fwd->ctx() != T || fwd->batch() != B) {
            fwd.reset();  // release the old arena before planning the new one
            fwd = std::make_unique<Forward>(model, B, T, pool);
            tokens.assign(size_t(B * T), 0);
        }
        at.clear();  // only the positions that predict continuation tokens pay for the head
        for (int64_t b = 0; b < B; ++b) {
            const auto& r = reqs[size_t(order[size_t(i0 + b)])];
            seq = r.context;
            seq.insert(seq.end(), r.continuation.begin(), r.continuation.end());
            const int64_t L = fill_row(seq, tokens.data() + b * T, T);
            const int64_t C = int64_t(r.continuation.size());
            for (int64_t t = L - C; t < L; ++t)  // row position t - 1 predicts token t
                at.push_back({int32_t(b * T + t - 1), tokens[size_t(b * T + t)]});
        }
        nll.resize(at.size());
        fwd->nll_at(tokens.data(), at, nll.data());
        size_t k = 0;
        for (int64_t b = 0; b < B; ++b) {
            double sum = 0;  // in position order
            for (size_t c = 0; c < reqs[size_t(order[size_t(i0 + b)])].continuation.size(); ++c)
                sum += nll[k++];
            out[size_t(order[size_t(i0 + b)])] = -sum;
        }
        i0 += B;
        if (opt.progress) opt.progress(i0, n);
    }
    return out;
}

int64_t padded_len(int64_t n, int64_t max_len) {
    return std::min(max_len, (n + 15) / 16 * 16);
}

int64_t fill_row(std::span<const int32_t> seq, int32_t* row, int64_t T) {
    ZQAT_ASSERT(!seq.empty() && T > 0);
    const int64_t L = std::min<int64_t>(T, int64_t(seq.size()));
    std::copy(seq.end() - L, seq.end(), row);
    std::fill(row + L, row + T, seq.back());
    return L;
}

int argmax_first(std::span<const double> v) {
    ZQAT_ASSERT(!v.empty());
    return int(std::max_element(v.begin(), v.end()) - v.begin());  // first of the maxima
}

ChoiceMetrics choice_metrics(std::span<const ChoiceDoc> docs, std::span<const double> ll,
                             std::span<const int64_t> n_tokens) {
    const bool tok = !n_tokens.empty();
    ZQAT_ASSERT(!tok || n_tokens.size() == ll.size());
    ChoiceMetrics m;
    m.n = int64_t(docs.size());
    size_t k = 0;
    int64_t hit = 0, hit_norm = 0, hit_tok = 0;
    for (const auto& d : docs) {
        const size_t n_opt = d.options.size();
        ZQAT_ASSERT(k + n_opt <= ll.size());
        std::vector<double> raw(ll.begin() + std::ptrdiff_t(k),
                                ll.begin() + std::ptrdiff_t(k + n_opt));
        std::vector<double> norm(n_opt);
        for (size_t j = 0; j < n_opt; ++j) norm[j] = raw[j] / double(d.options[j].norm_chars);
        m.pred.push_back(argmax_first(raw));
        m.pred_norm.push_back(argmax_first(norm));
        hit += m.pred.back() == d.gold;
        hit_norm += m.pred_norm.back() == d.gold;
        if (tok) {
            std::vector<double> per_tok(n_opt);
            for (size_t j = 0; j < n_opt; ++j) per_tok[j] = raw[j] / double(n_tokens[k + j]);
            m.pred_tok.push_back(argmax_first(per_tok));
            hit_tok += m.pred_tok.back() == d.gold;
        }
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
        if (tok) m.acc_tok = double(hit_tok) / double(m.n);
    }
    m.acc_tok_stderr = stderr_of(m.acc_tok);
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
    std::vector<int64_t> n_tok;
    for (const auto& r : reqs) n_tok.push_back(int64_t(r.continuation.size()));
    ChoiceMetrics m = choice_metrics(task.docs, ll, n_tok);
    m.ll = std::move(ll);
    return m;
}

// ---- SQuAD metrics ---------------------------------------------------------------------------

namespace {

bool ascii_punct(uint32_t c) {  // Python's string.punctuation
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
           (c >= 123 && c <= 126);
}

bool unicode_space(uint32_t c) {  // str.split()'s whitespace
    return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

// regex \w, approximately: ASCII alnum and '_', and non-ASCII other than spaces, Latin-1
// punctuation/symbols, general punctuation (U+2000-206F) and CJK punctuation (U+3000-303F).
bool word_char(uint32_t c) {
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               c == '_';
    if (unicode_space(c)) return false;
    if (c >= 0xa1 && c <= 0xbf)  // ª ² ³ µ ¹ º ¼ ½ ¾ are \w in Python
        return c == 0xaa || c == 0xb2 || c == 0xb3 || c == 0xb5 || c == 0xb9 || c == 0xba ||
               (c >= 0xbc && c <= 0xbe);
    if (c == 0xd7 || c == 0xf7) return false;
    return !(c >= 0x2000 && c <= 0x206f) && !(c >= 0x3000 && c <= 0x303f);
}

uint32_t lower_cp(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if ((c >= 0xc0 && c <= 0xde && c != 0xd7) || (c >= 0x391 && c <= 0x3a9 && c != 0x3a2) ||
        (c >= 0x410 && c <= 0x42f))
        return c + 32;
    if (c >= 0x400 && c <= 0x40f) return c + 80;
    if (c == 0x178) return 0xff;  // Ÿ -> ÿ
    if (c >= 0x100 && c <= 0x17e && c != 0x130 && c != 0x138 && c != 0x149) {
        const bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e);
        if (odd_upper ? (c % 2 == 1) : (c % 2 == 0)) return c + 1;
    }
    return c;
}

// UTF-8 -> code points; an invalid byte stands for itself (as U+DC80+byte would in Python).
std::vector<uint32_t> decode_utf8(std::string_view s) {
    std::vector<uint32_t> out;
    for (size_t i = 0; i < s.size();) {
        const auto b = static_cast<unsigned char>(s[i]);
        const int n = b < 0x80         ? 1
                      : (b >> 5) == 6  ? 2
                      : (b >> 4) == 14 ? 3
                      : (b >> 3) == 30 ? 4
                                       : 0;
        bool ok = n > 0 && i + size_t(n) <= s.size();
        uint32_t c = n == 1 ? b : n == 2 ? b & 0x1f : n == 3 ? b & 0x0f : b & 0x07;
        for (int k = 1; ok && k < n; ++k) {
            const auto x = static_cast<unsigned char>(s[i + size_t(k)]);
            ok = (x & 0xc0) == 0x80;
            c = (c << 6) | (x & 0x3f);
        }
        if (!ok) {
            out.push_back(0xdc00 + b);
            ++i;
        } else {
            out.push_back(c);
            i += size_t(n);
        }
    }
    return out;
}

void encode_utf8(uint32_t c, std::string& out) {
    if (c >= 0xdc80 && c <= 0xdcff) {  // an invalid byte, back as it was
        out += char(c - 0xdc00);
    } else if (c < 0x80) {
        out += char(c);
    } else if (c < 0x800) {
        out += char(0xc0 | (c >> 6));
        out += char(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
        out += char(0xe0 | (c >> 12));
        out += char(0x80 | ((c >> 6) & 0x3f));
        out += char(0x80 | (c & 0x3f));
    } else {
        out += char(0xf0 | (c >> 18));
        out += char(0x80 | ((c >> 12) & 0x3f));
        out += char(0x80 | ((c >> 6) & 0x3f));
        out += char(0x80 | (c & 0x3f));
    }
}

std::vector<std::string> split_ws(std::string_view s) {
    std::vector<std::string> out;
    std::string cur;
    for (uint32_t c : decode_utf8(s)) {
        if (unicode_space(c)) {
            if (!cur.empty()) out.push_back(std::move(cur));
            cur.clear();
        } else {
            encode_utf8(c, cur);
        }
    }
    if (!cur.empty()) out.push_back(std::move(cur));
    return out;
}

}  // namespace

std::string squad_normalize(std::string_view s) {
    // white_space_fix(remove_articles(remove_punc(lower(s)))), as the official script.
    std::vector<uint32_t> t;
    for (uint32_t c : decode_utf8(s))
        if (!ascii_punct(c)) t.push_back(lower_cp(c));
    std::vector<uint32_t> u;  // re.sub(r"\b(a|an|the)\b", " ", t)
    for (size_t i = 0; i < t.size();) {
        bool matched = false;
        if (i == 0 || !word_char(t[i - 1])) {
            for (std::string_view art : {"the", "an", "a"}) {
                const size_t e = i + art.size();
                if (e > t.size()) continue;
                bool eq = true;
                for (size_t k = 0; k < art.size() && eq; ++k) eq = t[i + k] == uint32_t(art[k]);
                if (eq && (e == t.size() || !word_char(t[e]))) {
                    u.push_back(' ');
                    i = e;
                    matched = true;
                    break;
                }
            }
        }
        if (!matched) u.push_back(t[i++]);
    }
    std::string joined;
    for (uint32_t c : u) encode_utf8(c, joined);
    std::string out;
    for (const auto& w : split_ws(joined)) out += (out.empty() ? "" : " ") + w;
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
    return evaluate_gen_task(model, *model.tokenizer, docs, opt, pool);
}

GenMetrics evaluate_gen_task(const Model& model, const Tokenizer& tok, std::span<const GenDoc> docs,
                             const GenOptions& opt, ThreadPool& pool) {
    if (opt.max_new < 1 || opt.max_len <= opt.max_new)
        fail("eval", "need 1 <= max_new < max_len, got max_new {} and max_len {}", opt.max_new,
             opt.max_len);
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
