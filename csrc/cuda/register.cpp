// CUDA implementations of the camfast ops (schemas in csrc/schemas.cpp, math in docs/kernels.md).
//
// This file is compiled by the host compiler: it does the torch-side work (checks, contiguous
// inputs, output and workspace allocation, device guard, current stream) and hands raw pointers
// to the launchers of csrc/cuda/*.cu (launchers.h), which never see a torch header.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/string_view.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <string_view>
#include <tuple>
#include <vector>

#include "common.h"
#include "cuda/launchers.h"
#include "stages.h"

namespace camfast {
namespace {

namespace ci = cuda_impl;

ci::DType to_kernel_dtype(const char* op, at::ScalarType t, const char* what) {
  switch (t) {
    case at::kFloat: return ci::DType::Float32;
    case at::kHalf: return ci::DType::Float16;
    case at::kBFloat16: return ci::DType::BFloat16;
    case at::kDouble: return ci::DType::Float64;
    default: break;
  }
  TORCH_CHECK_TYPE(false, op, ": ", what, " must be float32, float16, bfloat16 or float64, got ", t);
}

void check_index_range(const char* op, const char* what, const char* dim, int64_t v) {
  TORCH_CHECK_VALUE(v < std::numeric_limits<int32_t>::max(), op, ": ", what, " must have ", dim,
                    " < 2^31 - 1 (the CUDA kernels index with int32), got ", dim, " = ", v);
}

// Workspace for the launchers: uninitialised bytes from the caching allocator (on the current
// stream of the current device).
at::Tensor workspace(const at::Tensor& like, size_t bytes) {
  return at::empty({static_cast<int64_t>(bytes)}, like.options().dtype(at::kByte));
}

void* data_or_null(const at::Tensor& t) { return t.numel() > 0 ? t.data_ptr() : nullptr; }

// ---------------------------------------------------------------- stage 1

struct CamInputs {
  std::vector<at::Tensor> feats, grads;  // contiguous; keep the buffers alive
  ci::CamArgs args;
};

CamInputs prepare_cam(const char* op, at::TensorList feats, at::TensorList grads, c10::string_view normalize,
                      double eps) {
  CamInputs in;
  const CamShape sh = check_cam_args(op, feats, grads);  // names, shapes, dtypes, one device
  const Norm norm = parse_norm(op, normalize);
  const int64_t S = static_cast<int64_t>(feats.size());
  TORCH_CHECK_VALUE(S <= ci::kMaxSources, op, ": feats must hold at most ", ci::kMaxSources, " CAM sources, got ", S);
  const at::Tensor& f0 = feats[0];
  TORCH_CHECK_VALUE(f0.is_cuda(), op, ": feats must be on a CUDA device, got ", f0.device());
  ci::CamArgs& a = in.args;
  a.dtype = to_kernel_dtype(op, f0.scalar_type(), "feats");
  a.S = static_cast<int>(S);
  a.B = sh.B;
  a.h = sh.h;
  a.w = sh.w;
  a.minmax = norm == Norm::MinMax;
  a.eps = eps;
  for (int64_t s = 0; s < S; ++s) {
    in.feats.push_back(feats[s].contiguous());
    in.grads.push_back(grads[s].contiguous());
    a.C[s] = feats[s].size(1);
    a.feats[s] = data_or_null(in.feats.back());
    a.grads[s] = data_or_null(in.grads.back());
  }
  return in;
}

}  // namespace

// The ops (stages.h).
namespace cuda {

at::Tensor cam_mask(at::TensorList feats, at::TensorList grads, c10::string_view normalize, double eps) {
  CamInputs in = prepare_cam("camfast.cam_mask [cuda]", feats, grads, normalize, eps);
  const at::Tensor& f0 = in.feats[0];
  const c10::cuda::CUDAGuard guard(f0.device());
  const ci::CamArgs& a = in.args;
  at::Tensor out = new_output(f0, {a.B, a.h, a.w}, acc_type(f0.scalar_type()));
  if (out.numel() == 0) return out;
  at::Tensor ws = workspace(f0, ci::cam_mask_workspace_bytes(a, /*backward=*/false));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  C10_CUDA_CHECK(ci::cam_mask_forward(a, out.data_ptr(), data_or_null(ws), stream));
  return out;
}

std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>> cam_mask_backward(
    const at::Tensor& grad_mask, at::TensorList feats, at::TensorList grads, c10::string_view normalize, double eps,
    bool need_feats, bool need_grads) {
  const char* op = "camfast.cam_mask_backward [cuda]";
  CamInputs in = prepare_cam(op, feats, grads, normalize, eps);
  const at::Tensor& f0 = in.feats[0];
  const c10::cuda::CUDAGuard guard(f0.device());
  const ci::CamArgs& a = in.args;
  check_grad_mask(op, grad_mask, {a.B, a.h, a.w}, f0);
  // Any floating dtype, as on the CPU: converted to acc on the stream (tiny).
  const at::Tensor gm = grad_mask.to(acc_type(f0.scalar_type())).contiguous();

  std::vector<at::Tensor> dfeats, dgrads;
  std::vector<void*> pf, pg;
  for (int s = 0; s < a.S; ++s) {
    if (need_feats) {
      dfeats.push_back(new_output_like(in.feats[s]));
      pf.push_back(data_or_null(dfeats.back()));
    }
    if (need_grads) {
      dgrads.push_back(new_output_like(in.grads[s]));
      pg.push_back(data_or_null(dgrads.back()));
    }
  }
  if ((need_feats || need_grads) && a.B * a.h * a.w > 0) {
    at::Tensor ws = workspace(f0, ci::cam_mask_workspace_bytes(a, /*backward=*/true));
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
    C10_CUDA_CHECK(ci::cam_mask_backward(a, gm.data_ptr(), need_feats ? pf.data() : nullptr,
                                         need_grads ? pg.data() : nullptr, data_or_null(ws), stream));
  }
  return {std::move(dfeats), std::move(dgrads)};
}

}  // namespace cuda

// ---------------------------------------------------------------- stage 2

namespace {

struct L1Inputs {
  at::Tensor real, fake, mask;  // contiguous
  ci::L1Args args;
};

L1Inputs prepare_l1(const char* op, const at::Tensor& real, const at::Tensor& fake, const at::Tensor& mask,
                    c10::string_view reduction) {
  L1Inputs in;
  const L1Shape sh = check_l1_args(op, real, fake, mask);  // names, shapes, dtypes, one device, h, w >= 1
  const Reduction red = parse_reduction(op, reduction);
  TORCH_CHECK_VALUE(real.is_cuda(), op, ": real must be on a CUDA device, got ", real.device());
  ci::L1Args& a = in.args;
  a.dtype = to_kernel_dtype(op, real.scalar_type(), "real");
  a.B = sh.B;
  a.K = sh.K;
  a.H = sh.H;
  a.W = sh.W;
  a.h = sh.h;
  a.w = sh.w;
  check_index_range(op, "real", "H", a.H);
  check_index_range(op, "real", "W", a.W);
  check_index_range(op, "mask", "h", a.h);
  check_index_range(op, "mask", "w", a.w);
  a.reduction = red == Reduction::Mean ? ci::L1Reduction::Mean
                : red == Reduction::Sum ? ci::L1Reduction::Sum
                                        : ci::L1Reduction::None;
  in.real = real.contiguous();
  in.fake = fake.contiguous();
  in.mask = mask.contiguous();
  a.real = data_or_null(in.real);
  a.fake = data_or_null(in.fake);
  a.mask = data_or_null(in.mask);
  return in;
}

}  // namespace

namespace cuda {

at::Tensor masked_l1(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& mask,
                     c10::string_view reduction) {
  L1Inputs in = prepare_l1("camfast.masked_l1 [cuda]", real, fake, mask, reduction);
  const c10::cuda::CUDAGuard guard(in.real.device());
  const ci::L1Args& a = in.args;
  at::Tensor out = a.reduction == ci::L1Reduction::None ? new_output(in.real, {a.B}, in.real.scalar_type())
                                                        : new_output(in.real, {}, in.real.scalar_type());
  if (out.numel() == 0) return out;
  at::Tensor ws = workspace(in.real, ci::masked_l1_forward_workspace_bytes(a));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  C10_CUDA_CHECK(ci::masked_l1_forward(a, out.data_ptr(), data_or_null(ws), stream));
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_l1_backward(
    const at::Tensor& grad_out, const at::Tensor& real, const at::Tensor& fake, const at::Tensor& mask,
    c10::string_view reduction, bool need_real, bool need_fake, bool need_mask) {
  const char* op = "camfast.masked_l1_backward [cuda]";
  L1Inputs in = prepare_l1(op, real, fake, mask, reduction);
  const c10::cuda::CUDAGuard guard(in.real.device());
  const ci::L1Args& a = in.args;
  check_grad_out(op, grad_out, a.reduction == ci::L1Reduction::None ? a.B : 1, in.real);
  // The incoming gradient is tiny; convert it to acc on the stream (no host synchronisation).
  const at::Tensor g = grad_out.to(acc_type(in.real.scalar_type())).contiguous();

  at::Tensor dreal = need_real ? new_output_like(in.real) : not_requested(in.real);
  at::Tensor dfake = need_fake ? new_output_like(in.fake) : not_requested(in.fake);
  at::Tensor dmask = need_mask ? new_output_like(in.mask) : not_requested(in.mask);
  void* pr = need_real ? data_or_null(dreal) : nullptr;
  void* pf = need_fake ? data_or_null(dfake) : nullptr;
  void* pm = need_mask ? data_or_null(dmask) : nullptr;
  if (pr != nullptr || pf != nullptr || pm != nullptr) {
    at::Tensor ws = workspace(in.real, ci::masked_l1_backward_workspace_bytes(a, pm != nullptr));
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
    C10_CUDA_CHECK(ci::masked_l1_backward(a, data_or_null(g), pr, pf, pm, data_or_null(ws), stream));
  }
  return {dreal, dfake, dmask};
}

}  // namespace cuda
}  // namespace camfast

TORCH_LIBRARY_IMPL(camfast, CUDA, m) {
  m.impl("cam_mask", &camfast::cuda::cam_mask);
  m.impl("cam_mask_backward", &camfast::cuda::cam_mask_backward);
  m.impl("masked_l1", &camfast::cuda::masked_l1);
  m.impl("masked_l1_backward", &camfast::cuda::masked_l1_backward);
}
