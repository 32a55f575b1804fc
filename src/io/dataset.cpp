// Text datasets and calibration windows: see include/zqat/io/dataset.h.
#include "zqat/io/dataset.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "zqat/core/error.h"
#include "zqat/io/mmap.h"
#include "zqat/io/tokenizer.h"

namespace zqat {

namespace {

bool blank(std::string_view s) {
    return s.find_first_not_of(" \t\r") == std::string_view::npos;
}

std::string read_existing(const std::string& path, std::string_view what) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
        fail("data", "{}: no such file ({})", path, what);
    return read_file(path);
}

}  // namespace

std::vector<std::string> read_jsonl_texts(const std::string& path, std::string_view field) {
    const std::string bytes = read_existing(path, "JSON-lines file");
    std::vector<std::string> out;
    size_t pos = 0;
    int64_t line_no = 0;
    while (pos < bytes.size()) {
        size_t end = bytes.find('\n', pos);
        if (end == std::string::npos) end = bytes.size();
        ++line_no;
        const std::string_view line(bytes.data() + pos, end - pos);
        const size_t offset = pos;
        pos = end + 1;
        if (blank(line)) continue;
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(line);
        } catch (const nlohmann::json::exception& e) {
            fail("data", "{}: line {} (byte offset {}): not valid JSON: {}", path, line_no, offset,
                 e.what());
        }
        if (!j.is_object())
            fail("data", "{}: line {} (byte offset {}): expected a JSON object, got {}", path,
                 line_no, offset, j.type_name());
        const auto it = j.find(field);
        if (it == j.end())
            fail("data", "{}: line {} (byte offset {}): no field '{}'", path, line_no, offset,
                 field);
        if (!it->is_string())
            fail("data", "{}: line {} (byte offset {}): field '{}' is a {}, expected a string",
                 path, line_no, offset, field, it->type_name());
        out.push_back(it->get<std::string>());
    }
    return out;
}

std::string join_paragraphs(const std::vector<std::string>& docs) {
    size_t n = 0;
    for (const auto& d : docs) n += d.size() + 2;
    std::string out;
    out.reserve(n);
    for (size_t i = 0; i < docs.size(); ++i) {
        if (i) out += "\n\n";
        out += docs[i];
    }
    return out;
}

std::string join_lines_gptq(std::string_view file_contents) {
    std::string out;
    out.reserve(file_contents.size() * 2);
    size_t pos = 0;
    bool first = true;
    while (pos < file_contents.size()) {
        size_t end = file_contents.find('\n', pos);
        if (end == std::string_view::npos) end = file_contents.size();
        if (!first) out += "\n\n";
        out.append(file_contents.substr(pos, end - pos));
        out += '\n';
        first = false;
        pos = end + 1;
    }
    return out;
}

std::vector<std::string> c4_split(const std::vector<std::string>& docs, bool heldout) {
    const auto half = static_cast<std::ptrdiff_t>(docs.size() / 2);
    return heldout ? std::vector<std::string>(docs.begin() + half, docs.end())
                   : std::vector<std::string>(docs.begin(), docs.begin() + half);
}

std::vector<int32_t> calibration_stream(const Tokenizer& tok, std::string_view source,
                                        const std::string& data_dir) {
    std::string text;
    if (source == "wikitext2") {
        text = join_lines_gptq(
            read_existing(data_dir + "/wikitext-2/valid.txt", "calibration source 'wikitext2'"));
    } else if (source == "c4") {
        const std::string path = data_dir + "/c4/c4_demo.jsonl";
        if (!std::filesystem::exists(path))
            fail("data", "{}: no such file (calibration source 'c4')", path);
        text = join_paragraphs(c4_split(read_jsonl_texts(path), false));
    } else {
        fail("data", "unknown calibration source '{}' (expected 'wikitext2' or 'c4')", source);
    }
    return tok.encode(text, /*add_bos=*/false);
}

std::vector<std::vector<int32_t>> calibration_windows(const Tokenizer& tok,
                                                      const CalibOptions& opt) {
    if (opt.nsamples < 1)
        fail("data", "calibration nsamples must be at least 1, got {}", opt.nsamples);
    if (opt.ctx < 1) fail("data", "calibration ctx must be at least 1, got {}", opt.ctx);
    if (opt.sources.empty()) fail("data", "no calibration sources given");
    for (const auto& s : opt.sources)
        if (s != "wikitext2" && s != "c4")
            fail("data", "unknown calibration source '{}' (expected 'wikitext2' or 'c4')", s);

    const auto n_src = static_cast<int64_t>(opt.sources.size());
    std::vector<std::vector<int32_t>> out;
    out.reserve(size_t(opt.nsamples));
    for (int64_t i = 0; i < n_src; ++i) {
        const int64_t count = opt.nsamples / n_src + (i == 0 ? opt.nsamples % n_src : 0);
        if (count == 0) continue;
        const std::string& name = opt.sources[size_t(i)];
        const std::vector<int32_t> stream = calibration_stream(tok, name, opt.data_dir);
        const auto n = static_cast<int64_t>(stream.size());
        if (n < opt.ctx + 1)
            fail("data", "calibration source '{}' is too short: {} tokens, need ctx + 1 = {}", name,
                 n, opt.ctx + 1);
        std::mt19937_64 rng(opt.seed ^ (0x9E3779B97F4A7C15ull * uint64_t(i + 1)));
        const auto span = static_cast<uint64_t>(n - opt.ctx);
        for (int64_t w = 0; w < count; ++w) {
            const auto start = static_cast<std::ptrdiff_t>(rng() % span);
            out.emplace_back(stream.begin() + start, stream.begin() + start + opt.ctx);
        }
    }
    return out;
}

}  // namespace zqat
