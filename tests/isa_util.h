// The ISA levels this CPU can run (for fast-vs-reference kernel tests), and a guard that puts
// the dispatcher back on "auto" when a test ends. Shared by test_ops*.cpp.
#pragma once

#include <string>
#include <vector>

#include "zqat/core/ops.h"

namespace zqat::test {

inline std::vector<std::string> isa_levels() {
    std::vector<std::string> out;
    for (const char* level : {"generic", "avx2", "avx512"}) {
        if (ops::set_isa(level) == level) out.emplace_back(level);
    }
    ops::set_isa("auto");
    return out;
}

struct IsaGuard {
    ~IsaGuard() { ops::set_isa("auto"); }
};

}  // namespace zqat::test
