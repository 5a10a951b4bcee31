// Bilinear sampling weights with align_corners=False, exactly as F.interpolate computes
// them, shared by the CPU kernels of forward and backward.
#pragma once

#include <cstdint>
#include <vector>

namespace camfast {

template <typename acc_t>
struct Taps {
  std::vector<int64_t> i0, i1;  // low-res source indices per output index
  std::vector<acc_t> l0, l1;    // their weights

  Taps(int64_t in, int64_t out) : i0(out), i1(out), l0(out), l1(out) {
    const acc_t scale = static_cast<acc_t>(in) / static_cast<acc_t>(out);
    for (int64_t o = 0; o < out; ++o) {
      acc_t src = scale * (static_cast<acc_t>(o) + acc_t(0.5)) - acc_t(0.5);
      if (src < acc_t(0)) src = acc_t(0);
      const int64_t a = static_cast<int64_t>(src);
      i0[o] = a;
      i1[o] = a + (a < in - 1 ? 1 : 0);
      l1[o] = src - static_cast<acc_t>(a);
      l0[o] = acc_t(1) - l1[o];
    }
  }
};

// One output row of the upsampled mask: M[x] for x in [0, W).
template <typename acc_t>
inline void mask_row(const acc_t* u, int64_t w, const Taps<acc_t>& ty, int64_t y, const Taps<acc_t>& tx,
                     acc_t* out, int64_t W) {
  const acc_t* r0 = u + ty.i0[y] * w;
  const acc_t* r1 = u + ty.i1[y] * w;
  const acc_t a = ty.l0[y], c = ty.l1[y];
  for (int64_t x = 0; x < W; ++x) {
    const int64_t x0 = tx.i0[x], x1 = tx.i1[x];
    out[x] = a * (tx.l0[x] * r0[x0] + tx.l1[x] * r0[x1]) + c * (tx.l0[x] * r1[x0] + tx.l1[x] * r1[x1]);
  }
}

}  // namespace camfast
