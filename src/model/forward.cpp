// The causal forward pass for Llama-family and OPT models, over activations planned once.
//
// Shapes (E = n_embd, H = n_head, Hkv = n_head_kv, D = head_dim, F = n_ff, V = n_vocab, N = B*T):
//   x    [N, E]        residual stream
//   xn   [N, E]        normalised input of a sub-block
//   q    [N, H*D]  k, v [N, Hkv*D]   att [N, H*D]
//   ff_a, ff_b [N, F]  (gate, up for SwiGLU; fc1 for OPT)
//   tmp  [N, E]        sub-block output before the residual add
//   head [C, V]        LM-head rows for a chunk of C tokens
#include "zqat/model/forward.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <new>
#include <vector>

#include "zqat/core/error.h"
#include "zqat/core/ops.h"
#include "zqat/core/thread_pool.h"
#include "zqat/model/model.h"

namespace zqat {

namespace {

// LM-head rows per chunk when only the loss is needed. Each chunk streams the whole fp32 head
// (SmolLM2: 49152 x 576 = 113 MB, far beyond cache) from memory once, so chunks much smaller than
// ~256 rows turn the head into a bandwidth-bound pass; 256 rows of logits cost n_vocab KiB.
constexpr int64_t kHeadChunk = 256;

const float* opt_f32(const Tensor& t) {
    return t.data ? t.f32() : nullptr;
}

// Every activation of one (rows, head_rows) plan, carved from one 64-byte aligned arena:
// planned once, reused by every call. ff_b and emb are null where the architecture needs none.
struct Buffers {
    int64_t n = 0;  // rows planned for
    float *x = nullptr, *xn = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *att = nullptr;
    float *ff_a = nullptr, *ff_b = nullptr, *tmp = nullptr, *head = nullptr, *emb = nullptr;
    float* nll = nullptr;          // [head_rows] per-row loss of one LM-head chunk
    float* ones = nullptr;         // [n_embd] all 1: the weight of a LayerNorm without one
    std::vector<int32_t> pos;      // [rows] position of each row
    std::vector<int32_t> targets;  // [rows] target of each LM-head row of a chunk

    void plan(const ModelConfig& c, int64_t rows, int64_t head_rows) {
        n = rows;
        const int64_t qd = c.n_head * c.head_dim, kvd = c.n_head_kv * c.head_dim;
        const bool proj = c.arch == Arch::opt && c.word_embed_proj_dim != c.n_embd;
        const int64_t sizes[] = {
            rows * c.n_embd,                                              // x
            rows * c.n_embd,                                              // xn
            rows * qd,                                                    // q
            rows * kvd,                                                   // k
            rows * kvd,                                                   // v
            rows * qd,                                                    // att
            rows * c.n_ff,                                                // ff_a
            c.arch == Arch::llama ? rows * c.n_ff : 0,                    // ff_b
            rows * c.n_embd,                                              // tmp
            head_rows * c.n_vocab,                                        // head
            proj ? rows * std::max(c.word_embed_proj_dim, c.n_embd) : 0,  // emb
            head_rows,                                                    // nll
            c.n_embd,                                                     // ones
        };
        float** slots[] = {&x, &xn, &q, &k, &v, &att, &ff_a, &ff_b, &tmp, &head, &emb, &nll, &ones};
        size_t total = 0;
        for (const int64_t sz : sizes) total += round_up(size_t(sz));
        if (total > capacity) {
            arena.reset(static_cast<float*>(std::aligned_alloc(64, total * sizeof(float))));
            if (!arena) throw std::bad_alloc();
            capacity = total;
        }
        used = total;
        size_t at = 0;
        for (size_t i = 0; i < std::size(sizes); ++i) {
            *slots[i] = sizes[i] ? arena.get() + at : nullptr;
            at += round_up(size_t(sizes[i]));
        }
        std::fill_n(ones, c.n_embd, 1.0f);
        pos.resize(size_t(rows));
        targets.resize(size_t(rows));
    }
    uint64_t bytes() const { return uint64_t(used) * 4 + (pos.size() + targets.size()) * 4; }

  private:
    static size_t round_up(size_t n) { return (n + 15) / 16 * 16; }  // 64-byte slices
    struct Free {
        void operator()(float* p) const { std::free(p); }
    };
    std::unique_ptr<float[], Free> arena;
    size_t capacity = 0, used = 0;  // floats
};

// y [rows, out] = in [rows, in] . w^T + b, for an fp32 or a packed low-bit weight.
void linear(const Tensor& w, const Tensor& b, const float* in, int64_t rows, float* out,
            ThreadPool& pool) {
    const int64_t n_out = w.dim(0), n_in = w.dim(1);
    if (w.packed)
        ops::gemm_nt_packed(rows, in, n_in, *w.packed, opt_f32(b), out, n_out, &pool);
    else
        ops::gemm_nt(rows, n_out, n_in, in, n_in, w.f32(), n_in, opt_f32(b), out, n_out, &pool);
}

static_assert(kLinearSites == kActClipSites, "LayerWeights::act_clip has one ratio per site");

// What happens to a linear group's input [rows, cols] right before its GEMMs: the LET shift
// (Llama: x -= shift per channel), the Hadamard rotation (cfg.hadamard: the weights are stored
// rotated), per-token activation quantization (qspec A < 16, the layer's act_clip ratio for
// the site), then the
// calibration hook sees exactly what the GEMM will read. x is a scratch buffer owned by the layer.
struct LinearInput {
    const Model& m;
    int64_t layer;
    const LinearHook* hook;
    ThreadPool& pool;

    void operator()(LinearSite site, float* x, int64_t rows, int64_t cols,
                    const Tensor& shift = Tensor()) const {
        if (shift.data) {
            const float* d = shift.f32();
            for (int64_t r = 0; r < rows; ++r)
                for (int64_t j = 0; j < cols; ++j) x[r * cols + j] -= d[j];
        }
        if (m.cfg.hadamard) ops::hadamard_rows(rows, cols, x, cols, &pool);
        if (m.cfg.qspec.quant_acts()) {
            const Tensor& ac = m.layers[size_t(layer)].act_clip;
            const float clip = ac.data ? ac.f32()[int(site)] : 1.0f;
            ops::fake_quant_act(rows, cols, x, cols, m.cfg.qspec.a_bits, clip, &pool);
        }
        if (hook && *hook) (*hook)(layer, site, x, rows, cols);
    }
};

// RMSNorm (Llama) or LayerNorm (OPT) of rows of [rows, n_embd]. A null weight (OPT without
// elementwise affine) means all ones: buf.ones.
void norm(const Model& m, const Tensor& w, const Tensor& b, const float* in, int64_t rows,
          float* out, const Buffers& buf) {
    const ModelConfig& c = m.cfg;
    const float* wp = w.data ? w.f32() : buf.ones;
    if (c.arch == Arch::llama)
        ops::rmsnorm(rows, c.n_embd, in, wp, c.norm_eps, out);
    else
        ops::layernorm(rows, c.n_embd, in, wp, opt_f32(b), c.norm_eps, out);
}

// Embeddings of `rows` tokens at positions pos[] into buf.x.
void embed_tokens(const Model& m, const int32_t* tokens, int64_t rows, Buffers& buf,
                  ThreadPool& pool) {
    const ModelConfig& c = m.cfg;
    const int64_t we = m.tok_embd.dim(1);
    for (int64_t r = 0; r < rows; ++r) {
        const int32_t id = tokens[r];
        if (id < 0 || id >= c.n_vocab)
            fail("model", "token id {} at position {} is outside the vocabulary of {}", id, r,
                 c.n_vocab);
    }
    float* dst = c.arch == Arch::opt && we != c.n_embd ? buf.emb : buf.x;
    for (int64_t r = 0; r < rows; ++r)
        std::memcpy(dst + r * we, m.tok_embd.f32() + int64_t(tokens[r]) * we, size_t(we) * 4);
    if (c.arch != Arch::opt) return;
    if (we != c.n_embd) linear(m.project_in, Tensor(), dst, rows, buf.x, pool);
    const int64_t n_pos = m.pos_embd.dim(0);
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t p = int64_t(buf.pos[size_t(r)]) + c.pos_offset;
        if (p >= n_pos)
            fail("model", "position {} is beyond the model's {} learned positions",
                 buf.pos[size_t(r)], n_pos - c.pos_offset);
        ops::add(c.n_embd, buf.x + r * c.n_embd, m.pos_embd.f32() + p * c.n_embd,
                 buf.x + r * c.n_embd);
    }
}

// One decoder layer over B sequences of T new tokens each (rows = B*T, positions in buf.pos).
// The keys/values a sequence attends to are kv_k/kv_v [S, Hkv*D] with S = n_past + T: for the
// batched forward they are the rows just computed (n_past = 0); for a Session, its cache.
// hook (may be null) sees each linear group's input; li is the layer's index for it.
void layer(const Model& m, int64_t li, int64_t B, int64_t T, int64_t n_past, float* kv_k,
           float* kv_v, Buffers& buf, ThreadPool& pool, const LinearHook* hook) {
    const ModelConfig& c = m.cfg;
    const LayerWeights& L = m.layers[size_t(li)];
    const int64_t rows = B * T, E = c.n_embd, D = c.head_dim;
    const int64_t qd = c.n_head * D, kvd = c.n_head_kv * D;
    const bool pre_ln = c.arch == Arch::llama || c.do_layer_norm_before;
    const LinearInput prepare{m, li, hook, pool};

    // Attention sub-block. Post-LN models feed the residual stream itself to q/k/v: copy it so
    // the input can be shifted / quantized without touching the residual.
    if (pre_ln)
        norm(m, L.attn_norm, L.attn_norm_b, buf.x, rows, buf.xn, buf);
    else
        std::memcpy(buf.xn, buf.x, size_t(rows * E) * 4);
    prepare(LinearSite::attn_in, buf.xn, rows, E, L.attn_shift);
    const float* attn_in = buf.xn;
    linear(L.wq, L.bq, attn_in, rows, buf.q, pool);
    float* k_out = kv_k ? kv_k + n_past * kvd : buf.k;
    float* v_out = kv_v ? kv_v + n_past * kvd : buf.v;
    linear(L.wk, L.bk, attn_in, rows, k_out, pool);
    linear(L.wv, L.bv, attn_in, rows, v_out, pool);
    if (c.arch == Arch::llama) {
        ops::rope_neox(rows, c.n_head, D, c.rope_dim, buf.pos.data(), c.rope_theta, buf.q, qd);
        ops::rope_neox(rows, c.n_head_kv, D, c.rope_dim, buf.pos.data(), c.rope_theta, k_out, kvd);
    }
    const float scale = 1.0f / std::sqrt(float(D));
    for (int64_t b = 0; b < B; ++b) {
        const float* kb = kv_k ? kv_k : buf.k + b * T * kvd;
        const float* vb = kv_v ? kv_v : buf.v + b * T * kvd;
        ops::attention_causal(T, n_past + T, c.n_head, c.n_head_kv, D, buf.q + b * T * qd, qd, kb,
                              kvd, vb, kvd, buf.att + b * T * qd, qd, scale, &pool);
    }
    prepare(LinearSite::attn_out, buf.att, rows, qd);
    linear(L.wo, L.bo, buf.att, rows, buf.tmp, pool);
    ops::add(rows * E, buf.x, buf.tmp, buf.x);
    if (!pre_ln) norm(m, L.attn_norm, L.attn_norm_b, buf.x, rows, buf.x, buf);

    // Feed-forward sub-block.
    if (pre_ln)
        norm(m, L.ffn_norm, L.ffn_norm_b, buf.x, rows, buf.xn, buf);
    else
        std::memcpy(buf.xn, buf.x, size_t(rows * E) * 4);
    prepare(LinearSite::ffn_in, buf.xn, rows, E, L.ffn_shift);
    const float* ffn_in = buf.xn;
    if (c.arch == Arch::llama) {
        linear(L.w_gate, L.b_gate, ffn_in, rows, buf.ff_a, pool);
        linear(L.w_up, L.b_up, ffn_in, rows, buf.ff_b, pool);
        ops::silu_mul(rows * c.n_ff, buf.ff_a, buf.ff_b, buf.ff_a);
    } else {
        linear(L.w_up, L.b_up, ffn_in, rows, buf.ff_a, pool);
        ops::relu(rows * c.n_ff, buf.ff_a);
    }
    prepare(LinearSite::ffn_out, buf.ff_a, rows, c.n_ff);
    linear(L.w_down, L.b_down, buf.ff_a, rows, buf.tmp, pool);
    ops::add(rows * E, buf.x, buf.tmp, buf.x);
    if (!pre_ln) norm(m, L.ffn_norm, L.ffn_norm_b, buf.x, rows, buf.x, buf);
}

// Final norm (and OPT's project_out) of `rows` rows of buf.x -> the LM head's input. Returns a
// pointer to [rows, lm_head.dim(1)].
const float* final_hidden(const Model& m, int64_t rows, Buffers& buf, ThreadPool& pool) {
    const ModelConfig& c = m.cfg;
    const float* h = buf.x;
    if (c.final_norm) {
        norm(m, m.out_norm, m.out_norm_b, buf.x, rows, buf.xn, buf);
        h = buf.xn;
    }
    if (c.arch == Arch::opt && m.project_out.data) {
        linear(m.project_out, Tensor(), h, rows, buf.emb, pool);
        h = buf.emb;
    }
    return h;
}

}  // namespace

// ---- Forward ----------------------------------------------------------------------------------

struct Forward::Impl {
    const Model& m;
    ThreadPool& pool;
    int64_t B = 0, T = 0;
    Buffers buf;

    int64_t chunk;  // LM-head rows per chunk

    Impl(const Model& model, int64_t b, int64_t t, ThreadPool& p, int64_t head_chunk)
        : m(model), pool(p), chunk(head_chunk > 0 ? head_chunk : kHeadChunk) {
        check_shape(b, t);
        chunk = std::min(chunk, b * t);
        buf.plan(m.cfg, b * t, chunk);
        reshape(b, t);
    }
    void check_shape(int64_t b, int64_t t) const {
        if (b < 1 || t < 1) fail("model", "batch and context must be >= 1 (got {} x {})", b, t);
        if (m.cfg.arch == Arch::opt && t > m.pos_embd.dim(0) - m.cfg.pos_offset)
            fail("model", "context {} exceeds the model's {} learned positions", t,
                 m.pos_embd.dim(0) - m.cfg.pos_offset);
    }
    void reshape(int64_t b, int64_t t) {
        check_shape(b, t);
        if (b * t > buf.n)
            fail("model", "{} x {} tokens do not fit the {} planned for", b, t, buf.n);
        B = b;
        T = t;
        for (int64_t i = 0; i < b * t; ++i) buf.pos[size_t(i)] = int32_t(i % t);
    }

    LinearHook hook;

    // The loss of the residual stream in buf.x: final norm, LM head in row chunks, NLL. With an
    // empty `at`, every row r predicts tokens[r + 1] into nll_out [B, T-1]. Otherwise only the
    // listed rows go through the head, gathered into buf.tmp (free after the last layer,
    // [N, n_embd] >= [chunk, head dim]), and out[i] scores at[i].target. A row's value does not
    // depend on which other rows share its chunk, so the result is bit-identical to the full pass.
    void head_nll(const int32_t* tokens, float* nll_out, std::span<const ScoredToken> at) {
        const int64_t V = m.cfg.n_vocab, N = B * T;
        const float* h = final_hidden(m, N, buf, pool);
        const int64_t hd = m.lm_head.dim(1);
        for (size_t i = 0; i < at.size(); ++i)  // checked before anything is written
            if (at[i].row < 0 || at[i].row >= N || at[i].target < 0 || at[i].target >= V)
                fail("model", "scored token {}: row {} / token {} outside {} x {} rows / {} tokens",
                     i, at[i].row, at[i].target, B, T, V);
        const int64_t n = at.empty() ? N : int64_t(at.size());
        for (int64_t i0 = 0; i0 < n; i0 += chunk) {
            const int64_t nr = std::min(chunk, n - i0);
            const float* a = h + i0 * hd;
            if (at.empty()) {
                // The last row of each sequence predicts nothing: it gets target 0 for the
                // kernel and its value is dropped.
                for (int64_t i = 0; i < nr; ++i) {
                    const int64_t r = i0 + i;
                    buf.targets[size_t(i)] = (r % T == T - 1) ? 0 : tokens[r + 1];
                }
            } else {
                ZQAT_ASSERT(hd <= m.cfg.n_embd);  // the gather fits buf.tmp (OPT: proj <= embd)
                for (int64_t i = 0; i < nr; ++i) {
                    const ScoredToken& s = at[size_t(i0 + i)];
                    std::memcpy(buf.tmp + i * hd, h + int64_t(s.row) * hd, size_t(hd) * 4);
                    buf.targets[size_t(i)] = s.target;
                }
                a = buf.tmp;
            }
            ops::gemm_nt(nr, V, hd, a, hd, m.lm_head.f32(), hd, nullptr, buf.head, V, &pool);
            ops::cross_entropy(nr, V, buf.head, buf.targets.data(), buf.nll, &pool);
            for (int64_t i = 0; i < nr; ++i) {
                if (!at.empty()) {
                    nll_out[i0 + i] = buf.nll[i];
                    continue;
                }
                const int64_t r = i0 + i, b = r / T, t = r % T;
                if (t < T - 1) nll_out[b * (T - 1) + t] = buf.nll[i];
            }
        }
    }

    void body(const int32_t* tokens) {
        embed_tokens(m, tokens, B * T, buf, pool);
        for (int64_t l = 0; l < m.cfg.n_layer; ++l)
            layer(m, l, B, T, 0, nullptr, nullptr, buf, pool, &hook);
    }
};

Forward::Forward(const Model& model, int64_t batch, int64_t ctx, ThreadPool& pool,
                 int64_t head_chunk)
    : impl_(std::make_unique<Impl>(model, batch, ctx, pool, head_chunk)) {}
Forward::~Forward() = default;
int64_t Forward::batch() const {
    return impl_->B;
}
int64_t Forward::ctx() const {
    return impl_->T;
}
void Forward::reshape(int64_t batch, int64_t ctx) {
    impl_->reshape(batch, ctx);
}
uint64_t Forward::arena_bytes() const {
    return impl_->buf.bytes();
}

void Forward::set_hook(LinearHook hook) {
    impl_->hook = std::move(hook);
}

void Forward::embed(const int32_t* tokens, float* x) {
    Impl& s = *impl_;
    embed_tokens(s.m, tokens, s.B * s.T, s.buf, s.pool);
    std::memcpy(x, s.buf.x, size_t(s.B * s.T * s.m.cfg.n_embd) * 4);
}

void Forward::run_layer(int64_t l, float* x) {
    Impl& s = *impl_;
    if (l < 0 || l >= s.m.cfg.n_layer)
        fail("model", "layer {} out of range (model has {})", l, s.m.cfg.n_layer);
    const size_t bytes = size_t(s.B * s.T * s.m.cfg.n_embd) * 4;
    std::memcpy(s.buf.x, x, bytes);
    layer(s.m, l, s.B, s.T, 0, nullptr, nullptr, s.buf, s.pool, &s.hook);
    std::memcpy(x, s.buf.x, bytes);
}

void Forward::nll(const int32_t* tokens, float* nll_out) {
    impl_->body(tokens);
    impl_->head_nll(tokens, nll_out, {});
}

void Forward::nll_at(const int32_t* tokens, std::span<const ScoredToken> at, float* out) {
    impl_->body(tokens);
    impl_->head_nll(tokens, out, at);
}

void Forward::head_nll(const float* x, const int32_t* tokens, float* nll_out) {
    Impl& s = *impl_;
    std::memcpy(s.buf.x, x, size_t(s.B * s.T * s.m.cfg.n_embd) * 4);
    s.head_nll(tokens, nll_out, {});
}

void Forward::head_nll_at(const float* x, std::span<const ScoredToken> at, float* out) {
    Impl& s = *impl_;
    std::memcpy(s.buf.x, x, size_t(s.B * s.T * s.m.cfg.n_embd) * 4);
    s.head_nll(nullptr, out, at);
}

void Forward::logits(const int32_t* tokens, float* logits_out) {
    Impl& s = *impl_;
    const int64_t N = s.B * s.T, V = s.m.cfg.n_vocab;
    s.body(tokens);
    const float* h = final_hidden(s.m, N, s.buf, s.pool);
    const int64_t hd = s.m.lm_head.dim(1);
    ops::gemm_nt(N, V, hd, h, hd, s.m.lm_head.f32(), hd, nullptr, logits_out, V, &s.pool);
}

// ---- Session ----------------------------------------------------------------------------------

struct Session::Impl {
    const Model& m;
    ThreadPool& pool;
    int64_t max_ctx, n_past = 0, planned = 0;
    Buffers buf;
    std::vector<std::vector<float>> k_cache, v_cache;  // per layer [max_ctx, Hkv*D]
    std::vector<float> last;                           // [V]

    Impl(const Model& model, int64_t ctx, ThreadPool& p) : m(model), pool(p), max_ctx(ctx) {
        if (ctx < 1) fail("model", "session context must be >= 1, got {}", ctx);
        if (m.cfg.arch == Arch::opt && ctx > m.pos_embd.dim(0) - m.cfg.pos_offset)
            fail("model", "session context {} exceeds the model's {} learned positions", ctx,
                 m.pos_embd.dim(0) - m.cfg.pos_offset);
        const int64_t kvd = m.cfg.n_head_kv * m.cfg.head_dim;
        k_cache.assign(size_t(m.cfg.n_layer), std::vector<float>(size_t(ctx * kvd)));
        v_cache = k_cache;
        last.resize(size_t(m.cfg.n_vocab));
    }
};

Session::Session(const Model& model, int64_t max_ctx, ThreadPool& pool)
    : impl_(std::make_unique<Impl>(model, max_ctx, pool)) {}
Session::~Session() = default;
void Session::reset() {
    impl_->n_past = 0;
}
int64_t Session::n_past() const {
    return impl_->n_past;
}

std::span<const float> Session::eval(std::span<const int32_t> tokens) {
    Impl& s = *impl_;
    const int64_t n = int64_t(tokens.size());
    if (n == 0) fail("model", "Session::eval needs at least one token");
    if (s.n_past + n > s.max_ctx)
        fail("model", "context full: {} tokens cached + {} new > {}", s.n_past, n, s.max_ctx);
    if (n > s.planned) {  // grows only for a longer prompt; single-token steps reuse it
        s.buf.plan(s.m.cfg, n, 1);
        s.planned = n;
    }
    for (int64_t i = 0; i < n; ++i) s.buf.pos[size_t(i)] = int32_t(s.n_past + i);
    embed_tokens(s.m, tokens.data(), n, s.buf, s.pool);
    for (size_t l = 0; l < s.m.layers.size(); ++l)
        layer(s.m, int64_t(l), 1, n, s.n_past, s.k_cache[l].data(), s.v_cache[l].data(), s.buf,
              s.pool, nullptr);
    s.n_past += n;
    // Only the last token's logits are needed: move its row to the front and finish one row.
    const int64_t E = s.m.cfg.n_embd;
    if (n > 1) std::memmove(s.buf.x, s.buf.x + (n - 1) * E, size_t(E) * 4);
    const float* h = final_hidden(s.m, 1, s.buf, s.pool);
    const int64_t hd = s.m.lm_head.dim(1);
    ops::gemm_nt(1, s.m.cfg.n_vocab, hd, h, hd, s.m.lm_head.f32(), hd, nullptr, s.last.data(),
                 s.m.cfg.n_vocab, &s.pool);
    return s.last;
}

}  // namespace zqat
