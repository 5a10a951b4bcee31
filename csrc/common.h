// Shared by every C++/CUDA backend: option parsing, output allocation, dtype rules.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <string_view>

namespace camfast {

enum class Norm { MinMax, Max };
enum class Reduction { Mean, Sum, None };

// op: as for the checks below.
Norm parse_norm(const char* op, std::string_view s);
Reduction parse_reduction(const char* op, std::string_view s);

// fp64 inputs accumulate in fp64 (gradcheck); everything else in fp32.
inline at::ScalarType acc_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

// Outputs are allocated here so that tests can poison them (fill with NaN) and prove that
// a kernel writes every element it returns.
void set_poison(bool enabled);
bool poison_enabled();
at::Tensor new_output(const at::Tensor& like, at::IntArrayRef sizes, at::ScalarType dtype);
at::Tensor new_output_like(const at::Tensor& like);
// Placeholder for a gradient that was not requested.
at::Tensor not_requested(const at::Tensor& like);

// ---------------------------------------------------------------- input validation
//
// Every op of every device checks its arguments here first, so that a direct call through
// torch.ops.camfast.* with bad input raises instead of reading out of bounds. Every backend's
// messages (these, the Triton launchers') have one form, so that a user can tell which op of
// which backend rejected which argument (docs/kernels.md):
//   camfast.<op> [<backend>]: <argument> must ..., got <what was passed>
// ValueError for shapes, devices and values, TypeError for dtypes.
// Empty inputs are valid and defined the same way in every backend (docs/kernels.md):
//   cam_mask: B, h, w or C_s may be 0 (a source with C_s = 0 has a zero CAM);
//   masked_l1: B, K, H or W may be 0 (the loss is then 0); the mask needs h, w >= 1.

struct CamShape {
  int64_t B, h, w;
};
struct L1Shape {
  int64_t B, K, H, W, h, w;
};

// op: the op and backend the message begins with, e.g. "camfast.cam_mask [cpu]".
CamShape check_cam_args(const char* op, at::TensorList feats, at::TensorList grads);
// grad_mask: [B, h, w], a floating dtype, on the device of feats.
void check_grad_mask(const char* op, const at::Tensor& grad_mask, const CamShape& s, const at::Tensor& feats0);
L1Shape check_l1_args(const char* op, const at::Tensor& real, const at::Tensor& fake, const at::Tensor& mask);
// grad_out: `numel` elements (1, or B for 'none'), a floating dtype, on the device of real.
void check_grad_out(const char* op, const at::Tensor& grad_out, int64_t numel, const at::Tensor& real);

}  // namespace camfast
