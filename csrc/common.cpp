#include "common.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <atomic>
#include <limits>
#include <string>

namespace camfast {

Norm parse_norm(const char* op, std::string_view s) {
  if (s == "minmax") return Norm::MinMax;
  if (s == "max") return Norm::Max;
  TORCH_CHECK_VALUE(false, op, ": normalize must be 'minmax' or 'max', got '", std::string(s), "'");
}

Reduction parse_reduction(const char* op, std::string_view s) {
  if (s == "mean") return Reduction::Mean;
  if (s == "sum") return Reduction::Sum;
  if (s == "none") return Reduction::None;
  TORCH_CHECK_VALUE(false, op, ": reduction must be 'mean', 'sum' or 'none', got '", std::string(s), "'");
}

static std::atomic<bool> g_poison{false};

void set_poison(bool enabled) { g_poison.store(enabled); }
bool poison_enabled() { return g_poison.load(); }

static at::Tensor maybe_poison(at::Tensor t) {
  if (poison_enabled() && t.numel() > 0) t.fill_(std::numeric_limits<double>::quiet_NaN());
  return t;
}

at::Tensor new_output(const at::Tensor& like, at::IntArrayRef sizes, at::ScalarType dtype) {
  return maybe_poison(at::empty(sizes, like.options().dtype(dtype)));
}

at::Tensor new_output_like(const at::Tensor& like) {
  return maybe_poison(at::empty_like(like, at::MemoryFormat::Contiguous));
}

at::Tensor not_requested(const at::Tensor& like) { return at::empty({0}, like.options()); }

// ---------------------------------------------------------------- input validation

static bool is_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16 || t == at::kDouble;
}

static std::string indexed(const char* name, size_t s) { return std::string(name) + "[" + std::to_string(s) + "]"; }

CamShape check_cam_args(const char* op, at::TensorList feats, at::TensorList grads) {
  TORCH_CHECK_VALUE(!feats.empty(), op, ": feats must hold at least one tensor, got an empty list");
  TORCH_CHECK_VALUE(feats.size() == grads.size(), op, ": feats and grads must have the same length, got ",
                    feats.size(), " feats and ", grads.size(), " grads");
  const at::Tensor& f0 = feats[0];
  TORCH_CHECK_VALUE(f0.defined() && f0.dim() == 4, op, ": feats[0] must be [B, C, h, w], got ",
                    f0.defined() ? f0.sizes() : at::IntArrayRef{});
  TORCH_CHECK_TYPE(is_float(f0.scalar_type()), op, ": feats[0] must be float32, float16, bfloat16 or float64, got ",
                   f0.scalar_type());
  const CamShape sh{f0.size(0), f0.size(2), f0.size(3)};
  for (size_t s = 0; s < feats.size(); ++s) {
    const at::Tensor& f = feats[s];
    const at::Tensor& g = grads[s];
    const std::string fn = indexed("feats", s), gn = indexed("grads", s);
    TORCH_CHECK_VALUE(f.defined() && f.dim() == 4 && f.size(0) == sh.B && f.size(2) == sh.h && f.size(3) == sh.w,
                      op, ": ", fn, " must be [B=", sh.B, ", C, h=", sh.h, ", w=", sh.w, "] (as feats[0]), got ",
                      f.defined() ? f.sizes() : at::IntArrayRef{});
    TORCH_CHECK_VALUE(g.defined() && g.sizes() == f.sizes(), op, ": ", gn, " must have the shape of ", fn, " ",
                      f.sizes(), ", got ", g.defined() ? g.sizes() : at::IntArrayRef{});
    TORCH_CHECK_TYPE(f.scalar_type() == f0.scalar_type() && g.scalar_type() == f0.scalar_type(), op, ": ", fn,
                     " and ", gn, " must have the dtype of feats[0] (", f0.scalar_type(), "), got ", f.scalar_type(),
                     " and ", g.scalar_type());
    TORCH_CHECK_VALUE(f.device() == f0.device() && g.device() == f0.device(), op, ": ", fn, " and ", gn,
                      " must be on the device of feats[0] (", f0.device(), "), got ", f.device(), " and ", g.device());
  }
  return sh;
}

void check_grad_mask(const char* op, const at::Tensor& grad_mask, const CamShape& s, const at::Tensor& feats0) {
  TORCH_CHECK_VALUE(grad_mask.defined() && grad_mask.dim() == 3 && grad_mask.size(0) == s.B &&
                        grad_mask.size(1) == s.h && grad_mask.size(2) == s.w,
                    op, ": grad_mask must be [B=", s.B, ", h=", s.h, ", w=", s.w, "], got ",
                    grad_mask.defined() ? grad_mask.sizes() : at::IntArrayRef{});
  TORCH_CHECK_TYPE(is_float(grad_mask.scalar_type()), op, ": grad_mask must have a floating dtype, got ",
                   grad_mask.scalar_type());
  TORCH_CHECK_VALUE(grad_mask.device() == feats0.device(), op, ": grad_mask must be on the device of feats (",
                    feats0.device(), "), got ", grad_mask.device());
}

L1Shape check_l1_args(const char* op, const at::Tensor& real, const at::Tensor& fake, const at::Tensor& mask) {
  TORCH_CHECK_VALUE(real.defined() && real.dim() == 4, op, ": real must be [B, K, H, W], got ",
                    real.defined() ? real.sizes() : at::IntArrayRef{});
  TORCH_CHECK_TYPE(is_float(real.scalar_type()), op, ": real must be float32, float16, bfloat16 or float64, got ",
                   real.scalar_type());
  TORCH_CHECK_VALUE(fake.defined() && fake.sizes() == real.sizes(), op, ": fake must have the shape of real ",
                    real.sizes(), ", got ", fake.defined() ? fake.sizes() : at::IntArrayRef{});
  TORCH_CHECK_TYPE(fake.scalar_type() == real.scalar_type(), op, ": fake must have the dtype of real (",
                   real.scalar_type(), "), got ", fake.scalar_type());
  TORCH_CHECK_VALUE(fake.device() == real.device(), op, ": fake must be on the device of real (", real.device(),
                    "), got ", fake.device());
  TORCH_CHECK_VALUE(mask.defined() && mask.dim() == 3 && mask.size(0) == real.size(0), op, ": mask must be [B=",
                    real.size(0), ", h, w], got ", mask.defined() ? mask.sizes() : at::IntArrayRef{});
  TORCH_CHECK_VALUE(mask.size(1) >= 1 && mask.size(2) >= 1, op,
                    ": mask must have h, w >= 1 (an empty mask cannot be sampled), got ", mask.sizes());
  const at::ScalarType acc = acc_type(real.scalar_type());
  TORCH_CHECK_TYPE(mask.scalar_type() == acc, op, ": mask must be ", acc, " for images of dtype ",
                   real.scalar_type(), ", got ", mask.scalar_type());
  TORCH_CHECK_VALUE(mask.device() == real.device(), op, ": mask must be on the device of real (", real.device(),
                    "), got ", mask.device());
  return {real.size(0), real.size(1), real.size(2), real.size(3), mask.size(1), mask.size(2)};
}

void check_grad_out(const char* op, const at::Tensor& grad_out, int64_t numel, const at::Tensor& real) {
  TORCH_CHECK_VALUE(grad_out.defined() && grad_out.numel() == numel, op, ": grad_out must have ", numel,
                    " element(s), got shape ", grad_out.defined() ? grad_out.sizes() : at::IntArrayRef{});
  TORCH_CHECK_TYPE(is_float(grad_out.scalar_type()), op, ": grad_out must have a floating dtype, got ",
                   grad_out.scalar_type());
  TORCH_CHECK_VALUE(grad_out.device() == real.device(), op, ": grad_out must be on the device of real (",
                    real.device(), "), got ", grad_out.device());
}

}  // namespace camfast
