// Stage 2 on CUDA: masked_l1 and masked_l1_backward (docs/kernels.md).
//
// The mask M is never materialised: every kernel samples the low-res mask u on the fly with
// bilinear_lerp/sample_bilinear (device_common.cuh), the one definition of the sampling.
// Work item = one 16-byte chunk of V pixels of one image row (V = 4 fp32, 8 fp16/bf16, 2 fp64):
// M is computed once per pixel and reused for the K image channels.
//
// Forward
//   l1_forward_kernel   grid B * nblk blocks of 256 threads, nblk = ceil(H * ceil(W/V) / 256);
//                       block (b, blk) owns items blk*256 .. blk*256+255 of sample b (row-major),
//                       one per thread; thread sum -> fixed block tree -> partial[b * nblk + blk].
//   l1_reduce_kernel    grid B ('none') or 1 block of 256 threads: strided per-thread sums over the
//                       partials, fixed block tree, then the division; writes the output dtype.
//
// Backward
//   l1_index_kernel     start tables of the bilinear adjoint, one thread per output column/row:
//                       xs[j] = first output column x with i0(x) >= j (xs[w] = W); ys alike.
//                       Built with the same bilinear_lerp as every other kernel, so the ranges
//                       and the weights can never disagree.
//   l1_backward_kernel  grid B * ceil(H/RY) blocks of 256 threads; block (b, rb) owns RY whole
//                       rows (RY*ceil(W/V) ~ 256 items). Writes dreal/dfake (when requested) and,
//                       when dmask is requested, dM = -ge * sum_k |real - fake| of its rows into
//                       shared memory, then, after a barrier, one thread per (row y, column j)
//                       sums the row's contributions to low-res column j in ascending x
//                       -> rowpart[b, y, j].
//   l1_mask_grad_kernel one thread per (b, i, j): sums rowpart[b, y, j] over the rows y that
//                       sample low-res row i, ascending y -> dmask[b, i, j].
// All reductions have a fixed order: results are bitwise reproducible. No atomics.
#include "device_common.cuh"
#include "launchers.h"

namespace camfast {
namespace cuda_impl {
namespace {

constexpr int kThreads = 256;
constexpr int kKUnroll = 4;  // image channels whose loads are issued together
// Dynamic shared memory for dM rows; wider rows fall back to a global scratch buffer.
constexpr size_t kMaxDynamicSmem = 46 * 1024;

template <typename A>
struct L1Geom {
  int64_t B, K, H, W, h, w;
  A sy, sx;  // h / H and w / W, in acc (docs/kernels.md)
};

// 1 - M for the V pixels x0 .. x0+V-1 of row y (0 beyond the row end).
template <typename A, int V>
__device__ __forceinline__ void one_minus_mask(const A* __restrict__ u_b, const L1Geom<A>& g, const Lerp<A>& ly,
                                               int64_t x0, A* om) {
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const int64_t x = x0 + j;
    if (x < g.W) {
      const Lerp<A> lx = bilinear_lerp(x, g.sx, g.w);
      om[j] = A(1) - sample_bilinear(u_b, g.w, ly, lx);
    } else {
      om[j] = A(0);
    }
  }
}

// ge[b] of docs/kernels.md from the incoming gradient (acc, 1 or B elements).
template <typename A>
__device__ __forceinline__ A grad_scale(const A* __restrict__ grad, L1Reduction mode, int64_t b, A denom) {
  if (mode == L1Reduction::Sum) return grad[0];
  if (mode == L1Reduction::Mean) return grad[0] / denom;
  return grad[b] / denom;
}

// ---------------------------------------------------------------- forward

// (kThreads, 2) as for the backward: without it the fp64 instance spilled on sm_90 (48 registers).
template <typename T>
__global__ void __launch_bounds__(kThreads, 2)
    l1_forward_kernel(const T* __restrict__ real, const T* __restrict__ fake, const acc_t<T>* __restrict__ mask,
                      L1Geom<acc_t<T>> g, int64_t nblk, bool vec_ok, acc_t<T>* __restrict__ partial) {
  using A = acc_t<T>;
  constexpr int V = kVec<T>;
  __shared__ A red[32];
  const int64_t b = blockIdx.x / nblk;
  const int64_t blk = blockIdx.x % nblk;
  const int64_t Qw = ceil_div(g.W, V);
  const int64_t item = blk * kThreads + threadIdx.x;
  A sum = A(0);
  if (item < g.H * Qw) {
    const int64_t y = item / Qw;
    const int64_t x0 = (item % Qw) * V;
    const Lerp<A> ly = bilinear_lerp(y, g.sy, g.h);
    A om[V];
    one_minus_mask<A, V>(mask + b * g.h * g.w, g, ly, x0, om);
    A ad[V];
#pragma unroll
    for (int j = 0; j < V; ++j) ad[j] = A(0);
    const int64_t plane = g.H * g.W;
    const int64_t row = (b * g.K * g.H + y) * g.W;  // channel 0 of row y of sample b
    // Channels in groups of kKUnroll with a constant, predicated inner loop: the loads of a
    // group are in flight together also for the common K = 3.
    for (int64_t k0 = 0; k0 < g.K; k0 += kKUnroll) {
#pragma unroll
      for (int u = 0; u < kKUnroll; ++u) {
        const int64_t k = k0 + u;
        if (k < g.K) {
          A rv[V], fv[V];
          load_chunk(real + row + k * plane, x0, g.W, vec_ok, rv);
          load_chunk(fake + row + k * plane, x0, g.W, vec_ok, fv);
#pragma unroll
          for (int j = 0; j < V; ++j) ad[j] += abs_(rv[j] - fv[j]);
        }
      }
    }
#pragma unroll
    for (int j = 0; j < V; ++j) sum += ad[j] * om[j];
  }
  sum = block_reduce(sum, SumOp(), A(0), red);
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

// out[blockIdx.x]: the sample's ('none') or the batch's sum of partials, divided by denom
// unless mode is 'sum' (0 when denom is 0: nothing was summed).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    l1_reduce_kernel(const acc_t<T>* __restrict__ partial, int64_t nblk, int64_t B, L1Reduction mode,
                     acc_t<T> denom, T* __restrict__ out) {
  using A = acc_t<T>;
  __shared__ A red[32];
  const bool per_sample = mode == L1Reduction::None;
  const int64_t start = per_sample ? blockIdx.x * nblk : 0;
  const int64_t n = per_sample ? nblk : B * nblk;
  A sum = A(0);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += partial[start + i];
  sum = block_reduce(sum, SumOp(), A(0), red);
  // A mean over no elements (empty images or batch) is 0, as in every backend (docs/kernels.md).
  if (threadIdx.x == 0)
    out[blockIdx.x] = from_acc<T>(mode == L1Reduction::Sum ? sum : (denom > A(0) ? sum / denom : A(0)));
}

// ---------------------------------------------------------------- backward

// start[j] = first output position o with i0(o) >= j, for j = 0 .. in_size (start[in_size] =
// out_size). Thread o writes the j in (i0(o-1), i0(o)]; the last one also the j above i0(o).
template <typename A>
__device__ __forceinline__ void fill_starts(int64_t o, int64_t out_size, int64_t in_size, A scale, int* start) {
  const int64_t hi = bilinear_lerp(o, scale, in_size).i0;
  const int64_t lo = o == 0 ? 0 : bilinear_lerp(o - 1, scale, in_size).i0 + 1;
  for (int64_t j = lo; j <= hi; ++j) start[j] = static_cast<int>(o);
  if (o == out_size - 1)
    for (int64_t j = hi + 1; j <= in_size; ++j) start[j] = static_cast<int>(out_size);
}

template <typename A>
__global__ void __launch_bounds__(kThreads) l1_index_kernel(L1Geom<A> g, int* __restrict__ xs, int* __restrict__ ys) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < g.W)
    fill_starts(t, g.W, g.w, g.sx, xs);
  else if (t - g.W < g.H)
    fill_starts(t - g.W, g.H, g.h, g.sy, ys);
}

// Adjoint of the 1-D sampling at input position j: sum over the output positions that read j,
// ascending, of weight * d[o * stride]. Outputs with i0 = j-1 read j as i1 (weight l1); outputs
// with i0 = j read it as i0 (weight l0) and, for the last input (i1 = i0), also as i1.
template <typename A>
__device__ __forceinline__ A adjoint_1d(const A* __restrict__ d, int64_t stride, const int* __restrict__ start,
                                        int64_t j, int64_t in_size, A scale) {
  A acc = A(0);
  if (j > 0)
    for (int64_t o = start[j - 1]; o < start[j]; ++o) acc += bilinear_lerp(o, scale, in_size).l1 * d[o * stride];
  const bool last = j == in_size - 1;
  for (int64_t o = start[j]; o < start[j + 1]; ++o) {
    const Lerp<A> l = bilinear_lerp(o, scale, in_size);
    const A v = d[o * stride];
    acc += l.l0 * v;
    if (last) acc += l.l1 * v;
  }
  return acc;
}

// (kThreads, 2): at most 128 registers. With the bound on threads alone ptxas settled on 80
// registers and spilled 20 B (stores) / 24 B (loads) per thread for fp16/bf16 (8-wide chunks).
template <typename T>
__global__ void __launch_bounds__(kThreads, 2)
    l1_backward_kernel(const T* __restrict__ real, const T* __restrict__ fake, const acc_t<T>* __restrict__ mask,
                       const acc_t<T>* __restrict__ grad, L1Reduction mode, acc_t<T> denom, L1Geom<acc_t<T>> g,
                       int64_t RY, int64_t nrowblk, bool vec_ok, T* __restrict__ dreal, T* __restrict__ dfake,
                       const int* __restrict__ xs, acc_t<T>* __restrict__ dm_global,
                       acc_t<T>* __restrict__ rowpart) {
  using A = acc_t<T>;
  constexpr int V = kVec<T>;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int64_t b = blockIdx.x / nrowblk;
  const int64_t y_begin = (blockIdx.x % nrowblk) * RY;
  const int64_t nrows = g.H - y_begin < RY ? g.H - y_begin : RY;
  const A ge = grad_scale(grad, mode, b, denom);
  // dM of this block's rows, [nrows, W]: shared memory, or global scratch for very wide rows.
  A* dm = nullptr;
  if (rowpart != nullptr)
    dm = dm_global != nullptr ? dm_global + static_cast<int64_t>(blockIdx.x) * RY * g.W
                              : reinterpret_cast<A*>(smem_raw);
  const int64_t Qw = ceil_div(g.W, V);
  const int64_t plane = g.H * g.W;
  const A* u_b = mask + b * g.h * g.w;

  for (int64_t it = threadIdx.x; it < nrows * Qw; it += kThreads) {
    const int64_t r = it / Qw;
    const int64_t x0 = (it % Qw) * V;
    const int64_t y = y_begin + r;
    const Lerp<A> ly = bilinear_lerp(y, g.sy, g.h);
    A t[V];  // ge * (1 - M)
    one_minus_mask<A, V>(u_b, g, ly, x0, t);
#pragma unroll
    for (int j = 0; j < V; ++j) t[j] = ge * t[j];
    A ad[V];
#pragma unroll
    for (int j = 0; j < V; ++j) ad[j] = A(0);
    const int64_t row = (b * g.K * g.H + y) * g.W;
    for (int64_t k0 = 0; k0 < g.K; k0 += kKUnroll) {
#pragma unroll
      for (int u = 0; u < kKUnroll; ++u) {
        const int64_t k = k0 + u;
        if (k < g.K) {
          A rv[V], fv[V], dr[V];
          load_chunk(real + row + k * plane, x0, g.W, vec_ok, rv);
          load_chunk(fake + row + k * plane, x0, g.W, vec_ok, fv);
#pragma unroll
          for (int j = 0; j < V; ++j) {
            const A d = rv[j] - fv[j];
            ad[j] += abs_(d);
            const A sg = d > A(0) ? A(1) : (d < A(0) ? A(-1) : A(0));  // sign(0) = 0
            dr[j] = sg * t[j];
          }
          if (dreal != nullptr) store_chunk(dreal + row + k * plane, x0, g.W, vec_ok, dr);
          if (dfake != nullptr) {
#pragma unroll
            for (int j = 0; j < V; ++j) dr[j] = -dr[j];
            store_chunk(dfake + row + k * plane, x0, g.W, vec_ok, dr);
          }
        }
      }
    }
    if (dm != nullptr) {
#pragma unroll
      for (int j = 0; j < V; ++j)
        if (x0 + j < g.W) dm[r * g.W + x0 + j] = -(ge * ad[j]);
    }
  }

  if (rowpart != nullptr) {  // uniform over the block
    __syncthreads();
    for (int64_t it = threadIdx.x; it < nrows * g.w; it += kThreads) {
      const int64_t r = it / g.w;
      const int64_t j = it % g.w;
      rowpart[(b * g.H + y_begin + r) * g.w + j] = adjoint_1d(dm + r * g.W, int64_t(1), xs, j, g.w, g.sx);
    }
  }
}

// dmask[b, i, j] = sum over the rows y that read low-res row i of weight * rowpart[b, y, j].
template <typename A>
__global__ void __launch_bounds__(kThreads)
    l1_mask_grad_kernel(const A* __restrict__ rowpart, const int* __restrict__ ys, L1Geom<A> g,
                        A* __restrict__ dmask) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= g.B * g.h * g.w) return;
  const int64_t j = idx % g.w;
  const int64_t i = (idx / g.w) % g.h;
  const int64_t b = idx / (g.h * g.w);
  dmask[idx] = adjoint_1d(rowpart + b * g.H * g.w + j, g.w, ys, i, g.h, g.sy);
}

// ---------------------------------------------------------------- host side

bool grid_ok(int64_t blocks) { return blocks > 0 && blocks <= 0x7fffffff; }

template <typename A>
L1Geom<A> make_geom(const L1Args& a) {
  L1Geom<A> g;
  g.B = a.B;
  g.K = a.K;
  g.H = a.H;
  g.W = a.W;
  g.h = a.h;
  g.w = a.w;
  g.sy = static_cast<A>(a.h) / static_cast<A>(a.H);
  g.sx = static_cast<A>(a.w) / static_cast<A>(a.W);
  return g;
}

// Divisor of the reduction, in acc (as the reference divides the acc sum by the count).
template <typename A>
A reduction_denom(const L1Args& a) {
  if (a.reduction == L1Reduction::Mean) return static_cast<A>(a.B * a.K * a.H * a.W);
  if (a.reduction == L1Reduction::None) return static_cast<A>(a.K * a.H * a.W);
  return A(1);
}

template <typename T>
struct FwdPlan {
  int64_t nblk;  // blocks per sample
  acc_t<T>* partial;
  size_t bytes;
};

template <typename T>
FwdPlan<T> plan_forward(const L1Args& a, void* base) {
  FwdPlan<T> p{};
  p.nblk = ceil_div(a.H * ceil_div(a.W, kVec<T>), kThreads);
  Carver cv(base);
  p.partial = cv.take<acc_t<T>>(static_cast<size_t>(a.B * p.nblk));
  p.bytes = cv.offset;
  return p;
}

template <typename T>
struct BwdPlan {
  int64_t RY, nrowblk;
  size_t smem;
  bool dm_in_global;
  int *xs, *ys;
  acc_t<T>* rowpart;
  acc_t<T>* dm_global;
  size_t bytes;
};

template <typename T>
BwdPlan<T> plan_backward(const L1Args& a, bool need_mask, void* base) {
  using A = acc_t<T>;
  BwdPlan<T> p{};
  const int64_t Qw = ceil_div(a.W, kVec<T>);
  p.RY = Qw > 0 ? ceil_div(kThreads, Qw) : 1;
  if (p.RY > a.H) p.RY = a.H;
  if (p.RY < 1) p.RY = 1;
  p.nrowblk = ceil_div(a.H, p.RY);
  Carver cv(base);
  if (need_mask) {
    const size_t row_bytes = static_cast<size_t>(p.RY * a.W) * sizeof(A);
    p.dm_in_global = row_bytes > kMaxDynamicSmem;
    p.smem = p.dm_in_global ? 0 : row_bytes;
    p.xs = cv.take<int>(static_cast<size_t>(a.w + 1));
    p.ys = cv.take<int>(static_cast<size_t>(a.h + 1));
    p.rowpart = cv.take<A>(static_cast<size_t>(a.B * a.H * a.w));
    if (p.dm_in_global) p.dm_global = cv.take<A>(static_cast<size_t>(a.B * p.nrowblk * p.RY * a.W));
  }
  p.bytes = cv.offset;
  return p;
}

template <typename T>
cudaError_t forward_impl(const L1Args& a, void* out, void* workspace, cudaStream_t stream) {
  using A = acc_t<T>;
  const FwdPlan<T> p = plan_forward<T>(a, workspace);
  const L1Geom<A> g = make_geom<A>(a);
  const bool per_sample = a.reduction == L1Reduction::None;
  if (a.B > 0 && p.nblk > 0) {
    if (!grid_ok(a.B * p.nblk)) return cudaErrorInvalidConfiguration;
    const T* real = static_cast<const T*>(a.real);
    const T* fake = static_cast<const T*>(a.fake);
    const bool vec_ok = aligned16(real) && aligned16(fake) && a.W % kVec<T> == 0;
    l1_forward_kernel<T><<<static_cast<unsigned>(a.B * p.nblk), kThreads, 0, stream>>>(
        real, fake, static_cast<const A*>(a.mask), g, p.nblk, vec_ok, p.partial);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  const int64_t out_blocks = per_sample ? a.B : 1;
  if (out_blocks == 0) return cudaSuccess;
  if (!grid_ok(out_blocks)) return cudaErrorInvalidConfiguration;
  // Also with nothing to sum (empty images or batch): writes 0 for every reduction.
  l1_reduce_kernel<T><<<static_cast<unsigned>(out_blocks), kThreads, 0, stream>>>(
      p.partial, a.B > 0 ? p.nblk : 0, a.B, a.reduction, reduction_denom<A>(a), static_cast<T*>(out));
  return cudaGetLastError();
}

template <typename T>
cudaError_t backward_impl(const L1Args& a, const void* grad, void* dreal_v, void* dfake_v, void* dmask_v,
                          void* workspace, cudaStream_t stream) {
  using A = acc_t<T>;
  T* dreal = static_cast<T*>(dreal_v);
  T* dfake = static_cast<T*>(dfake_v);
  A* dmask = static_cast<A*>(dmask_v);
  const bool need_mask = dmask != nullptr;
  if (a.B == 0 || (dreal == nullptr && dfake == nullptr && !need_mask)) return cudaSuccess;
  if (a.K * a.H * a.W == 0) {
    // Empty images: dreal/dfake have no elements; nothing reaches the mask (dmask = 0, also
    // for 'mean' where ge = g / 0).
    if (need_mask && a.h * a.w > 0)
      return cudaMemsetAsync(dmask, 0, static_cast<size_t>(a.B * a.h * a.w) * sizeof(A), stream);
    return cudaSuccess;
  }
  const BwdPlan<T> p = plan_backward<T>(a, need_mask, workspace);
  const L1Geom<A> g = make_geom<A>(a);
  cudaError_t err;
  if (need_mask) {
    l1_index_kernel<A><<<static_cast<unsigned>(ceil_div(a.W + a.H, kThreads)), kThreads, 0, stream>>>(g, p.xs, p.ys);
    err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  if (!grid_ok(a.B * p.nrowblk)) return cudaErrorInvalidConfiguration;
  const T* real = static_cast<const T*>(a.real);
  const T* fake = static_cast<const T*>(a.fake);
  const bool vec_ok = aligned16(real) && aligned16(fake) && (dreal == nullptr || aligned16(dreal)) &&
                      (dfake == nullptr || aligned16(dfake)) && a.W % kVec<T> == 0;
  l1_backward_kernel<T><<<static_cast<unsigned>(a.B * p.nrowblk), kThreads, p.smem, stream>>>(
      real, fake, static_cast<const A*>(a.mask), static_cast<const A*>(grad), a.reduction, reduction_denom<A>(a), g,
      p.RY, p.nrowblk, vec_ok, dreal, dfake, p.xs, p.dm_global, need_mask ? p.rowpart : nullptr);
  err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  if (need_mask) {
    const int64_t n = a.B * a.h * a.w;
    if (n == 0) return cudaSuccess;
    if (!grid_ok(ceil_div(n, kThreads))) return cudaErrorInvalidConfiguration;
    l1_mask_grad_kernel<A><<<static_cast<unsigned>(ceil_div(n, kThreads)), kThreads, 0, stream>>>(p.rowpart, p.ys, g,
                                                                                                 dmask);
    err = cudaGetLastError();
  }
  return err;
}

}  // namespace

#define CAMFAST_DISPATCH(dtype, FN, ...)                                       \
  switch (dtype) {                                                             \
    case DType::Float32: return FN<float>(__VA_ARGS__);                        \
    case DType::Float16: return FN<__half>(__VA_ARGS__);                       \
    case DType::BFloat16: return FN<__nv_bfloat16>(__VA_ARGS__);               \
    case DType::Float64: return FN<double>(__VA_ARGS__);                       \
  }

size_t masked_l1_forward_workspace_bytes(const L1Args& a) {
  switch (a.dtype) {
    case DType::Float32: return plan_forward<float>(a, nullptr).bytes;
    case DType::Float16: return plan_forward<__half>(a, nullptr).bytes;
    case DType::BFloat16: return plan_forward<__nv_bfloat16>(a, nullptr).bytes;
    case DType::Float64: return plan_forward<double>(a, nullptr).bytes;
  }
  return 0;
}

size_t masked_l1_backward_workspace_bytes(const L1Args& a, bool need_mask) {
  switch (a.dtype) {
    case DType::Float32: return plan_backward<float>(a, need_mask, nullptr).bytes;
    case DType::Float16: return plan_backward<__half>(a, need_mask, nullptr).bytes;
    case DType::BFloat16: return plan_backward<__nv_bfloat16>(a, need_mask, nullptr).bytes;
    case DType::Float64: return plan_backward<double>(a, need_mask, nullptr).bytes;
  }
  return 0;
}

cudaError_t masked_l1_forward(const L1Args& a, void* out, void* workspace, cudaStream_t stream) {
  CAMFAST_DISPATCH(a.dtype, forward_impl, a, out, workspace, stream)
  return cudaErrorInvalidValue;
}

cudaError_t masked_l1_backward(const L1Args& a, const void* grad, void* dreal, void* dfake, void* dmask,
                               void* workspace, cudaStream_t stream) {
  CAMFAST_DISPATCH(a.dtype, backward_impl, a, grad, dreal, dfake, dmask, workspace, stream)
  return cudaErrorInvalidValue;
}

#undef CAMFAST_DISPATCH

}  // namespace cuda_impl
}  // namespace camfast
