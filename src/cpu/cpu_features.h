// What the CPU we run on can do, detected once from CPUID.
#pragma once

namespace zqat::cpu {

struct CpuFeatures {
    bool avx2 = false;    // AVX2 + FMA + F16C (the *_avx2.cpp flags)
    bool avx512 = false;  // AVX-512 F + BW + VL + DQ, plus the AVX2 set
};

const CpuFeatures& cpu_features();

}  // namespace zqat::cpu
