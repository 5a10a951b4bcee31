// Sums with a fixed number of independent accumulators: the compiler can vectorise them
// without -ffast-math, and the order (hence the result) does not depend on threading.
#pragma once

#include <algorithm>
#include <cstdint>

namespace camfast {

// Items per parallel chunk for at::parallel_for when each item touches `work` elements: about
// 32K elements per chunk, as ATen's own kernels use. With a grain of 1, a tiny call opened a
// parallel region anyway, and on a busy machine that region waits for a descheduled thread
// for up to a scheduler time slice (milliseconds for microseconds of work).
inline int64_t grain_for(int64_t work) {
  constexpr int64_t kElementsPerChunk = 32768;
  return std::max<int64_t>(1, kElementsPerChunk / std::max<int64_t>(1, work));
}

constexpr int kLanes = 8;

template <typename acc_t, typename T>
inline acc_t lane_sum(const T* x, int64_t n) {
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
inline acc_t lane_dot(const acc_t* a, const T* x, int64_t n) {
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
