// Shared pieces of the model loaders (internal to src/model).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "zqat/model/model.h"

namespace zqat {

// Looks tensors up by name in one file format and returns them as checked F32 copies.
struct TensorSource {
    std::string path;
    std::function<std::optional<Tensor>(const std::string&)> find;

    bool has(const std::string& name) const { return find(name).has_value(); }
    // The tensor converted to F32; throws Error naming the file and tensor when it is missing or
    // its shape differs from `shape` (-1 matches any extent).
    Tensor get(const std::string& name, const std::vector<int64_t>& shape) const;
};

// Sanity limits on a configuration read from a file (positive sizes, divisibility).
void check_config(const ModelConfig& c, const std::string& path);

// The safetensors files of a HF checkpoint: `path` itself when it is a *.safetensors file, else
// the folder's model.safetensors, else the shards its model.safetensors.index.json names.
std::vector<std::string> hf_weight_files(const std::string& path);

Model load_gguf_model(const std::string& path);
Model load_hf_model(const std::string& path);

}  // namespace zqat
