// Element types. Block-quantized types follow GGUF's block layouts exactly (llama.cpp
// ggml-common.h):
//   Q8_0 : 32 weights per 34-byte block  = {fp16 d; int8 q[32]}            x = d * q
//   Q4_0 : 32 weights per 18-byte block  = {fp16 d; uint8 qs[16]}          x = d * (nib - 8)
//   Q4_1 : 32 weights per 20-byte block  = {fp16 d; fp16 m; uint8 qs[16]}  x = d * nib + m
//          qs[j] holds weight j in its low nibble and weight j+16 in its high nibble.
//   Q4_K, Q6_K: 256-weight super-blocks (144 / 210 bytes).
// Numeric values equal GGUF's ggml_type ids so a GGUF type field maps directly.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace zqat {

enum class DType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q8_0 = 8,
    Q4_K = 12,
    Q6_K = 14,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    BF16 = 30,
};

struct DTypeInfo {
    std::string_view name;  // GGUF spelling: "F32", "Q4_1", ...
    int64_t block_elems;    // elements per block (1 for plain types)
    int64_t block_bytes;    // bytes per block
};

// nullopt for ids zeroqat does not know (callers turn that into a file error).
std::optional<DTypeInfo> dtype_info(uint32_t ggml_type_id);
DTypeInfo dtype_info(DType t);

// Bytes for n elements, or nullopt if n is not a multiple of the block size or the size overflows.
std::optional<uint64_t> dtype_nbytes(DType t, uint64_t n_elems);

inline float fp16_to_f32(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal: renormalise
            exp = 127 - 15 + 1;
            while ((mant & 0x400) == 0) {
                mant <<= 1;
                --exp;
            }
            bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

// Round to nearest even, as numpy/PyTorch do.
uint16_t f32_to_fp16(float f);

inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

// Dequantize n elements of type t from src into dst (n a multiple of the block size).
// Throws zqat::Error for types without a dequantizer.
void dequantize(DType t, const void* src, float* dst, int64_t n);

}  // namespace zqat
