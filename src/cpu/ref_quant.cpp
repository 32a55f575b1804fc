// Scalar references for the quantizer (METHOD.md s1, contracts in core/ops.h): the oracle the
// fast versions in quant_ops.cpp must match bit for bit. Plain loops, one element at a time.
// Rounding is std::nearbyint under the default rounding mode (round half to even). Inputs are
// assumed finite; with NaN or inf in a group the outputs are unspecified.
#include <algorithm>
#include <bit>
#include <cmath>
#include <vector>

#include "zqat/core/dtype.h"
#include "zqat/core/ops.h"

namespace zqat::ops::ref {

void quantize_weight(int64_t rows, int64_t cols, const float* W, int64_t ldw, int bits,
                     int64_t group, bool sym, const float* gamma, const float* beta, uint8_t* codes,
                     uint16_t* scales, uint16_t* zeros, float* w_hat) {
    if (group <= 0) group = cols;  // 0: one group per output channel
    const int64_t ng = cols / group;
    const float qmax = float((1 << bits) - 1);
    const float half = float(1 << (bits - 1));
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t g = 0; g < ng; ++g) {
            const float* x = W + r * ldw + g * group;
            float mx = x[0], mn = x[0];
            for (int64_t k = 1; k < group; ++k) {
                mx = x[k] > mx ? x[k] : mx;
                mn = x[k] < mn ? x[k] : mn;
            }
            const float ga = gamma ? gamma[r * ng + g] : 1.0f;
            const float be = beta ? beta[r * ng + g] : 1.0f;
            const float hi = std::max(ga * mx, 0.0f);
            const float lo = std::min(be * mn, 0.0f);
            float d32;
            int zp;
            if (sym) {
                d32 = std::max(std::max(hi, -lo), 1e-5f) / (half - 1.0f);
            } else {
                d32 = std::max(hi - lo, 1e-5f) / qmax;
            }
            uint16_t d16 = f32_to_fp16(d32);
            if ((d16 & 0x7fff) == 0) d16 = 1;  // the smallest fp16 subnormal, 2^-24
            const float delta = fp16_to_f32(d16);
            if (sym) {
                zp = 1 << (bits - 1);
            } else {
                zp = int(std::clamp(std::nearbyint(-lo / delta), 0.0f, qmax));
            }
            const float zpf = float(zp);
            if (scales) scales[r * ng + g] = d16;
            if (zeros) zeros[r * ng + g] = f32_to_fp16(zpf);
            for (int64_t k = 0; k < group; ++k) {
                const float q = std::min(std::max(std::nearbyint(x[k] / delta) + zpf, 0.0f), qmax);
                const int64_t at = r * cols + g * group + k;
                if (codes) codes[at] = uint8_t(q);
                if (w_hat) w_hat[at] = (q - zpf) * delta;
            }
        }
    }
}

void fake_quant_act(int64_t M, int64_t D, float* x, int64_t ld, int bits, float clip) {
    const float qmax = float((1 << bits) - 1);
    for (int64_t i = 0; i < M; ++i) {
        float* row = x + i * ld;
        float hi = row[0], lo = row[0];
        for (int64_t j = 1; j < D; ++j) {
            hi = row[j] > hi ? row[j] : hi;
            lo = row[j] < lo ? row[j] : lo;
        }
        hi = clip * hi;
        lo = clip * lo;
        const float delta = std::max(hi - lo, 1e-5f) / qmax;
        const float zp = std::nearbyint(-lo / delta);
        for (int64_t j = 0; j < D; ++j) {
            const float q = std::min(std::max(std::nearbyint(row[j] / delta) + zp, 0.0f), qmax);
            row[j] = (q - zp) * delta;
        }
    }
}

void hadamard_rows(int64_t M, int64_t D, float* x, int64_t ld) {
    const int64_t b = ops::hadamard_block(D);
    const double norm = 1.0 / std::sqrt(double(b));
    std::vector<double> out(static_cast<size_t>(b));
    for (int64_t i = 0; i < M; ++i)
        for (float* v = x + i * ld; v < x + i * ld + D; v += b) {
            for (int64_t r = 0; r < b; ++r) {
                double acc = 0;
                for (int64_t c = 0; c < b; ++c)
                    acc += (std::popcount(uint64_t(r & c)) % 2 ? -1.0 : 1.0) * double(v[c]);
                out[size_t(r)] = acc * norm;
            }
            for (int64_t r = 0; r < b; ++r) v[r] = float(out[size_t(r)]);
        }
}

float perturb_row(int64_t n, const float* w, const float* z, float pe, const float* cs,
                  const float* d, float* out) {
    float lane[16] = {};
    for (int64_t k = 0; k < n; ++k) {
        float v = w[k];
        if (z) {
            const float step = pe * z[k];
            v = v + step;
        }
        if (d) {
            const float p = v * d[k];
            lane[k % 16] = lane[k % 16] + p;
        }
        out[k] = cs ? v * cs[k] : v;
    }
    for (int width = 8; width >= 1; width /= 2)
        for (int i = 0; i < width; ++i) lane[i] = lane[i] + lane[i + width];
    return lane[0];
}

}  // namespace zqat::ops::ref
