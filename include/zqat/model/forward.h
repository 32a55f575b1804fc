// The causal forward pass. Activations for one (B, T) are planned once at construction into one
// arena; calls allocate nothing. The LM head and the loss run in row chunks so [T, n_vocab] logits
// are never all resident when only the NLL is wanted.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

namespace zqat {

struct Model;
class ThreadPool;

// The inputs of a decoder layer's linears, by the group of linears that shares one input.
enum class LinearSite {
    attn_in,   // q, k, v (after the attention norm)
    attn_out,  // o_proj (attention output)
    ffn_in,    // gate + up, or OPT's fc1 (after the FFN norm)
    ffn_out,   // down, or OPT's fc2 (after SwiGLU / ReLU)
};
constexpr int kLinearSites = 4;
// Called with the input [rows, cols] of each linear group exactly as its GEMM reads it (after the
// LET shift and activation quantization). For calibration statistics, Hessians and LET searches.
using LinearHook = std::function<void(int64_t layer, LinearSite site, const float* in, int64_t rows,
                                      int64_t cols)>;

// One scored position of a batch: row r = b*T + t, and the token scored there as its next.
struct ScoredToken {
    int32_t row = 0;
    int32_t target = 0;
};

class Forward {
  public:
    // head_chunk: LM-head rows per chunk (0: 256). The head's logits take head_chunk * n_vocab
    // floats of the arena; fewer rows save memory and cost head bandwidth (see forward.cpp).
    Forward(const Model& model, int64_t batch, int64_t ctx, ThreadPool& pool,
            int64_t head_chunk = 0);
    ~Forward();
    Forward(const Forward&) = delete;
    Forward& operator=(const Forward&) = delete;

    int64_t batch() const;
    int64_t ctx() const;
    // Runs later calls at batch x ctx within the arena planned at construction (batch * ctx at
    // most the planned B * T tokens): batches of varying padded length without re-planning,
    // whose freed arenas would otherwise stay resident in the allocator.
    void reshape(int64_t batch, int64_t ctx);

    // tokens [B, T] -> nll [B, T-1]: nll[b, t] = -log p(tokens[b, t+1] | tokens[b, 0..t]).
    void nll(const int32_t* tokens, float* nll_out);
    // Only the listed positions, out [at.size()]: out[i] = -log p(at[i].target | tokens[b, 0..t])
    // for at[i].row = b*T + t. Any t; a row may be listed with several targets (the answers of a
    // choice after one shared context). Only they pay for the LM head, bit-identical to nll()
    // where the target is the next token. For losses that read a few positions (task answers).
    void nll_at(const int32_t* tokens, std::span<const ScoredToken> at, float* out);
    // tokens [B, T] -> logits [B, T, n_vocab].
    void logits(const int32_t* tokens, float* logits_out);

    uint64_t arena_bytes() const;  // activation memory planned for (B, T)

    // Block by block (calibration): the embeddings of tokens [B, T] into x [B*T, n_embd], then one
    // decoder layer in place on x. Between calls the caller may change that layer's weights.
    void embed(const int32_t* tokens, float* x);
    void run_layer(int64_t layer, float* x);
    // The rest of nll() / nll_at() after the last layer: final norm, LM head and loss of x
    // [B*T, n_embd].
    void head_nll(const float* x, const int32_t* tokens, float* nll_out);
    void head_nll_at(const float* x, std::span<const ScoredToken> at, float* out);
    void set_hook(LinearHook hook);  // empty function: none

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Incremental decoding with a KV cache, one sequence at a time.
class Session {
  public:
    Session(const Model& model, int64_t max_ctx, ThreadPool& pool);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    void reset();
    int64_t n_past() const;
    // Appends tokens (n_past + tokens.size() <= max_ctx) and returns the logits of the last one
    // [n_vocab], valid until the next call.
    std::span<const float> eval(std::span<const int32_t> tokens);

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace zqat
