// QSpec parsing. Grammar (letters case-insensitive, so "w4a16g128sym" is accepted; str() always
// writes the canonical "W4A16g128sym"):
//   spec  := 'W' wbits 'A' abits [ 'g' group ] [ "sym" ]
//   wbits := 2 | 3 | 4 | 6 | 8 | 16      (16: weights in full precision; then no group, no sym)
//   abits := 4 | 6 | 8 | 16
//   group := 32 | 64 | 128
// Numbers are plain decimal without leading zeros. Anything else, including trailing text, is an
// error naming the string, the offset and what was expected.
#include "zqat/core/qspec.h"

#include <cctype>

#include "zqat/core/error.h"

namespace zqat {
namespace {

constexpr const char* kGrammar = "W{2,3,4,6,8}A{4,6,8,16}[g{32,64,128}][sym]";

struct Parser {
    std::string_view s;
    size_t at = 0;

    [[noreturn]] void error(std::string_view what) const {
        fail("qspec", "'{}': {} at offset {} (expected {})", s, what, at, kGrammar);
    }
    bool eat(char c) {
        if (at < s.size() && std::tolower(static_cast<unsigned char>(s[at])) == c) {
            ++at;
            return true;
        }
        return false;
    }
    bool eat_word(std::string_view w) {
        if (s.size() - at < w.size()) return false;
        for (size_t i = 0; i < w.size(); ++i) {
            if (std::tolower(static_cast<unsigned char>(s[at + i])) != w[i]) return false;
        }
        at += w.size();
        return true;
    }
    // A decimal number from the set `allowed` (0-terminated list); `what` names it in errors.
    int number(const char* what, const int* allowed) {
        const size_t start = at;
        int v = 0;
        while (at < s.size() && std::isdigit(static_cast<unsigned char>(s[at])) && at - start < 4) {
            v = v * 10 + (s[at] - '0');
            ++at;
        }
        if (at == start) {
            error(fmt::format("missing {}", what));
        }
        if (at < s.size() && std::isdigit(static_cast<unsigned char>(s[at]))) {
            at = start;
            error(fmt::format("{} '{}...' is too long", what, s.substr(start, 4)));
        }
        bool ok = s[start] != '0';
        if (ok) {
            ok = false;
            for (const int* a = allowed; *a; ++a) ok = ok || *a == v;
        }
        if (!ok) {
            const std::string_view num = s.substr(start, at - start);
            at = start;
            error(fmt::format("{} '{}' is not supported", what, num));
        }
        return v;
    }
};

}  // namespace

QSpec QSpec::parse(std::string_view s) {
    static constexpr int kWBits[] = {2, 3, 4, 6, 8, 16, 0};
    static constexpr int kABits[] = {4, 6, 8, 16, 0};
    static constexpr int kGroups[] = {32, 64, 128, 0};
    Parser p{s};
    QSpec q;
    if (s.empty()) p.error("empty spec");
    if (!p.eat('w')) p.error("expected 'W'");
    q.w_bits = p.number("weight bits", kWBits);
    if (!p.eat('a')) p.error("expected 'A' after the weight bits");
    q.a_bits = p.number("activation bits", kABits);
    if (p.eat('g')) {
        if (q.w_bits == 16) p.error("a group size needs quantized weights (W16 is full precision)");
        q.group = p.number("group size", kGroups);
    }
    if (p.eat_word("sym")) {
        if (q.w_bits == 16) p.error("'sym' needs quantized weights (W16 is full precision)");
        q.sym = true;
    }
    if (p.at != s.size()) p.error(fmt::format("unexpected '{}'", s.substr(p.at)));
    return q;
}

std::string QSpec::str() const {
    std::string out = fmt::format("W{}A{}", w_bits, a_bits);
    if (group > 0) out += fmt::format("g{}", group);
    if (sym) out += "sym";
    return out;
}

int64_t QSpec::group_for(int64_t cols, std::string_view what) const {
    if (group == 0) return cols;
    if (cols <= 0 || cols % group != 0) {
        fail("qspec", "{}: {} inputs per row are not a multiple of the group size {} (spec {})",
             what, cols, group, str());
    }
    return group;
}

}  // namespace zqat
