// Typed handles of the camfast ops, for C++ code that calls them through the dispatcher
// (the combined loss, the autograd kernels). Each handle is looked up once.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <tuple>
#include <vector>

#include "stages.h"

namespace camfast {
namespace dispatch {

using TensorPair = std::tuple<at::Tensor, at::Tensor>;
using LossGrads = std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>>;

inline const auto& cam_mask() {
  static const auto h = c10::Dispatcher::singleton()
                            .findSchemaOrThrow("camfast::cam_mask", "")
                            .typed<at::Tensor(at::TensorList, at::TensorList, c10::string_view, double)>();
  return h;
}

inline const auto& cam_mask_backward() {
  static const auto h =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("camfast::cam_mask_backward", "")
          .typed<TensorLists(const at::Tensor&, at::TensorList, at::TensorList, c10::string_view, double, bool, bool)>();
  return h;
}

inline const auto& masked_l1() {
  static const auto h =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("camfast::masked_l1", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::string_view)>();
  return h;
}

inline const auto& masked_l1_backward() {
  static const auto h = c10::Dispatcher::singleton()
                            .findSchemaOrThrow("camfast::masked_l1_backward", "")
                            .typed<TensorTriple(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                const at::Tensor&, c10::string_view, bool, bool, bool)>();
  return h;
}

inline const auto& cam_consistency() {
  static const auto h = c10::Dispatcher::singleton()
                            .findSchemaOrThrow("camfast::cam_consistency", "")
                            .typed<TensorPair(const at::Tensor&, const at::Tensor&, at::TensorList, at::TensorList,
                                              c10::string_view, double, c10::string_view)>();
  return h;
}

inline const auto& cam_consistency_backward() {
  static const auto h =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("camfast::cam_consistency_backward", "")
          .typed<LossGrads(const at::Tensor&, const at::Tensor&, const at::Tensor&, at::TensorList, at::TensorList,
                           const at::Tensor&, c10::string_view, double, c10::string_view, bool, bool, bool, bool)>();
  return h;
}

}  // namespace dispatch
}  // namespace camfast
