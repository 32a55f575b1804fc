#include "zqat/core/rng.h"

#include <cmath>
#include <numbers>

#include "normal_math.h"

namespace zqat {

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
    constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
    constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments
    for (int round = 0; round < 10; ++round) {
        const uint64_t p0 = uint64_t(kM0) * ctr[0], p1 = uint64_t(kM1) * ctr[2];
        ctr = {uint32_t(p1 >> 32) ^ ctr[1] ^ key[0], uint32_t(p1),
               uint32_t(p0 >> 32) ^ ctr[3] ^ key[1], uint32_t(p0)};
        key = {key[0] + kW0, key[1] + kW1};
    }
    return ctr;
}

namespace {

// The four normals of Philox block `block` of (seed, tensor).
std::array<float, 4> normal_block(uint64_t seed, uint32_t tensor_id, uint64_t block) {
    const std::array<uint32_t, 4> r =
        philox4x32_10({uint32_t(block), uint32_t(block >> 32), tensor_id, 0},
                      {uint32_t(seed), uint32_t(seed >> 32)});
    std::array<float, 4> z{};
    normal_math::box_muller(r[0], r[1], &z[0], &z[1]);
    normal_math::box_muller(r[2], r[3], &z[2], &z[3]);
    return z;
}

uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

}  // namespace

float normal_at(uint64_t seed, uint32_t tensor_id, uint64_t index) {
    return normal_block(seed, tensor_id, index / 4)[size_t(index % 4)];
}

void fill_normal(uint64_t seed, uint32_t tensor_id, uint64_t first, int64_t n, float* out) {
    int64_t i = 0;
    while (i < n) {
        const uint64_t at = first + uint64_t(i);
        const std::array<float, 4> z = normal_block(seed, tensor_id, at / 4);
        for (uint64_t lane = at % 4; lane < 4 && i < n; ++lane) out[i++] = z[size_t(lane)];
    }
}

uint64_t step_seed(uint64_t run_seed, uint64_t step, uint64_t direction) {
    return splitmix64(splitmix64(splitmix64(run_seed) ^ step) ^ direction);
}

}  // namespace zqat
