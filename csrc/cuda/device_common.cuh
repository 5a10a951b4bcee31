// Device helpers shared by the camfast CUDA kernels: dtype traits, chunked (vectorised) loads and
// stores, deterministic warp/block reductions, bilinear sampling weights, workspace carving.
// CUDA headers only (see launchers.h).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "launchers.h"

namespace camfast {
namespace cuda_impl {

// ---------------------------------------------------------------- dtype traits

template <typename T>
struct AccOf {
  using type = float;
};
template <>
struct AccOf<double> {
  using type = double;
};
template <typename T>
using acc_t = typename AccOf<T>::type;

// Elements per 16-byte vector: 4 (fp32), 8 (fp16, bf16), 2 (fp64).
template <typename T>
constexpr int kVec = static_cast<int>(16 / sizeof(T));

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_acc(acc_t<T> x);
template <>
__device__ __forceinline__ float from_acc<float>(float x) { return x; }
template <>
__device__ __forceinline__ double from_acc<double>(double x) { return x; }
template <>
__device__ __forceinline__ __half from_acc<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

__device__ __forceinline__ float fma_rn(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double fma_rn(double a, double b, double c) { return __fma_rn(a, b, c); }
__device__ __forceinline__ float abs_(float x) { return fabsf(x); }
__device__ __forceinline__ double abs_(double x) { return fabs(x); }

template <typename A>
__device__ __forceinline__ A pos_inf();
template <>
__device__ __forceinline__ float pos_inf<float>() { return __int_as_float(0x7f800000); }
template <>
__device__ __forceinline__ double pos_inf<double>() { return __longlong_as_double(0x7ff0000000000000LL); }

// True when `p` may be read/written with 16-byte vector accesses.
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// ---------------------------------------------------------------- chunked loads and stores
//
// A row of `len` elements is split into chunks of kVec<T> elements; chunk q covers
// [q*V, min(q*V + V, len)). load_chunk fills out-of-range slots with 0 (only ever summed).
// `vec_ok` (row start 16-byte aligned, checked by the launcher) selects one 16-byte access per
// full chunk; otherwise, and for a partial last chunk, elements are accessed one by one. Both
// paths deliver the same values in the same slots, so results never depend on alignment.

template <typename T>
__device__ __forceinline__ void load_chunk(const T* __restrict__ row, int64_t start, int64_t len, bool vec_ok,
                                           acc_t<T>* out) {
  constexpr int V = kVec<T>;
  if (vec_ok && start + V <= len) {
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(row + start));
    T vals[V];
    memcpy(vals, &raw, sizeof(raw));
#pragma unroll
    for (int j = 0; j < V; ++j) out[j] = to_acc(vals[j]);
  } else {
#pragma unroll
    for (int j = 0; j < V; ++j) out[j] = (start + j < len) ? to_acc(row[start + j]) : acc_t<T>(0);
  }
}

template <typename T>
__device__ __forceinline__ void store_chunk(T* __restrict__ row, int64_t start, int64_t len, bool vec_ok,
                                            const acc_t<T>* v) {
  constexpr int V = kVec<T>;
  if (vec_ok && start + V <= len) {
    T vals[V];
#pragma unroll
    for (int j = 0; j < V; ++j) vals[j] = from_acc<T>(v[j]);
    uint4 raw;
    memcpy(&raw, vals, sizeof(raw));
    *reinterpret_cast<uint4*>(row + start) = raw;
  } else {
#pragma unroll
    for (int j = 0; j < V; ++j)
      if (start + j < len) row[start + j] = from_acc<T>(v[j]);
  }
}

// ---------------------------------------------------------------- deterministic reductions
//
// Fixed shuffle-down trees: the result (in lane 0 / returned to every thread of the block)
// depends only on each thread's input, never on timing.

struct SumOp {
  template <typename A>
  __device__ __forceinline__ A operator()(A a, A b) const { return a + b; }
};
struct MinOp {
  template <typename A>
  __device__ __forceinline__ A operator()(A a, A b) const { return b < a ? b : a; }
};
struct MaxOp {
  template <typename A>
  __device__ __forceinline__ A operator()(A a, A b) const { return b > a ? b : a; }
};

// Result valid in lane 0.
template <typename A, typename Op>
__device__ __forceinline__ A warp_reduce(A v, Op op) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, offset));
  return v;
}

// Every thread of the block must call it (blockDim.x a multiple of 32, at most 1024); `smem`
// holds 32 elements. Returns the block's result to every thread.
template <typename A, typename Op>
__device__ __forceinline__ A block_reduce(A v, Op op, A identity, A* smem) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int nwarps = blockDim.x >> 5;
  v = warp_reduce(v, op);
  __syncthreads();  // smem may still be read by the previous call
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    A t = lane < nwarps ? smem[lane] : identity;
    t = warp_reduce(t, op);
    if (lane == 0) smem[0] = t;
  }
  __syncthreads();
  return smem[0];
}

// ---------------------------------------------------------------- bilinear sampling
//
// F.interpolate(mode="bilinear", align_corners=False) along one axis, docs/kernels.md:
//   src = max(scale * (dst + 0.5) - 0.5, 0), i0 = (int)src, i1 = i0 + (i0 < in - 1),
//   l1 = src - i0, l0 = 1 - l1, with scale = in / out computed in acc by the launcher.
// The fma is explicit so that every caller (forward, backward, index tables) gets the same bits.
template <typename A>
struct Lerp {
  int64_t i0, i1;
  A l0, l1;
};

template <typename A>
__device__ __forceinline__ Lerp<A> bilinear_lerp(int64_t dst, A scale, int64_t in_size) {
  A src = fma_rn(scale, static_cast<A>(dst) + A(0.5), A(-0.5));
  if (src < A(0)) src = A(0);
  Lerp<A> r;
  r.i0 = static_cast<int64_t>(src);
  if (r.i0 > in_size - 1) r.i0 = in_size - 1;  // unreachable for sane sizes; keeps reads in bounds
  r.i1 = r.i0 + (r.i0 < in_size - 1 ? 1 : 0);
  r.l1 = src - static_cast<A>(r.i0);
  r.l0 = A(1) - r.l1;
  return r;
}

// M at one output pixel from the low-res mask `u` ([h, w] of one sample, row length w).
template <typename A>
__device__ __forceinline__ A sample_bilinear(const A* __restrict__ u, int64_t w, const Lerp<A>& ly,
                                             const Lerp<A>& lx) {
  const A* r0 = u + ly.i0 * w;
  const A* r1 = u + ly.i1 * w;
  return ly.l0 * (lx.l0 * r0[lx.i0] + lx.l1 * r0[lx.i1]) + ly.l1 * (lx.l0 * r1[lx.i0] + lx.l1 * r1[lx.i1]);
}

// ---------------------------------------------------------------- workspace carving (host)
//
// The same Carver sizes the workspace (base == nullptr) and hands out its pieces, so the two can
// never disagree. Pieces are 256-byte aligned.
struct Carver {
  char* base;
  size_t offset = 0;
  explicit Carver(void* b) : base(static_cast<char*>(b)) {}
  template <typename U>
  U* take(size_t count) {
    offset = (offset + 255) & ~static_cast<size_t>(255);
    U* p = base ? reinterpret_cast<U*>(base + offset) : nullptr;
    offset += count * sizeof(U);
    return p;
  }
};

__host__ __device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace cuda_impl
}  // namespace camfast
