// AVX-512 quantizer inner loops (contracts in kernels.h). Bit-identical to the scalar reference:
// _mm512_div_ps is IEEE division, _mm512_roundscale_ps(_MM_FROUND_TO_NEAREST_INT) rounds half to
// even like std::nearbyint, and max_ps(0, v) / min_ps(qmax, v) return their second operand on
// ties exactly as std::max(v, 0.0f) / std::min(v, qmax) return their first.
// Dequantization decodes 16 codes at a time: 2*bits bytes (masked load, never past the data) are
// shuffled into one 16-bit window per element, which a per-lane shift and mask reduce to the code.
// GCC 12 flags the _mm512_undefined_ps() operands inside avx512fintrin.h as "maybe
// uninitialized" wherever the intrinsics are inlined (GCC bug 105593), a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <algorithm>

#include "cpu/kernels.h"
#include "zqat/core/dtype.h"

namespace zqat::cpu {
namespace {

inline __mmask16 tail_mask(int64_t n) {  // 0 <= n < 16
    return __mmask16((1u << n) - 1);
}

template <bool kCodes, bool kY>
void quant_row_impl(int64_t n, const float* x, float delta, float zp, float qmax, uint8_t* codes,
                    float* y) {
    const __m512 vd = _mm512_set1_ps(delta), vz = _mm512_set1_ps(zp), vq = _mm512_set1_ps(qmax);
    const __m512 zero = _mm512_setzero_ps();
    auto quant = [&](__m512 v) {
        const __m512 r = _mm512_roundscale_ps(_mm512_div_ps(v, vd),
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        return _mm512_min_ps(vq, _mm512_max_ps(zero, _mm512_add_ps(r, vz)));
    };
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 q = quant(_mm512_loadu_ps(x + i));
        if (kCodes) {
            _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + i),
                             _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(q)));
        }
        if (kY) _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_sub_ps(q, vz), vd));
    }
    if (i < n) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 q = quant(_mm512_maskz_loadu_ps(m, x + i));
        if (kCodes) _mm512_mask_cvtepi32_storeu_epi8(codes + i, m, _mm512_cvtps_epi32(q));
        if (kY) _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_sub_ps(q, vz), vd));
    }
}

// Per bit width: the byte-shuffle (16-bit window [byte, byte + 1] per element; 0x80 zeroes a
// byte past the 16 loaded) and the shift of each element within its window.
struct DecodeTable {
    alignas(32) uint8_t shuffle[32];
    alignas(64) uint32_t shift[16];
};

constexpr DecodeTable make_table(int bits) {
    DecodeTable t{};
    for (int i = 0; i < 16; ++i) {
        const int bit = i * bits, byte = bit >> 3;
        t.shuffle[2 * i] = uint8_t(byte);
        t.shuffle[2 * i + 1] = byte + 1 < 16 ? uint8_t(byte + 1) : uint8_t(0x80);
        t.shift[i] = uint32_t(bit & 7);
    }
    return t;
}

constexpr DecodeTable kTables[9] = {make_table(1), make_table(1), make_table(2),
                                    make_table(3), make_table(4), make_table(1),
                                    make_table(6), make_table(1), make_table(8)};

}  // namespace

void minmax_avx512(int64_t n, const float* x, float* mn, float* mx) {
    __m512 lo = _mm512_set1_ps(x[0]), hi = lo;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {  // two independent chains hide the min/max latency
        const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        lo = _mm512_min_ps(lo, _mm512_min_ps(a, b));
        hi = _mm512_max_ps(hi, _mm512_max_ps(a, b));
    }
    for (; i + 16 <= n; i += 16) {
        const __m512 a = _mm512_loadu_ps(x + i);
        lo = _mm512_min_ps(lo, a);
        hi = _mm512_max_ps(hi, a);
    }
    if (i < n) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 a = _mm512_maskz_loadu_ps(m, x + i);
        lo = _mm512_mask_min_ps(lo, m, lo, a);
        hi = _mm512_mask_max_ps(hi, m, hi, a);
    }
    *mn = _mm512_reduce_min_ps(lo);
    *mx = _mm512_reduce_max_ps(hi);
}

void quant_row_avx512(int64_t n, const float* x, float delta, float zp, float qmax, uint8_t* codes,
                      float* y) {
    if (codes && y) return quant_row_impl<true, true>(n, x, delta, zp, qmax, codes, y);
    if (codes) return quant_row_impl<true, false>(n, x, delta, zp, qmax, codes, y);
    if (y) return quant_row_impl<false, true>(n, x, delta, zp, qmax, codes, y);
}

void dequant_row_avx512(const PackedWeight& w, int64_t r, int64_t k0, int64_t n, float* out) {
    const int bits = w.bits;
    const uint8_t* row = w.codes + r * w.row_bytes;
    const int64_t ng = w.n_groups();
    const DecodeTable& t = kTables[bits];
    const __m256i shuf = _mm256_load_si256(reinterpret_cast<const __m256i*>(t.shuffle));
    const __m512i shift = _mm512_load_si512(t.shift);
    const __m512i mask = _mm512_set1_epi32(int((1u << bits) - 1));
    const __mmask16 load_mask = __mmask16((1u << (2 * bits)) - 1);  // 2*bits <= 16 bytes
    for (int64_t k = k0; k < k0 + n;) {
        const int64_t g = k / w.group, end = std::min(k0 + n, (g + 1) * w.group);
        const float delta = fp16_to_f32(w.scales[r * ng + g]);
        const float zp = fp16_to_f32(w.zeros[r * ng + g]);
        for (; k < end && (k & 7) != 0; ++k) {
            out[k - k0] = (float(packed_code(row, bits, k)) - zp) * delta;
        }
        const __m512 vd = _mm512_set1_ps(delta), vz = _mm512_set1_ps(zp);
        for (; k + 16 <= end; k += 16) {  // k % 8 == 0: the 16 codes start on a byte
            const __m128i src = _mm_maskz_loadu_epi8(load_mask, row + (k * bits >> 3));
            const __m256i win = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(src), shuf);
            const __m512i q =
                _mm512_and_si512(_mm512_srlv_epi32(_mm512_cvtepu16_epi32(win), shift), mask);
            _mm512_storeu_ps(out + (k - k0),
                             _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(q), vz), vd));
        }
        for (; k < end; ++k) out[k - k0] = (float(packed_code(row, bits, k)) - zp) * delta;
    }
}

float perturb_row_avx512(int64_t n, const float* w, const float* z, float pe, const float* cs,
                         const float* d, float* out) {
    const __m512 vpe = _mm512_set1_ps(pe);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t k = 0; k < n; k += 16) {
        const __mmask16 m = n - k >= 16 ? __mmask16(0xffff) : tail_mask(n - k);
        __m512 v = _mm512_maskz_loadu_ps(m, w + k);
        if (z) v = _mm512_add_ps(v, _mm512_mul_ps(vpe, _mm512_maskz_loadu_ps(m, z + k)));
        if (d)
            acc =
                _mm512_mask_add_ps(acc, m, acc, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, d + k)));
        if (cs) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, cs + k));
        _mm512_mask_storeu_ps(out + k, m, v);
    }
    if (!d) return 0.0f;
    // The reference's tree: l[i] + l[i+8], + 4, + 2, + 1.
    const __m256 s8 =
        _mm256_add_ps(_mm512_castps512_ps256(acc),
                      _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1)));
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

}  // namespace zqat::cpu
