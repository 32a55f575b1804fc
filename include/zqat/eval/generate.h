// Text generation with the KV-cache Session: greedy or temperature / top-k / top-p sampling.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <vector>

namespace zqat {

struct Model;
class Session;

struct SampleOptions {
    float temperature = 0.f;  // 0: greedy (argmax, lowest id on ties)
    int top_k = 40;           // <= 0: no top-k cut
    float top_p = 0.95f;      // >= 1: no nucleus cut
    uint64_t seed = 0;
};

// Picks the next token from logits [n_vocab].
int32_t sample_token(std::span<const float> logits, const SampleOptions& opt, std::mt19937_64& rng);

// Feeds the prompt, then samples up to n_new tokens, stopping early at EOS. on_token(id) is called
// for each new token (for streaming output). Returns the new tokens.
std::vector<int32_t> generate(const Model& model, Session& session, std::span<const int32_t> prompt,
                              int64_t n_new, const SampleOptions& opt,
                              const std::function<void(int32_t)>& on_token = {});

}  // namespace zqat
