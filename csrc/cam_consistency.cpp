// The public loss as one op per direction, for every device: Stage 1 (cam_mask) and Stage 2
// (masked_l1) called in C++, so a caller pays for one dispatcher call, not two plus a cast.
// The kernels are the stage ops' own, called directly; this file only chains them and checks
// what the public API promises on top of the stage ops (no empty tensor, eps > 0, one batch,
// one device).
#include <ATen/core/Tensor.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/record_function.h>
#include <torch/library.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "common.h"
#include "stages.h"
#include "dispatch.h"

namespace camfast {
namespace {

void check_not_empty(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK_VALUE(t.numel() > 0, op, ": ", name, " must be non-empty, got shape ", t.sizes());
}

void check_loss_args(const char* op, const at::Tensor& real, const at::Tensor& fake, at::TensorList feats,
                     at::TensorList grads, c10::string_view normalize, double eps, c10::string_view reduction) {
  const CamShape cs = check_cam_args(op, feats, grads);
  TORCH_CHECK_VALUE(real.defined() && real.dim() == 4, op, ": real must be [B, K, H, W], got ",
                    real.defined() ? real.sizes() : at::IntArrayRef{});
  TORCH_CHECK_VALUE(fake.defined() && fake.sizes() == real.sizes(), op, ": fake must have the shape of real ",
                    real.sizes(), ", got ", fake.defined() ? fake.sizes() : at::IntArrayRef{});
  TORCH_CHECK_VALUE(real.size(0) == cs.B, op, ": feats must have the batch size of real (", real.size(0), "), got ",
                    cs.B);
  TORCH_CHECK_VALUE(feats[0].device() == real.device(), op, ": feats must be on the device of real (", real.device(),
                    "), got ", feats[0].device());
  check_not_empty(op, "real", real);
  check_not_empty(op, "fake", fake);
  for (size_t s = 0; s < feats.size(); ++s) {
    check_not_empty(op, "feats", feats[s]);
    check_not_empty(op, "grads", grads[s]);
  }
  TORCH_CHECK_VALUE(eps > 0 && std::isfinite(eps), op, ": eps must be a finite number > 0, got ", eps);
  // Checked here too, or the stage op that parses them would name itself in the message.
  parse_norm(op, normalize);
  parse_reduction(op, reduction);
}

// Runs a stage kernel under its op's name, so that profiles show the stages as before.
template <typename F, typename... Args>
auto stage(const char* name, F kernel, Args&&... args) {
  RECORD_FUNCTION(name, std::vector<c10::IValue>());
  return kernel(std::forward<Args>(args)...);
}

// One kernel per device (kCuda), so that messages name the backend that raised; the device's
// stage kernels (stages.h) are template arguments, called directly.
template <bool kCuda, auto cam_mask, auto masked_l1>
dispatch::TensorPair cam_consistency(const at::Tensor& real, const at::Tensor& fake, at::TensorList feats,
                                     at::TensorList grads, c10::string_view normalize, double eps,
                                     c10::string_view reduction) {
  const char* op = kCuda ? "camfast.cam_consistency [cuda]" : "camfast.cam_consistency [cpu]";
  check_loss_args(op, real, fake, feats, grads, normalize, eps, reduction);
  // Reached from the autograd kernel or under no_grad: the stage ops must not record a graph.
  at::AutoDispatchBelowADInplaceOrView below;
  at::Tensor u = stage("camfast::cam_mask", cam_mask, feats, grads, normalize, eps);
  // fp64 feats with fp32 images: the l1 reads fp32 (no call at all in the usual case, equal dtypes).
  const at::ScalarType acc = acc_type(real.scalar_type());
  at::Tensor mask = u.scalar_type() == acc ? u : u.to(acc);
  at::Tensor loss = stage("camfast::masked_l1", masked_l1, real, fake, mask, reduction);
  return {loss, mask};
}

template <bool kCuda, auto masked_l1_backward, auto cam_mask_backward>
dispatch::LossGrads cam_consistency_backward(const at::Tensor& grad_out, const at::Tensor& real,
                                             const at::Tensor& fake, at::TensorList feats, at::TensorList grads,
                                             const at::Tensor& mask, c10::string_view normalize, double eps,
                                             c10::string_view reduction, bool need_real, bool need_fake,
                                             bool need_feats, bool need_grads) {
  const char* op = kCuda ? "camfast.cam_consistency_backward [cuda]" : "camfast.cam_consistency_backward [cpu]";
  check_loss_args(op, real, fake, feats, grads, normalize, eps, reduction);
  at::AutoDispatchBelowADInplaceOrView below;
  const bool need_mask = need_feats || need_grads;
  auto [dreal, dfake, dmask] =
      stage("camfast::masked_l1_backward", masked_l1_backward, grad_out, real, fake, mask, reduction,
            need_real, need_fake, need_mask);
  std::vector<at::Tensor> dfeats, dgrads;
  if (need_mask) {
    std::tie(dfeats, dgrads) =
        stage("camfast::cam_mask_backward", cam_mask_backward, dmask, feats, grads, normalize, eps,
              need_feats, need_grads);
  }
  return {dreal, dfake, std::move(dfeats), std::move(dgrads)};
}

}  // namespace

TORCH_LIBRARY_IMPL(camfast, CPU, m) {
  m.impl("cam_consistency", &cam_consistency<false, &cpu::cam_mask, &cpu::masked_l1>);
  m.impl("cam_consistency_backward",
         &cam_consistency_backward<false, &cpu::masked_l1_backward, &cpu::cam_mask_backward>);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(camfast, CUDA, m) {
  m.impl("cam_consistency", &cam_consistency<true, &cuda::cam_mask, &cuda::masked_l1>);
  m.impl("cam_consistency_backward",
         &cam_consistency_backward<true, &cuda::masked_l1_backward, &cuda::cam_mask_backward>);
}
#endif

}  // namespace camfast
