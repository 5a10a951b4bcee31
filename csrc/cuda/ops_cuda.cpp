// CUDA implementations of the camfast ops (schemas in csrc/ops.cpp, math in docs/kernels.md).
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

namespace camfast {
namespace {

namespace ci = cuda_impl;

ci::DType to_kernel_dtype(at::ScalarType t, const char* what) {
  switch (t) {
    case at::kFloat: return ci::DType::Float32;
    case at::kHalf: return ci::DType::Float16;
    case at::kBFloat16: return ci::DType::BFloat16;
    case at::kDouble: return ci::DType::Float64;
    default: break;
  }
  TORCH_CHECK_TYPE(false, "camfast (CUDA): ", what, " must be float32, float16, bfloat16 or float64, got ", t);
}

void check_device(const at::Tensor& t, const char* what, const at::Device& device) {
  TORCH_CHECK_VALUE(t.defined(), "camfast (CUDA): ", what, " is undefined");
  TORCH_CHECK_VALUE(t.is_cuda(), "camfast (CUDA): ", what, " must be a CUDA tensor, got one on ", t.device());
  TORCH_CHECK_VALUE(t.device() == device, "camfast (CUDA): ", what, " is on ", t.device(), ", expected ",
                    device, " (all inputs on one device)");
}

void check_index_range(int64_t v, const char* what) {
  TORCH_CHECK_VALUE(v < std::numeric_limits<int32_t>::max(), "camfast (CUDA): ", what, " = ", v,
                    " is too large for the CUDA kernels");
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

CamInputs prepare_cam(at::TensorList feats, at::TensorList grads, c10::string_view normalize, double eps) {
  CamInputs in;
  const Norm norm = parse_norm(normalize);
  const int64_t S = static_cast<int64_t>(feats.size());
  TORCH_CHECK_VALUE(S >= 1, "camfast (CUDA): feats must hold at least one tensor, got an empty list");
  TORCH_CHECK_VALUE(static_cast<int64_t>(grads.size()) == S, "camfast (CUDA): feats and grads must have the same ",
                    "length, got ", S, " and ", grads.size());
  TORCH_CHECK_VALUE(S <= ci::kMaxSources, "camfast (CUDA): at most ", ci::kMaxSources, " CAM sources, got ", S);
  const at::Tensor& f0 = feats[0];
  TORCH_CHECK_VALUE(f0.defined() && f0.dim() == 4, "camfast (CUDA): feats[0] must be 4-D [B, C, h, w], got ",
                    f0.defined() ? f0.sizes() : at::IntArrayRef{});
  const at::Device device = f0.device();
  const at::ScalarType dtype = f0.scalar_type();
  ci::CamArgs& a = in.args;
  a.dtype = to_kernel_dtype(dtype, "feats");
  a.S = static_cast<int>(S);
  a.B = f0.size(0);
  a.h = f0.size(2);
  a.w = f0.size(3);
  a.minmax = norm == Norm::MinMax;
  a.eps = eps;
  for (int64_t s = 0; s < S; ++s) {
    const at::Tensor& f = feats[s];
    const at::Tensor& g = grads[s];
    check_device(f, "feats[s]", device);
    check_device(g, "grads[s]", device);
    TORCH_CHECK_VALUE(f.dim() == 4 && f.size(0) == a.B && f.size(2) == a.h && f.size(3) == a.w,
                      "camfast (CUDA): feats[", s, "] must be [B=", a.B, ", C, h=", a.h, ", w=", a.w, "], got ",
                      f.sizes());
    TORCH_CHECK_VALUE(g.sizes() == f.sizes(), "camfast (CUDA): grads[", s, "] must have the shape of feats[", s,
                      "] ", f.sizes(), ", got ", g.sizes());
    TORCH_CHECK_TYPE(f.scalar_type() == dtype && g.scalar_type() == dtype, "camfast (CUDA): feats[", s,
                     "] and grads[", s, "] must have the dtype of feats[0] (", dtype, "), got ", f.scalar_type(),
                     " and ", g.scalar_type());
    in.feats.push_back(f.contiguous());
    in.grads.push_back(g.contiguous());
    a.C[s] = f.size(1);
    a.feats[s] = data_or_null(in.feats.back());
    a.grads[s] = data_or_null(in.grads.back());
  }
  return in;
}

at::Tensor cam_mask_cuda(at::TensorList feats, at::TensorList grads, c10::string_view normalize, double eps) {
  CamInputs in = prepare_cam(feats, grads, normalize, eps);
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

std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>> cam_mask_backward_cuda(
    const at::Tensor& grad_mask, at::TensorList feats, at::TensorList grads, c10::string_view normalize, double eps,
    bool need_feats, bool need_grads) {
  CamInputs in = prepare_cam(feats, grads, normalize, eps);
  const at::Tensor& f0 = in.feats[0];
  const c10::cuda::CUDAGuard guard(f0.device());
  const ci::CamArgs& a = in.args;
  const at::ScalarType acc = acc_type(f0.scalar_type());
  check_device(grad_mask, "grad_mask", f0.device());
  TORCH_CHECK_VALUE(grad_mask.dim() == 3 && grad_mask.size(0) == a.B && grad_mask.size(1) == a.h &&
                        grad_mask.size(2) == a.w,
                    "camfast (CUDA): grad_mask must be [B=", a.B, ", h=", a.h, ", w=", a.w, "], got ", grad_mask.sizes());
  TORCH_CHECK_TYPE(grad_mask.scalar_type() == acc, "camfast (CUDA): grad_mask dtype must be ", acc, ", got ",
                   grad_mask.scalar_type());
  const at::Tensor gm = grad_mask.contiguous();

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

// ---------------------------------------------------------------- stage 2

struct L1Inputs {
  at::Tensor real, fake, mask;  // contiguous
  ci::L1Args args;
};

L1Inputs prepare_l1(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& mask,
                    c10::string_view reduction) {
  L1Inputs in;
  const Reduction red = parse_reduction(reduction);
  TORCH_CHECK_VALUE(real.defined() && real.dim() == 4, "camfast (CUDA): real must be 4-D [B, K, H, W], got ",
                    real.defined() ? real.sizes() : at::IntArrayRef{});
  const at::Device device = real.device();
  check_device(real, "real", device);
  check_device(fake, "fake", device);
  check_device(mask, "mask", device);
  TORCH_CHECK_VALUE(fake.sizes() == real.sizes(), "camfast (CUDA): fake must have the shape of real ", real.sizes(),
                    ", got ", fake.sizes());
  TORCH_CHECK_TYPE(fake.scalar_type() == real.scalar_type(), "camfast (CUDA): fake must have the dtype of real (",
                   real.scalar_type(), "), got ", fake.scalar_type());
  ci::L1Args& a = in.args;
  a.dtype = to_kernel_dtype(real.scalar_type(), "real");
  a.B = real.size(0);
  a.K = real.size(1);
  a.H = real.size(2);
  a.W = real.size(3);
  TORCH_CHECK_VALUE(mask.dim() == 3 && mask.size(0) == a.B, "camfast (CUDA): mask must be [B=", a.B,
                    ", h, w], got ", mask.sizes());
  a.h = mask.size(1);
  a.w = mask.size(2);
  TORCH_CHECK_VALUE(a.h >= 1 && a.w >= 1, "camfast (CUDA): mask must have h, w >= 1, got ", mask.sizes());
  const at::ScalarType acc = acc_type(real.scalar_type());
  TORCH_CHECK_TYPE(mask.scalar_type() == acc, "camfast (CUDA): mask dtype must be ", acc, " for ", real.scalar_type(),
                   " images, got ", mask.scalar_type());
  check_index_range(a.H, "H");
  check_index_range(a.W, "W");
  check_index_range(a.h, "h");
  check_index_range(a.w, "w");
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

at::Tensor masked_l1_cuda(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& mask,
                          c10::string_view reduction) {
  L1Inputs in = prepare_l1(real, fake, mask, reduction);
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

std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_l1_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& real, const at::Tensor& fake, const at::Tensor& mask,
    c10::string_view reduction, bool need_real, bool need_fake, bool need_mask) {
  L1Inputs in = prepare_l1(real, fake, mask, reduction);
  const c10::cuda::CUDAGuard guard(in.real.device());
  const ci::L1Args& a = in.args;
  check_device(grad_out, "grad_out", in.real.device());
  const int64_t expected = a.reduction == ci::L1Reduction::None ? a.B : 1;
  TORCH_CHECK_VALUE(grad_out.numel() == expected, "camfast (CUDA): grad_out must have ", expected,
                    " element(s) for reduction '", std::string(reduction), "', got shape ", grad_out.sizes());
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

}  // namespace
}  // namespace camfast

TORCH_LIBRARY_IMPL(camfast, CUDA, m) {
  m.impl("cam_mask", &camfast::cam_mask_cuda);
  m.impl("cam_mask_backward", &camfast::cam_mask_backward_cuda);
  m.impl("masked_l1", &camfast::masked_l1_cuda);
  m.impl("masked_l1_backward", &camfast::masked_l1_backward_cuda);
}
