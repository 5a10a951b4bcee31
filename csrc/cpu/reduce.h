// Sums with a fixed number of independent accumulators: the compiler can vectorise them
// without -ffast-math, and the order (hence the result) does not depend on threading.
#pragma once

#include <cstdint>

namespace camfast {

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
