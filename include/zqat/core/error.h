// Errors, three tiers (see shared STYLE):
//   ZQAT_ASSERT(cond)   always on; an internal invariant broke: a bug in zeroqat, not bad input.
//   ZQAT_DASSERT(cond)  debug builds only; for hot loops.
//   throw zqat::Error   at every boundary with the world (files, configs, command lines). The
//   message
//                       names the module, the file, the offset or field, and what was expected:
//                       "[gguf] model.gguf: tensor 'blk.3.attn_q.weight' data at offset 91234 runs
//                        past end of file (size 90000)".
// Only main() catches. The library never calls exit().
#pragma once

#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace zqat {

class Error : public std::runtime_error {
  public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// fail("gguf", "{}: bad magic at offset 0", path) -> throws Error("[gguf] <message>")
template <class... Args>
[[noreturn]] void fail(const char* module, fmt::format_string<Args...> fmt, Args&&... args) {
    throw Error(std::string("[") + module + "] " + fmt::format(fmt, std::forward<Args>(args)...));
}

[[noreturn]] void assert_failed(const char* cond, const char* file, int line);

}  // namespace zqat

#define ZQAT_ASSERT(cond) ((cond) ? (void)0 : ::zqat::assert_failed(#cond, __FILE__, __LINE__))
#ifdef NDEBUG
#define ZQAT_DASSERT(cond) ((void)0)
#else
#define ZQAT_DASSERT(cond) ZQAT_ASSERT(cond)
#endif
