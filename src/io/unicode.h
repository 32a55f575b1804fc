// Unicode helpers for the tokenizers (internal to src/io): UTF-8 decoding that never fails, and the
// categories GPT-2 style pre-tokenizer regexes use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace zqat::unicode {

struct CodepointRange {
    uint32_t lo, hi;
};
struct CccRange {  // canonical combining class of [lo, hi]
    uint32_t lo, hi;
    uint8_t ccc;
};

// A decoded code point and the bytes it came from.
struct Cpt {
    uint32_t cp;      // kInvalid for a byte that is not part of valid UTF-8
    uint32_t offset;  // byte offset in the input
    uint32_t len;     // bytes (1..4)
};
constexpr uint32_t kInvalid = 0xFFFFFFFF;

// Decodes UTF-8. Each maximal invalid subpart (a stray byte, or the start of an overlong,
// surrogate, out-of-range or truncated sequence) becomes one Cpt with cp = kInvalid, so every
// input byte belongs to exactly one Cpt.
std::vector<Cpt> decode_utf8(std::string_view s);
// s with each maximal invalid subpart replaced by U+FFFD, as Python's
// bytes.decode("utf-8", errors="replace") does. Returns s unchanged when it is valid.
std::string replace_invalid_utf8(std::string_view s);
void append_utf8(std::string& out, uint32_t cp);

bool is_letter(uint32_t cp);  // \p{L}
bool is_number(uint32_t cp);  // \p{N}
// Rust's char::is_numeric (N*), which HF's Digits pre-tokenizer uses: a newer Unicode than
// its regexes' \p{N} (see scripts/gen_unicode_tables.py).
bool is_digits_numeric(uint32_t cp);
bool is_whitespace(uint32_t cp);  // \s (White_Space)

// UAX #15 NFC quick check on valid UTF-8: true when the text is certainly in NFC (every
// character NFC_Quick_Check = Yes and combining marks in canonical order); false for "No" and
// "Maybe" (the text may change under NFC).
bool is_nfc_quick(std::string_view s);

}  // namespace zqat::unicode
