// Pre-tokenizer steps: the regex splitters (see tokenizer_pre.h for the patterns) and Digits.
#include "tokenizer_pre.h"

#include <cstdint>
#include <utility>

#include "unicode.h"

namespace zqat::tok {

namespace {

// kD: numeric for the Digits pre-tokenizer (Rust's char::is_numeric, a newer Unicode than kN).
enum : uint8_t { kL = 1, kN = 2, kS = 4, kD = 8 };

uint8_t flags_of(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return kL;
        if (cp >= '0' && cp <= '9') return kN | kD;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return kS;
        return 0;
    }
    return uint8_t((unicode::is_letter(cp) ? kL : 0) | (unicode::is_number(cp) ? kN : 0) |
                   (unicode::is_digits_numeric(cp) ? kD : 0) |
                   (unicode::is_whitespace(cp) ? kS : 0));
}

// One piece decoded: code points, their category flags, and byte offsets (off[n] = size).
struct Chars {
    std::vector<uint32_t> cp;
    std::vector<uint8_t> fl;
    std::vector<uint32_t> off;

    explicit Chars(std::string_view s) {
        const std::vector<unicode::Cpt> c = unicode::decode_utf8(s);
        cp.reserve(c.size());
        fl.reserve(c.size());
        off.reserve(c.size() + 1);
        for (const unicode::Cpt& x : c) {
            cp.push_back(x.cp);
            fl.push_back(x.cp == unicode::kInvalid ? 0 : flags_of(x.cp));
            off.push_back(x.offset);
        }
        off.push_back(uint32_t(s.size()));
    }
    size_t size() const { return cp.size(); }
    uint32_t at(size_t i) const { return i < cp.size() ? cp[i] : 0; }
    bool L(size_t i) const { return i < cp.size() && (fl[i] & kL); }
    bool N(size_t i) const { return i < cp.size() && (fl[i] & kN); }
    bool D(size_t i) const { return i < cp.size() && (fl[i] & kD); }
    bool S(size_t i) const { return i < cp.size() && (fl[i] & kS); }
    bool O(size_t i) const {  // [^\s\p{L}\p{N}]
        return i < cp.size() && (fl[i] & (kL | kN | kS)) == 0;
    }
};

using Ranges = std::vector<std::pair<size_t, size_t>>;  // [begin, end) in code points

// End of \s+(?!\S)|\s+ starting at whitespace i: the whole run when it ends the text; when a
// non-space follows, all but its last character (which then starts the next match), unless the
// run is that single character.
size_t whitespace_end(const Chars& c, size_t i) {
    size_t k = i;
    while (c.S(k)) ++k;
    if (k > i + 1 && k < c.size()) --k;
    return k == i ? i + 1 : k;  // k == i only for a character in no class (guarantees progress)
}

void split_gpt2(const Chars& c, Ranges& out) {
    const size_t n = c.size();
    for (size_t i = 0; i < n;) {
        size_t e = 0;
        const uint32_t a = c.at(i + 1), b = c.at(i + 2);
        const size_t j = c.at(i) == ' ' ? i + 1 : i;  // optional leading space
        if (c.at(i) == '\'' && (a == 's' || a == 't' || a == 'm' || a == 'd')) {
            e = i + 2;
        } else if (c.at(i) == '\'' &&
                   ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))) {
            e = i + 3;
        } else if (c.L(j)) {
            for (e = j; c.L(e);) ++e;
        } else if (c.N(j)) {
            for (e = j; c.N(e);) ++e;
        } else if (c.O(j)) {
            for (e = j; c.O(e);) ++e;
        } else {
            e = whitespace_end(c, i);
        }
        out.emplace_back(i, e);
        i = e;
    }
}

// llama3 (max_digits 3) and qwen2 (max_digits 1).
void split_llama3(const Chars& c, size_t max_digits, Ranges& out) {
    const size_t n = c.size();
    auto lower = [&](size_t k) {
        const uint32_t x = c.at(k);
        return x >= 'A' && x <= 'Z' ? x + 32 : x;
    };
    auto newline = [&](size_t k) { return c.at(k) == '\r' || c.at(k) == '\n'; };
    for (size_t i = 0; i < n;) {
        size_t e = 0;
        const uint32_t a = lower(i + 1), b = lower(i + 2);
        if (c.at(i) == '\'' && (a == 's' || a == 't' || a == 'm' || a == 'd')) {
            e = i + 2;
        } else if (c.at(i) == '\'' &&
                   ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))) {
            e = i + 3;
        } else if (!c.L(i) && !c.N(i) && !newline(i) && c.L(i + 1)) {  // [^\r\n\p{L}\p{N}]\p{L}+
            for (e = i + 1; c.L(e);) ++e;
        } else if (c.L(i)) {  // \p{L}+
            for (e = i; c.L(e);) ++e;
        } else if (c.N(i)) {  // \p{N}{1,max_digits}
            for (e = i; c.N(e) && e - i < max_digits;) ++e;
        } else if (c.O(c.at(i) == ' ' ? i + 1 : i)) {  //  ?[^\s\p{L}\p{N}]+[\r\n]*
            for (e = c.at(i) == ' ' ? i + 1 : i; c.O(e);) ++e;
            while (newline(e)) ++e;
        } else {
            // \s*[\r\n]+ : through the last \r or \n of the whitespace run, if it has one;
            // otherwise \s+(?!\S)|\s+.
            size_t k = i, last_nl = n;
            for (; c.S(k); ++k)
                if (newline(k)) last_nl = k;
            e = last_nl < n ? last_nl + 1 : whitespace_end(c, i);
        }
        out.emplace_back(i, e);
        i = e;
    }
}

void split_digits(const Chars& c, bool individual, Ranges& out) {
    const size_t n = c.size();
    for (size_t i = 0; i < n;) {
        size_t e = i + 1;
        if (c.D(i)) {
            if (!individual)
                while (c.D(e)) ++e;
        } else {
            while (e < n && !c.D(e)) ++e;
        }
        out.emplace_back(i, e);
        i = e;
    }
}

void apply(const PreStep& step, std::string_view piece, std::vector<std::string>& out) {
    if (step.kind == PreStep::Kind::prefix_space) {
        std::string& w = out.emplace_back();
        w.reserve(piece.size() + 1);
        if (!piece.starts_with(' ')) w += ' ';
        w += piece;
        return;
    }
    const Chars c(piece);
    Ranges r;
    r.reserve(c.size() / 4 + 1);
    if (step.kind == PreStep::Kind::digits)
        split_digits(c, step.individual, r);
    else if (step.pattern == Pattern::gpt2)
        split_gpt2(c, r);
    else
        split_llama3(c, step.pattern == Pattern::llama3 ? 3 : 1, r);
    for (auto [b, e] : r) out.emplace_back(piece.substr(c.off[b], c.off[e] - c.off[b]));
}

}  // namespace

void pre_tokenize(const PreTokenizer& pre, std::string_view text, std::vector<std::string>& out) {
    if (text.empty()) return;
    if (pre.empty()) {
        out.emplace_back(text);
        return;
    }
    if (pre.size() == 1) {
        apply(pre[0], text, out);
        return;
    }
    std::vector<std::string> cur{std::string(text)}, next;
    for (const PreStep& step : pre) {
        next.clear();
        for (const std::string& piece : cur) apply(step, piece, next);
        cur.swap(next);
    }
    for (std::string& w : cur) out.push_back(std::move(w));
}

bool pattern_from_regex(std::string_view re, Pattern* out) {
    // The patterns as written in tokenizer.json files (after JSON unescaping) and in llama.cpp.
    static constexpr std::string_view kGpt2 =
        R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
    static constexpr std::string_view kHead[] = {
        R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|)",
        R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|)",
    };
    static constexpr std::string_view kTail =
        R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
    if (re == kGpt2) {
        *out = Pattern::gpt2;
        return true;
    }
    for (std::string_view head : kHead) {
        if (!re.starts_with(head) || !re.ends_with(kTail)) continue;
        const std::string_view mid = re.substr(head.size(), re.size() - head.size() - kTail.size());
        if (mid == R"(\p{N}{1,3})") {
            *out = Pattern::llama3;
            return true;
        }
        if (mid == R"(\p{N})") {
            *out = Pattern::qwen2;
            return true;
        }
    }
    return false;
}

}  // namespace zqat::tok
