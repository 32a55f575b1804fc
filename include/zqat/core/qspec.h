// A quantization spec, as users write it: W{2,3,4,6,8}A{4,6,8,16}[g{32,64,128}][sym].
//   W4A4       4-bit weights per output channel, 4-bit activations per token (dynamic), asymmetric
//   W2A16g128  2-bit weights in groups of 128 inputs along a row, activations in full precision
//   W4A16g128sym  as above, symmetric weights (zero point fixed at 2^(b-1))
// Plain data: what is quantized where is decided by the model code (every decoder linear, on its
// weight and its input; embeddings, norms and the LM head stay in full precision).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace zqat {

struct QSpec {
    int w_bits = 16;    // 16: weights not quantized
    int a_bits = 16;    // 16: activations not quantized
    int64_t group = 0;  // 0: one group per output channel (the whole row)
    bool sym = false;   // symmetric weights (activations are always asymmetric)

    // Throws Error("[qspec] ...") naming the string and the offending part.
    static QSpec parse(std::string_view s);
    std::string str() const;  // the canonical spelling: parse(str()) == *this
    bool quant_weights() const { return w_bits < 16; }
    bool quant_acts() const { return a_bits < 16; }
    // Elements per group for a weight row of `cols` inputs (group, or cols when per channel).
    // Throws Error naming `what` (e.g. a tensor name) when group does not divide cols.
    int64_t group_for(int64_t cols, std::string_view what) const;
    bool operator==(const QSpec&) const = default;
};

}  // namespace zqat
