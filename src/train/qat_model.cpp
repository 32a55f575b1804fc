// QatModel (train/qat_model.h): the trainable state, its materialization into forward tensors and
// the seeded updates. Every element is computed by one task in a fixed order, and z is keyed by
// element, so results do not depend on the thread count.
#include "zqat/train/qat_model.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "zqat/core/error.h"
#include "zqat/core/ops.h"
#include "zqat/core/packed.h"
#include "zqat/core/thread_pool.h"

namespace zqat {

namespace {

enum Slot { kQ = 0, kK, kV, kO, kGate, kUp, kDown };
constexpr const char* kSlotNames[kSlots] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                            "ffn_gate", "ffn_up", "ffn_down"};
// A logit whose sigmoid is exactly 1.0f: a ratio of 1 (no clipping) from the init.
constexpr float kNoClipLogit = 20.0f;
constexpr float kMinScale = 1e-3f;
// The range of an activation clipping ratio under perturbation: above 1 only wastes codes, but
// allowing it keeps the + and - probes symmetric around a ratio of 1.
constexpr float kMinActClip = 0.05f, kMaxActClip = 2.0f;
// z of the act_clip ratios is keyed by this one tensor id in every layer (layer 0's id 32 is
// free): the perturbations and updates of a site's ratio are the same in all layers, so the
// search has kActClipSites dimensions around the init's per-layer ratios, not n_layer times
// that. At W4A4 the two losses of a pair differ by ~0.08 nats for any perturbation, however small
// (rounding flips; docs/TRAINING.md), and SPSA's variance grows with the dimension: 4 dimensions
// leave a signal ZO can find in a few hundred steps, 120 would not.
constexpr uint32_t kActClipId = 32;

// clamp that maps NaN to the lower bound (std::clamp would pass it on to fake_quant_act).
float clamp_act_clip(float r) {
    return std::fmin(std::fmax(r, kMinActClip), kMaxActClip);
}
constexpr int64_t kChunk = 1 << 14;  // elements per task when generating z

Tensor* slot_tensor(LayerWeights& L, int slot) {
    Tensor* t[kSlots] = {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down};
    return t[slot];
}
Tensor* slot_bias(LayerWeights& L, int slot) {
    Tensor* t[kSlots] = {&L.bq, &L.bk, &L.bv, &L.bo, &L.b_gate, &L.b_up, &L.b_down};
    return t[slot];
}

std::vector<float> copy_of(const Tensor& t) {
    if (t.empty()) return {};
    const float* p = t.f32();
    return std::vector<float>(p, p + t.numel());
}

Tensor tensor_of(const std::string& name, const std::vector<float>& v) {
    if (v.empty()) return Tensor();
    Tensor t = Tensor::zeros(name, {int64_t(v.size())});
    std::copy(v.begin(), v.end(), t.mutable_f32());
    return t;
}

float sigmoid(float x) {
    return 1.0f / (1.0f + std::exp(-x));
}

float logit(float r) {
    if (r >= 1.0f) return kNoClipLogit;
    r = std::max(r, 1e-4f);
    return std::log(r / (1.0f - r));
}

// fn(first, n) over [0, n) in tasks of kChunk elements.
template <class F>
void chunks(ThreadPool& pool, int64_t n, F&& fn) {
    const int64_t tasks = (n + kChunk - 1) / kChunk;
    pool.parallel_for(tasks, [&](int64_t t, int) {
        const int64_t at = t * kChunk;
        fn(at, std::min(kChunk, n - at));
    });
}

// 64-bit FNV-1a over 8-byte words (the tail zero-padded): a checkpoint checksum.
struct Checksum {
    uint64_t h = 0xcbf29ce484222325ull;
    void add(const void* p, size_t n) {
        const auto* b = static_cast<const unsigned char*>(p);
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            std::memcpy(&w, b + i, 8);
            h = (h ^ w) * 0x100000001b3ull;
        }
        if (i < n) {
            uint64_t w = 0;
            std::memcpy(&w, b + i, n - i);
            h = (h ^ w) * 0x100000001b3ull;
        }
    }
};

}  // namespace

struct QatModel::LetEff {
    std::vector<float> s_attn, d_attn, s_ffn, d_ffn, s_vo;  // empty: identity
    std::vector<float> s_o;                                 // s_vo per o_proj input column
};

std::array<int64_t, 2> QatModel::shape(int slot) const {
    const ModelConfig& c = work_.cfg;
    const int64_t qd = c.n_head * c.head_dim, kvd = c.n_head_kv * c.head_dim;
    switch (slot) {
        case kQ:
            return {qd, c.n_embd};
        case kK:
        case kV:
            return {kvd, c.n_embd};
        case kO:
            return {c.n_embd, qd};
        case kGate:
        case kUp:
            return {c.n_ff, c.n_embd};
        default:
            return {c.n_embd, c.n_ff};
    }
}

bool QatModel::has(int slot) const {
    return slot != kGate || work_.cfg.arch == Arch::llama;
}

bool QatModel::needs_bias(int64_t l, int slot) const {
    const Layer& L = layers_[size_t(l)];
    if (!L.bias[size_t(slot)].empty()) return true;
    const bool shifted_site =
        slot == kQ || slot == kK || slot == kV || slot == kGate || slot == kUp;
    const bool ffn = slot == kGate || slot == kUp;
    return shifted_site && !(ffn ? L.d_ffn : L.d_attn).empty();
}

QatModel::QatModel(Model m, const std::vector<std::vector<std::vector<float>>>& clip,
                   TrainableGroups groups, ThreadPool& pool, float unclipped_logit)
    : groups_(groups), pool_(pool), work_(std::move(m)), spec_(work_.cfg.qspec) {
    const ModelConfig& c = work_.cfg;
    if (work_.cfg.hadamard && groups_.smooth)
        fail("train",
             "LET (smoothing) cannot train on a Hadamard-rotated model: its scales act on "
             "the unrotated channels");
    if (!spec_.quant_weights() && groups_.clip)
        fail("train", "clipping (LWC) needs weight quantization; {} has none", spec_.str());
    for (int s = 0; s < kSlots; ++s)
        if (!groups_.slots[size_t(s)] && (groups_.clip || groups_.smooth))
            fail("train", "freezing {} needs clipping and smoothing frozen too", kSlotNames[s]);
    if (groups_.smooth && c.arch == Arch::opt && (!c.do_layer_norm_before || !c.norm_affine))
        fail("train", "LET (smoothing) needs pre-LayerNorms with weights; train without it");
    if (groups_.act_clip && !spec_.quant_acts())
        fail("train", "activation clipping needs activation quantization; {} has none",
             spec_.str());
    const int64_t E = c.n_embd, kvd = c.n_head_kv * c.head_dim;
    layers_.resize(size_t(c.n_layer));
    names_.resize(size_t(c.n_layer));
    for (int64_t l = 0; l < c.n_layer; ++l) {
        LayerWeights& src = work_.layers[size_t(l)];
        Layer& L = layers_[size_t(l)];
        for (int s = 0; s < kSlots; ++s) {
            if (!has(s)) continue;
            Tensor& w = *slot_tensor(src, s);
            if (w.is_packed())
                fail("train", "{}: {} is packed; training starts from fp32 weights", work_.source,
                     w.name);
            const auto [rows, cols] = shape(s);
            if (w.dim(0) != rows || w.dim(1) != cols)
                fail("train", "{} has shape {}, expected [{}, {}]", w.name, w.shape_str(), rows,
                     cols);
            names_[size_t(l)][size_t(s)] = w.name;
            L.w[size_t(s)] = copy_of(w);
            w = Tensor();  // the master copy replaces it
            L.bias[size_t(s)] = copy_of(*slot_bias(src, s));
            const int64_t ng = rows * (cols / spec_.group_for(cols, names_[size_t(l)][size_t(s)]));
            // QuantReport::clip lists the linears a layer has (OPT: no gate).
            const size_t ci = size_t(c.arch == Arch::opt && s > kGate ? s - 1 : s);
            const std::vector<float>* r = size_t(l) < clip.size() && ci < clip[size_t(l)].size()
                                              ? &clip[size_t(l)][ci]
                                              : nullptr;
            if (r && !r->empty()) {
                if (int64_t(r->size()) != ng)
                    fail("train", "{}: {} clipping ratios, expected {}",
                         names_[size_t(l)][size_t(s)], r->size(), ng);
                L.a[size_t(s)].resize(size_t(ng));
                for (int64_t i = 0; i < ng; ++i) L.a[size_t(s)][size_t(i)] = logit((*r)[size_t(i)]);
                L.c[size_t(s)] = L.a[size_t(s)];
            } else if (groups_.clip) {
                L.a[size_t(s)].assign(size_t(ng), unclipped_logit);
                L.c[size_t(s)] = L.a[size_t(s)];
            }
        }
        L.attn_norm = copy_of(src.attn_norm);
        L.attn_norm_b = copy_of(src.attn_norm_b);
        L.ffn_norm = copy_of(src.ffn_norm);
        L.ffn_norm_b = copy_of(src.ffn_norm_b);
        L.attn_shift = copy_of(src.attn_shift);
        L.ffn_shift = copy_of(src.ffn_shift);
        if (spec_.quant_acts()) {
            L.ac = copy_of(src.act_clip);
            if (L.ac.empty() && groups_.act_clip) L.ac.assign(size_t(kActClipSites), 1.0f);
        }
        if (groups_.smooth) {
            L.s_attn.assign(size_t(E), 1.0f);
            L.s_ffn.assign(size_t(E), 1.0f);
            L.s_vo.assign(size_t(kvd), 1.0f);
            if (spec_.quant_acts()) {  // a shift only helps activation quantization (as the init)
                L.d_attn.assign(size_t(E), 0.0f);
                L.d_ffn.assign(size_t(E), 0.0f);
            }
        }
    }
    // Forward tensors of one layer for each sign, shared by all layers (one is live at a time).
    for (LayerWeights& S : scratch_) {
        for (int s = 0; s < kSlots; ++s) {
            if (!has(s)) continue;
            const auto [rows, cols] = shape(s);
            // A frozen linear's forward tensor is its packed weight: no fp32 scratch for it.
            if (groups_.slots[size_t(s)])
                *slot_tensor(S, s) = Tensor::zeros(kSlotNames[s], {rows, cols});
            *slot_bias(S, s) = Tensor::zeros(std::string(kSlotNames[s]) + ".bias", {rows});
        }
        S.attn_norm = Tensor::zeros("attn_norm", {E});
        S.attn_norm_b = Tensor::zeros("attn_norm_b", {E});
        S.ffn_norm = Tensor::zeros("ffn_norm", {E});
        S.ffn_norm_b = Tensor::zeros("ffn_norm_b", {E});
        S.attn_shift = Tensor::zeros("attn_shift", {E});
        S.ffn_shift = Tensor::zeros("ffn_shift", {E});
        S.act_clip = Tensor::zeros("act_clip", {kActClipSites});
    }
    // Frozen linears: quantized once with their clipping ratios, packed, fp32 master freed.
    const std::array<float, kParamGroups> no_eps{};
    for (int64_t l = 0; l < c.n_layer; ++l) {
        Layer& L = layers_[size_t(l)];
        for (int s = 0; s < kSlots; ++s) {
            if (!has(s) || groups_.slots[size_t(s)]) continue;
            L.frozen[size_t(s)] = quantized_linear(l, s, let_eff(l, 0, no_eps), nullptr);
            L.w[size_t(s)] = {};
            L.w[size_t(s)].shrink_to_fit();
            L.a[size_t(s)] = {};
            L.c[size_t(s)] = {};
        }
    }
    // A fingerprint of the frozen linears, kept in checkpoints: a state is only loaded into a
    // model whose frozen part is the one it was trained with.
    Checksum fh;
    for (int64_t l = 0; l < c.n_layer; ++l)
        for (int s = 0; s < kSlots; ++s) {
            const Tensor& t = layers_[size_t(l)].frozen[size_t(s)];
            if (t.empty()) continue;
            const int64_t id = l * 64 + s;
            fh.add(&id, sizeof id);
            if (t.is_packed()) {
                const PackedWeight& p = *t.packed;
                fh.add(p.codes, p.code_bytes());
                fh.add(p.scales, size_t(p.rows * p.n_groups()) * 2);
                fh.add(p.zeros, size_t(p.rows * p.n_groups()) * 2);
            } else {
                fh.add(t.f32(), size_t(t.numel()) * 4);
            }
        }
    frozen_hash_ = frozen_bytes() > 0 ? fh.h : 0;
    work_.cfg.quant_method = "zeroqat";
}

std::vector<QatModel::Param> QatModel::params(int64_t l) {
    Layer& L = layers_[size_t(l)];
    std::vector<Param> out;
    const uint32_t base = uint32_t(l) * 64;
    for (int s = 0; s < kSlots; ++s) {
        if (groups_.weights && !L.w[size_t(s)].empty())
            out.push_back({&L.w[size_t(s)], base + uint32_t(s), ParamGroup::weights});
    }
    for (int s = 0; s < kSlots; ++s) {
        if (!groups_.clip || L.a[size_t(s)].empty()) continue;
        out.push_back({&L.a[size_t(s)], base + 8 + uint32_t(s), ParamGroup::clip});
        out.push_back({&L.c[size_t(s)], base + 16 + uint32_t(s), ParamGroup::clip});
    }
    if (groups_.smooth) {
        std::vector<float>* let[] = {&L.s_attn, &L.d_attn, &L.s_ffn, &L.d_ffn, &L.s_vo};
        for (uint32_t i = 0; i < 5; ++i)
            if (!let[i]->empty()) out.push_back({let[i], base + 24 + i, ParamGroup::smooth});
    }
    // One tensor id for every layer's act_clip: a direction moves site s's ratio by the same
    // amount in all layers (see kActClipId).
    if (groups_.act_clip && !L.ac.empty()) out.push_back({&L.ac, kActClipId, ParamGroup::act_clip});
    return out;
}

const float* QatModel::z_of(uint32_t id) const {
    for (const auto& [tid, at] : z_at_)
        if (tid == id) return z_.data() + at;
    return nullptr;
}

QatModel::LetEff QatModel::let_eff(int64_t l, int sign,
                                   const std::array<float, kParamGroups>& eps) const {
    const Layer& L = layers_[size_t(l)];
    const uint32_t base = uint32_t(l) * 64;
    const float pe = float(sign) * eps[int(ParamGroup::smooth)];
    auto eff = [&](const std::vector<float>& v, uint32_t id, bool scale) {
        std::vector<float> out = v;
        const float* z = sign != 0 ? z_of(id) : nullptr;
        for (size_t j = 0; j < out.size(); ++j) {
            if (z) {
                const float step = pe * z[j];
                out[j] = out[j] + step;
            }
            if (scale) out[j] = std::max(out[j], kMinScale);
        }
        return out;
    };
    LetEff e;
    e.s_attn = eff(L.s_attn, base + 24, true);
    e.d_attn = eff(L.d_attn, base + 25, false);
    e.s_ffn = eff(L.s_ffn, base + 26, true);
    e.d_ffn = eff(L.d_ffn, base + 27, false);
    e.s_vo = eff(L.s_vo, base + 28, true);
    if (!e.s_vo.empty()) {
        const ModelConfig& c = work_.cfg;
        const int64_t D = c.head_dim, group = c.n_head / c.n_head_kv;
        e.s_o.resize(size_t(c.n_head * D));
        for (int64_t ch = 0; ch < c.n_head * D; ++ch)
            e.s_o[size_t(ch)] = e.s_vo[size_t((ch / D / group) * D + ch % D)];
    }
    return e;
}

void QatModel::linear_out(int64_t l, int slot, uint64_t seed,
                          const std::array<float, kParamGroups>& eps,
                          std::span<const LinearOut> outs) const {
    const Layer& L = layers_[size_t(l)];
    // Plain variables, not a structured binding: clang < 16 cannot capture those in a lambda.
    const int64_t rows = shape(slot)[0], cols = shape(slot)[1];
    const uint32_t base = uint32_t(l) * 64;
    const float* W = L.w[size_t(slot)].data();
    bool perturbed = false;
    for (const LinearOut& o : outs) perturbed = perturbed || o.sign != 0;
    // z of W, the bulk of a layer's z, is made here block by block (keyed by element, so the
    // blocking does not change it) and never stored.
    const bool zw = perturbed && groups_.weights;
    const bool attn = slot == kQ || slot == kK || slot == kV, ffn = slot == kGate || slot == kUp;
    const bool quant = spec_.quant_weights();
    const int64_t group = quant ? spec_.group_for(cols, names_[size_t(l)][size_t(slot)]) : cols;
    const int64_t ng = cols / group;
    // Per output: the LET scale / shift / v-row divisor it sees, its LWC factors, its eps.
    struct Per {
        const float *cs = nullptr, *d = nullptr, *rs = nullptr;
        std::vector<float> gamma, beta;
        float pe_w = 0;
    };
    std::vector<Per> per(outs.size());
    for (size_t i = 0; i < outs.size(); ++i) {
        const LetEff& let = *outs[i].let;
        Per& p = per[i];
        const std::vector<float>& sv = attn ? let.s_attn : ffn ? let.s_ffn : let.s_o;
        if ((attn || ffn || slot == kO) && !sv.empty()) p.cs = sv.data();
        const std::vector<float>& dv = ffn ? let.d_ffn : let.d_attn;
        if ((attn || ffn) && !dv.empty()) p.d = dv.data();
        if (slot == kV && !let.s_vo.empty()) p.rs = let.s_vo.data();
        p.pe_w = float(outs[i].sign) * eps[int(ParamGroup::weights)];
        const std::vector<float>& a = L.a[size_t(slot)];
        if (a.empty() || !quant) continue;
        const float* za = outs[i].sign != 0 ? z_of(base + 8 + uint32_t(slot)) : nullptr;
        const float* zc = outs[i].sign != 0 ? z_of(base + 16 + uint32_t(slot)) : nullptr;
        const float pe_c = float(outs[i].sign) * eps[int(ParamGroup::clip)];
        p.gamma.resize(a.size());
        p.beta.resize(a.size());
        for (size_t k = 0; k < a.size(); ++k) {
            float xa = a[k], xc = L.c[size_t(slot)][k];
            if (za) {
                const float sa = pe_c * za[k], sc = pe_c * zc[k];
                xa = xa + sa;
                xc = xc + sc;
            }
            p.gamma[k] = sigmoid(xa);
            p.beta[k] = sigmoid(xc);
        }
    }
    const std::vector<float>& b0 = L.bias[size_t(slot)];
    // Tasks of whole rows, about kChunk elements: the block's z, W and perturbed rows stay in
    // cache between the perturbation and the quantization, for every output.
    const int64_t block = std::max<int64_t>(1, kChunk / cols);
    pool_.parallel_for((rows + block - 1) / block, [&](int64_t t, int) {
        thread_local std::vector<float> zb, wb;
        const int64_t r0 = t * block, r1 = std::min(rows, r0 + block), n = (r1 - r0) * cols;
        if (zw) {
            zb.resize(size_t(n));
            ops::fill_normal(seed, base + uint32_t(slot), uint64_t(r0 * cols), n, zb.data());
        }
        wb.resize(size_t(n));
        for (size_t i = 0; i < outs.size(); ++i) {
            const LinearOut& o = outs[i];
            const Per& p = per[i];
            // Per row: perturb, the LET scale and the shift's bias term (ops::perturb_row),
            // then the division of v rows by the o-side scale.
            float* dst = quant ? wb.data() : o.w_hat + r0 * cols;  // W16: the weights as they are
            for (int64_t r = r0; r < r1; ++r) {
                float* tr = dst + (r - r0) * cols;
                const float* z = zw && o.sign != 0 ? zb.data() + (r - r0) * cols : nullptr;
                const float dot = ops::perturb_row(cols, W + r * cols, z, p.pe_w, p.cs, p.d, tr);
                if (p.rs) {
                    const float div = p.rs[r];
                    for (int64_t k = 0; k < cols; ++k) tr[k] = tr[k] / div;
                }
                if (o.bias) {
                    float b = b0.empty() ? 0.0f : b0[size_t(r)];
                    if (p.d) b = b + dot;
                    if (p.rs) b = b / p.rs[r];
                    o.bias[r] = b;
                }
            }
            if (!quant) continue;
            const size_t g0 = size_t(r0 * ng), e0 = size_t(r0 * cols);
            ops::quantize_weight(
                r1 - r0, cols, wb.data(), cols, spec_.w_bits, group, spec_.sym,
                p.gamma.empty() ? nullptr : p.gamma.data() + g0,
                p.beta.empty() ? nullptr : p.beta.data() + g0, o.codes ? o.codes + e0 : nullptr,
                o.scales ? o.scales + g0 : nullptr, o.zeros ? o.zeros + g0 : nullptr,
                o.w_hat ? o.w_hat + e0 : nullptr, nullptr);
        }
    });
}

Tensor QatModel::quantized_linear(int64_t l, int slot, const LetEff& let, float* bias_out) const {
    const int64_t rows = shape(slot)[0], cols = shape(slot)[1];
    const std::string& name = names_[size_t(l)][size_t(slot)];
    const std::array<float, kParamGroups> no_eps{};
    LinearOut o;
    o.let = &let;
    o.bias = bias_out;
    if (!spec_.quant_weights()) {
        Tensor t = Tensor::zeros(name, {rows, cols});
        o.w_hat = t.mutable_f32();
        linear_out(l, slot, 0, no_eps, {&o, 1});
        return t;
    }
    const int64_t group = spec_.group_for(cols, name);
    std::vector<uint8_t> codes(size_t(rows * cols));
    std::vector<uint16_t> scales(size_t(rows * (cols / group))), zeros(scales.size());
    o.codes = codes.data();
    o.scales = scales.data();
    o.zeros = zeros.data();
    linear_out(l, slot, 0, no_eps, {&o, 1});
    Tensor t;
    t.name = name;
    t.shape = {rows, cols};
    auto pw = std::make_shared<const PackedWeight>(PackedWeight::from_codes(
        spec_.w_bits, rows, cols, group, codes.data(), scales.data(), zeros.data()));
    t.nbytes = pw->nbytes();
    t.packed = std::move(pw);
    return t;
}

void QatModel::materialize(int64_t l, int sign, uint64_t seed,
                           const std::array<float, kParamGroups>& eps) {
    const ModelConfig& c = work_.cfg;
    if (l < 0 || l >= c.n_layer) fail("train", "layer {} out of range", l);
    if (sign != 0 && other_.layer == l && other_.seed == seed && other_.sign == sign &&
        other_.eps == eps) {  // made with the other sign: swap it in
        work_.layers[size_t(l)] = other_.tensors;
        other_.layer = -1;
        return;
    }
    other_.layer = -1;
    if (sign != 0) {
        // z of the small arrays (LWC logits, LET); the weights' z is made in linear_out.
        const std::vector<Param> ps = params(l);
        size_t total = 0;
        z_at_.clear();
        for (const Param& p : ps) {
            if (p.group == ParamGroup::weights) continue;
            z_at_.push_back({p.id, total});
            total += p.v->size();
        }
        z_.resize(total);
        size_t i = 0;
        for (const Param& p : ps) {
            if (p.group == ParamGroup::weights) continue;
            float* z = z_.data() + z_at_[i++].second;
            chunks(pool_, int64_t(p.v->size()), [&](int64_t at, int64_t n) {
                ops::fill_normal(seed, p.id, uint64_t(at), n, z + at);
            });
        }
    }
    // A perturbed layer is made for both signs in one pass over its weights (their z made
    // once), not in two: the pair of forwards reads W and z once per step. The other sign's
    // tensors wait in scratch_[1] for the next call.
    const int n_out = sign != 0 ? 2 : 1;
    LetEff let[2];
    LayerWeights made[2];
    for (int k = 0; k < n_out; ++k) let[k] = let_eff(l, k == 0 ? sign : -sign, eps);
    const Layer& L = layers_[size_t(l)];
    for (int s = 0; s < kSlots; ++s) {
        if (!has(s)) continue;
        const bool nb = needs_bias(l, s);
        LinearOut o[2];
        for (int k = 0; k < n_out; ++k) {
            Tensor& b = *slot_bias(scratch_[k], s);
            if (!L.frozen[size_t(s)].empty()) {  // frozen: its packed tensor, its bias as it is
                *slot_tensor(made[k], s) = L.frozen[size_t(s)];
                if (nb) {
                    std::copy(L.bias[size_t(s)].begin(), L.bias[size_t(s)].end(), b.mutable_f32());
                    *slot_bias(made[k], s) = b;
                }
                continue;
            }
            Tensor& w = *slot_tensor(scratch_[k], s);
            o[k].sign = k == 0 ? sign : -sign;
            o[k].let = &let[k];
            o[k].w_hat = w.mutable_f32();
            o[k].bias = nb ? b.mutable_f32() : nullptr;
            *slot_tensor(made[k], s) = w;
            if (nb) *slot_bias(made[k], s) = b;
        }
        if (L.frozen[size_t(s)].empty()) linear_out(l, s, seed, eps, {o, size_t(n_out)});
    }
    for (int k = 0; k < n_out; ++k) {
        layer_norms(l, let[k], scratch_[k], made[k]);
        if (L.ac.empty()) continue;
        // r~ = clamp(r + p eps z): z is in z_ when the group trains and the call is perturbed
        // (apply keeps the stored r inside the range too).
        const float* z = sign != 0 ? z_of(kActClipId) : nullptr;
        const float pe = float(k == 0 ? sign : -sign) * eps[int(ParamGroup::act_clip)];
        float* r = scratch_[k].act_clip.mutable_f32();
        for (size_t i = 0; i < L.ac.size(); ++i) {
            float v = L.ac[i];
            if (z) {
                const float step = pe * z[i];
                v = v + step;
            }
            r[i] = clamp_act_clip(v);
        }
        made[k].act_clip = scratch_[k].act_clip;
    }
    work_.layers[size_t(l)] = std::move(made[0]);
    if (n_out == 2) other_ = {l, seed, -sign, eps, std::move(made[1])};
}

// Norms and shifts: norm0 / s~, shift (shift0 + d~) / s~ (Llama), bias (b0 - d~) / s~ (OPT),
// written into scratch and pointed at by out.
void QatModel::layer_norms(int64_t l, const LetEff& let, LayerWeights& scratch,
                           LayerWeights& out) const {
    const ModelConfig& c = work_.cfg;
    const Layer& L = layers_[size_t(l)];
    auto norm = [&](const std::vector<float>& w0, const std::vector<float>& b0,
                    const std::vector<float>& sh0, const std::vector<float>& s,
                    const std::vector<float>& d, Tensor& tw, Tensor& tb, Tensor& tsh, Tensor& ow,
                    Tensor& ob, Tensor& osh) {
        if (!w0.empty()) {
            float* p = tw.mutable_f32();
            for (size_t j = 0; j < w0.size(); ++j) p[j] = s.empty() ? w0[j] : w0[j] / s[j];
            ow = tw;
        }
        if (c.arch == Arch::opt) {
            if (!b0.empty() || !d.empty()) {
                float* p = tb.mutable_f32();
                for (size_t j = 0; j < size_t(c.n_embd); ++j) {
                    float v = b0.empty() ? 0.0f : b0[j];
                    if (!d.empty()) v = v - d[j];
                    p[j] = s.empty() ? v : v / s[j];
                }
                ob = tb;
            }
        } else if (!sh0.empty() || !d.empty()) {
            float* p = tsh.mutable_f32();
            for (size_t j = 0; j < size_t(c.n_embd); ++j) {
                float v = sh0.empty() ? 0.0f : sh0[j];
                if (!d.empty()) v = v + d[j];
                p[j] = s.empty() ? v : v / s[j];
            }
            osh = tsh;
        }
    };
    norm(L.attn_norm, L.attn_norm_b, L.attn_shift, let.s_attn, let.d_attn, scratch.attn_norm,
         scratch.attn_norm_b, scratch.attn_shift, out.attn_norm, out.attn_norm_b, out.attn_shift);
    norm(L.ffn_norm, L.ffn_norm_b, L.ffn_shift, let.s_ffn, let.d_ffn, scratch.ffn_norm,
         scratch.ffn_norm_b, scratch.ffn_shift, out.ffn_norm, out.ffn_norm_b, out.ffn_shift);
}

void QatModel::apply(int64_t l, const std::vector<ZoUpdate>& updates, float momentum) {
    if (updates.empty()) return;
    other_.layer = -1;  // made from the weights before this update
    std::vector<Param> ps = params(l);
    Layer& L = layers_[size_t(l)];
    if (momentum > 0 && L.mom.size() != ps.size()) {
        L.mom.resize(ps.size());
        for (size_t i = 0; i < ps.size(); ++i) L.mom[i].assign(ps[i].v->size(), 0.0f);
    }
    for (size_t pi = 0; pi < ps.size(); ++pi) {
        const Param& p = ps[pi];
        float* theta = p.v->data();
        float* mom = momentum > 0 ? L.mom[pi].data() : nullptr;
        chunks(pool_, int64_t(p.v->size()), [&](int64_t at, int64_t n) {
            thread_local std::vector<float> z;
            z.resize(size_t(kChunk));
            if (mom) {  // m = beta m + sum_i g_i z_i, then theta -= lr m: once per step
                for (int64_t i = 0; i < n; ++i) mom[at + i] = momentum * mom[at + i];
                for (const ZoUpdate& u : updates) {
                    const float g = u.g[size_t(p.group)];
                    ops::fill_normal(u.seed, p.id, uint64_t(at), n, z.data());
                    for (int64_t i = 0; i < n; ++i) {
                        const float gz = g * z[size_t(i)];
                        mom[at + i] = mom[at + i] + gz;
                    }
                }
                const float lr = updates[0].lr[size_t(p.group)];
                for (int64_t i = 0; i < n; ++i) {
                    const float step = lr * mom[at + i];
                    theta[at + i] = theta[at + i] - step;
                }
                return;
            }
            for (const ZoUpdate& u : updates) {
                const float coef = u.lr[size_t(p.group)] * u.g[size_t(p.group)];
                if (coef == 0.0f) continue;  // theta - 0 * z == theta
                ops::fill_normal(u.seed, p.id, uint64_t(at), n, z.data());
                for (int64_t i = 0; i < n; ++i) {
                    const float step = coef * z[size_t(i)];
                    theta[at + i] = theta[at + i] - step;
                }
            }
        });
        // A stored ratio stays where the forward can use it: past a bound both probes would see
        // the bound, and the shared updates would carry that layer's ratio off alone.
        if (p.group == ParamGroup::act_clip)
            for (float& r : *p.v) r = clamp_act_clip(r);
    }
}

void QatModel::apply_all(const std::vector<ZoUpdate>& updates, float momentum) {
    for (int64_t l = 0; l < work_.cfg.n_layer; ++l) apply(l, updates, momentum);
}

Model QatModel::export_packed() {
    Model out;  // no tokenizer (it cannot be copied; save_gguf takes it from the source file)
    out.cfg = work_.cfg;
    out.tok_embd = work_.tok_embd;
    out.pos_embd = work_.pos_embd;
    out.project_in = work_.project_in;
    out.project_out = work_.project_out;
    out.out_norm = work_.out_norm;
    out.out_norm_b = work_.out_norm_b;
    out.lm_head = work_.lm_head;
    out.source = work_.source;
    out.source_bytes = work_.source_bytes;
    out.layers.resize(work_.layers.size());
    const ModelConfig& c = work_.cfg;
    const std::array<float, kParamGroups> no_eps{};
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const LetEff let = let_eff(l, 0, no_eps);
        LayerWeights& o = out.layers[size_t(l)];
        o = LayerWeights{};
        const std::string pre = "blk." + std::to_string(l) + ".";
        for (int s = 0; s < kSlots; ++s) {
            if (!has(s)) continue;
            const bool nb = needs_bias(l, s);
            std::vector<float> bias(static_cast<size_t>(nb ? shape(s)[0] : 0));
            const Layer& L = layers_[size_t(l)];
            if (!L.frozen[size_t(s)].empty()) {
                *slot_tensor(o, s) = L.frozen[size_t(s)];
                bias = L.bias[size_t(s)];
            } else {
                *slot_tensor(o, s) = quantized_linear(l, s, let, nb ? bias.data() : nullptr);
            }
            if (nb) *slot_bias(o, s) = tensor_of(pre + kSlotNames[s] + ".bias", bias);
        }
        // Norms and shifts through the same code as a forward's (materialize writes scratch_).
        materialize(l, 0, 0, no_eps);
        const LayerWeights& m = work_.layers[size_t(l)];
        auto own = [](const Tensor& t) { return t.empty() ? Tensor() : t.to_f32(); };
        o.attn_norm = own(m.attn_norm);
        o.attn_norm_b = own(m.attn_norm_b);
        o.ffn_norm = own(m.ffn_norm);
        o.ffn_norm_b = own(m.ffn_norm_b);
        o.attn_shift = own(m.attn_shift);
        o.ffn_shift = own(m.ffn_shift);
        o.act_clip = own(m.act_clip);
    }
    return out;
}

// params() and visit_arrays() hand out mutable pointers; these read-only walks share them.
QatModel& QatModel::self() const {
    return const_cast<QatModel&>(*this);
}

uint64_t QatModel::n_trainable(ParamGroup g) const {
    uint64_t n = 0;
    for (int64_t l = 0; l < work_.cfg.n_layer; ++l)
        for (const Param& p : self().params(l))
            if (p.group == g) n += p.v->size();
    return n;
}

uint64_t QatModel::frozen_bytes() const {
    uint64_t n = 0;
    for (const Layer& L : layers_)
        for (const Tensor& t : L.frozen) n += t.empty() ? 0 : t.nbytes;
    return n;
}

uint64_t QatModel::scratch_bytes() const {
    uint64_t n = z_.capacity() * sizeof(float);
    for (const LayerWeights& S : scratch_)
        for (const Tensor* t :
             {&S.wq,         &S.wk,        &S.wv,        &S.wo,          &S.w_gate,   &S.w_up,
              &S.w_down,     &S.bq,        &S.bk,        &S.bv,          &S.bo,       &S.b_gate,
              &S.b_up,       &S.b_down,    &S.attn_norm, &S.attn_norm_b, &S.ffn_norm, &S.ffn_norm_b,
              &S.attn_shift, &S.ffn_shift, &S.act_clip})
            n += t->empty() ? 0 : t->nbytes;
    return n;
}

template <class F>
void QatModel::visit_arrays(Layer& L, F&& f) {
    for (auto* arr : {&L.w, &L.a, &L.c, &L.bias})
        for (auto& v : *arr) f(v);
    for (auto* v : {&L.s_attn, &L.d_attn, &L.s_ffn, &L.d_ffn, &L.s_vo, &L.attn_norm, &L.attn_norm_b,
                    &L.ffn_norm, &L.ffn_norm_b, &L.attn_shift, &L.ffn_shift, &L.ac})
        f(*v);
}

uint64_t QatModel::state_bytes() const {
    uint64_t n = 0;
    for (Layer& L : self().layers_) {
        self().visit_arrays(L, [&](std::vector<float>& v) { n += v.size() * 4; });
        for (auto& m : L.mom) n += m.size() * 4;
    }
    return n;
}

namespace {
// 02 adds the frozen-linears fingerprint to the header, 03 the act_clip array (each layer's
// last); 01 (no frozen linears) and 02 (no act_clip) still load.
constexpr char kMagic[8] = {'Z', 'Q', 'A', 'T', 'S', 'T', '0', '3'};
constexpr char kMagic02[8] = {'Z', 'Q', 'A', 'T', 'S', 'T', '0', '2'};
constexpr char kMagic01[8] = {'Z', 'Q', 'A', 'T', 'S', 'T', '0', '1'};
constexpr size_t kActClipArray = 39;  // act_clip's index in a layer's visit order
}  // namespace

void QatModel::save_state(const std::string& path, int64_t step) const {
    const std::string tmp = path + ".tmp";
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) fail("train", "{}: cannot write", tmp);
    Checksum sum;
    bool ok = true;
    auto put = [&](const void* p, size_t n) {
        ok = ok && std::fwrite(p, 1, n, f) == n;
        sum.add(p, n);
    };
    put(kMagic, 8);
    const uint64_t hdr[3] = {uint64_t(step), uint64_t(layers_.size()), frozen_hash_};
    put(hdr, sizeof hdr);
    for (Layer& L : self().layers_) {
        auto arr = [&](std::vector<float>& v) {
            const uint64_t n = v.size();
            put(&n, 8);
            put(v.data(), v.size() * 4);
        };
        self().visit_arrays(L, arr);
        const uint64_t nm = L.mom.size();
        put(&nm, 8);
        for (auto& m : L.mom) arr(m);
    }
    const uint64_t h = sum.h;
    ok = ok && std::fwrite(&h, 1, 8, f) == 8;
    ok = (std::fflush(f) == 0) && ok;
    ok = (::fsync(::fileno(f)) == 0) && ok;  // on disk before it replaces the old checkpoint
    ok = (std::fclose(f) == 0) && ok;
    if (!ok) {
        std::remove(tmp.c_str());
        fail("train", "{}: write failed (disk full?)", tmp);
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
        fail("train", "{}: cannot rename to {}", tmp, path);
    const std::string dir = std::filesystem::path(path).parent_path().string();
    const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

int64_t QatModel::load_state(const std::string& path) {
    other_.layer = -1;  // made from the weights this replaces
    // Two passes over the file, so that loading never holds a second copy of the state (at fp
    // that would double the memory): the first checks the structure, every length and the
    // checksum without storing anything; the second reads the arrays in place.
    const ModelConfig& c = work_.cfg;
    const size_t E = size_t(c.n_embd), kvd = size_t(c.n_head_kv * c.head_dim);
    std::error_code ec;
    const uint64_t file_bytes = std::filesystem::file_size(path, ec);
    if (ec) fail("train", "{}: cannot open the checkpoint", path);
    // Allowed lengths of each array in visit order: exact for master weights (none for a frozen
    // linear), 0 or the model's size for the others.
    std::vector<std::pair<size_t, bool>> want;  // (size, must be present)
    auto wants = [&](size_t l) {
        want.clear();
        for (int s = 0; s < kSlots; ++s) {
            const auto [rows, cols] = shape(s);
            const bool master = has(s) && groups_.slots[size_t(s)];
            want.push_back({master ? size_t(rows * cols) : 0, true});
        }
        for (int rep = 0; rep < 2; ++rep)
            for (int s = 0; s < kSlots; ++s) {
                const auto [rows, cols] = shape(s);
                const int64_t group = has(s) ? spec_.group_for(cols, names_[l][size_t(s)]) : 1;
                want.push_back({has(s) ? size_t(rows * (cols / group)) : 0, false});
            }
        for (int s = 0; s < kSlots; ++s) want.push_back({has(s) ? size_t(shape(s)[0]) : 0, false});
        for (size_t n : {E, E, E, E, kvd, E, E, E, E, E, E}) want.push_back({n, false});
        want.push_back({size_t(kActClipSites), groups_.act_clip});
        ZQAT_ASSERT(want.size() == kActClipArray + 1);
    };
    // Trainable arrays' sizes, in params() order, from the lengths of one layer's arrays in
    // visit order (w 0-6, a 7-13, c 14-20, bias 21-27, s_attn d_attn s_ffn d_ffn s_vo 28-32,
    // norms and shifts 33-38, act_clip 39).
    auto param_sizes = [&](const std::vector<uint64_t>& len) {
        std::vector<uint64_t> out;
        for (int s = 0; s < kSlots; ++s)
            if (groups_.weights && len[size_t(s)]) out.push_back(len[size_t(s)]);
        for (int s = 0; s < kSlots; ++s)
            if (groups_.clip && len[size_t(7 + s)]) {
                out.push_back(len[size_t(7 + s)]);
                out.push_back(len[size_t(14 + s)]);
            }
        if (groups_.smooth)
            for (size_t i = 28; i <= 32; ++i)
                if (len[i]) out.push_back(len[i]);
        if (groups_.act_clip && len[kActClipArray]) out.push_back(len[kActClipArray]);
        return out;
    };
    int64_t step = 0;
    for (int pass = 0; pass < 2; ++pass) {
        const bool store = pass == 1;
        std::FILE* f = std::fopen(path.c_str(), "rb");
        if (!f) fail("train", "{}: cannot open the checkpoint", path);
        std::unique_ptr<std::FILE, int (*)(std::FILE*)> guard(f, std::fclose);
        Checksum sum;
        uint64_t off = 0;
        auto get = [&](void* p, size_t n, const char* what) {
            if (std::fread(p, 1, n, f) != n)
                fail("train", "{}: truncated at byte offset {} (reading {})", path, off, what);
            sum.add(p, n);
            off += n;
        };
        // An array: its length (checked) and payload, into v (store) or through `skip`.
        auto array = [&](std::vector<float>* v, size_t l, const char* what, size_t idx) {
            uint64_t n;
            const uint64_t at = off;
            get(&n, 8, "array length");
            if (n > (file_bytes - off) / 4)
                fail("train", "{}: layer {} {} {}: length {} at offset {} exceeds the file", path,
                     l, what, idx, n, at);
            if (store) {
                v->resize(size_t(n));
                get(v->data(), size_t(n) * 4, "array");
            } else {
                // Checksum chunks must be whole 8-byte words except at the array's end, so
                // that the sum equals one add() over the array (save_state's).
                uint64_t left = n * 4;
                std::vector<unsigned char> bytes(size_t(std::min<uint64_t>(left, 1 << 18)));
                while (left > 0) {
                    const size_t k = size_t(std::min<uint64_t>(left, bytes.size()));
                    if (std::fread(bytes.data(), 1, k, f) != k)
                        fail("train", "{}: truncated at byte offset {} (reading array)", path, off);
                    sum.add(bytes.data(), k);
                    off += k;
                    left -= k;
                }
            }
            return std::pair<uint64_t, uint64_t>{n, at};
        };
        char magic[8];
        get(magic, 8, "magic");
        const bool v01 = std::memcmp(magic, kMagic01, 8) == 0;
        const bool v02 = std::memcmp(magic, kMagic02, 8) == 0;
        if (!v01 && !v02 && std::memcmp(magic, kMagic, 8) != 0)
            fail("train", "{}: not a zeroqat checkpoint (bad magic at offset 0)", path);
        uint64_t hdr[3] = {0, 0, 0};
        get(hdr, v01 ? 16 : 24, "header");
        if (hdr[1] != layers_.size())
            fail("train", "{}: {} layers at offset 16, the model has {}", path, hdr[1],
                 layers_.size());
        if (hdr[2] != frozen_hash_)
            fail("train",
                 "{}: frozen-linear fingerprint {:016x} at offset 24, the model's is {:016x} (a "
                 "checkpoint of another initialisation or variant?)",
                 path, hdr[2], frozen_hash_);
        step = int64_t(hdr[0]);
        for (size_t l = 0; l < layers_.size(); ++l) {
            wants(l);
            Layer& L = layers_[l];
            size_t idx = 0;
            std::vector<uint64_t> len;
            visit_arrays(L, [&](std::vector<float>& v) {
                // Not in files from before act_clip: no clipping there (ratios of 1 if the
                // group trains, else none).
                if (idx == kActClipArray && (v01 || v02)) {
                    if (store) {
                        v.clear();
                        if (groups_.act_clip) v.assign(size_t(kActClipSites), 1.0f);
                    }
                    len.push_back(groups_.act_clip ? uint64_t(kActClipSites) : 0);
                    ++idx;
                    return;
                }
                const auto [n, at] = array(&v, l, "array", idx);
                const auto [size, required] = want[idx];
                if (n != size && (required || n != 0))
                    fail("train",
                         "{}: layer {} array {} at offset {} has {} elements, the model {} "
                         "(a checkpoint of another model or qspec?)",
                         path, l, idx, at, n, size);
                len.push_back(n);
                ++idx;
            });
            uint64_t nm;
            get(&nm, 8, "momentum count");
            const std::vector<uint64_t> ps = param_sizes(len);
            if (nm != 0 && nm != ps.size())
                fail("train", "{}: layer {}: {} momentum buffers at offset {}, {} trainable arrays",
                     path, l, nm, off - 8, ps.size());
            if (store) L.mom.resize(size_t(nm));
            for (size_t i = 0; i < nm; ++i) {
                const auto [n, at] = array(store ? &L.mom[i] : nullptr, l, "momentum", i);
                if (n != ps[i])
                    fail("train",
                         "{}: layer {} momentum {} at offset {} has {} elements, its "
                         "array {}",
                         path, l, i, at, n, ps[i]);
            }
        }
        const uint64_t want_sum = sum.h;
        uint64_t h;
        if (std::fread(&h, 1, 8, f) != 8)
            fail("train", "{}: truncated checksum at offset {}", path, off);
        if (h != want_sum) fail("train", "{}: checksum mismatch (the file is corrupt)", path);
        if (off + 8 != file_bytes)
            fail("train", "{}: {} bytes after the checksum at offset {}", path,
                 file_bytes - off - 8, off + 8);
    }
    return step;
}

}  // namespace zqat
