// Bilinear sampling weights with align_corners=False, exactly as F.interpolate computes
// them, shared by the CPU kernels of forward and backward.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/reduce.h"

namespace camfast {

template <typename acc_t>
struct Taps {
  std::vector<int64_t> i0, i1;  // low-res source indices per output index
  std::vector<acc_t> l0, l1;    // their weights
  // i0 and i1 never decrease along the output, so the outputs form runs of equal i0 (run r
  // covers [start0[r], start0[r + 1])), and runs of equal i1 (start1). Per run a source is one
  // scalar, so the loops over a run vectorise where a gather per output would not.
  std::vector<int64_t> start0, start1;

  Taps(int64_t in, int64_t out) : i0(out), i1(out), l0(out), l1(out) {
    // At most one run per source index, plus the end: no reallocation in the loop below.
    start0.reserve(std::min(in, out) + 1);
    start1.reserve(std::min(in, out) + 1);
    const acc_t scale = static_cast<acc_t>(in) / static_cast<acc_t>(out);
    for (int64_t o = 0; o < out; ++o) {
      acc_t src = scale * (static_cast<acc_t>(o) + acc_t(0.5)) - acc_t(0.5);
      if (src < acc_t(0)) src = acc_t(0);
      const int64_t a = static_cast<int64_t>(src);
      i0[o] = a;
      i1[o] = a + (a < in - 1 ? 1 : 0);
      l1[o] = src - static_cast<acc_t>(a);
      l0[o] = acc_t(1) - l1[o];
      if (o == 0 || i0[o] != i0[o - 1]) start0.push_back(o);
      if (o == 0 || i1[o] != i1[o - 1]) start1.push_back(o);
    }
    start0.push_back(out);
    start1.push_back(out);
  }
};

// One output row of the upsampled mask: M[x] for x in [0, W). Interpolating vertically
// first, on the w low-res values (scratch ``v``), leaves two taps per output pixel. Within a
// run of equal i0, i1 is equal too (it is i0 + 1 or i0).
template <typename acc_t>
CAMFAST_INLINE void mask_row(const acc_t* u, int64_t w, const Taps<acc_t>& ty, int64_t y, const Taps<acc_t>& tx,
                     acc_t* __restrict out, int64_t W, acc_t* __restrict v) {
  const acc_t* r0 = u + ty.i0[y] * w;
  const acc_t* r1 = u + ty.i1[y] * w;
  const acc_t a = ty.l0[y], c = ty.l1[y];
  for (int64_t j = 0; j < w; ++j) v[j] = a * r0[j] + c * r1[j];
  const acc_t* l0 = tx.l0.data();
  const acc_t* l1 = tx.l1.data();
  for (size_t r = 0; r + 1 < tx.start0.size(); ++r) {
    const int64_t x0 = tx.start0[r], x1 = tx.start0[r + 1];
    const acc_t v0 = v[tx.i0[x0]], v1 = v[tx.i1[x0]];
    for (int64_t x = x0; x < x1; ++x) out[x] = l0[x] * v0 + l1[x] * v1;
  }
}

// Adjoint of one tap of the horizontal interpolation, q[idx[x]] += wt[x] * dm[x], over its runs
// of equal idx: each run is summed in a register, in x order, and added to q once.
template <typename acc_t>
CAMFAST_INLINE void fold_tap(const acc_t* dm, const std::vector<int64_t>& start, const int64_t* idx, const acc_t* wt,
                     acc_t* q) {
  for (size_t r = 0; r + 1 < start.size(); ++r) {
    acc_t run = 0;
    for (int64_t x = start[r]; x < start[r + 1]; ++x) run += wt[x] * dm[x];
    q[idx[start[r]]] += run;
  }
}

template <typename acc_t>
CAMFAST_INLINE void fold_row(const acc_t* dm, const Taps<acc_t>& tx, acc_t* q) {
  fold_tap(dm, tx.start0, tx.i0.data(), tx.l0.data(), q);
  fold_tap(dm, tx.start1, tx.i1.data(), tx.l1.data(), q);
}

}  // namespace camfast
