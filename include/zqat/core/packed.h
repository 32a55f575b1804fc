// Packed low-bit weights: the storage form of a quantized linear weight W [rows, cols] ([out, in]).
//   codes   rows x row_bytes, row_bytes = ceil(cols * bits / 8); within a row, element k occupies
//           bits [k*bits, (k+1)*bits) of the row's little-endian bit stream (LSB first), so
//           int4 puts element 2i in the low nibble of byte i and int2 packs 4 per byte.
//   scales  [rows, cols / group] fp16 bits: the step `delta` of each group
//   zeros   [rows, cols / group] fp16 bits: the integer zero point `zp` of each group
//   w[r, k] = (q[r, k] - zp[r, k / group]) * delta[r, k / group]        (computed in float)
// bits is 2, 3, 4, 6 or 8; group divides cols (group == cols: one group per output channel).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace zqat {

// Code k of a packed row: bits [k*bits, (k+1)*bits) of the LSB-first stream; with bits <= 8 an
// element spans at most two bytes.
inline uint32_t packed_code(const uint8_t* row, int bits, int64_t k) {
    const uint64_t bit = uint64_t(k) * uint64_t(bits);
    const uint64_t byte = bit >> 3;
    const unsigned shift = unsigned(bit & 7);
    uint32_t v = uint32_t(row[byte]) >> shift;
    if (shift + unsigned(bits) > 8) v |= uint32_t(row[byte + 1]) << (8 - shift);
    return v & ((1u << bits) - 1);
}

struct PackedWeight {
    int bits = 0;
    int64_t rows = 0, cols = 0, group = 0, row_bytes = 0;
    const uint8_t* codes = nullptr;     // [rows, row_bytes]
    const uint16_t* scales = nullptr;   // [rows, n_groups()]
    const uint16_t* zeros = nullptr;    // [rows, n_groups()]
    std::shared_ptr<const void> owner;  // keeps the three arrays alive (heap or mmap)

    int64_t n_groups() const { return group > 0 ? cols / group : 0; }
    uint64_t code_bytes() const { return uint64_t(rows * row_bytes); }
    uint64_t nbytes() const { return code_bytes() + uint64_t(rows * n_groups()) * 4; }
    static int64_t row_bytes_for(int64_t cols, int bits) { return (cols * bits + 7) / 8; }

    // Owning copy from one code byte per element (codes [rows, cols], each < 2^bits) and the
    // fp16 scales/zeros [rows, cols / group].
    static PackedWeight from_codes(int bits, int64_t rows, int64_t cols, int64_t group,
                                   const uint8_t* codes, const uint16_t* scales,
                                   const uint16_t* zeros);
    // Rows [r0, r0 + n) dequantized into out [n, cols].
    void dequantize_rows(int64_t r0, int64_t n, float* out) const;
    // The code of element (r, k).
    uint32_t code(int64_t r, int64_t k) const;
};

}  // namespace zqat
