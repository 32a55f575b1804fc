// libFuzzer target: any bytes as a task file (eval/tasks.h). The first byte picks the reader, the
// rest is the file. Reading must either succeed or throw zqat::Error; on success every choice
// document has >= 2 options and a gold index among them, every generation document a reference.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "zqat/core/error.h"
#include "zqat/eval/tasks.h"

namespace {

void check(bool ok) {
    if (!ok) __builtin_trap();
}

void check_choice(const std::vector<zqat::ChoiceDoc>& docs) {
    for (const auto& d : docs) {
        check(d.options.size() >= 2);
        check(d.gold >= 0 && size_t(d.gold) < d.options.size());
        for (const auto& o : d.options) check(o.norm_chars >= 1);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace zqat;
    if (size == 0) return 0;
    static const std::string path = "/tmp/zqat_fuzz_tasks_" + std::to_string(::getpid());
    std::ofstream(path, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(data + 1), std::streamsize(size - 1));
    try {
        switch (data[0] % 9) {
            case 0:
                check_choice(read_arc_icl(path));
                break;
            case 1:
                check_choice(read_winogrande_icl(path));
                break;
            case 2:
                check_choice(read_hellaswag_txt(path));
                break;
            case 3:
                check_choice(read_sst2_tsv(path));
                break;
            case 4:
                check_choice(read_cb_jsonl(path));
                break;
            case 5:
                check_choice(read_boolq_jsonl(path));
                break;
            case 6:
                for (const auto& d : read_squad_json(path)) check(!d.answers.empty());
                break;
            case 7:
                for (const auto& d : read_drop_json(path)) check(!d.answers.empty());
                break;
            default:
                for (const auto& d : read_alpaca_json(path)) check(!d.response.empty());
        }
    } catch (const Error&) {
    }
    return 0;
}
