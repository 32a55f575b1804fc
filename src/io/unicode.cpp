#include "unicode.h"

#include <algorithm>

namespace zqat::unicode {

extern const CodepointRange kLetterRanges[];
extern const size_t kLetterRanges_size;
extern const CodepointRange kNumberRanges[];
extern const size_t kNumberRanges_size;
extern const CodepointRange kWhitespaceRanges[];
extern const size_t kWhitespaceRanges_size;

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
bool is_whitespace(uint32_t cp) {
    return in_ranges(kWhitespaceRanges, kWhitespaceRanges_size, cp);
}

std::vector<Cpt> decode_utf8(std::string_view s) {
    std::vector<Cpt> out;
    out.reserve(s.size());
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    const size_t n = s.size();
    size_t i = 0;
    while (i < n) {
        const uint8_t b = p[i];
        uint32_t cp = 0, len = 0, min = 0;
        if (b < 0x80) {
            cp = b, len = 1;
        } else if ((b & 0xE0) == 0xC0) {
            cp = b & 0x1F, len = 2, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            cp = b & 0x0F, len = 3, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            cp = b & 0x07, len = 4, min = 0x10000;
        }
        bool ok = len > 0 && i + len <= n;
        for (uint32_t k = 1; ok && k < len; ++k) {
            ok = (p[i + k] & 0xC0) == 0x80;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        ok = ok && cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
        if (!ok) {
            out.push_back({kInvalid, uint32_t(i), 1});
            ++i;
            continue;
        }
        out.push_back({cp, uint32_t(i), len});
        i += len;
    }
    return out;
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
