// Safetensors reader over an mmap. Byte layout:
//   u64 header_len (little endian) | header_len bytes of JSON | data
//   JSON: { "__metadata__": {str: str}, "<name>": {"dtype": "F32"|"F16"|"BF16"|...,
//           "shape": [..], "data_offsets": [begin, end]} ... }, offsets relative to the data start.
// Checked: header size against the file and a 100 MB cap, JSON syntax, every dtype x shape against
// its byte range, ranges inside the data and not overlapping, unique names. Errors name the file,
// the tensor and the offset.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "zqat/core/tensor.h"

namespace zqat::safetensors {

struct TensorInfo {
    std::string name;
    std::vector<int64_t> shape;
    DType dtype = DType::F32;  // F32, F16 or BF16 (others are rejected)
    uint64_t offset = 0;       // absolute byte offset in the file
    uint64_t nbytes = 0;
};

class File {
  public:
    static File open(const std::string& path);
    static File from_memory(const uint8_t* data, uint64_t size, std::string name);

    const std::string& path() const { return path_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const TensorInfo* find_tensor(std::string_view name) const;
    Tensor tensor(const TensorInfo& info) const;

  private:
    std::string path_;
    std::shared_ptr<const void> owner_;
    const uint8_t* base_ = nullptr;
    uint64_t size_ = 0;
    std::map<std::string, std::string> metadata_;
    std::vector<TensorInfo> tensors_;
    friend class Parser;
};

}  // namespace zqat::safetensors
