// The stage kernels of each device (csrc/cpu, csrc/cuda/register.cpp). The combined op
// (csrc/cam_consistency.cpp) already runs on its device's dispatch key, so it calls them
// directly: one dispatcher call per direction for the whole loss.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>
#include <vector>

namespace camfast {

using TensorLists = std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>>;
using TensorTriple = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

namespace cpu {
at::Tensor cam_mask(at::TensorList feats, at::TensorList grads, c10::string_view normalize, double eps);
TensorLists cam_mask_backward(const at::Tensor& grad_mask, at::TensorList feats, at::TensorList grads,
                              c10::string_view normalize, double eps, bool need_feats, bool need_grads);
at::Tensor masked_l1(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& mask, c10::string_view reduction);
TensorTriple masked_l1_backward(const at::Tensor& grad_out, const at::Tensor& real, const at::Tensor& fake,
                                const at::Tensor& mask, c10::string_view reduction, bool need_real, bool need_fake,
                                bool need_mask);
}  // namespace cpu

#ifdef WITH_CUDA
namespace cuda {
at::Tensor cam_mask(at::TensorList feats, at::TensorList grads, c10::string_view normalize, double eps);
TensorLists cam_mask_backward(const at::Tensor& grad_mask, at::TensorList feats, at::TensorList grads,
                              c10::string_view normalize, double eps, bool need_feats, bool need_grads);
at::Tensor masked_l1(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& mask, c10::string_view reduction);
TensorTriple masked_l1_backward(const at::Tensor& grad_out, const at::Tensor& real, const at::Tensor& fake,
                                const at::Tensor& mask, c10::string_view reduction, bool need_real, bool need_fake,
                                bool need_mask);
}  // namespace cuda
#endif

}  // namespace camfast
