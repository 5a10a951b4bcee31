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

// One output row of the upsampled mask: M[x] for x in [0, W). Interpolating vertically
// first, on the w low-res values (scratch ``v``), leaves two taps per output pixel.
template <typename acc_t>
inline void mask_row(const acc_t* u, int64_t w, const Taps<acc_t>& ty, int64_t y, const Taps<acc_t>& tx,
                     acc_t* __restrict out, int64_t W, acc_t* __restrict v) {
  const acc_t* r0 = u + ty.i0[y] * w;
  const acc_t* r1 = u + ty.i1[y] * w;
  const acc_t a = ty.l0[y], c = ty.l1[y];
  for (int64_t j = 0; j < w; ++j) v[j] = a * r0[j] + c * r1[j];
  const int64_t* x0 = tx.i0.data();
  const int64_t* x1 = tx.i1.data();
  const acc_t* l0 = tx.l0.data();
  const acc_t* l1 = tx.l1.data();
  for (int64_t x = 0; x < W; ++x) out[x] = l0[x] * v[x0[x]] + l1[x] * v[x1[x]];
}

// Adjoint of one tap of the horizontal interpolation: q[idx[x]] += wt[x] * dm[x]. The
// indices never decrease along x, so each run of equal indices is summed in a register
// (a scatter through memory would chain every update on the previous store).
template <typename acc_t>
inline void fold_taps(const acc_t* dm, const int64_t* idx, const acc_t* wt, int64_t W, acc_t* q) {
  int64_t j = idx[0];
  acc_t run = 0;
  for (int64_t x = 0; x < W; ++x) {
    if (idx[x] != j) {
      q[j] += run;
      j = idx[x];
      run = 0;
    }
    run += wt[x] * dm[x];
  }
  q[j] += run;
}

}  // namespace camfast
