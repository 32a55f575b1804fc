// Kernel benchmarks: zqat::ops::gemm_nt against OpenBLAS cblas_sgemm (row-major, A . W^T) at the
// SmolLM2-135M shapes, with 1 and 2 threads each, plus attention and cross-entropy at model
// shapes, the packed low-bit GEMM (gemm_nt_packed; compare with gemm/ours at the same shape) and
// the quantizer ops. GEMM cases report GFLOP/s (wall-clock rate), the quantizers Gelem/s. Names:
//   gemm/<ours|openblas>/M/N/K/threads, attention/T/threads, cross_entropy/M/V/threads,
//   gemm_packed/W<bits>g<group|K>/M/N/K/threads, fake_quant_act/A<bits>/M/D/threads,
//   quantize_weight/W<bits>g<group|K>/N/K/threads
// Env ZQAT_ISA forces an ISA level. Use --benchmark_filter=gemm to run only the GEMM comparison
// (scripts/bench_gemm.sh does); --benchmark_filter='gemm(_packed)?/(ours|W)' for packed vs fp32.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "zqat/core/ops.h"
#include "zqat/core/packed.h"
#include "zqat/core/thread_pool.h"

namespace {

size_t sz(int64_t n) {
    return static_cast<size_t>(n);
}

std::vector<float> random_vec(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng);
    return v;
}

void set_gflops(benchmark::State& state, double flops_per_iter) {
    state.counters["GFLOP"] = benchmark::Counter(flops_per_iter * double(state.iterations()) / 1e9,
                                                 benchmark::Counter::kIsRate);
}

void bench_gemm(benchmark::State& state, bool ours, int64_t M, int64_t N, int64_t K, int threads) {
    const auto a = random_vec(sz(M * K), 1), w = random_vec(sz(N * K), 2);
    std::vector<float> c(sz(M * N));
    zqat::ThreadPool pool(threads);
    openblas_set_num_threads(threads);
    for (auto _ : state) {
        if (ours) {
            zqat::ops::gemm_nt(M, N, K, a.data(), K, w.data(), K, nullptr, c.data(), N, &pool);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(N), int(K), 1.0f,
                        a.data(), int(K), w.data(), int(K), 0.0f, c.data(), int(N));
        }
        benchmark::DoNotOptimize(c.data());
        benchmark::ClobberMemory();
    }
    set_gflops(state, 2.0 * double(M) * double(N) * double(K));
}

// A . W^T with W [N, K] quantized to `bits` (group 0: per channel) and stored packed.
void bench_gemm_packed(benchmark::State& state, int bits, int64_t group, int64_t M, int64_t N,
                       int64_t K, int threads) {
    const auto a = random_vec(sz(M * K), 1), w = random_vec(sz(N * K), 2);
    const int64_t g = group > 0 ? group : K;
    std::vector<uint8_t> codes(sz(N * K));
    std::vector<uint16_t> scales(sz(N * (K / g))), zeros(scales.size());
    zqat::ops::quantize_weight(N, K, w.data(), K, bits, g, false, nullptr, nullptr, codes.data(),
                               scales.data(), zeros.data(), nullptr, nullptr);
    const auto pw =
        zqat::PackedWeight::from_codes(bits, N, K, g, codes.data(), scales.data(), zeros.data());
    std::vector<float> c(sz(M * N));
    zqat::ThreadPool pool(threads);
    for (auto _ : state) {
        zqat::ops::gemm_nt_packed(M, a.data(), K, pw, nullptr, c.data(), N, &pool);
        benchmark::DoNotOptimize(c.data());
        benchmark::ClobberMemory();
    }
    set_gflops(state, 2.0 * double(M) * double(N) * double(K));
}

void set_gelems(benchmark::State& state, double elems_per_iter) {
    state.counters["Gelem/s"] = benchmark::Counter(
        elems_per_iter * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

// Per-token fake quantization of activations [M, D], in place (the input is restored each
// iteration from a copy, outside the timing).
void bench_fake_quant_act(benchmark::State& state, int bits, int64_t M, int64_t D, int threads) {
    const auto x0 = random_vec(sz(M * D), 5);
    auto x = x0;
    zqat::ThreadPool pool(threads);
    for (auto _ : state) {
        state.PauseTiming();
        x = x0;
        state.ResumeTiming();
        zqat::ops::fake_quant_act(M, D, x.data(), D, bits, 1.0f, &pool);
        benchmark::DoNotOptimize(x.data());
    }
    set_gelems(state, double(M * D));
}

// Fake quantization of a weight [N, K] (w_hat only, as the QAT forward uses it).
void bench_quantize_weight(benchmark::State& state, int bits, int64_t group, int64_t N, int64_t K,
                           int threads) {
    const auto w = random_vec(sz(N * K), 6);
    std::vector<float> w_hat(w.size());
    zqat::ThreadPool pool(threads);
    for (auto _ : state) {
        zqat::ops::quantize_weight(N, K, w.data(), K, bits, group, false, nullptr, nullptr, nullptr,
                                   nullptr, nullptr, w_hat.data(), &pool);
        benchmark::DoNotOptimize(w_hat.data());
    }
    set_gelems(state, double(N * K));
}

// SmolLM2-135M: T tokens, H = 9 query heads, Hkv = 3, D = 64; q, k, v interleaved per token as
// the model's fused projections would lay them out.
void bench_attention(benchmark::State& state, int64_t T, int threads) {
    const int64_t H = 9, Hkv = 3, D = 64, stride = (H + 2 * Hkv) * D;
    const auto qkv = random_vec(sz(T * stride), 3);
    std::vector<float> out(sz(T * H * D));
    zqat::ThreadPool pool(threads);
    for (auto _ : state) {
        zqat::ops::attention_causal(T, T, H, Hkv, D, qkv.data(), stride, qkv.data() + H * D, stride,
                                    qkv.data() + (H + Hkv) * D, stride, out.data(), H * D, 0.125f,
                                    &pool);
        benchmark::DoNotOptimize(out.data());
    }
    // Causal: about half of the T x T score matrix, for Q K^T and for P V.
    set_gflops(state, 2.0 * 2.0 * double(H) * double(T) * double(T + 1) / 2.0 * double(D));
}

void bench_cross_entropy(benchmark::State& state, int64_t M, int64_t V, int threads) {
    const auto logits = random_vec(sz(M * V), 4);
    std::vector<int32_t> target(sz(M), 17);
    std::vector<float> nll(sz(M));
    zqat::ThreadPool pool(threads);
    for (auto _ : state) {
        zqat::ops::cross_entropy(M, V, logits.data(), target.data(), nll.data(), &pool);
        benchmark::DoNotOptimize(nll.data());
    }
    state.counters["Gelem/s"] = benchmark::Counter(double(M * V) * double(state.iterations()) / 1e9,
                                                   benchmark::Counter::kIsRate);
}

}  // namespace

int main(int argc, char** argv) {
    struct Shape {
        int64_t n, k;
    };
    const Shape shapes[] = {{576, 576}, {192, 576}, {1536, 576}, {576, 1536}, {49152, 576}};
    for (const int threads : {1, 2}) {
        for (const int64_t M : {512, 2048}) {
            for (const auto& s : shapes) {
                for (const bool ours : {true, false}) {
                    const std::string name = std::string("gemm/") + (ours ? "ours" : "openblas") +
                                             "/" + std::to_string(M) + "/" + std::to_string(s.n) +
                                             "/" + std::to_string(s.k) + "/" +
                                             std::to_string(threads);
                    benchmark::RegisterBenchmark(name.c_str(), bench_gemm, ours, M, s.n, s.k,
                                                 threads)
                        ->UseRealTime()
                        ->Unit(benchmark::kMillisecond);
                }
            }
        }
        // Packed vs fp32 at the decoder-linear shapes (the LM head stays fp32). SmolLM2's 576
        // inputs are not a multiple of 128: those shapes use g64 for the grouped case.
        for (const int64_t M : {512, 2048}) {
            for (const auto& s : shapes) {
                if (s.n == 49152) continue;
                for (const int bits : {4, 2}) {
                    for (int64_t group : {int64_t(128), int64_t(0)}) {
                        if (group > 0 && s.k % group != 0) group = 64;
                        const std::string name = "gemm_packed/W" + std::to_string(bits) + "g" +
                                                 std::to_string(group > 0 ? group : s.k) + "/" +
                                                 std::to_string(M) + "/" + std::to_string(s.n) +
                                                 "/" + std::to_string(s.k) + "/" +
                                                 std::to_string(threads);
                        benchmark::RegisterBenchmark(name.c_str(), bench_gemm_packed, bits, group,
                                                     M, s.n, s.k, threads)
                            ->UseRealTime()
                            ->Unit(benchmark::kMillisecond);
                    }
                }
            }
        }
        for (const int64_t D : {576, 1536}) {
            for (const int bits : {4, 8}) {
                benchmark::RegisterBenchmark(("fake_quant_act/A" + std::to_string(bits) + "/2048/" +
                                              std::to_string(D) + "/" + std::to_string(threads))
                                                 .c_str(),
                                             bench_fake_quant_act, bits, int64_t(2048), D, threads)
                    ->UseRealTime()
                    ->Unit(benchmark::kMicrosecond);
            }
        }
        for (const auto& s : shapes) {
            if (s.n == 49152) continue;
            const int64_t group = s.k % 128 == 0 ? 128 : 64;
            benchmark::RegisterBenchmark(
                ("quantize_weight/W4g" + std::to_string(group) + "/" + std::to_string(s.n) + "/" +
                 std::to_string(s.k) + "/" + std::to_string(threads))
                    .c_str(),
                bench_quantize_weight, 4, group, s.n, s.k, threads)
                ->UseRealTime()
                ->Unit(benchmark::kMicrosecond);
        }
        for (const int64_t T : {512, 2048}) {
            benchmark::RegisterBenchmark(
                ("attention/" + std::to_string(T) + "/" + std::to_string(threads)).c_str(),
                bench_attention, T, threads)
                ->UseRealTime()
                ->Unit(benchmark::kMillisecond);
        }
        benchmark::RegisterBenchmark(("cross_entropy/512/49152/" + std::to_string(threads)).c_str(),
                                     bench_cross_entropy, int64_t(512), int64_t(49152), threads)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
    }
    // ZQAT_ISA=generic|avx2|avx512 benchmarks a lower ISA level than the CPU's best.
    if (const char* level = std::getenv("ZQAT_ISA")) zqat::ops::set_isa(level);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::AddCustomContext("zqat_isa", std::string(zqat::ops::isa()));
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
