#include "zqat/core/dtype.h"

#include <cmath>

#include "zqat/core/error.h"

namespace zqat {

namespace {

constexpr DTypeInfo kF32{"F32", 1, 4}, kF16{"F16", 1, 2}, kBF16{"BF16", 1, 2},
    kQ4_0{"Q4_0", 32, 18}, kQ4_1{"Q4_1", 32, 20}, kQ8_0{"Q8_0", 32, 34}, kQ4_K{"Q4_K", 256, 144},
    kQ6_K{"Q6_K", 256, 210}, kI8{"I8", 1, 1}, kI16{"I16", 1, 2}, kI32{"I32", 1, 4},
    kI64{"I64", 1, 8}, kF64{"F64", 1, 8};

inline uint16_t load_u16(const uint8_t* p) {
    return uint16_t(p[0] | (p[1] << 8));
}

// Q4_K / Q6_K scale unpacking, as llama.cpp's get_scale_min_k4: 12 bytes hold 8 6-bit scales and
// 8 6-bit mins.
inline void scale_min_k4(int j, const uint8_t* q, uint8_t& d, uint8_t& m) {
    if (j < 4) {
        d = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        d = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

}  // namespace

std::optional<DTypeInfo> dtype_info(uint32_t id) {
    switch (id) {
        case 0:
            return kF32;
        case 1:
            return kF16;
        case 2:
            return kQ4_0;
        case 3:
            return kQ4_1;
        case 8:
            return kQ8_0;
        case 12:
            return kQ4_K;
        case 14:
            return kQ6_K;
        case 24:
            return kI8;
        case 25:
            return kI16;
        case 26:
            return kI32;
        case 27:
            return kI64;
        case 28:
            return kF64;
        case 30:
            return kBF16;
        default:
            return std::nullopt;
    }
}

DTypeInfo dtype_info(DType t) {
    auto info = dtype_info(uint32_t(t));
    ZQAT_ASSERT(info.has_value());
    return *info;
}

std::optional<uint64_t> dtype_nbytes(DType t, uint64_t n) {
    const DTypeInfo info = dtype_info(t);
    if (n % uint64_t(info.block_elems) != 0) return std::nullopt;
    const uint64_t blocks = n / uint64_t(info.block_elems);
    if (blocks > UINT64_MAX / uint64_t(info.block_bytes)) return std::nullopt;
    return blocks * uint64_t(info.block_bytes);
}

uint16_t f32_to_fp16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000;
    const uint32_t ax = x & 0x7fffffff;
    if (ax >= 0x7f800000)
        return uint16_t(sign | 0x7c00 | (ax > 0x7f800000 ? 0x200 : 0));  // inf/nan
    if (ax >= 0x477ff000) return uint16_t(sign | 0x7c00);  // rounds to >= 65520: overflow
    if (ax < 0x38800000) {  // below the smallest normal half: subnormal, round half to even
        const float a = std::fabs(f) * 16777216.0f;  // scaled by 2^24: ulp of half subnormals
        return uint16_t(sign | uint32_t(std::nearbyint(a)));
    }
    const uint32_t mant_odd = (ax >> 13) & 1;
    const uint32_t rounded = ax + 0xfff + mant_odd;  // round to nearest even on bit 13
    return uint16_t(sign | ((rounded - (112u << 23)) >> 13));
}

void dequantize(DType t, const void* src, float* dst, int64_t n) {
    const auto* p = static_cast<const uint8_t*>(src);
    switch (t) {
        case DType::F32:
            std::memcpy(dst, p, size_t(n) * 4);
            return;
        case DType::F16:
            for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_f32(load_u16(p + 2 * i));
            return;
        case DType::BF16:
            for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load_u16(p + 2 * i));
            return;
        case DType::Q8_0:
            ZQAT_ASSERT(n % 32 == 0);
            for (int64_t b = 0; b < n / 32; ++b, p += 34, dst += 32) {
                const float d = fp16_to_f32(load_u16(p));
                for (int j = 0; j < 32; ++j) dst[j] = d * float(int8_t(p[2 + j]));
            }
            return;
        case DType::Q4_0:
            ZQAT_ASSERT(n % 32 == 0);
            for (int64_t b = 0; b < n / 32; ++b, p += 18, dst += 32) {
                const float d = fp16_to_f32(load_u16(p));
                for (int j = 0; j < 16; ++j) {
                    dst[j] = d * float(int(p[2 + j] & 0xF) - 8);
                    dst[j + 16] = d * float(int(p[2 + j] >> 4) - 8);
                }
            }
            return;
        case DType::Q4_1:
            ZQAT_ASSERT(n % 32 == 0);
            for (int64_t b = 0; b < n / 32; ++b, p += 20, dst += 32) {
                const float d = fp16_to_f32(load_u16(p)), m = fp16_to_f32(load_u16(p + 2));
                for (int j = 0; j < 16; ++j) {
                    dst[j] = d * float(p[4 + j] & 0xF) + m;
                    dst[j + 16] = d * float(p[4 + j] >> 4) + m;
                }
            }
            return;
        case DType::Q4_K:
            // block: fp16 d, fp16 dmin, u8 scales[12], u8 qs[128]; 8 sub-blocks of 32.
            ZQAT_ASSERT(n % 256 == 0);
            for (int64_t b = 0; b < n / 256; ++b, p += 144) {
                const float d = fp16_to_f32(load_u16(p)), dmin = fp16_to_f32(load_u16(p + 2));
                const uint8_t* scales = p + 4;
                const uint8_t* q = p + 16;
                for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
                    uint8_t sc, m;
                    scale_min_k4(is, scales, sc, m);
                    const float d1 = d * sc, m1 = dmin * m;
                    scale_min_k4(is + 1, scales, sc, m);
                    const float d2 = d * sc, m2 = dmin * m;
                    for (int l = 0; l < 32; ++l) *dst++ = d1 * float(q[l] & 0xF) - m1;
                    for (int l = 0; l < 32; ++l) *dst++ = d2 * float(q[l] >> 4) - m2;
                }
            }
            return;
        case DType::Q6_K:
            // block: u8 ql[128], u8 qh[64], int8 scales[16], fp16 d.
            ZQAT_ASSERT(n % 256 == 0);
            for (int64_t b = 0; b < n / 256; ++b, p += 210) {
                const uint8_t* ql = p;
                const uint8_t* qh = p + 128;
                const int8_t* sc = reinterpret_cast<const int8_t*>(p + 192);
                const float d = fp16_to_f32(load_u16(p + 208));
                for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, dst += 128) {
                    for (int l = 0; l < 32; ++l) {
                        const int is = l / 16;
                        const int q1 = int((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                        const int q2 = int((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                        const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                        const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                        dst[l] = d * sc[is] * float(q1);
                        dst[l + 32] = d * sc[is + 2] * float(q2);
                        dst[l + 64] = d * sc[is + 4] * float(q3);
                        dst[l + 96] = d * sc[is + 6] * float(q4);
                    }
                }
            }
            return;
        default:
            fail("dtype", "no dequantizer for type {}", dtype_info(t).name);
    }
}

}  // namespace zqat
