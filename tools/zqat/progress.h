// Progress on stderr for long work: one rewritten line on a TTY, a line per ~10% otherwise.
#pragma once

#include <chrono>
#include <string>

namespace zqat::cli {

class Progress {
  public:
    explicit Progress(std::string what, bool enabled = true);
    // done of total units; `extra` is appended (e.g. "ppl 17.3").
    void update(int64_t done, int64_t total, const std::string& extra = {});
    void finish();

  private:
    std::string what_;
    bool enabled_, tty_;
    int last_decile_ = -1;
    bool open_line_ = false;
    std::chrono::steady_clock::time_point t0_;
};

}  // namespace zqat::cli
