// PackedWeight: packing one-byte codes into the LSB-first bit stream of each row, and the scalar
// decode (the oracle for the SIMD dequantizers of the CPU backend). Element k of a row sits at
// bit offset k * bits; with bits <= 8 it spans at most two bytes (3 and 6 bits straddle them).
#include "zqat/core/packed.h"

#include <cstring>

#include "zqat/core/dtype.h"
#include "zqat/core/error.h"

namespace zqat {
namespace {

struct Storage {
    std::vector<uint8_t> codes;
    std::vector<uint16_t> scales, zeros;
};

bool valid_bits(int bits) {
    return bits == 2 || bits == 3 || bits == 4 || bits == 6 || bits == 8;
}

}  // namespace

PackedWeight PackedWeight::from_codes(int bits, int64_t rows, int64_t cols, int64_t group,
                                      const uint8_t* codes, const uint16_t* scales,
                                      const uint16_t* zeros) {
    ZQAT_ASSERT(valid_bits(bits));
    ZQAT_ASSERT(rows >= 0 && cols > 0 && group > 0 && cols % group == 0);
    auto st = std::make_shared<Storage>();
    PackedWeight w;
    w.bits = bits;
    w.rows = rows;
    w.cols = cols;
    w.group = group;
    w.row_bytes = row_bytes_for(cols, bits);
    const int64_t ng = w.n_groups();
    st->codes.assign(size_t(rows * w.row_bytes), 0);
    st->scales.assign(scales, scales + rows * ng);
    st->zeros.assign(zeros, zeros + rows * ng);
    const uint32_t qmax = (1u << bits) - 1;
    for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* src = codes + r * cols;
        uint8_t* dst = st->codes.data() + r * w.row_bytes;
        for (int64_t k = 0; k < cols; ++k) {
            const uint32_t c = src[k];
            ZQAT_ASSERT(c <= qmax);
            const uint64_t bit = uint64_t(k) * uint64_t(bits);
            const uint64_t byte = bit >> 3;
            const unsigned shift = unsigned(bit & 7);
            dst[byte] = uint8_t(dst[byte] | (c << shift));
            if (shift + unsigned(bits) > 8)
                dst[byte + 1] = uint8_t(dst[byte + 1] | (c >> (8 - shift)));
        }
    }
    w.codes = st->codes.data();
    w.scales = st->scales.data();
    w.zeros = st->zeros.data();
    w.owner = std::move(st);
    return w;
}

void PackedWeight::dequantize_rows(int64_t r0, int64_t n, float* out) const {
    ZQAT_ASSERT(r0 >= 0 && n >= 0 && r0 + n <= rows);
    const int64_t ng = n_groups();
    for (int64_t r = r0; r < r0 + n; ++r) {
        const uint8_t* row = codes + r * row_bytes;
        float* o = out + (r - r0) * cols;
        for (int64_t g = 0; g < ng; ++g) {
            const float delta = fp16_to_f32(scales[r * ng + g]);
            const float zp = fp16_to_f32(zeros[r * ng + g]);
            for (int64_t k = g * group; k < (g + 1) * group; ++k) {
                o[k] = (float(packed_code(row, bits, k)) - zp) * delta;
            }
        }
    }
}

uint32_t PackedWeight::code(int64_t r, int64_t k) const {
    ZQAT_DASSERT(r >= 0 && r < rows && k >= 0 && k < cols);
    return packed_code(codes + r * row_bytes, bits, k);
}

}  // namespace zqat
