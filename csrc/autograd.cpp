// Autograd for the C++/CUDA ops, in C++ (the Autograd dispatch key): a differentiable call is
// one dispatcher call with no Python on the way, forward or backward. The gradients are those
// of docs/kernels.md, computed by the backward ops; which ones are computed follows what the
// engine needs for this backward (needs_input_grad), so G's step, which wants only d/dfake,
// never writes d/dreal or d/dfeats.
//
// The backward ops have no derivative. When a graph is being built (create_graph=True), their
// results are routed through a DelayedError node, as torch.autograd.function.once_differentiable
// does: first-order gradients stay exact and differentiating them again raises, naming the op.
#include <ATen/core/LegacyTypeDispatch.h>
#include <c10/core/DeviceType.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/library.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dispatch.h"

namespace camfast {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool any_requires_grad(const variable_list& ts) {
  for (const auto& t : ts)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

// Whether this backward builds a graph that could reach its results (create_graph=True).
bool building_graph(const at::Tensor& grad, const variable_list& saved) {
  return c10::GradMode::is_enabled() && ((grad.defined() && grad.requires_grad()) || any_requires_grad(saved));
}

// Routes the defined entries of `grads` through a DelayedError node whose edges lead to `links`
// (the backward's inputs that require grad), so that differentiating with respect to any of them
// reaches the node and raises, instead of reporting the input as unused or the result as 0.
void once_differentiable(variable_list& grads, const variable_list& links, const char* op, const at::Tensor& like) {
  variable_list flat;
  std::vector<size_t> where;
  for (size_t i = 0; i < grads.size(); ++i) {
    if (grads[i].defined()) {
      flat.push_back(grads[i]);
      where.push_back(i);
    }
  }
  const size_t n = flat.size();
  for (const auto& t : links)
    if (t.defined() && t.requires_grad()) flat.push_back(t);
  if (n == 0 || flat.size() == n) return;
  const std::string msg = std::string("camfast: the fused op ") + op + " (" +
                          c10::DeviceTypeName(like.device().type(), /*lower_case=*/true) +
                          " backend) is once-differentiable: a second-order gradient through it is not "
                          "implemented. Use backend='reference' (plain autograd, supports double backward) for "
                          "this loss.";
  const auto node = std::make_shared<torch::autograd::DelayedError>(msg, static_cast<int64_t>(flat.size()));
  variable_list marked = (*node)(std::move(flat));
  for (size_t k = 0; k < n; ++k) grads[where[k]] = std::move(marked[k]);
}

bool any_needed(const AutogradContext* ctx, size_t begin, size_t end) {
  for (size_t i = begin; i < end; ++i)
    if (ctx->needs_input_grad(i)) return true;
  return false;
}

// ---------------------------------------------------------------- cam_consistency (the public loss)
//
// Inputs as the engine numbers them: real 0, fake 1, feats 2..2+S, grads 2+S..2+2S.

// The mask, the op's second output, leaves through `mask_out`, not as an output of the Function:
// it is not differentiable, and marking an output so (mark_non_differentiable) makes compiled
// autograd (torch._dynamo.config.compiled_autograd) fail an internal assert on this node.
struct CamConsistencyFn : public torch::autograd::Function<CamConsistencyFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& real, const at::Tensor& fake,
                               at::TensorList feats, at::TensorList grads, c10::string_view normalize, double eps,
                               c10::string_view reduction, at::Tensor* mask_out) {
    at::AutoDispatchBelowADInplaceOrView below;
    auto [loss, mask] = dispatch::cam_consistency().call(real, fake, feats, grads, normalize, eps, reduction);
    variable_list saved{real, fake, mask};
    saved.insert(saved.end(), feats.begin(), feats.end());
    saved.insert(saved.end(), grads.begin(), grads.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["normalize"] = std::string(normalize);
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["reduction"] = std::string(reduction);
    *mask_out = std::move(mask);
    return {loss};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const size_t S = (saved.size() - 3) / 2;
    variable_list out(2 + 2 * S + 4);  // + normalize, eps, reduction, mask_out: no gradient
    const at::Tensor& g = grad_outputs[0];
    if (!g.defined()) return out;
    const bool need_real = ctx->needs_input_grad(0), need_fake = ctx->needs_input_grad(1);
    const bool need_feats = any_needed(ctx, 2, 2 + S), need_grads = any_needed(ctx, 2 + S, 2 + 2 * S);
    const at::TensorList feats(saved.data() + 3, S), grads(saved.data() + 3 + S, S);
    const bool graph = building_graph(g, saved);
    {
      at::AutoDispatchBelowADInplaceOrView below;
      auto [dreal, dfake, dfeats, dgrads] = dispatch::cam_consistency_backward().call(
          g, saved[0], saved[1], feats, grads, saved[2], ctx->saved_data["normalize"].toStringRef(),
          ctx->saved_data["eps"].toDouble(), ctx->saved_data["reduction"].toStringRef(), need_real, need_fake,
          need_feats, need_grads);
      if (need_real) out[0] = std::move(dreal);
      if (need_fake) out[1] = std::move(dfake);
      for (size_t s = 0; s < S; ++s) {
        if (need_feats) out[2 + s] = std::move(dfeats[s]);
        if (need_grads) out[2 + S + s] = std::move(dgrads[s]);
      }
    }
    if (graph) {
      variable_list links{g};
      links.insert(links.end(), saved.begin(), saved.end());
      once_differentiable(out, links, "camfast::cam_consistency", saved[0]);
    }
    return out;
  }
};

dispatch::TensorPair cam_consistency_autograd(const at::Tensor& real, const at::Tensor& fake, at::TensorList feats,
                                              at::TensorList grads, c10::string_view normalize, double eps,
                                              c10::string_view reduction) {
  at::Tensor mask;
  variable_list out = CamConsistencyFn::apply(real, fake, feats, grads, normalize, eps, reduction, &mask);
  return {std::move(out[0]), std::move(mask)};
}

// ---------------------------------------------------------------- cam_mask (Stage 1 alone)
//
// Inputs: feats 0..S, grads S..2S.

struct CamMaskFn : public torch::autograd::Function<CamMaskFn> {
  static at::Tensor forward(AutogradContext* ctx, at::TensorList feats, at::TensorList grads,
                            c10::string_view normalize, double eps) {
    at::AutoDispatchBelowADInplaceOrView below;
    at::Tensor u = dispatch::cam_mask().call(feats, grads, normalize, eps);
    variable_list saved(feats.begin(), feats.end());
    saved.insert(saved.end(), grads.begin(), grads.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["normalize"] = std::string(normalize);
    ctx->saved_data["eps"] = eps;
    return u;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const size_t S = saved.size() / 2;
    variable_list out(2 * S + 2);
    const at::Tensor& g = grad_outputs[0];
    const bool need_feats = any_needed(ctx, 0, S), need_grads = any_needed(ctx, S, 2 * S);
    const bool graph = building_graph(g, saved);
    {
      at::AutoDispatchBelowADInplaceOrView below;
      auto [dfeats, dgrads] = dispatch::cam_mask_backward().call(
          g, at::TensorList(saved.data(), S), at::TensorList(saved.data() + S, S),
          ctx->saved_data["normalize"].toStringRef(), ctx->saved_data["eps"].toDouble(), need_feats, need_grads);
      for (size_t s = 0; s < S; ++s) {
        if (need_feats) out[s] = std::move(dfeats[s]);
        if (need_grads) out[S + s] = std::move(dgrads[s]);
      }
    }
    if (graph) {
      variable_list links{g};
      links.insert(links.end(), saved.begin(), saved.end());
      once_differentiable(out, links, "camfast::cam_mask", saved[0]);
    }
    return out;
  }
};

at::Tensor cam_mask_autograd(at::TensorList feats, at::TensorList grads, c10::string_view normalize, double eps) {
  return CamMaskFn::apply(feats, grads, normalize, eps);
}

// ---------------------------------------------------------------- masked_l1 (Stage 2 alone)

struct MaskedL1Fn : public torch::autograd::Function<MaskedL1Fn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& real, const at::Tensor& fake,
                            const at::Tensor& mask, c10::string_view reduction) {
    at::AutoDispatchBelowADInplaceOrView below;
    at::Tensor loss = dispatch::masked_l1().call(real, fake, mask, reduction);
    ctx->save_for_backward({real, fake, mask});
    ctx->saved_data["reduction"] = std::string(reduction);
    return loss;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    variable_list out(4);
    const at::Tensor& g = grad_outputs[0];
    const bool need_real = ctx->needs_input_grad(0), need_fake = ctx->needs_input_grad(1),
               need_mask = ctx->needs_input_grad(2);
    const bool graph = building_graph(g, saved);
    {
      at::AutoDispatchBelowADInplaceOrView below;
      auto [dreal, dfake, dmask] = dispatch::masked_l1_backward().call(
          g, saved[0], saved[1], saved[2], ctx->saved_data["reduction"].toStringRef(), need_real, need_fake,
          need_mask);
      if (need_real) out[0] = std::move(dreal);
      if (need_fake) out[1] = std::move(dfake);
      if (need_mask) out[2] = std::move(dmask);
    }
    if (graph) {
      variable_list links{g};
      links.insert(links.end(), saved.begin(), saved.end());
      once_differentiable(out, links, "camfast::masked_l1", saved[0]);
    }
    return out;
  }
};

at::Tensor masked_l1_autograd(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& mask,
                              c10::string_view reduction) {
  return MaskedL1Fn::apply(real, fake, mask, reduction);
}

}  // namespace
}  // namespace camfast

TORCH_LIBRARY_IMPL(camfast, Autograd, m) {
  m.impl("cam_consistency", &camfast::cam_consistency_autograd);
  m.impl("cam_mask", &camfast::cam_mask_autograd);
  m.impl("masked_l1", &camfast::masked_l1_autograd);
}
