// The PTQ baselines and the backprop-free init (quant/quantize.h), over calibration streams that
// run the model one decoder layer at a time.
//
// Streams: x [n_windows, T, n_embd] hidden states entering the current layer. `xq` follows the
// model as it is being quantized (layers before the current one quantized, activations quantized
// when the spec says so); `xfp` (init only) follows the full-precision model and gives the
// targets each quantized block is fitted to (OmniQuant's protocol).
#include "zqat/quant/quantize.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include "zqat/core/error.h"
#include "zqat/core/ops.h"
#include "zqat/core/packed.h"
#include "zqat/core/thread_pool.h"
#include "zqat/model/forward.h"
#include "zqat/model/model.h"
#include "zqat/quant/gptq.h"
#include "zqat/quant/hessian.h"
#include "zqat/quant/let.h"

namespace zqat {

QuantMethod parse_quant_method(std::string_view s) {
    if (s == "rtn") return QuantMethod::rtn;
    if (s == "smoothquant") return QuantMethod::smoothquant;
    if (s == "gptq") return QuantMethod::gptq;
    if (s == "init") return QuantMethod::init;
    fail("quant", "unknown method '{}' (expected rtn, smoothquant, gptq or init)", s);
}

std::string_view quant_method_name(QuantMethod m) {
    switch (m) {
        case QuantMethod::rtn:
            return "rtn";
        case QuantMethod::smoothquant:
            return "smoothquant";
        case QuantMethod::gptq:
            return "gptq";
        case QuantMethod::init:
            return "init";
    }
    return "?";
}

bool quant_method_needs_calibration(QuantMethod m) {
    return m != QuantMethod::rtn;
}

namespace {

struct LinearRef {
    Tensor* w;
    LinearSite site;
};

// The decoder linears of a layer in forward order, with the site whose input each one reads.
std::vector<LinearRef> layer_linears(const Model& m, LayerWeights& L) {
    std::vector<LinearRef> out = {{&L.wq, LinearSite::attn_in},
                                  {&L.wk, LinearSite::attn_in},
                                  {&L.wv, LinearSite::attn_in},
                                  {&L.wo, LinearSite::attn_out}};
    if (m.cfg.arch == Arch::llama) out.push_back({&L.w_gate, LinearSite::ffn_in});
    out.push_back({&L.w_up, LinearSite::ffn_in});
    out.push_back({&L.w_down, LinearSite::ffn_out});
    return out;
}

Tensor packed_tensor(const Tensor& like, PackedWeight pw) {
    Tensor t;
    t.name = like.name;
    t.shape = like.shape;
    t.nbytes = pw.nbytes();
    t.packed = std::make_shared<const PackedWeight>(std::move(pw));
    return t;
}

// RTN of an fp32 weight with optional LWC factors [rows, n_groups] -> a packed tensor.
Tensor pack_rtn(const Tensor& w, const QSpec& spec, const float* gamma, const float* beta,
                ThreadPool& pool) {
    const int64_t rows = w.dim(0), cols = w.dim(1), group = spec.group_for(cols, w.name);
    const int64_t ng = rows * (cols / group);
    std::vector<uint8_t> codes(size_t(rows * cols));
    std::vector<uint16_t> scales(static_cast<size_t>(ng)), zeros(static_cast<size_t>(ng));
    ops::quantize_weight(rows, cols, w.f32(), cols, spec.w_bits, group, spec.sym, gamma, beta,
                         codes.data(), scales.data(), zeros.data(), nullptr, &pool);
    return packed_tensor(w, PackedWeight::from_codes(spec.w_bits, rows, cols, group, codes.data(),
                                                     scales.data(), zeros.data()));
}

Tensor dequantized(const Tensor& w) {
    Tensor out = Tensor::zeros(w.name, w.shape);
    w.packed->dequantize_rows(0, w.dim(0), out.mutable_f32());
    return out;
}

// The fake-quant (fp32) twin of a weight under RTN: same numbers as pack_rtn's, for searches.
Tensor fake_rtn(const Tensor& w, const QSpec& spec, const float* gamma, const float* beta,
                ThreadPool& pool) {
    const int64_t rows = w.dim(0), cols = w.dim(1), group = spec.group_for(cols, w.name);
    Tensor out = Tensor::zeros(w.name, w.shape);
    ops::quantize_weight(rows, cols, w.f32(), cols, spec.w_bits, group, spec.sym, gamma, beta,
                         nullptr, nullptr, nullptr, out.mutable_f32(), &pool);
    return out;
}

// Sum of squared differences of a[0, n) and b[0, n), in double.
double mse(const float* a, const float* b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; ++i) {
        const double d = double(a[i]) - double(b[i]);
        s += d * d;
    }
    return s;
}

// Hidden-state streams and a one-window forward that runs a single layer.
class Streams {
  public:
    Streams(const Model& m, std::span<const std::vector<int32_t>> calib, ThreadPool& pool)
        : n_(int64_t(calib.size())),
          T_(int64_t(calib[0].size())),
          E_(m.cfg.n_embd),
          fwd_(m, 1, T_, pool, 1) {  // layers only: a 1-row LM-head chunk, not 256 x n_vocab
        for (const auto& w : calib)
            if (int64_t(w.size()) != T_)
                fail("quant", "calibration windows differ in length ({} and {})", T_, w.size());
        if (T_ < 2) fail("quant", "calibration windows need at least 2 tokens, got {}", T_);
        base_.resize(size_t(n_ * T_ * E_));
        for (int64_t w = 0; w < n_; ++w) fwd_.embed(calib[size_t(w)].data(), at(base_, w));
    }
    int64_t windows() const { return n_; }
    int64_t rows() const { return T_; }
    size_t window_floats() const { return size_t(T_ * E_); }
    float* at(std::vector<float>& s, int64_t w) const {
        return s.data() + size_t(w) * window_floats();
    }
    std::vector<float> embeddings() const { return base_; }
    void release_embeddings() { std::vector<float>().swap(base_); }

    // Layer l on windows [0, n) of x, in place.
    void run(int64_t l, std::vector<float>& x, int64_t n, LinearHook hook) {
        fwd_.set_hook(std::move(hook));
        for (int64_t w = 0; w < n; ++w) fwd_.run_layer(l, at(x, w));
        fwd_.set_hook({});
    }
    // Layer l on windows [0, n) of x, x untouched, the outputs discarded: only the hook sees
    // anything.
    void run_hooked(int64_t l, const std::vector<float>& x, int64_t n, LinearHook hook) {
        fwd_.set_hook(std::move(hook));
        for (int64_t w = 0; w < n; ++w) run_window(l, x, w);
        fwd_.set_hook({});
    }
    // Mean squared error of layer l's outputs on windows [0, n) of x (x untouched) against the
    // same windows of ref. One window of scratch, not n: the calibration streams are the init's
    // largest allocation.
    double run_mse(int64_t l, const std::vector<float>& x, int64_t n,
                   const std::vector<float>& ref) {
        double e = 0;
        for (int64_t w = 0; w < n; ++w)
            e +=
                mse(run_window(l, x, w), ref.data() + size_t(w) * window_floats(), window_floats());
        return e / double(size_t(n) * window_floats());
    }

  private:
    const float* run_window(int64_t l, const std::vector<float>& x, int64_t w) {
        window_.resize(window_floats());
        std::copy_n(x.data() + size_t(w) * window_floats(), window_floats(), window_.data());
        fwd_.run_layer(l, window_.data());
        return window_.data();
    }

    int64_t n_, T_, E_;
    Forward fwd_;
    std::vector<float> base_, window_;
};

// Per-channel activation statistics of one site.
struct ActStats {
    std::vector<float> absmax, max, min;
    void add(const float* x, int64_t rows, int64_t cols) {
        if (absmax.empty()) {
            absmax.assign(size_t(cols), 0.0f);
            max.assign(size_t(cols), -std::numeric_limits<float>::infinity());
            min.assign(size_t(cols), std::numeric_limits<float>::infinity());
        }
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = 0; j < cols; ++j) {
                const float v = x[r * cols + j];
                absmax[size_t(j)] = std::max(absmax[size_t(j)], std::fabs(v));
                max[size_t(j)] = std::max(max[size_t(j)], v);
                min[size_t(j)] = std::min(min[size_t(j)], v);
            }
    }
};

// max over rows of |W[:, j]| across several weights sharing an input [*, cols].
std::vector<float> weight_col_absmax(std::initializer_list<const Tensor*> ws) {
    std::vector<float> out;
    for (const Tensor* w : ws) {
        const int64_t rows = w->dim(0), cols = w->dim(1);
        out.resize(size_t(cols), 0.0f);
        const float* p = w->f32();
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = 0; j < cols; ++j)
                out[size_t(j)] = std::max(out[size_t(j)], std::fabs(p[r * cols + j]));
    }
    return out;
}

// SmoothQuant's scale, clamped as its reference code does.
std::vector<float> smooth_scale(const std::vector<float>& act_absmax,
                                const std::vector<float>& w_absmax, float alpha) {
    std::vector<float> s(act_absmax.size());
    for (size_t j = 0; j < s.size(); ++j) {
        const double a = std::max(double(act_absmax[j]), 1e-5);
        const double w = std::max(double(w_absmax[j]), 1e-5);
        s[j] = float(std::max(std::pow(a, alpha) / std::pow(w, 1.0 - alpha), 1e-5));
    }
    return s;
}

void check_float_weights(const Model& m) {
    for (const LayerWeights& L : m.layers)
        for (const Tensor* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_up, &L.w_down})
            if (w->is_packed())
                fail("quant", "{}: the model is already quantized ({} is packed)", m.source,
                     w->name);
}

struct SiteStats {
    ActStats s[kLinearSites];
};

LinearHook stats_hook(SiteStats& st) {
    return [&st](int64_t, LinearSite site, const float* in, int64_t rows, int64_t cols) {
        st.s[int(site)].add(in, rows, cols);
    };
}

// W := W H for every decoder linear (ops::hadamard_rows on its rows); the forward then rotates
// each linear's input the same way, so the full-precision model computes the same function.
void rotate_linears(Model& m, ThreadPool& pool) {
    for (LayerWeights& L : m.layers)
        for (LinearRef r : layer_linears(m, L)) {
            Tensor w = r.w->to_f32();  // owned: the source may be a read-only mapping
            ops::hadamard_rows(w.dim(0), w.dim(1), w.mutable_f32(), w.dim(1), &pool);
            *r.w = std::move(w);
        }
    m.cfg.hadamard = true;
}

// ---- the methods ------------------------------------------------------------------------------

void quantize_rtn(Model& m, const QuantOptions& opt, QuantReport& rep, ThreadPool& pool) {
    for (int64_t l = 0; l < m.cfg.n_layer; ++l) {
        if (!opt.keep_float)
            for (LinearRef r : layer_linears(m, m.layers[size_t(l)]))
                *r.w = pack_rtn(*r.w, opt.spec, nullptr, nullptr, pool);
        rep.layers.push_back({});
        if (opt.progress) opt.progress("layer", l + 1, m.cfg.n_layer);
    }
}

void quantize_smoothquant(Model& m, const QuantOptions& opt, Streams& st, QuantReport& rep,
                          ThreadPool& pool) {
    // Statistics come from the full-precision model, as in SmoothQuant's reference code.
    std::vector<float> x = st.embeddings();
    st.release_embeddings();
    const QSpec spec = m.cfg.qspec;
    for (int64_t l = 0; l < m.cfg.n_layer; ++l) {
        LayerWeights& L = m.layers[size_t(l)];
        SiteStats ss;
        m.cfg.qspec = QSpec{};
        st.run(l, x, st.windows(), stats_hook(ss));
        m.cfg.qspec = spec;
        LetParams p;
        p.attn_s = smooth_scale(ss.s[int(LinearSite::attn_in)].absmax,
                                weight_col_absmax({&L.wq, &L.wk, &L.wv}), opt.alpha);
        p.ffn_s = smooth_scale(ss.s[int(LinearSite::ffn_in)].absmax,
                               m.cfg.arch == Arch::llama ? weight_col_absmax({&L.w_gate, &L.w_up})
                                                         : weight_col_absmax({&L.w_up}),
                               opt.alpha);
        apply_let(m, l, p);
        if (!opt.keep_float)
            for (LinearRef r : layer_linears(m, L))
                *r.w = pack_rtn(*r.w, opt.spec, nullptr, nullptr, pool);
        LayerQuantReport lr;
        lr.alpha = opt.alpha;
        rep.layers.push_back(lr);
        if (opt.progress) opt.progress("layer", l + 1, m.cfg.n_layer);
    }
}

void quantize_gptq(Model& m, const QuantOptions& opt, Streams& st, QuantReport& rep,
                   ThreadPool& pool) {
    if (opt.spec.quant_acts())
        fail("quant", "gptq is a weight-only method: use an A16 spec (got {})", opt.spec.str());
    const int64_t skip = opt.gptq_skip_first;
    if (skip < 0 || skip >= st.rows())
        fail("quant", "gptq: skip-first {} must be in [0, {}) (the calibration window length)",
             skip, st.rows());
    std::vector<float> x = st.embeddings();
    st.release_embeddings();
    GptqOptions g;
    g.damp = opt.gptq_damp;
    g.block = opt.gptq_block;
    g.act_order = opt.act_order;
    for (int64_t l = 0; l < m.cfg.n_layer; ++l) {
        LayerWeights& L = m.layers[size_t(l)];
        const std::vector<LinearRef> lin = layer_linears(m, L);
        std::vector<Tensor> packed(lin.size());
        // True-sequential: each site's Hessian is taken with the earlier sites of this layer
        // already quantized (their fake-quant weights in place).
        for (int site = 0; site < kLinearSites; ++site) {
            std::unique_ptr<Hessian> h;
            st.run_hooked(l, x, st.windows(),
                          [&](int64_t, LinearSite s, const float* in, int64_t rows, int64_t cols) {
                              if (int(s) != site) return;
                              if (!h) h = std::make_unique<Hessian>(cols);
                              h->add(in + skip * cols, rows - skip, cols, &pool);
                          });
            const std::vector<double> H = h->mean();
            for (size_t i = 0; i < lin.size(); ++i) {
                if (int(lin[i].site) != site) continue;
                Tensor& w = *lin[i].w;
                const int64_t rows = w.dim(0), cols = w.dim(1);
                const int64_t group = opt.spec.group_for(cols, w.name);
                QuantizedWeight q = gptq_quantize(w.f32(), rows, cols, H, opt.spec.w_bits, group,
                                                  opt.spec.sym, g, &pool);
                packed[i] = packed_tensor(
                    w, PackedWeight::from_codes(q.bits, rows, cols, group, q.codes.data(),
                                                q.scales.data(), q.zeros.data()));
                w = dequantized(packed[i]);
            }
        }
        st.run(l, x, st.windows(), {});
        for (size_t i = 0; i < lin.size(); ++i) *lin[i].w = std::move(packed[i]);
        rep.layers.push_back({});
        if (opt.progress) opt.progress("layer", l + 1, m.cfg.n_layer);
    }
}

// LWC by grid search: per (row, group), the clipping ratio r (gamma = beta = r) that minimises
// that group's output error e_g^T H_gg e_g, e = w - Q_r(w), H = X^T X of the inputs and H_gg its
// diagonal block for the group's inputs (cross-group terms are left out, so each group's choice
// is independent). With one group per row this is exactly the row's output error.
Tensor lwc_search(const Tensor& w, const std::vector<float>& H, const QuantOptions& opt,
                  ThreadPool& pool, std::vector<float>* ratios) {
    const int64_t rows = w.dim(0), cols = w.dim(1), group = opt.spec.group_for(cols, w.name);
    const int64_t ng = cols / group;
    std::vector<float> best_r(size_t(rows * ng), 1.0f);
    std::vector<double> best_e(size_t(rows * ng), std::numeric_limits<double>::infinity());
    std::vector<float> ratio(size_t(rows * ng)), e(size_t(rows * cols)), p(size_t(rows * cols));
    const float* wp = w.f32();
    for (float r : opt.clip_grid) {
        std::fill(ratio.begin(), ratio.end(), r);
        ops::quantize_weight(rows, cols, wp, cols, opt.spec.w_bits, group, opt.spec.sym,
                             ratio.data(), ratio.data(), nullptr, nullptr, nullptr, e.data(),
                             &pool);
        for (size_t i = 0; i < e.size(); ++i) e[i] = wp[i] - e[i];
        if (ng == 1) {  // p = e H (H symmetric, so gemm_nt's e . H^T is e . H)
            ops::gemm_nt(rows, cols, cols, e.data(), cols, H.data(), cols, nullptr, p.data(), cols,
                         &pool);
        } else {  // p_g = e_g H_gg, one task per row (each value has a fixed summation order)
            pool.parallel_for(rows, [&](int64_t i, int) {
                for (int64_t gi = 0; gi < ng; ++gi) {
                    const int64_t k0 = gi * group;
                    const float* eg = e.data() + i * cols + k0;
                    for (int64_t a = 0; a < group; ++a) {
                        const float* h = H.data() + (k0 + a) * cols + k0;
                        float acc = 0;
                        for (int64_t b = 0; b < group; ++b) acc += eg[b] * h[b];
                        p[size_t(i * cols + k0 + a)] = acc;
                    }
                }
            });
        }
        for (int64_t i = 0; i < rows; ++i)
            for (int64_t gi = 0; gi < ng; ++gi) {
                double acc = 0;
                for (int64_t k = gi * group; k < (gi + 1) * group; ++k)
                    acc += double(p[size_t(i * cols + k)]) * double(e[size_t(i * cols + k)]);
                const size_t at = size_t(i * ng + gi);
                if (acc < best_e[at]) {
                    best_e[at] = acc;
                    best_r[at] = r;
                }
            }
    }
    Tensor out = pack_rtn(w, opt.spec, best_r.data(), best_r.data(), pool);
    *ratios = std::move(best_r);
    return out;
}

void quantize_init(Model& m, const QuantOptions& opt, Streams& st, QuantReport& rep,
                   ThreadPool& pool) {
    const QSpec spec = m.cfg.qspec;
    const ModelConfig& c = m.cfg;
    std::vector<float> xq = st.embeddings();
    std::vector<float> xfp = xq;
    st.release_embeddings();
    const int64_t n_search = std::min(st.windows(), std::max<int64_t>(1, opt.search_windows));
    const int64_t kvd = c.n_head_kv * c.head_dim, D = c.head_dim, group = c.n_head / c.n_head_kv;

    for (int64_t l = 0; l < c.n_layer; ++l) {
        LayerWeights& L = m.layers[size_t(l)];
        const LayerWeights saved = L;
        // Targets: the FP layer on the FP stream (which it advances), with activation stats.
        SiteStats ss;
        m.cfg.qspec = QSpec{};
        st.run(l, xfp, st.windows(), stats_hook(ss));
        m.cfg.qspec = spec;

        const ActStats& a_attn = ss.s[int(LinearSite::attn_in)];
        const ActStats& a_ffn = ss.s[int(LinearSite::ffn_in)];
        const ActStats& a_o = ss.s[int(LinearSite::attn_out)];
        // OS+ shift: the channel's midpoint; the scale then sees max|X - d| = (max - min) / 2.
        auto shift_of = [](const ActStats& a) {
            std::vector<float> d(a.max.size()), half(a.max.size());
            for (size_t j = 0; j < d.size(); ++j) {
                d[j] = float((double(a.max[j]) + double(a.min[j])) / 2);
                half[j] = float((double(a.max[j]) - double(a.min[j])) / 2);
            }
            return std::pair{d, half};
        };
        // (Plain variables, not structured bindings: clang < 16 cannot capture those.)
        const std::pair<std::vector<float>, std::vector<float>> sh_attn = shift_of(a_attn),
                                                                sh_ffn = shift_of(a_ffn);
        const std::vector<float>&d_attn = sh_attn.first, &r_attn = sh_attn.second;
        const std::vector<float>&d_ffn = sh_ffn.first, &r_ffn = sh_ffn.second;
        const std::vector<float> w_attn = weight_col_absmax({&L.wq, &L.wk, &L.wv});
        const std::vector<float> w_ffn = c.arch == Arch::llama
                                             ? weight_col_absmax({&L.w_gate, &L.w_up})
                                             : weight_col_absmax({&L.w_up});
        // v -> o: statistics per KV channel, over the query heads that share it.
        std::vector<float> o_act(size_t(kvd), 0.0f), o_w(size_t(kvd), 0.0f);
        {
            const std::vector<float> wo_abs = weight_col_absmax({&L.wo});
            for (int64_t ch = 0; ch < c.n_head * D; ++ch) {
                const size_t kv = size_t((ch / D / group) * D + ch % D);
                o_act[kv] = std::max(o_act[kv], a_o.absmax[size_t(ch)]);
                o_w[kv] = std::max(o_w[kv], wo_abs[size_t(ch)]);
            }
        }
        const bool shift = spec.quant_acts();  // a shift only helps activation quantization

        auto candidate = [&](float alpha) {
            LetParams p;
            if (alpha <= 0) return p;
            p.attn_s = smooth_scale(shift ? r_attn : a_attn.absmax, w_attn, alpha);
            p.ffn_s = smooth_scale(shift ? r_ffn : a_ffn.absmax, w_ffn, alpha);
            p.vo_s = smooth_scale(o_act, o_w, alpha);
            if (shift) {
                p.attn_d = d_attn;
                p.ffn_d = d_ffn;
            }
            return p;
        };
        auto score = [&](const LetParams& p) {
            L = saved;
            apply_let(m, l, p);
            for (LinearRef r : layer_linears(m, L))
                *r.w = fake_rtn(*r.w, spec, nullptr, nullptr, pool);
            const double e = st.run_mse(l, xq, n_search, xfp);
            L = saved;
            return e;
        };
        LayerQuantReport lr;
        lr.mse_before = score(LetParams{});
        double best = lr.mse_before;
        // With a rotation the linears read (x H), not the channels LET would scale: no search.
        for (float alpha : c.hadamard ? std::vector<float>{} : opt.alpha_grid) {
            const double e = score(candidate(alpha));
            if (e < best) {
                best = e;
                lr.alpha = alpha;
            }
        }
        L = saved;
        apply_let(m, l, candidate(lr.alpha));

        // LWC: Hessians of each site's input (LET applied, activations quantized, weights FP).
        std::vector<std::unique_ptr<Hessian>> hs(kLinearSites);
        st.run_hooked(l, xq, st.windows(),
                      [&](int64_t, LinearSite s, const float* in, int64_t rows, int64_t cols) {
                          auto& h = hs[size_t(s)];
                          if (!h) h = std::make_unique<Hessian>(cols);
                          h->add(in, rows, cols, &pool);
                      });
        const LayerWeights let_fp = L;  // LET folded, weights still fp32
        std::vector<std::vector<float>> ratios;
        for (LinearRef r : layer_linears(m, L)) {
            const std::vector<double> Hd = hs[size_t(r.site)]->mean();
            const std::vector<float> H(Hd.begin(), Hd.end());
            ratios.emplace_back();
            *r.w = lwc_search(*r.w, H, opt, pool, &ratios.back());
        }
        // Clipping is chosen per linear on its own output error; keep it only if the block's
        // output is better for it than with plain rounding (the alpha search's best score).
        const double e_lwc = st.run_mse(l, xq, n_search, xfp);
        lr.clipped = e_lwc <= best;
        if (!lr.clipped) {
            L = let_fp;
            for (LinearRef r : layer_linears(m, L))
                *r.w = pack_rtn(*r.w, spec, nullptr, nullptr, pool);
        }
        // Activation clipping: per site in forward order, the grid ratio with the lowest block
        // error (ties keep the earlier, larger ratio: 1 comes first).
        if (opt.act_clip && spec.quant_acts()) {
            L.act_clip = Tensor::zeros("blk." + std::to_string(l) + ".act_clip", {kActClipSites});
            float* r = L.act_clip.mutable_f32();
            std::fill_n(r, kActClipSites, 1.0f);
            double cur = st.run_mse(l, xq, n_search, xfp);
            for (int64_t site = 0; site < kActClipSites; ++site) {
                float best_r = r[site];
                for (float cand : opt.act_clip_grid) {
                    if (cand == best_r) continue;
                    r[site] = cand;
                    const double e = st.run_mse(l, xq, n_search, xfp);
                    if (e < cur) {
                        cur = e;
                        best_r = cand;
                    }
                }
                r[site] = best_r;
            }
            lr.act_clip.assign(r, r + kActClipSites);
        }
        st.run(l, xq, st.windows(), {});
        double e = 0;
        for (int64_t w = 0; w < n_search; ++w)
            e += mse(st.at(xq, w), st.at(xfp, w), st.window_floats());
        lr.mse_after = e / double(size_t(n_search) * st.window_floats());
        rep.layers.push_back(lr);
        if (opt.keep_float) {
            const Tensor act_clip = L.act_clip;
            L = let_fp;
            L.act_clip = act_clip;
            if (!lr.clipped) ratios.assign(ratios.size(), {});
            rep.clip.push_back(std::move(ratios));
        }
        if (opt.progress) opt.progress("layer", l + 1, c.n_layer);
    }
}

}  // namespace

QuantReport quantize_model(Model& m, const QuantOptions& opt,
                           std::span<const std::vector<int32_t>> calib, ThreadPool& pool) {
    const auto t0 = std::chrono::steady_clock::now();
    if (!opt.spec.quant_weights()) fail("quant", "spec {} quantizes no weights", opt.spec.str());
    check_float_weights(m);
    // Every group size must divide its linear's input before any work is done.
    for (LayerWeights& L : m.layers)
        for (LinearRef r : layer_linears(m, L)) opt.spec.group_for(r.w->dim(1), r.w->name);
    if (opt.keep_float && opt.method == QuantMethod::gptq)
        fail("quant",
             "gptq cannot keep float weights (it rewrites them); use rtn, smoothquant "
             "or init");
    if (opt.act_clip && (opt.method != QuantMethod::init || !opt.spec.quant_acts()))
        fail("quant",
             "activation clipping is searched by init with activation quantization (got {} at "
             "{})",
             quant_method_name(opt.method), opt.spec.str());
    if (opt.rotate && opt.method == QuantMethod::smoothquant)
        fail("quant",
             "--rotate does not combine with smoothquant: its LET scales act on the "
             "unrotated channels (rtn, gptq and init, which then skips its LET search)");
    QuantReport rep;
    if (opt.rotate) rotate_linears(m, pool);
    m.cfg.qspec = opt.spec;
    m.cfg.quant_method = std::string(quant_method_name(opt.method));
    if (opt.method == QuantMethod::rtn) {
        quantize_rtn(m, opt, rep, pool);
    } else {
        if (calib.empty())
            fail("quant", "method {} needs calibration windows", quant_method_name(opt.method));
        Streams st(m, calib, pool);
        if (opt.method == QuantMethod::smoothquant) quantize_smoothquant(m, opt, st, rep, pool);
        if (opt.method == QuantMethod::gptq) quantize_gptq(m, opt, st, rep, pool);
        if (opt.method == QuantMethod::init) quantize_init(m, opt, st, rep, pool);
    }
    for (LayerWeights& L : m.layers)
        for (LinearRef r : layer_linears(m, L)) {
            if (!r.w->is_packed()) continue;
            rep.packed_bytes += r.w->packed->nbytes();
            rep.packed_elems += uint64_t(r.w->numel());
        }
    if (opt.keep_float && rep.clip.empty()) rep.clip.resize(size_t(m.cfg.n_layer));
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep;
}

void unpack_model(Model& m) {
    for (LayerWeights& L : m.layers)
        for (LinearRef r : layer_linears(m, L))
            if (r.w->is_packed()) *r.w = dequantized(*r.w);
}

}  // namespace zqat
