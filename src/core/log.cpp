#include "zqat/core/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace zqat {

namespace {
std::atomic<LogLevel> g_level{LogLevel::info};
std::mutex g_mutex;  // one line at a time from worker threads
}  // namespace

void set_log_level(LogLevel level) {
    g_level.store(level);
}
LogLevel log_level() {
    return g_level.load();
}

void log_write(LogLevel level, const std::string& msg) {
    static const char* prefix[] = {"debug: ", "", "warning: ", "error: ", ""};
    std::lock_guard<std::mutex> lock(g_mutex);
    std::fprintf(stderr, "%s%s\n", prefix[int(level)], msg.c_str());
}

}  // namespace zqat
