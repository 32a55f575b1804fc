// LET folding (see quant/let.h). All arithmetic in double, rounded once to float per element.
#include "zqat/quant/let.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "zqat/core/error.h"
#include "zqat/model/model.h"

namespace zqat {

namespace {

// An owned, writable f32 copy (the source may be a read-only mapping).
Tensor owned_copy(const Tensor& t) {
    if (t.is_packed()) fail("quant", "{}: LET needs fp32 weights, the tensor is packed", t.name);
    Tensor out = Tensor::zeros(t.name, t.shape);
    if (t.numel() > 0) std::copy_n(t.f32(), t.numel(), out.mutable_f32());
    return out;
}

Tensor filled(std::string name, int64_t n, float v) {
    Tensor t = Tensor::zeros(std::move(name), {n});
    std::fill_n(t.mutable_f32(), n, v);
    return t;
}

void check_scale(const std::vector<float>& s, int64_t n, const char* what, int64_t layer) {
    if (int64_t(s.size()) != n)
        fail("quant", "layer {}: LET {} has {} channels, expected {}", layer, what, s.size(), n);
    for (float v : s)
        if (!(v > 0.0f) || !std::isfinite(v))
            fail("quant", "layer {}: LET {} scale {} is not a positive finite number", layer, what,
                 v);
}

// W [out, in] (+ b [out]) of one linear fed by X~ = (X - d) / s: W *= s per column, b += W d.
void fold_into_linear(Tensor& w, Tensor& b, const std::vector<float>& s,
                      const std::vector<float>& d) {
    const int64_t rows = w.dim(0), cols = w.dim(1);
    Tensor w2 = owned_copy(w);
    float* wp = w2.mutable_f32();
    if (!d.empty()) {
        Tensor b2 = b.data ? owned_copy(b) : Tensor::zeros(w.name + ".bias", {rows});
        float* bp = b2.mutable_f32();
        for (int64_t r = 0; r < rows; ++r) {
            double acc = bp[r];
            for (int64_t j = 0; j < cols; ++j) acc += double(wp[r * cols + j]) * double(d[j]);
            bp[r] = float(acc);
        }
        b = std::move(b2);
    }
    if (!s.empty())
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = 0; j < cols; ++j) wp[r * cols + j] *= s[j];
    w = std::move(w2);
}

// The norm in front of a site: divide its output by s and shift it by d.
void fold_into_norm(const Model& m, Tensor& norm_w, Tensor& norm_b, Tensor& shift,
                    const std::vector<float>& s, const std::vector<float>& d, const char* what) {
    const int64_t E = m.cfg.n_embd;
    std::vector<float> sv = s.empty() ? std::vector<float>(size_t(E), 1.0f) : s;
    Tensor w2 = norm_w.data ? owned_copy(norm_w) : filled(std::string(what) + "_norm", E, 1.0f);
    float* wp = w2.mutable_f32();
    for (int64_t j = 0; j < E; ++j) wp[j] = float(double(wp[j]) / double(sv[size_t(j)]));
    norm_w = std::move(w2);
    if (m.cfg.arch == Arch::opt) {  // LayerNorm bias absorbs the shift
        Tensor b2 = norm_b.data ? owned_copy(norm_b) : Tensor::zeros(std::string(what), {E});
        float* bp = b2.mutable_f32();
        for (int64_t j = 0; j < E; ++j) {
            const double dj = d.empty() ? 0.0 : double(d[size_t(j)]);
            bp[j] = float((double(bp[j]) - dj) / double(sv[size_t(j)]));
        }
        norm_b = std::move(b2);
        return;
    }
    // RMSNorm: X~ = N w / s - (e + d) / s, where e is the shift already in place.
    const bool had = shift.data != nullptr;
    if (!had && d.empty()) return;
    Tensor sh2 = had ? owned_copy(shift) : Tensor::zeros(std::string(what) + "_shift", {E});
    float* sp = sh2.mutable_f32();
    for (int64_t j = 0; j < E; ++j) {
        const double dj = d.empty() ? 0.0 : double(d[size_t(j)]);
        sp[j] = float((double(sp[j]) + dj) / double(sv[size_t(j)]));
    }
    shift = std::move(sh2);
}

}  // namespace

void apply_let(Model& m, int64_t layer, const LetParams& p) {
    const ModelConfig& c = m.cfg;
    if (layer < 0 || layer >= c.n_layer) fail("quant", "LET: layer {} out of range", layer);
    if (c.arch == Arch::opt && !c.do_layer_norm_before)
        fail("quant", "LET needs a pre-LN model: {} applies LayerNorm after attention", c.name);
    LayerWeights& L = m.layers[size_t(layer)];
    const int64_t E = c.n_embd, kvd = c.n_head_kv * c.head_dim;
    const bool attn = !p.attn_s.empty() || !p.attn_d.empty();
    const bool ffn = !p.ffn_s.empty() || !p.ffn_d.empty();
    if (!p.attn_s.empty()) check_scale(p.attn_s, E, "attn", layer);
    if (!p.ffn_s.empty()) check_scale(p.ffn_s, E, "ffn", layer);
    if (!p.vo_s.empty()) check_scale(p.vo_s, kvd, "vo", layer);
    for (const auto* d : {&p.attn_d, &p.ffn_d})
        if (!d->empty() && int64_t(d->size()) != E)
            fail("quant", "layer {}: LET shift has {} channels, expected {}", layer, d->size(), E);

    if (attn) {
        // The linears see X~; b += W d uses the unscaled W, so fold before touching the norm.
        for (auto [w, b] : {std::pair{&L.wq, &L.bq}, {&L.wk, &L.bk}, {&L.wv, &L.bv}})
            fold_into_linear(*w, *b, p.attn_s, p.attn_d);
        fold_into_norm(m, L.attn_norm, L.attn_norm_b, L.attn_shift, p.attn_s, p.attn_d, "attn");
    }
    if (ffn) {
        if (c.arch == Arch::llama) {
            fold_into_linear(L.w_gate, L.b_gate, p.ffn_s, p.ffn_d);
            fold_into_linear(L.w_up, L.b_up, p.ffn_s, p.ffn_d);
        } else {
            fold_into_linear(L.w_up, L.b_up, p.ffn_s, p.ffn_d);
        }
        fold_into_norm(m, L.ffn_norm, L.ffn_norm_b, L.ffn_shift, p.ffn_s, p.ffn_d, "ffn");
    }
    if (!p.vo_s.empty()) {
        // v rows / s: attention mixes rows of V linearly, so its output channels carry 1/s too;
        // o_proj input channel (h, i) comes from KV channel (h / group, i).
        Tensor wv = owned_copy(L.wv);
        float* vp = wv.mutable_f32();
        for (int64_t r = 0; r < kvd; ++r)
            for (int64_t j = 0; j < E; ++j)
                vp[r * E + j] = float(double(vp[r * E + j]) / double(p.vo_s[size_t(r)]));
        L.wv = std::move(wv);
        if (L.bv.data) {
            Tensor bv = owned_copy(L.bv);
            float* bp = bv.mutable_f32();
            for (int64_t r = 0; r < kvd; ++r)
                bp[r] = float(double(bp[r]) / double(p.vo_s[size_t(r)]));
            L.bv = std::move(bv);
        }
        const int64_t D = c.head_dim, group = c.n_head / c.n_head_kv, qd = c.n_head * D;
        Tensor wo = owned_copy(L.wo);
        float* op = wo.mutable_f32();
        for (int64_t r = 0; r < wo.dim(0); ++r)
            for (int64_t ch = 0; ch < qd; ++ch)
                op[r * qd + ch] *= p.vo_s[size_t((ch / D / group) * D + ch % D)];
        L.wo = std::move(wo);
    }
}

}  // namespace zqat
