// Stage 1 on CUDA: cam_mask and cam_mask_backward (docs/kernels.md).
//
// Kernels, per call (S sources, P = h*w, acc = fp32, or fp64 for fp64 inputs):
//
//   cam_partial_kernel      once per source; grid B * ceil(C/16) blocks of 256 threads.
//                           Block (b, chunk) owns 16 channels c0..c0+15 of sample b:
//                             alpha[c] = (sum_p grads[b,c,p]) / P   one warp per channel,
//                                        lanes sum 16-byte chunks q = lane, lane+32, ... in order,
//                                        then a fixed shuffle tree;
//                             partial[b, chunk, p] = sum_{c in chunk} alpha[c]*feats[b,c,p]
//                                        one thread per 16-byte chunk of p; when there are
//                                        fewer chunks than threads / 2, G groups of threads
//                                        split the channels (ascending within a group) and
//                                        their sums are added in group order.
//                           The backward also stores alpha (needed for dfeats).
//   cam_finish_*_kernel     grid B blocks of 256 threads; block b, for every source s:
//                             pre_s[p] = sum_{chunks ascending} partial[b, chunk, p]  -> scratch
//                             mn/mx of relu(pre_s) by block reduction, R = mx - mn + eps (or mx + eps)
//                           then per p: u = max_s n_s (forward: written to out).
//                           Backward: gn_s = gu / #ties at the union, the normalisation and relu
//                           backward of docs/kernels.md (sums over p by fixed block trees), writes
//                           gpre_s[b, p] to scratch.
//   cam_input_grad_kernel   once per source; same grid as cam_partial_kernel; one warp per channel:
//                             galpha[c] = sum_p gpre[p]*feats[c,p] (same chunked lane order + tree),
//                             dgrads[c,p] = galpha[c] / P, dfeats[c,p] = alpha[c] * gpre[p].
//
// Every reduction has an order fixed by the shapes alone (no atomics), so results are bitwise
// reproducible; forward and backward run the same code up to the union, so ties are exact.
#include <limits>

#include "device_common.cuh"
#include "launchers.h"

namespace camfast {
namespace cuda_impl {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kChunkChannels = 16;  // channels per cam_partial_kernel block

int64_t num_chunks(int64_t C) { return ceil_div(C, kChunkChannels); }

// Where each source's channel chunks live in the partial buffer [B, total chunks, P].
struct SourceTable {
  int S;
  int64_t cum[kMaxSources + 1];  // source s owns chunks [cum[s], cum[s+1])
};

template <typename A>
struct NormStat {
  A mn, mx, R;
};

// NaN stays NaN, as in torch.relu (the reference's mask and loss are then NaN too).
template <typename A>
__device__ __forceinline__ A relu_(A x) {
  return (x > A(0) || x != x) ? x : A(0);
}

// n[p] from pre[p]: the single definition used by forward and backward.
template <typename A>
__device__ __forceinline__ A normalized(A pre, const NormStat<A>& st, bool minmax) {
  const A cam = relu_(pre);
  return minmax ? (cam - st.mn) / st.R : cam / st.R;
}

// ---------------------------------------------------------------- alpha and channel partials

template <typename T>
__global__ void __launch_bounds__(kThreads)
    cam_partial_kernel(const T* __restrict__ feats, const T* __restrict__ grads, int64_t C, int64_t P,
                       int64_t nchunk, int64_t chunk_offset, int64_t total_chunks, bool vec_ok,
                       acc_t<T>* __restrict__ alpha_out, acc_t<T>* __restrict__ partial) {
  using A = acc_t<T>;
  constexpr int V = kVec<T>;
  __shared__ A s_alpha[kChunkChannels];

  const int64_t b = blockIdx.x / nchunk;
  const int64_t chunk = blockIdx.x % nchunk;
  const int64_t c0 = chunk * kChunkChannels;
  const int nc = static_cast<int>(C - c0 < kChunkChannels ? C - c0 : kChunkChannels);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int64_t Q = ceil_div(P, V);

  // alpha[c] = mean_p grads[b, c, p]: warp per channel.
  for (int ci = warp; ci < nc; ci += kWarps) {
    const T* row = grads + (b * C + c0 + ci) * P;
    A sum = A(0);
    for (int64_t q = lane; q < Q; q += 32) {
      A v[V];
      load_chunk(row, q * V, P, vec_ok, v);
#pragma unroll
      for (int j = 0; j < V; ++j) sum += v[j];
    }
    sum = warp_reduce(sum, SumOp());
    if (lane == 0) {
      const A a = sum / static_cast<A>(P);
      s_alpha[ci] = a;
      if (alpha_out != nullptr) alpha_out[b * C + c0 + ci] = a;
    }
  }
  __syncthreads();

  // partial[p] = sum over this chunk's channels of alpha[c] * feats[b, c, p].
  const T* fbase = feats + (b * C + c0) * P;
  A* out = partial + (b * total_chunks + chunk_offset + chunk) * P;
  // Few pixel chunks (Q < kThreads / 2, e.g. P = 256: Q = 64 fp32, 32 fp16/bf16): G groups of
  // kThreads / G threads each sum kChunkChannels / G of the channels for the same pixels, and
  // the groups' sums are added in group order through shared memory, so that every thread
  // works. G depends on the shapes only: the result is deterministic.
  int G = 1;
  while (G < kChunkChannels && Q * 2 * G <= kThreads) G *= 2;
  if (G == 1) {
    for (int64_t q = threadIdx.x; q < Q; q += kThreads) {
      A acc[V];
#pragma unroll
      for (int j = 0; j < V; ++j) acc[j] = A(0);
      // Constant trip count, predicated: all of the chunk's loads can be in flight at once.
#pragma unroll
      for (int ci = 0; ci < kChunkChannels; ++ci) {
        if (ci < nc) {
          A f[V];
          load_chunk(fbase + ci * P, q * V, P, vec_ok, f);
          const A a = s_alpha[ci];
#pragma unroll
          for (int j = 0; j < V; ++j) acc[j] += a * f[j];
        }
      }
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const int64_t p = q * V + j;
        if (p < P) out[p] = acc[j];
      }
    }
    return;
  }
  __shared__ A s_part[kThreads * V];
  const int tq = kThreads / G;            // threads per group, >= Q
  const int group = threadIdx.x / tq;
  const int q = threadIdx.x % tq;         // this thread's pixel chunk
  const int per_group = kChunkChannels / G;
  A acc[V];
#pragma unroll
  for (int j = 0; j < V; ++j) acc[j] = A(0);
  if (q < Q) {
#pragma unroll
    for (int k = 0; k < kChunkChannels; ++k) {
      const int ci = group * per_group + k;
      if (k < per_group && ci < nc) {
        A f[V];
        load_chunk(fbase + ci * P, int64_t(q) * V, P, vec_ok, f);
        const A a = s_alpha[ci];
#pragma unroll
        for (int j = 0; j < V; ++j) acc[j] += a * f[j];
      }
    }
  }
#pragma unroll
  for (int j = 0; j < V; ++j) s_part[threadIdx.x * V + j] = acc[j];
  __syncthreads();
  if (group == 0 && q < Q) {
    for (int g2 = 1; g2 < G; ++g2) {
#pragma unroll
      for (int j = 0; j < V; ++j) acc[j] += s_part[(g2 * tq + q) * V + j];
    }
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int64_t p = int64_t(q) * V + j;
      if (p < P) out[p] = acc[j];
    }
  }
}

// ---------------------------------------------------------------- per-sample finish (block b)

// pre_s = sum of source s's chunk partials (ascending chunk order) -> pre_row; min/max of
// relu(pre_s) -> *st. Thread t handles p = t, t + blockDim, ... (the same p in every pass of
// the finish kernels, so a thread only ever reads scratch entries it wrote itself).
template <typename A>
__device__ void source_pass(const A* __restrict__ partial, const SourceTable& tab, int s, int64_t b, int64_t P,
                            bool minmax, A eps, A* __restrict__ pre_row, NormStat<A>* st, A* red) {
  const int64_t k0 = tab.cum[s];
  const int64_t k1 = tab.cum[s + 1];
  const A* base = partial + b * tab.cum[tab.S] * P;
  A mn = pos_inf<A>();
  A mx = -pos_inf<A>();
  A nans = A(0);
  for (int64_t p = threadIdx.x; p < P; p += blockDim.x) {
    A v = A(0);
    for (int64_t k = k0; k < k1; ++k) v += base[k * P + p];
    pre_row[p] = v;
    const A cam = relu_(v);
    mn = MinOp()(mn, cam);
    mx = MaxOp()(mx, cam);
    nans += cam != cam ? A(1) : A(0);
  }
  mn = block_reduce(mn, MinOp(), pos_inf<A>(), red);
  mx = block_reduce(mx, MaxOp(), -pos_inf<A>(), red);
  // The comparisons drop a NaN; torch.amin and amax return it, and so do mn and mx (counted
  // apart: NaN-propagating min/max ops made the fp64 reduction spill on sm_80).
  nans = block_reduce(nans, SumOp(), A(0), red);
  if (nans > A(0)) mn = mx = std::numeric_limits<A>::quiet_NaN();
  if (threadIdx.x == 0) {
    st->mn = minmax ? mn : A(0);
    st->mx = mx;
    st->R = minmax ? (mx - mn) + eps : mx + eps;
  }
}

// u[p] = max_s n_s[p]; *count (if given) = #{s : n_s[p] == u[p]}.
template <typename A>
__device__ __forceinline__ A union_at(const A* __restrict__ pre_b, int S, int64_t SP, int64_t p,
                                      const NormStat<A>* st, bool minmax, int* count) {
  A u = normalized(pre_b[p], st[0], minmax);
  for (int s = 1; s < S; ++s) {
    const A n = normalized(pre_b[s * SP + p], st[s], minmax);
    if (n > u || n != n) u = n;  // a NaN wins, as in torch.amax
  }
  if (count != nullptr) {
    int c = 0;
    for (int s = 0; s < S; ++s) c += normalized(pre_b[s * SP + p], st[s], minmax) == u ? 1 : 0;
    *count = c;
  }
  return u;
}

// pre: scratch [S, B, P]. out: [B, P].
template <typename A>
__global__ void __launch_bounds__(kThreads)
    cam_finish_forward_kernel(const A* __restrict__ partial, SourceTable tab, int64_t B, int64_t P, bool minmax,
                              A eps, A* __restrict__ pre, A* __restrict__ out) {
  __shared__ NormStat<A> st[kMaxSources];
  __shared__ A red[32];
  const int64_t b = blockIdx.x;
  const int64_t SP = B * P;
  A* pre_b = pre + b * P;
  for (int s = 0; s < tab.S; ++s) source_pass(partial, tab, s, b, P, minmax, eps, pre_b + s * SP, &st[s], red);
  __syncthreads();  // st[] written by thread 0
  for (int64_t p = threadIdx.x; p < P; p += blockDim.x)
    out[b * P + p] = union_at(pre_b, tab.S, SP, p, st, minmax, static_cast<int*>(nullptr));
}

// gu: [B, P]. pre, gbuf: scratch [S, B, P]; on return gbuf holds gpre_s[b, p].
template <typename A>
__global__ void __launch_bounds__(kThreads)
    cam_finish_backward_kernel(const A* __restrict__ partial, SourceTable tab, int64_t B, int64_t P, bool minmax,
                               A eps, const A* __restrict__ gu, A* __restrict__ pre, A* __restrict__ gbuf) {
  __shared__ NormStat<A> st[kMaxSources];
  __shared__ A red[32];
  __shared__ int redi[32];
  const int64_t b = blockIdx.x;
  const int S = tab.S;
  const int64_t SP = B * P;
  A* pre_b = pre + b * P;
  A* g_b = gbuf + b * P;
  for (int s = 0; s < S; ++s) source_pass(partial, tab, s, b, P, minmax, eps, pre_b + s * SP, &st[s], red);
  __syncthreads();

  // union: gn_s[p] = gu[p] / #ties, for the sources that attain u[p].
  for (int64_t p = threadIdx.x; p < P; p += blockDim.x) {
    int cnt = 1;
    const A u = union_at(pre_b, S, SP, p, st, minmax, &cnt);
    const A share = gu[b * P + p] / static_cast<A>(cnt);
    for (int s = 0; s < S; ++s)
      // A NaN union is attained by no source; as amax's gradient, every source's is then NaN.
      g_b[s * SP + p] = u != u ? u : normalized(pre_b[s * SP + p], st[s], minmax) == u ? share : A(0);
  }

  for (int s = 0; s < S; ++s) {
    const NormStat<A> ns = st[s];
    const A* pre_s = pre_b + s * SP;
    A* g_s = g_b + s * SP;
    // normalisation: gmx = -sum gn*n/R, gmn = sum gn*(n-1)/R, tie counts at mn and mx.
    A t_mx = A(0), t_mn = A(0);
    int c_mx = 0, c_mn = 0;
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) {
      const A v = pre_s[p];
      const A cam = relu_(v);
      const A n = normalized(v, ns, minmax);
      const A gn = g_s[p];
      t_mx += gn * n / ns.R;
      c_mx += cam == ns.mx ? 1 : 0;
      if (minmax) {
        t_mn += gn * (n - A(1)) / ns.R;
        c_mn += cam == ns.mn ? 1 : 0;
      }
    }
    t_mx = block_reduce(t_mx, SumOp(), A(0), red);
    t_mn = block_reduce(t_mn, SumOp(), A(0), red);
    c_mx = block_reduce(c_mx, SumOp(), 0, redi);
    c_mn = block_reduce(c_mn, SumOp(), 0, redi);
    const A gmx = -t_mx;
    const A share_mx = c_mx > 0 ? gmx / static_cast<A>(c_mx) : A(0);
    const A share_mn = (minmax && c_mn > 0) ? t_mn / static_cast<A>(c_mn) : A(0);
    // gcam = gn/R + share_mn*[cam == mn] + share_mx*[cam == mx]; relu: gpre = gcam*[pre > 0].
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) {
      const A v = pre_s[p];
      const A cam = relu_(v);
      A gcam = g_s[p] / ns.R;
      if (minmax && cam == ns.mn) gcam += share_mn;
      if (cam == ns.mx) gcam += share_mx;
      g_s[p] = !(v <= A(0)) ? gcam : A(0);  // a NaN passes, as in torch's relu backward
    }
  }
}

// ---------------------------------------------------------------- dfeats, dgrads

template <typename T>
__global__ void __launch_bounds__(kThreads)
    cam_input_grad_kernel(const T* __restrict__ feats, const acc_t<T>* __restrict__ alpha,
                          const acc_t<T>* __restrict__ gpre, int64_t C, int64_t P, int64_t nchunk, bool vec_ok,
                          T* __restrict__ dfeats, T* __restrict__ dgrads) {
  using A = acc_t<T>;
  constexpr int V = kVec<T>;
  const int64_t b = blockIdx.x / nchunk;
  const int64_t chunk = blockIdx.x % nchunk;
  const int64_t c0 = chunk * kChunkChannels;
  const int nc = static_cast<int>(C - c0 < kChunkChannels ? C - c0 : kChunkChannels);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int64_t Q = ceil_div(P, V);
  const A* g = gpre + b * P;

  for (int ci = warp; ci < nc; ci += kWarps) {
    const int64_t row = (b * C + c0 + ci) * P;
    if (dgrads != nullptr) {
      // galpha = sum_p gpre[p] * feats[c, p]; dgrads[c, :] = galpha / P.
      A sum = A(0);
      for (int64_t q = lane; q < Q; q += 32) {
        A f[V];
        load_chunk(feats + row, q * V, P, vec_ok, f);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const int64_t p = q * V + j;
          if (p < P) sum += g[p] * f[j];
        }
      }
      sum = warp_reduce(sum, SumOp());
      sum = __shfl_sync(0xffffffffu, sum, 0);
      const A dg = sum / static_cast<A>(P);
      A v[V];
#pragma unroll
      for (int j = 0; j < V; ++j) v[j] = dg;
      for (int64_t q = lane; q < Q; q += 32) store_chunk(dgrads + row, q * V, P, vec_ok, v);
    }
    if (dfeats != nullptr) {
      // dfeats[c, p] = alpha[c] * gpre[p].
      const A a = alpha[b * C + c0 + ci];
      for (int64_t q = lane; q < Q; q += 32) {
        A v[V];
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const int64_t p = q * V + j;
          v[j] = p < P ? a * g[p] : A(0);
        }
        store_chunk(dfeats + row, q * V, P, vec_ok, v);
      }
    }
  }
}

// ---------------------------------------------------------------- host side

bool grid_ok(int64_t blocks) { return blocks > 0 && blocks <= 0x7fffffff; }

template <typename A>
struct CamWorkspace {
  SourceTable tab;
  A* partial;                 // [B, total chunks, P]
  A* pre;                     // [S, B, P]
  A* gbuf;                    // [S, B, P] (backward)
  A* alpha[kMaxSources];      // [B, C[s]] (backward)
  size_t bytes;
};

template <typename A>
CamWorkspace<A> carve_cam(const CamArgs& a, bool backward, void* base) {
  CamWorkspace<A> ws{};
  Carver cv(base);
  const int64_t P = a.h * a.w;
  ws.tab.S = a.S;
  ws.tab.cum[0] = 0;
  for (int s = 0; s < a.S; ++s) ws.tab.cum[s + 1] = ws.tab.cum[s] + num_chunks(a.C[s]);
  ws.partial = cv.take<A>(static_cast<size_t>(a.B * ws.tab.cum[a.S] * P));
  ws.pre = cv.take<A>(static_cast<size_t>(a.S * a.B * P));
  if (backward) {
    ws.gbuf = cv.take<A>(static_cast<size_t>(a.S * a.B * P));
    for (int s = 0; s < a.S; ++s) ws.alpha[s] = cv.take<A>(static_cast<size_t>(a.B * a.C[s]));
  }
  ws.bytes = cv.offset;
  return ws;
}

template <typename T>
cudaError_t launch_partial(const CamArgs& a, int s, const CamWorkspace<acc_t<T>>& ws, bool store_alpha,
                           cudaStream_t stream) {
  const int64_t C = a.C[s];
  const int64_t P = a.h * a.w;
  const int64_t nchunk = num_chunks(C);
  if (nchunk == 0) return cudaSuccess;  // C = 0: pre = 0
  if (!grid_ok(a.B * nchunk)) return cudaErrorInvalidConfiguration;
  const T* f = static_cast<const T*>(a.feats[s]);
  const T* g = static_cast<const T*>(a.grads[s]);
  const bool vec_ok = aligned16(f) && aligned16(g) && P % kVec<T> == 0;
  cam_partial_kernel<T><<<static_cast<unsigned>(a.B * nchunk), kThreads, 0, stream>>>(
      f, g, C, P, nchunk, ws.tab.cum[s], ws.tab.cum[a.S], vec_ok, store_alpha ? ws.alpha[s] : nullptr,
      ws.partial);
  return cudaGetLastError();
}

template <typename T>
cudaError_t forward_impl(const CamArgs& a, void* out, void* workspace, cudaStream_t stream) {
  using A = acc_t<T>;
  const int64_t P = a.h * a.w;
  if (a.B == 0 || P == 0) return cudaSuccess;
  if (a.S < 1 || a.S > kMaxSources || !grid_ok(a.B)) return cudaErrorInvalidValue;
  const CamWorkspace<A> ws = carve_cam<A>(a, false, workspace);
  for (int s = 0; s < a.S; ++s) {
    const cudaError_t err = launch_partial<T>(a, s, ws, false, stream);
    if (err != cudaSuccess) return err;
  }
  cam_finish_forward_kernel<A><<<static_cast<unsigned>(a.B), kThreads, 0, stream>>>(
      ws.partial, ws.tab, a.B, P, a.minmax, static_cast<A>(a.eps), ws.pre, static_cast<A*>(out));
  return cudaGetLastError();
}

template <typename T>
cudaError_t backward_impl(const CamArgs& a, const void* grad_mask, void* const* dfeats, void* const* dgrads,
                          void* workspace, cudaStream_t stream) {
  using A = acc_t<T>;
  const int64_t P = a.h * a.w;
  if (a.B == 0 || P == 0 || (dfeats == nullptr && dgrads == nullptr)) return cudaSuccess;
  if (a.S < 1 || a.S > kMaxSources || !grid_ok(a.B)) return cudaErrorInvalidValue;
  const CamWorkspace<A> ws = carve_cam<A>(a, true, workspace);
  for (int s = 0; s < a.S; ++s) {
    const cudaError_t err = launch_partial<T>(a, s, ws, true, stream);
    if (err != cudaSuccess) return err;
  }
  cam_finish_backward_kernel<A><<<static_cast<unsigned>(a.B), kThreads, 0, stream>>>(
      ws.partial, ws.tab, a.B, P, a.minmax, static_cast<A>(a.eps), static_cast<const A*>(grad_mask), ws.pre,
      ws.gbuf);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  for (int s = 0; s < a.S; ++s) {
    const int64_t C = a.C[s];
    const int64_t nchunk = num_chunks(C);
    if (nchunk == 0) continue;  // nothing to write
    if (!grid_ok(a.B * nchunk)) return cudaErrorInvalidConfiguration;
    const T* f = static_cast<const T*>(a.feats[s]);
    T* df = dfeats != nullptr ? static_cast<T*>(dfeats[s]) : nullptr;
    T* dg = dgrads != nullptr ? static_cast<T*>(dgrads[s]) : nullptr;
    const bool vec_ok = aligned16(f) && (df == nullptr || aligned16(df)) && (dg == nullptr || aligned16(dg)) &&
                        P % kVec<T> == 0;
    cam_input_grad_kernel<T><<<static_cast<unsigned>(a.B * nchunk), kThreads, 0, stream>>>(
        f, ws.alpha[s], ws.gbuf + s * a.B * P, C, P, nchunk, vec_ok, df, dg);
    err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

}  // namespace

size_t cam_mask_workspace_bytes(const CamArgs& a, bool backward) {
  if (a.S < 1 || a.S > kMaxSources) return 0;
  return a.dtype == DType::Float64 ? carve_cam<double>(a, backward, nullptr).bytes
                                   : carve_cam<float>(a, backward, nullptr).bytes;
}

cudaError_t cam_mask_forward(const CamArgs& a, void* out, void* workspace, cudaStream_t stream) {
  switch (a.dtype) {
    case DType::Float32: return forward_impl<float>(a, out, workspace, stream);
    case DType::Float16: return forward_impl<__half>(a, out, workspace, stream);
    case DType::BFloat16: return forward_impl<__nv_bfloat16>(a, out, workspace, stream);
    case DType::Float64: return forward_impl<double>(a, out, workspace, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t cam_mask_backward(const CamArgs& a, const void* grad_mask, void* const* dfeats, void* const* dgrads,
                              void* workspace, cudaStream_t stream) {
  switch (a.dtype) {
    case DType::Float32: return backward_impl<float>(a, grad_mask, dfeats, dgrads, workspace, stream);
    case DType::Float16: return backward_impl<__half>(a, grad_mask, dfeats, dgrads, workspace, stream);
    case DType::BFloat16: return backward_impl<__nv_bfloat16>(a, grad_mask, dfeats, dgrads, workspace, stream);
    case DType::Float64: return backward_impl<double>(a, grad_mask, dfeats, dgrads, workspace, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda_impl
}  // namespace camfast
