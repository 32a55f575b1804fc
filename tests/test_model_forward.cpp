// Properties of the forward pass and the loaders beyond the golden logits of
// test_model_golden.cpp, on the same tiny models (tests/data/synthetic/):
//   - nll() and logits() allocate nothing once constructed; a Session step allocates nothing;
//   - the chunked LM head + loss equals -log_softmax of the full logits when B*T spans several
//     chunks, and is bit-identical for 1, 2 and 3 threads;
//   - a Session agrees with Forward::logits on every prefix of a longer sequence, and reset()
//     replays bit-identically;
//   - OPT without biases / LayerNorm affine parameters equals transformers;
//   - sharded (model.safetensors.index.json) and BF16 / F16 checkpoints load to the same model;
//   - bad inputs raise Error naming the file and field; describe_model_file summarises.
#include <gtest/gtest.h>

#include "model_test_util.h"

#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <new>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "zqat/core/error.h"
#include "zqat/core/thread_pool.h"
#include "zqat/model/forward.h"
#include "zqat/model/model.h"

// Counts every allocation through the replaceable global operator new (all threads). GCC pairs
// the malloc/free inside these replacements with the new/delete expressions it inlines them into
// and warns (-Wmismatched-new-delete) although the pair is consistent: keep them out of line.
// Allocations of at least kBigAlloc bytes are counted apart: activation-sized buffers.
static std::atomic<int64_t> g_allocs{0}, g_big_allocs{0};
constexpr std::size_t kBigAlloc = 1024;

namespace {
void* counted_malloc(std::size_t n) noexcept {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    if (n >= kBigAlloc) g_big_allocs.fetch_add(1, std::memory_order_relaxed);
    return std::malloc(n ? n : 1);
}
}  // namespace

// Every unaligned form is replaced, so no pointer from another allocator (e.g. a sanitizer's
// operator new[]) reaches this free(); the aligned forms are left as a matched pair.
[[gnu::noinline]] void* operator new(std::size_t n) {
    if (void* p = counted_malloc(n)) return p;
    throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new[](std::size_t n) {
    if (void* p = counted_malloc(n)) return p;
    throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    return counted_malloc(n);
}
[[gnu::noinline]] void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    return counted_malloc(n);
}
[[gnu::noinline]] void operator delete(void* p) noexcept {
    std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p) noexcept {
    std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, const std::nothrow_t&) noexcept {
    std::free(p);
}

using namespace zqat;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kDir = std::string(ZQAT_TEST_DATA) + "/synthetic/";

std::string slurp(const fs::path& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) ADD_FAILURE() << "cannot read " << path;
    return {std::istreambuf_iterator<char>(f), {}};
}

void spit(const fs::path& path, const std::string& s) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << s;
}

using test::ref_nll;
using test::rel_err;

std::vector<int32_t> random_ids(size_t n, int32_t vocab, uint32_t seed) {
    std::mt19937 rng(seed);  // mt19937's sequence is fixed by the standard
    std::vector<int32_t> ids(n);
    for (int32_t& x : ids) x = int32_t(rng() % uint32_t(vocab));
    return ids;
}

bool bits_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// A safetensors file as (header, data): enough to split or retype one in a test.
struct StFile {
    json header;
    std::string data;

    static StFile read(const fs::path& p) {
        const std::string b = slurp(p);
        uint64_t n = 0;
        std::memcpy(&n, b.data(), 8);
        return {json::parse(b.substr(8, n)), b.substr(8 + n)};
    }
    std::string bytes_of(const std::string& name) const {
        const auto& off = header.at(name).at("data_offsets");
        const size_t a = off[0].get<size_t>(), e = off[1].get<size_t>();
        return data.substr(a, e - a);
    }
};

// Writes tensors (name -> dtype, shape, bytes) as a safetensors file.
struct StWriter {
    json header = json::object();
    std::string data;

    void add(const std::string& name, const std::string& dtype, const json& shape,
             const std::string& bytes) {
        header[name] = {{"dtype", dtype},
                        {"shape", shape},
                        {"data_offsets", {data.size(), data.size() + bytes.size()}}};
        data += bytes;
    }
    void write(const fs::path& p) const {
        std::string h = header.dump();
        h.append((8 - h.size() % 8) % 8, ' ');
        const uint64_t n = h.size();
        std::string out(8, '\0');
        std::memcpy(out.data(), &n, 8);
        spit(p, out + h + data);
    }
};

// f32 -> bf16 / f16 with round-to-nearest-even (finite, normal-range values).
uint16_t to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return uint16_t(u >> 16);
}
float from_bf16(uint16_t h) {
    const uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
uint16_t to_f16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint32_t sign = (u >> 16) & 0x8000;
    const int32_t exp = int32_t((u >> 23) & 0xff) - 127 + 15;
    uint32_t mant = u & 0x7fffff;
    if (exp <= 0) {  // subnormal half: shift with rounding
        if (exp < -10) return uint16_t(sign);
        mant |= 0x800000;
        const int shift = 14 - exp;
        uint32_t h = mant >> shift;
        const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) ++h;
        return uint16_t(sign | h);
    }
    uint32_t h = (uint32_t(exp) << 10) | (mant >> 13);
    const uint32_t rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
    return uint16_t(sign | h);
}

float from_f16(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    float f;
    if (exp == 0) {
        f = std::ldexp(float(mant), -24);  // subnormal (or zero)
        uint32_t u;
        std::memcpy(&u, &f, 4);
        u |= sign;
        std::memcpy(&f, &u, 4);
        return f;
    }
    const uint32_t u = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    std::memcpy(&f, &u, 4);
    return f;
}

class TempDir {
  public:
    TempDir() {
        path_ = fs::temp_directory_path() /
                ("zqat_fwd_" + std::to_string(::getpid()) + "_" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(path_);
        fs::create_directories(path_);
    }
    ~TempDir() { fs::remove_all(path_); }
    const fs::path& path() const { return path_; }

  private:
    fs::path path_;
};

std::string error_of(const std::string& path) {
    try {
        Model::load(path);
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

// After construction, nll() and logits() run on the planned arena only; so does a one-token
// Session step once the session has seen a prompt at least as long. The ops may still make small
// allocations of their own (rope_neox's angle tables, std::function captures for the pool):
// those are printed, and only activation-sized ones (>= kBigAlloc bytes) fail the test.
TEST(ModelForward, NoActivationAllocationPerCall) {
    for (const char* name : {"llama", "opt_proj", "qwen2"}) {
        SCOPED_TRACE(name);
        const Model m = Model::load(kDir + name);
        ThreadPool pool(2);
        const int64_t B = 2, T = 37, V = m.cfg.n_vocab;
        const std::vector<int32_t> ids = random_ids(size_t(B * T), int32_t(V), 7);
        std::vector<float> nll(size_t(B * (T - 1))), logits(size_t(B * T * V));
        Forward fwd(m, B, T, pool);
        fwd.nll(ids.data(), nll.data());  // a first call may warm up per-thread op scratch
        fwd.logits(ids.data(), logits.data());

        const int64_t small0 = g_allocs.load(), big0 = g_big_allocs.load();
        fwd.nll(ids.data(), nll.data());
        fwd.logits(ids.data(), logits.data());
        const int64_t fwd_small = g_allocs.load() - small0, fwd_big = g_big_allocs.load() - big0;
        EXPECT_EQ(fwd_big, 0) << "activation-sized allocations in nll() + logits()";

        Session s(m, 64, pool);
        s.eval(std::span<const int32_t>(ids.data(), 8));
        const int64_t small1 = g_allocs.load(), big1 = g_big_allocs.load();
        for (int i = 8; i < 20; ++i) s.eval(std::span<const int32_t>(ids.data() + i, 1));
        const int64_t step_small = g_allocs.load() - small1, step_big = g_big_allocs.load() - big1;
        EXPECT_EQ(step_big, 0) << "activation-sized allocations in Session::eval steps";
        std::printf("  %-9s allocations (all sizes): nll+logits %lld, 12 session steps %lld\n",
                    name, (long long)fwd_small, (long long)step_small);
    }
}

// B*T = 3*100 rows cross the LM-head chunk boundary inside a sequence. nll must equal
// -log_softmax of the logits the same Forward returns, and not depend on the thread count.
TEST(ModelForward, ChunkedNllEqualsLogSoftmaxAnyThreads) {
    for (const char* name : {"llama", "opt", "llama_hd"}) {
        SCOPED_TRACE(name);
        const Model m = Model::load(kDir + name);
        const int64_t B = 3, T = 100, V = m.cfg.n_vocab;
        const std::vector<int32_t> ids = random_ids(size_t(B * T), int32_t(V), 11);
        std::vector<std::vector<float>> nlls;
        std::vector<float> logits(size_t(B * T * V));
        for (int threads : {1, 2, 3}) {
            ThreadPool pool(threads);
            Forward fwd(m, B, T, pool);
            nlls.emplace_back(size_t(B * (T - 1)));
            fwd.nll(ids.data(), nlls.back().data());
            if (threads == 2) fwd.logits(ids.data(), logits.data());
        }
        EXPECT_TRUE(bits_equal(nlls[0], nlls[1])) << "1 vs 2 threads";
        EXPECT_TRUE(bits_equal(nlls[0], nlls[2])) << "1 vs 3 threads";
        double worst = 0;
        for (int64_t b = 0; b < B; ++b)
            for (int64_t t = 0; t + 1 < T; ++t) {
                const double want =
                    ref_nll(logits.data() + (b * T + t) * V, V, ids[size_t(b * T + t + 1)]);
                worst = std::max(worst, std::fabs(nlls[0][size_t(b * (T - 1) + t)] - want));
            }
        EXPECT_LE(worst, 1e-5);
    }
}

// nll with a list of rows (scattered over sequences, out of order, more than one small head
// chunk) writes exactly those rows, bit-identical to the full pass for any head chunk, and leaves
// the others as they were; a row that predicts nothing is refused.
TEST(ModelForward, NllAtListedTokensIsBitIdentical) {
    for (const char* name : {"llama", "opt_proj"}) {
        SCOPED_TRACE(name);
        const Model m = Model::load(kDir + name);
        const int64_t B = 3, T = 29, V = m.cfg.n_vocab;
        const std::vector<int32_t> ids = random_ids(size_t(B * T), int32_t(V), 5);
        ThreadPool pool(2);
        auto full_nll = [&](const std::vector<int32_t>& tok, int64_t ctx) {
            std::vector<float> nll(size_t(B * (ctx - 1)));
            Forward(m, B, ctx, pool).nll(tok.data(), nll.data());
            return nll;
        };
        const std::vector<float> full = full_nll(ids, T);
        // Next-token targets anywhere, a row listed twice, and other targets than the next token:
        // row 30 scored against a changed next token, row T - 1 (the last position, which
        // nll() cannot score) against a token one position longer rows would hold.
        const int32_t x = 3, y = int32_t(V - 1);
        std::vector<ScoredToken> at;
        for (int32_t r : {40, 0, 27, 30, 85, 56, 1, 2, 3, 60, 61, 40})
            at.push_back({r, ids[size_t(r + 1)]});
        at.push_back({30, x});
        at.push_back({int32_t(T - 1), y});
        std::vector<int32_t> changed = ids, longer;
        changed[31] = x;
        for (int64_t b = 0; b < B; ++b) {
            longer.insert(longer.end(), ids.begin() + b * T, ids.begin() + (b + 1) * T);
            longer.push_back(y);
        }
        const std::vector<float> full_changed = full_nll(changed, T),
                                 full_longer = full_nll(longer, T + 1);
        std::vector<float> want;
        for (size_t i = 0; i + 2 < at.size(); ++i)
            want.push_back(full[size_t(at[i].row / T * (T - 1) + at[i].row % T)]);
        want.push_back(full_changed[size_t(T - 1 + 1)]);  // row 30 = (b 1, t 1)
        want.push_back(full_longer[size_t(T - 1)]);
        for (int64_t chunk : {1, 4, 256}) {
            SCOPED_TRACE(chunk);
            Forward fwd(m, B, T, pool, chunk);
            std::vector<float> got(at.size(), -7.f);
            fwd.nll_at(ids.data(), at, got.data());
            for (size_t i = 0; i < at.size(); ++i)
                EXPECT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want[i]))
                    << "entry " << i << " row " << at[i].row;
            for (ScoredToken bad : {ScoredToken{int32_t(B * T), 0}, ScoredToken{-1, 0},
                                    ScoredToken{0, int32_t(V)}, ScoredToken{0, -1}}) {
                std::vector<float> out = {-7.f};
                EXPECT_THROW(fwd.nll_at(ids.data(), std::vector<ScoredToken>{bad}, out.data()),
                             Error);
                EXPECT_EQ(out[0], -7.f);  // checked before anything is written
            }
        }
    }
}

// A forward reshaped to a smaller batch and context inside its arena gives the bits of one
// planned at that shape; a shape beyond the arena is refused.
TEST(ModelForward, ReshapedForwardEqualsOnePlannedAtThatShape) {
    const Model m = Model::load(kDir + "llama");
    ThreadPool pool(2);
    Forward big(m, 3, 29, pool, 4);
    for (auto [B, T] : {std::pair<int64_t, int64_t>{2, 16}, {1, 29}, {3, 29}, {5, 7}}) {
        SCOPED_TRACE(std::to_string(B) + " x " + std::to_string(T));
        const std::vector<int32_t> ids = random_ids(size_t(B * T), int32_t(m.cfg.n_vocab), 9);
        std::vector<float> want(size_t(B * (T - 1))), got(want.size());
        Forward(m, B, T, pool, 4).nll(ids.data(), want.data());
        big.reshape(B, T);
        EXPECT_EQ(big.batch(), B);
        EXPECT_EQ(big.ctx(), T);
        big.nll(ids.data(), got.data());
        for (size_t i = 0; i < want.size(); ++i)
            ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), std::bit_cast<uint32_t>(want[i])) << i;
    }
    EXPECT_THROW(big.reshape(3, 30), Error);
    EXPECT_THROW(big.reshape(0, 5), Error);
}

// Decoding with the KV cache reproduces Forward::logits row by row over 48 tokens (a 17-token
// prompt, then single tokens); a reset session replays the same bits.
TEST(ModelForward, SessionAgreesWithForwardOnEveryPrefix) {
    for (const char* name :
         {"llama", "qwen2", "opt", "opt_postln", "opt_proj", "llama_hd", "opt_nobias"}) {
        SCOPED_TRACE(name);
        const Model m = Model::load(kDir + name);
        const int64_t T = 48, V = m.cfg.n_vocab, prompt = 17;
        const std::vector<int32_t> ids = random_ids(size_t(T), int32_t(V), 3);
        ThreadPool pool(2);
        std::vector<float> logits(size_t(T * V));
        Forward(m, 1, T, pool).logits(ids.data(), logits.data());

        Session s(m, T, pool);
        std::vector<float> first_run, second_run;
        for (int run = 0; run < 2; ++run) {
            s.reset();
            std::vector<float>& got = run == 0 ? first_run : second_run;
            std::span<const float> last = s.eval(std::span<const int32_t>(ids.data(), prompt));
            got.insert(got.end(), last.begin(), last.end());
            EXPECT_LE(rel_err(last.data(), logits.data() + (prompt - 1) * V, size_t(V)), 1e-5);
            for (int64_t t = prompt; t < T; ++t) {
                last = s.eval(std::span<const int32_t>(ids.data() + t, 1));
                got.insert(got.end(), last.begin(), last.end());
                EXPECT_LE(rel_err(last.data(), logits.data() + t * V, size_t(V)), 1e-5)
                    << "position " << t;
            }
        }
        EXPECT_TRUE(bits_equal(first_run, second_run));
    }
}

// The same weights as two shards named by model.safetensors.index.json load to the same model.
TEST(ModelForward, ShardedCheckpoint) {
    TempDir tmp;
    const fs::path dir = tmp.path() / "llama_sharded";
    fs::create_directories(dir);
    fs::copy(kDir + "llama/config.json", dir / "config.json");
    const StFile st = StFile::read(kDir + "llama/model.safetensors");
    StWriter shard[2];
    json weight_map = json::object();
    for (auto& [name, info] : st.header.items()) {
        if (name == "__metadata__") continue;
        const int k = name.find("layers.1.") != std::string::npos || name == "lm_head.weight";
        shard[k].add(name, info["dtype"], info["shape"], st.bytes_of(name));
        weight_map[name] =
            k ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
    }
    shard[0].write(dir / "model-00001-of-00002.safetensors");
    shard[1].write(dir / "model-00002-of-00002.safetensors");
    spit(dir / "model.safetensors.index.json",
         json{{"metadata", {{"total_size", st.data.size()}}}, {"weight_map", weight_map}}.dump(1));

    const Model a = Model::load(kDir + "llama"), b = Model::load(dir.string());
    EXPECT_EQ(a.n_params(), b.n_params());
    ThreadPool pool(2);
    const std::vector<int32_t> ids = random_ids(20, 256, 5);
    std::vector<float> la(20 * 256), lb(la.size());
    Forward(a, 1, 20, pool).logits(ids.data(), la.data());
    Forward(b, 1, 20, pool).logits(ids.data(), lb.data());
    EXPECT_TRUE(bits_equal(la, lb));

    // A shard the index names but that is missing: the error names it.
    fs::remove(dir / "model-00002-of-00002.safetensors");
    const std::string e = error_of(dir.string());
    EXPECT_NE(e.find("model-00002-of-00002.safetensors"), std::string::npos) << e;
}

// BF16 and F16 checkpoints are widened to F32 exactly at load.
TEST(ModelForward, HalfPrecisionCheckpoints) {
    TempDir tmp;
    const StFile st = StFile::read(kDir + "qwen2/model.safetensors");
    const Model ref = Model::load(kDir + "qwen2");
    for (const std::string dtype : {"BF16", "F16"}) {
        SCOPED_TRACE(dtype);
        const fs::path dir = tmp.path() / dtype;
        fs::create_directories(dir);
        fs::copy(kDir + "qwen2/config.json", dir / "config.json");
        StWriter w;
        for (auto& [name, info] : st.header.items()) {
            if (name == "__metadata__") continue;
            const std::string f = st.bytes_of(name);
            std::string h(f.size() / 2, '\0');
            for (size_t i = 0; i < f.size() / 4; ++i) {
                float x;
                std::memcpy(&x, f.data() + 4 * i, 4);
                const uint16_t v = dtype == "BF16" ? to_bf16(x) : to_f16(x);
                std::memcpy(h.data() + 2 * i, &v, 2);
            }
            w.add(name, dtype, info["shape"], h);
        }
        w.write(dir / "model.safetensors");
        const Model m = Model::load(dir.string());
        // Spot-check values: a q bias and an attention weight, widened exactly.
        for (const auto& [got, want] : {std::pair{&m.layers[0].wq, &ref.layers[0].wq},
                                        std::pair{&m.layers[1].bk, &ref.layers[1].bk}}) {
            ASSERT_EQ(got->shape, want->shape);
            for (int64_t i = 0; i < got->numel(); ++i) {
                const float x = want->f32()[i];
                const float expect = dtype == "BF16" ? from_bf16(to_bf16(x)) : from_f16(to_f16(x));
                ASSERT_EQ(got->f32()[i], expect) << i;
            }
        }
        ThreadPool pool(1);
        const std::vector<int32_t> ids = random_ids(16, 256, 9);
        std::vector<float> la(16 * 256), lb(la.size());
        Forward(ref, 1, 16, pool).logits(ids.data(), la.data());
        Forward(m, 1, 16, pool).logits(ids.data(), lb.data());
        EXPECT_LE(rel_err(lb.data(), la.data(), la.size()), dtype == "BF16" ? 5e-2 : 5e-3);
    }
}

// OPT with enable_bias = false and layer_norm_elementwise_affine = false equals transformers
// (golden logits of make_synthetic_models.py, same tolerances as test_model_golden.cpp).
TEST(ModelForward, OptWithoutBiasesOrNormAffineGolden) {
    const Model m = Model::load(kDir + "opt_nobias");
    EXPECT_FALSE(m.cfg.norm_affine);
    EXPECT_TRUE(m.cfg.final_norm);
    EXPECT_FALSE(m.layers[0].bq.data);
    EXPECT_FALSE(m.layers[1].attn_norm.data);
    // transformers' parameter count: embeddings 256*64, positions 130*64, 2 layers of
    // 4 attention projections 64x64 and fc1/fc2 64x128.
    EXPECT_EQ(m.n_params(), uint64_t(256 * 64 + 130 * 64 + 2 * (4 * 64 * 64 + 2 * 64 * 128)));
    const std::string gdir = kDir + "opt_nobias/";
    const std::string ib = slurp(gdir + "ids.i32"), lb = slurp(gdir + "logits.f32");
    const int64_t B = 2, T = 11, V = 256;
    ASSERT_EQ(ib.size(), size_t(B * T * 4));
    ASSERT_EQ(lb.size(), size_t(B * T * V * 4));
    std::vector<int32_t> ids(size_t(B * T));
    std::vector<float> ref(size_t(B * T * V));
    std::memcpy(ids.data(), ib.data(), ib.size());
    std::memcpy(ref.data(), lb.data(), lb.size());
    ThreadPool pool(2);
    Forward fwd(m, B, T, pool);
    std::vector<float> logits(ref.size()), nll(size_t(B * (T - 1)));
    fwd.logits(ids.data(), logits.data());
    EXPECT_LE(rel_err(logits.data(), ref.data(), ref.size()), 1e-4);
    fwd.nll(ids.data(), nll.data());
    for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t + 1 < T; ++t)
            EXPECT_NEAR(nll[size_t(b * (T - 1) + t)],
                        ref_nll(ref.data() + (b * T + t) * V, V, ids[size_t(b * T + t + 1)]), 1e-4);
}

// A .safetensors path inside a checkpoint folder loads the folder's model.
TEST(ModelForward, SafetensorsPathLoadsFolder) {
    const Model a = Model::load(kDir + "opt_proj/model.safetensors");
    EXPECT_EQ(a.cfg.arch, Arch::opt);
    EXPECT_EQ(a.cfg.word_embed_proj_dim, 32);
    EXPECT_EQ(a.n_params(), Model::load(kDir + "opt_proj").n_params());
}

// Tied heads share the embedding's storage rather than copying it.
TEST(ModelForward, TiedHeadSharesStorage) {
    for (const char* name : {"qwen2", "qwen2.gguf", "llama_hd.gguf", "opt"}) {
        const Model m = Model::load(kDir + name);
        EXPECT_TRUE(m.cfg.tie_embeddings) << name;
        EXPECT_EQ(m.lm_head.data, m.tok_embd.data) << name;
    }
    const Model u = Model::load(kDir + "llama.gguf");
    EXPECT_FALSE(u.cfg.tie_embeddings);
    EXPECT_NE(u.lm_head.data, u.tok_embd.data);
}

TEST(ModelForward, BadInputsRaise) {
    const Model llama = Model::load(kDir + "llama"), opt = Model::load(kDir + "opt");
    ThreadPool pool(1);
    EXPECT_THROW(Forward(llama, 0, 4, pool), Error);
    EXPECT_THROW(Forward(llama, 1, 0, pool), Error);
    // OPT has 128 learned positions: a longer context is refused at construction.
    EXPECT_THROW(Forward(opt, 1, 129, pool), Error);
    EXPECT_NO_THROW(Forward(opt, 1, 128, pool));
    EXPECT_THROW(Session(opt, 129, pool), Error);

    Forward fwd(llama, 1, 4, pool);
    std::vector<float> nll(3), logits(4 * 256);
    const int32_t bad[4] = {1, 2, 256, 3}, neg[4] = {1, -1, 2, 3};
    EXPECT_THROW(fwd.nll(bad, nll.data()), Error);
    EXPECT_THROW(fwd.logits(neg, logits.data()), Error);

    Session s(llama, 4, pool);
    const int32_t four[4] = {1, 2, 3, 4};
    EXPECT_THROW(s.eval(std::span<const int32_t>()), Error);
    s.eval(four);
    EXPECT_EQ(s.n_past(), 4);
    EXPECT_THROW(s.eval(std::span<const int32_t>(four, 1)), Error);  // context full
    s.reset();
    EXPECT_EQ(s.n_past(), 0);
    EXPECT_NO_THROW(s.eval(std::span<const int32_t>(four, 1)));
}

TEST(ModelForward, LoaderErrorsNameFileAndField) {
    TempDir tmp;
    // Unknown HF architecture.
    const fs::path dir = tmp.path() / "gpt2";
    fs::create_directories(dir);
    fs::copy(kDir + "llama/model.safetensors", dir / "model.safetensors");
    json cfg = json::parse(slurp(kDir + "llama/config.json"));
    cfg["architectures"] = {"GPT2LMHeadModel"};
    spit(dir / "config.json", cfg.dump(1));
    std::string e = error_of(dir.string());
    EXPECT_NE(e.find((dir / "config.json").string()), std::string::npos) << e;
    EXPECT_NE(e.find("GPT2LMHeadModel"), std::string::npos) << e;

    // No config.json beside the weights.
    fs::remove(dir / "config.json");
    e = error_of((dir / "model.safetensors").string());
    EXPECT_NE(e.find("config.json"), std::string::npos) << e;

    // A GGUF whose general.architecture is not a llama-family one (same-length edit).
    std::string g = slurp(kDir + "llama.gguf");
    const size_t key = g.find("general.architecture");
    ASSERT_NE(key, std::string::npos);
    const size_t val = g.find("llama", key + 20);
    ASSERT_NE(val, std::string::npos);
    g.replace(val, 5, "bloom");
    const fs::path gpath = tmp.path() / "bloom.gguf";
    spit(gpath, g);
    e = error_of(gpath.string());
    EXPECT_NE(e.find(gpath.string()), std::string::npos) << e;
    EXPECT_NE(e.find("bloom"), std::string::npos) << e;

    // A GGUF missing a block tensor (its name edited): the error names file and tensor.
    g = slurp(kDir + "llama.gguf");
    const size_t t = g.find("blk.1.ffn_up.weight");
    ASSERT_NE(t, std::string::npos);
    g[t + 4] = '7';  // "blk.7.ffn_up.weight" is not one the loader asks for
    const fs::path mpath = tmp.path() / "missing.gguf";
    spit(mpath, g);
    e = error_of(mpath.string());
    EXPECT_NE(e.find(mpath.string()), std::string::npos) << e;
    EXPECT_NE(e.find("blk.1.ffn_up.weight"), std::string::npos) << e;
}

TEST(ModelForward, DescribeModelFile) {
    const std::string g = describe_model_file(kDir + "llama.gguf");
    for (const char* want : {"GGUF v3", "general.architecture", "\"llama\"", "llama.block_count",
                             "blk.0.attn_q.weight", "output.weight", "token_embd.weight", "F32"})
        EXPECT_NE(g.find(want), std::string::npos) << want << "\n" << g;
    EXPECT_EQ(g.find("blk.1.attn_q.weight"), std::string::npos) << "only the first block listed";

    const std::string h = describe_model_file(kDir + "opt_proj");
    for (const char* want : {"opt", "layers 2", "n_embd 64", "vocab 256", "word_embed_proj_dim 32",
                             "model.decoder.project_in.weight", "model.decoder.layers.0.fc1.weight",
                             "[128, 64]", "F32"})
        EXPECT_NE(h.find(want), std::string::npos) << want << "\n" << h;
    EXPECT_EQ(h.find("layers.1."), std::string::npos) << "only the first block listed";
}

// The real default model (SmolLM2-135M-Instruct Q4_1) when ZQAT_MODEL names it: a session's
// last-token logits equal the batched forward's, nll equals -log_softmax of those logits.
TEST(ModelForwardReal, SessionAndNllOnSmolLM2) {
    const char* path = std::getenv("ZQAT_MODEL");
    if (!path || !fs::exists(path)) GTEST_SKIP() << "ZQAT_MODEL not set or missing";
    const Model m = Model::load(path);
    ASSERT_TRUE(m.tokenizer.has_value());
    EXPECT_EQ(m.cfg.n_layer, 30);
    EXPECT_EQ(m.cfg.n_head_kv, 3);
    const std::vector<int32_t> prompt = m.tokenizer->encode("The capital of France is", true);
    const int64_t T = int64_t(prompt.size()), V = m.cfg.n_vocab;
    ThreadPool pool(2);
    std::vector<float> logits(size_t(T * V)), nll(size_t(T - 1));
    Forward fwd(m, 1, T, pool);
    fwd.logits(prompt.data(), logits.data());
    fwd.nll(prompt.data(), nll.data());
    for (int64_t t = 0; t + 1 < T; ++t)
        EXPECT_NEAR(nll[size_t(t)], ref_nll(logits.data() + t * V, V, prompt[size_t(t + 1)]), 1e-4);
    Session s(m, 32, pool);
    const std::span<const float> last = s.eval(prompt);
    EXPECT_LE(rel_err(last.data(), logits.data() + (T - 1) * V, size_t(V)), 1e-5);
    const int32_t next = int32_t(std::max_element(last.begin(), last.end()) - last.begin());
    EXPECT_EQ(m.tokenizer->token_bytes(next), " Paris");
}
