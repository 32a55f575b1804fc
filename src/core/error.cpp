#include "zqat/core/error.h"

#include <cstdio>
#include <cstdlib>

namespace zqat {

[[noreturn]] void assert_failed(const char* cond, const char* file, int line) {
    std::fprintf(stderr, "zqat: internal error: assertion '%s' failed at %s:%d\n", cond, file,
                 line);
    std::abort();
}

}  // namespace zqat
