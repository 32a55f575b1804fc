// The log sink: human messages on stderr. The one piece of global mutable state besides the
// backend registry. Machine-readable output (--json) goes to stdout and never through here.
#pragma once

#include <fmt/format.h>

#include <string>

namespace zqat {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3, quiet = 4 };

void set_log_level(LogLevel level);
LogLevel log_level();
void log_write(LogLevel level, const std::string& msg);

template <class... Args>
void log_info(fmt::format_string<Args...> f, Args&&... args) {
    if (log_level() <= LogLevel::info)
        log_write(LogLevel::info, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... args) {
    if (log_level() <= LogLevel::warn)
        log_write(LogLevel::warn, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void log_debug(fmt::format_string<Args...> f, Args&&... args) {
    if (log_level() <= LogLevel::debug)
        log_write(LogLevel::debug, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace zqat
