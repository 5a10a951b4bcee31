#include "common.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <atomic>
#include <limits>

namespace camfast {

Norm parse_norm(std::string_view s) {
  if (s == "minmax") return Norm::MinMax;
  if (s == "max") return Norm::Max;
  TORCH_CHECK_VALUE(false, "camfast: normalize must be 'minmax' or 'max', got '", std::string(s), "'");
}

Reduction parse_reduction(std::string_view s) {
  if (s == "mean") return Reduction::Mean;
  if (s == "sum") return Reduction::Sum;
  if (s == "none") return Reduction::None;
  TORCH_CHECK_VALUE(false, "camfast: reduction must be 'mean', 'sum' or 'none', got '", std::string(s), "'");
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

}  // namespace camfast
