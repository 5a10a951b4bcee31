// Shared by every C++/CUDA backend: option parsing, output allocation, dtype rules.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <string_view>

namespace camfast {

enum class Norm { MinMax, Max };
enum class Reduction { Mean, Sum, None };

Norm parse_norm(std::string_view s);
Reduction parse_reduction(std::string_view s);

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

}  // namespace camfast
