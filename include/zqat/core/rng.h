// Counter-based random numbers for zeroth-order perturbations (METHOD.md s4): z is regenerated on
// demand from (seed, tensor id, element index), never stored, and is the same on any thread
// count, any blocking and (with the same libm) any backend.
//   Philox4x32-10 (Salmon et al. 2011, Random123), exactly: verified against Random123's
//   known-answer vectors (tests/test_core_rng.cpp).
//   normal_at: element i of tensor t under seed s uses the Philox block with counter
//   {i / 4 (low, high 32 bits), t, 0} and key {s (low, high 32 bits)}; its four 32-bit words
//   r0..r3 give two Box-Muller pairs, (r0, r1) -> lanes 0, 1 and (r2, r3) -> lanes 2, 3, in
//   float with series for ln, sin and cos (src/core/normal_math.h: every operation exactly
//   rounded, so the AVX-512 path, ops::fill_normal, gives the same bits):
//     u1 = ((r_a >> 8) + 1) / 2^24 in (0, 1],  u2 = (r_b >> 8) / 2^24,  rho = sqrt(-2 ln u1)
//     lane even = rho cos(2 pi u2),  lane odd = rho sin(2 pi u2)      (|z| <= 5.77)
#pragma once

#include <array>
#include <cstdint>

namespace zqat {

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key);

// A standard normal draw for element `index` of tensor `tensor_id` under `seed`.
float normal_at(uint64_t seed, uint32_t tensor_id, uint64_t index);
// out[i] = normal_at(seed, tensor_id, first + i) for i < n, computed block-wise (the scalar
// reference of ops::fill_normal).
void fill_normal(uint64_t seed, uint32_t tensor_id, uint64_t first, int64_t n, float* out);

// The seed of direction `direction` at step `step` of a run seeded `run_seed` (SplitMix64 mixing of
// the three): distinct, well-spread seeds from small consecutive integers.
uint64_t step_seed(uint64_t run_seed, uint64_t step, uint64_t direction);

}  // namespace zqat
