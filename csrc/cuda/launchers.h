// Plain C++ interface between the torch-facing ops (register.cpp, compiled by g++) and the
// CUDA kernels (*.cu, compiled by nvcc). Only raw pointers, sizes and a stream cross it, so the
// .cu files never include torch headers (NOTES.md: that costs minutes of nvcc time per arch).
//
// Every launcher
//   - expects contiguous buffers, validated sizes and the dtype given in `dtype`;
//   - runs asynchronously on `stream` (no host synchronisation);
//   - uses a caller-allocated workspace of *_workspace_bytes() bytes (the caller allocates it
//     with the caching allocator; nothing needs to be zeroed);
//   - returns the first CUDA error met while launching (cudaSuccess otherwise).
// The math is docs/kernels.md; accumulation is in `acc` = double for Float64, float otherwise.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace camfast {
namespace cuda_impl {

enum class DType : int { Float32 = 0, Float16 = 1, BFloat16 = 2, Float64 = 3 };

// The most CAM sources one call accepts (the per-source table is passed by value to kernels).
constexpr int kMaxSources = 32;

// ---------------------------------------------------------------- stage 1: cam_mask

struct CamArgs {
  DType dtype = DType::Float32;
  int S = 0;                            // number of sources, 1..kMaxSources
  int64_t B = 0, h = 0, w = 0;          // shared by every source
  int64_t C[kMaxSources] = {};          // channels of each source
  const void* feats[kMaxSources] = {};  // [B, C[s], h, w], dtype
  const void* grads[kMaxSources] = {};  // [B, C[s], h, w], dtype
  bool minmax = true;                   // false: "max" normalisation
  double eps = 1e-6;
};

size_t cam_mask_workspace_bytes(const CamArgs& a, bool backward);

// out: [B, h, w] acc.
cudaError_t cam_mask_forward(const CamArgs& a, void* out, void* workspace, cudaStream_t stream);

// grad_mask: [B, h, w] acc. dfeats / dgrads: arrays of S pointers ([B, C[s], h, w], dtype),
// or nullptr when that gradient is not requested (then nothing of it is computed).
cudaError_t cam_mask_backward(const CamArgs& a, const void* grad_mask, void* const* dfeats,
                              void* const* dgrads, void* workspace, cudaStream_t stream);

// ---------------------------------------------------------------- stage 2: masked_l1

enum class L1Reduction : int { Mean = 0, Sum = 1, None = 2 };

struct L1Args {
  DType dtype = DType::Float32;                  // of real and fake
  const void* real = nullptr;                    // [B, K, H, W], dtype
  const void* fake = nullptr;                    // [B, K, H, W], dtype
  const void* mask = nullptr;                    // [B, h, w], acc
  int64_t B = 0, K = 0, H = 0, W = 0, h = 0, w = 0;
  L1Reduction reduction = L1Reduction::Mean;
};

size_t masked_l1_forward_workspace_bytes(const L1Args& a);

// out: dtype; one element (mean, sum) or B elements (none).
cudaError_t masked_l1_forward(const L1Args& a, void* out, void* workspace, cudaStream_t stream);

size_t masked_l1_backward_workspace_bytes(const L1Args& a, bool need_mask);

// grad: acc; one element (mean, sum) or B elements (none). dreal, dfake: [B, K, H, W] dtype;
// dmask: [B, h, w] acc; each nullptr when not requested.
cudaError_t masked_l1_backward(const L1Args& a, const void* grad, void* dreal, void* dfake,
                               void* dmask, void* workspace, cudaStream_t stream);

}  // namespace cuda_impl
}  // namespace camfast
