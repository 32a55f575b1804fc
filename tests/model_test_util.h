// Numeric helpers shared by the model tests (test_model_golden.cpp, test_model_forward.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace zqat::test {

// max |a - b| / max(1, max |b|) over n values.
inline double rel_err(const float* a, const float* b, size_t n) {
    double d = 0, m = 1;
    for (size_t i = 0; i < n; ++i) {
        d = std::max(d, std::fabs(double(a[i]) - double(b[i])));
        m = std::max(m, std::fabs(double(b[i])));
    }
    return d / m;
}

// -log_softmax(row)[target] in double.
inline double ref_nll(const float* row, int64_t V, int32_t target) {
    const double mx = *std::max_element(row, row + V);
    double z = 0;
    for (int64_t v = 0; v < V; ++v) z += std::exp(double(row[v]) - mx);
    return std::log(z) + mx - double(row[target]);
}

}  // namespace zqat::test
