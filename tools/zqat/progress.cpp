#include "progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace zqat::cli {

Progress::Progress(std::string what, bool enabled)
    : what_(std::move(what)),
      enabled_(enabled),
      tty_(isatty(STDERR_FILENO) != 0),
      t0_(std::chrono::steady_clock::now()) {}

void Progress::update(int64_t done, int64_t total, const std::string& extra) {
    if (!enabled_ || total <= 0) return;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    const double eta = done > 0 ? s / double(done) * double(total - done) : 0.0;
    const std::string line =
        fmt::format("{} {}/{} ({:.0f}%) {:.1f}s elapsed, ETA {:.1f}s{}{}", what_, done, total,
                    100.0 * double(done) / double(total), s, eta, extra.empty() ? "" : ", ", extra);
    if (tty_) {
        std::fprintf(stderr, "\r\033[K%s", line.c_str());
        open_line_ = true;
    } else {
        const int decile = int(10 * done / total);
        if (decile == last_decile_) return;
        last_decile_ = decile;
        std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
}

void Progress::finish() {
    if (open_line_) std::fprintf(stderr, "\n");
    open_line_ = false;
}

}  // namespace zqat::cli
