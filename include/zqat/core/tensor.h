// A tensor is a cheap handle: dtype, shape, shared storage, name. No graph, no autograd: zeroqat
// only runs forward passes. Shapes are row-major, outermost first, in PyTorch order: a linear
// weight is [out, in] (GGUF lists dims innermost first; loaders reverse them).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "zqat/core/dtype.h"
#include "zqat/core/packed.h"

namespace zqat {

struct Tensor {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    std::shared_ptr<const void> owner;  // keeps the bytes alive (an mmap or a heap buffer)
    const void* data = nullptr;         // first byte
    uint64_t nbytes = 0;
    // Set for a packed low-bit weight (core/packed.h): then data is null, dtype is meaningless
    // and shape is [rows, cols]. Only decoder linear weights are ever packed.
    std::shared_ptr<const PackedWeight> packed;

    int64_t numel() const;
    int64_t dim(int i) const { return shape.at(i < 0 ? shape.size() + i : i); }
    const float* f32() const;  // asserts dtype == F32 (and not packed)
    bool is_packed() const { return packed != nullptr; }
    bool empty() const { return data == nullptr && !packed; }
    std::string shape_str() const;  // "[576, 1536]"

    // A new F32 tensor owning zeroed memory.
    static Tensor zeros(std::string name, std::vector<int64_t> shape);
    float* mutable_f32();  // only for tensors made by zeros()/to_f32() (heap-owned)
    // Dequantize/convert to an owned F32 copy (a no-op copy for F32).
    Tensor to_f32() const;
};

}  // namespace zqat
