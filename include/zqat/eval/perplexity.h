// Perplexity of a model on a token stream, under two protocols:
//   gptq     (METHOD.md s8): cut the stream into floor(N / ctx) non-overlapping windows of ctx
//   tokens,
//            score every position after the first of each window; ppl = exp(mean NLL).
//   llamacpp (llama-perplexity): the same windows, but the first token of each window is replaced
//            by BOS when the model adds one, and only the second half of each window is scored, so
//            every scored token has at least ctx/2 tokens of context.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

namespace zqat {

struct Model;
class ThreadPool;

enum class PplProtocol { gptq, llamacpp };
PplProtocol parse_ppl_protocol(std::string_view s);  // throws Error on anything else

struct PplOptions {
    int64_t ctx = 2048;
    int64_t limit_windows = -1;  // < 0: all windows
    int64_t batch = 1;           // windows per forward call
    PplProtocol protocol = PplProtocol::gptq;
    // Called after each batch: windows done, windows total, running mean NLL.
    std::function<void(int64_t done, int64_t total, double mean_nll)> progress;
};

struct PplResult {
    double ppl = 0, nll = 0;  // exp(mean NLL), mean NLL in nats
    int64_t tokens = 0;       // tokens scored
    int64_t windows = 0;
    int64_t stream_tokens = 0;  // tokens in the whole tokenized text
    double seconds = 0;         // forward time, tokenization excluded
    uint64_t arena_bytes = 0;   // activation memory of the forward at (batch, ctx)
};

PplResult perplexity(const Model& model, std::span<const int32_t> tokens, const PplOptions& opt,
                     ThreadPool& pool);

// The text a protocol tokenizes, from a file with one paragraph per line:
//   gptq:     rows (each line + "\n", as the HF wikitext rows are) joined with "\n\n";
//   llamacpp: the file as it is.
std::string ppl_text(const std::string& file_contents, PplProtocol protocol);

}  // namespace zqat
