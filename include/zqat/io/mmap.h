// A read-only memory map of a whole file, shared by the tensors that view into it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace zqat {

class MappedFile {
  public:
    // Throws Error("[io] <path>: ...") when the file cannot be opened or mapped.
    static std::shared_ptr<MappedFile> open(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }

  private:
    MappedFile() = default;
    std::string path_;
    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
};

// Whole file into a string (text inputs). Throws Error naming the file.
std::string read_file(const std::string& path);

// Write bytes to path atomically: a temporary file in the same folder, fsync, rename.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace zqat
