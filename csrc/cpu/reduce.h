// Sums with a fixed number of independent accumulators: the compiler can vectorise them
// without -ffast-math, and the order (hence the result) does not depend on threading.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace camfast {

// Items per parallel chunk for at::parallel_for when each item touches `work` elements: about
// 32K elements per chunk, as ATen's own kernels use. With a grain of 1, a tiny call opened a
// parallel region anyway, and on a busy machine that region waits for a descheduled thread
// for up to a scheduler time slice (milliseconds for microseconds of work).
inline int64_t grain_for(int64_t work) {
  constexpr int64_t kElementsPerChunk = 32768;
  return std::max<int64_t>(1, kElementsPerChunk / std::max<int64_t>(1, work));
}

// The row loops of the CPU kernels are compiled twice: for x86-64's baseline (SSE2, which
// torch's build flags target: 4 floats per instruction) and for AVX2 (8), and use_avx2() picks
// one per process. The AVX2 copy is built without FMA and the sums keep their fixed lanes, so
// both copies give the same bits (tests/test_cpu_simd.py). CAMFAST_CPU_ISA=baseline forces the
// baseline copy.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CAMFAST_HAS_AVX2_COPY 1
#define CAMFAST_AVX2 __attribute__((target("avx2")))
// The loop bodies are inlined into each copy, so that they are compiled for its instruction set.
#define CAMFAST_INLINE inline __attribute__((always_inline))
#else
#define CAMFAST_HAS_AVX2_COPY 0
#define CAMFAST_AVX2
#define CAMFAST_INLINE inline
#endif

inline bool use_avx2() {
#if CAMFAST_HAS_AVX2_COPY
  static const bool yes = [] {
    const char* isa = std::getenv("CAMFAST_CPU_ISA");
    __builtin_cpu_init();  // idempotent; needed if this ever runs before the library's constructors
    return !(isa && std::string_view(isa) == "baseline") && __builtin_cpu_supports("avx2");
  }();
  return yes;
#else
  return false;
#endif
}

constexpr int kLanes = 8;

template <typename acc_t, typename T>
CAMFAST_INLINE acc_t lane_sum(const T* x, int64_t n) {
  acc_t s[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) s[k] += static_cast<acc_t>(x[i + k]);
  acc_t total = 0;
  for (int k = 0; k < kLanes; ++k) total += s[k];
  for (; i < n; ++i) total += static_cast<acc_t>(x[i]);
  return total;
}

template <typename acc_t, typename T>
CAMFAST_INLINE acc_t lane_dot(const acc_t* a, const T* x, int64_t n) {
  acc_t s[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) s[k] += a[i + k] * static_cast<acc_t>(x[i + k]);
  acc_t total = 0;
  for (int k = 0; k < kLanes; ++k) total += s[k];
  for (; i < n; ++i) total += a[i] * static_cast<acc_t>(x[i]);
  return total;
}

}  // namespace camfast
