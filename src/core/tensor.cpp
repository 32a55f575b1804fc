#include "zqat/core/tensor.h"

#include <cstring>

#include "zqat/core/error.h"

namespace zqat {

int64_t Tensor::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

const float* Tensor::f32() const {
    ZQAT_ASSERT(dtype == DType::F32 && (data != nullptr || numel() == 0));
    return static_cast<const float*>(data);
}

float* Tensor::mutable_f32() {
    // Only heap tensors made by zeros()/to_f32() are writable; mapped files are read-only.
    ZQAT_ASSERT(dtype == DType::F32);
    return const_cast<float*>(static_cast<const float*>(data));
}

std::string Tensor::shape_str() const {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

Tensor Tensor::zeros(std::string name, std::vector<int64_t> shape) {
    Tensor t;
    t.name = std::move(name);
    t.shape = std::move(shape);
    const int64_t n = t.numel();
    ZQAT_ASSERT(n >= 0);
    std::shared_ptr<float[]> buf(new float[size_t(n)]());
    t.data = buf.get();
    t.owner = std::shared_ptr<const void>(buf, buf.get());
    t.nbytes = uint64_t(n) * sizeof(float);
    return t;
}

Tensor Tensor::to_f32() const {
    Tensor out = zeros(name, shape);
    if (numel() > 0) dequantize(dtype, data, out.mutable_f32(), numel());
    return out;
}

}  // namespace zqat
