#include "unicode.h"

#include <algorithm>

namespace zqat::unicode {

extern const CodepointRange kLetterRanges[];
extern const size_t kLetterRanges_size;
extern const CodepointRange kNumberRanges[];
extern const size_t kNumberRanges_size;
extern const CodepointRange kDigitsNumericRanges[];
extern const size_t kDigitsNumericRanges_size;
extern const CodepointRange kWhitespaceRanges[];
extern const size_t kWhitespaceRanges_size;
extern const CodepointRange kNfcQcRanges[];
extern const size_t kNfcQcRanges_size;
extern const CccRange kCccRanges[];
extern const size_t kCccRanges_size;

namespace {

bool in_ranges(const CodepointRange* r, size_t n, uint32_t cp) {
    // First range whose hi >= cp.
    const CodepointRange* it = std::lower_bound(
        r, r + n, cp, [](const CodepointRange& a, uint32_t c) { return a.hi < c; });
    return it != r + n && it->lo <= cp;
}

}  // namespace

bool is_letter(uint32_t cp) {
    return in_ranges(kLetterRanges, kLetterRanges_size, cp);
}
bool is_number(uint32_t cp) {
    return in_ranges(kNumberRanges, kNumberRanges_size, cp);
}
bool is_digits_numeric(uint32_t cp) {
    return in_ranges(kDigitsNumericRanges, kDigitsNumericRanges_size, cp);
}
bool is_whitespace(uint32_t cp) {
    return in_ranges(kWhitespaceRanges, kWhitespaceRanges_size, cp);
}

static uint8_t combining_class(uint32_t cp) {
    const CccRange* r = kCccRanges;
    const CccRange* it = std::lower_bound(r, r + kCccRanges_size, cp,
                                          [](const CccRange& a, uint32_t c) { return a.hi < c; });
    return it != r + kCccRanges_size && it->lo <= cp ? it->ccc : 0;
}

namespace {

// Length of the UTF-8 sequence at p[0..n) (1..4) when it is well formed, else 0; in that case
// *bad gets the length of its maximal invalid subpart (the lead byte plus the continuation bytes
// that could still have been part of a valid sequence), as Unicode's "U+FFFD substitution of
// maximal subparts" (and Python's errors="replace") counts it.
uint32_t sequence(const uint8_t* p, size_t n, uint32_t* cp, uint32_t* bad) {
    const uint8_t b = p[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    uint32_t len = 0, v = 0;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the first continuation byte
    if (b >= 0xC2 && b <= 0xDF) {
        len = 2, v = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        len = 3, v = b & 0x0F;
        if (b == 0xE0) lo = 0xA0;  // no overlongs
        if (b == 0xED) hi = 0x9F;  // no surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4, v = b & 0x07;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;  // <= U+10FFFF
    } else {
        *bad = 1;
        return 0;
    }
    for (uint32_t k = 1; k < len; ++k) {
        const uint8_t c = k < n ? p[k] : 0;
        const bool ok = k == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
        if (k >= n || !ok) {
            *bad = k;
            return 0;
        }
        v = (v << 6) | (c & 0x3F);
    }
    *cp = v;
    return len;
}

}  // namespace

std::vector<Cpt> decode_utf8(std::string_view s) {
    std::vector<Cpt> out;
    out.reserve(s.size());
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    for (size_t i = 0; i < s.size();) {
        uint32_t cp = 0, bad = 0;
        const uint32_t len = sequence(p + i, s.size() - i, &cp, &bad);
        if (len == 0) {
            out.push_back({kInvalid, uint32_t(i), bad});
            i += bad;
        } else {
            out.push_back({cp, uint32_t(i), len});
            i += len;
        }
    }
    return out;
}

std::string replace_invalid_utf8(std::string_view s) {
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    std::string out;
    size_t done = 0;  // bytes of s copied or replaced so far
    for (size_t i = 0; i < s.size();) {
        uint32_t cp = 0, bad = 0;
        const uint32_t len = p[i] < 0x80 ? 1 : sequence(p + i, s.size() - i, &cp, &bad);
        if (len != 0) {
            i += len;
            continue;
        }
        if (out.empty()) out.reserve(s.size() + 16);
        out.append(s.substr(done, i - done));
        out += "\xEF\xBF\xBD";  // U+FFFD
        i += bad;
        done = i;
    }
    if (done == 0) return std::string(s);
    out.append(s.substr(done));
    return out;
}

bool is_nfc_quick(std::string_view s) {
    // NFC leaves everything below U+0300 alone (the first NFC_QC != Yes or ccc != 0 character).
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    size_t i = 0;
    while (i < s.size() && (p[i] < 0xCC)) ++i;  // lead bytes < 0xCC encode < U+0300
    if (i == s.size()) return true;
    uint8_t last = 0;
    for (const Cpt& c : decode_utf8(s)) {
        if (c.cp < 0x300) {
            last = 0;
            continue;
        }
        if (c.cp == kInvalid || in_ranges(kNfcQcRanges, kNfcQcRanges_size, c.cp)) return false;
        const uint8_t ccc = combining_class(c.cp);
        if (ccc != 0 && last > ccc) return false;
        last = ccc;
    }
    return true;
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

}  // namespace zqat::unicode
