// Text datasets on disk, and the calibration windows PTQ methods draw from them (METHOD.md s8).
//   JSON lines (C4 demo): one JSON object per line, the document in a string field ("text");
//   empty lines are skipped. WikiText-2 (v1, tokenized): one paragraph per line.
// Calibration: nsamples windows of ctx tokens, split evenly across the sources, each source's text
// tokenized once (no BOS) and windows cut at seeded pseudo-random offsets. Calibration text is
// never text a perplexity is measured on: C4 calibration uses the first half of the C4 demo
// documents, C4 perplexity the second half (c4_split); WikiText-2 calibration uses the valid
// split, WikiText-2 perplexity the test split.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace zqat {

class Tokenizer;

// The string field `field` of every non-empty line of a JSON-lines file, in file order.
// Throws Error("[data] <path>: line <n> (byte offset <o>): ...") for a line that is not a JSON
// object, lacks the field, or whose field is not a string; names the path when it cannot be read.
std::vector<std::string> read_jsonl_texts(const std::string& path, std::string_view field = "text");

// Documents joined with "\n\n" (the GPTQ protocol's paragraph separator).
std::string join_paragraphs(const std::vector<std::string>& docs);

// The GPTQ protocol's text for a file with one paragraph per line (WikiText-2): every line plus
// "\n" (as the Hugging Face wikitext rows are), joined with "\n\n". A final "\n" ends the last
// line and does not start an empty one. eval's ppl_text(..., gptq) is this function.
std::string join_lines_gptq(std::string_view file_contents);

// C4 demo split: docs [0, n/2) are calibration (heldout = false), docs [n/2, n) are held out for
// C4 perplexity (heldout = true); with the 300-doc demo, [0, 150) and [150, 300). Calibration
// text is never evaluated on, so a PTQ method cannot fit the text it is scored on.
std::vector<std::string> c4_split(const std::vector<std::string>& docs, bool heldout);

struct CalibOptions {
    int64_t nsamples = 128;  // windows in all, split evenly across sources (remainder to the first)
    int64_t ctx = 2048;      // tokens per window
    uint64_t seed = 0;
    std::vector<std::string> sources = {"wikitext2", "c4"};
    std::string data_dir = "../shared/data";
};

// The token stream (no BOS) one calibration source is cut from:
//   "wikitext2": join_lines_gptq(<data_dir>/wikitext-2/valid.txt)
//   "c4":        join_paragraphs(c4_split(read_jsonl_texts(<data_dir>/c4/c4_demo.jsonl), false))
// Throws Error naming the source for an unknown name and the path for a missing file.
std::vector<int32_t> calibration_stream(const Tokenizer& tok, std::string_view source,
                                        const std::string& data_dir);

// opt.nsamples windows of opt.ctx tokens: source i gives nsamples / S windows (source 0 also the
// remainder), in source order. Offsets, per source i with a stream of n tokens:
//   rng = std::mt19937_64(seed ^ (0x9E3779B97F4A7C15 * (i + 1)));  start = rng() % (n - ctx)
// one draw per window in order, so a window is tokens [start, start + ctx) and start is uniform
// (up to a 2^-64-scale modulo bias) in [0, n - ctx - 1], as gptq.py's randint(0, n - ctx - 1).
// (std::uniform_int_distribution is not used: its output differs across standard libraries.)
// Throws Error for nsamples < 1, ctx < 1, an empty source list, an unknown source, a missing file,
// or a stream shorter than ctx + 1 tokens ("too short", naming the source, its tokens and ctx).
// A source that gets no window (nsamples < number of sources) is not read.
std::vector<std::vector<int32_t>> calibration_windows(const Tokenizer& tok,
                                                      const CalibOptions& opt);

}  // namespace zqat
