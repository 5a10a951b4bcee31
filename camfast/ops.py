"""torch.library glue: fake kernels and autograd for the fused ops.

The C++ extension defines ``camfast::{cam_mask, masked_l1}`` and their backwards (schemas in
csrc/ops.cpp, kernels per device). The Triton backend defines the same four ops under the
prefix ``triton_`` (camfast/triton_ops.py). ``register_family`` gives any such family its
fake kernels and autograd, so all backends behave the same under autograd and torch.compile.
"""
from __future__ import annotations

import torch

OPS = ("cam_mask", "cam_mask_backward", "masked_l1", "masked_l1_backward")


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------- fake kernels (shapes only)

def fake_cam_mask(feats, grads, normalize, eps):
    f = feats[0]
    return f.new_empty((f.shape[0], f.shape[2], f.shape[3]), dtype=acc_dtype(f.dtype))


def fake_cam_mask_backward(grad_mask, feats, grads, normalize, eps, need_feats, need_grads):
    dfeats = [torch.empty_like(f, memory_format=torch.contiguous_format) for f in feats] if need_feats else []
    dgrads = [torch.empty_like(g, memory_format=torch.contiguous_format) for g in grads] if need_grads else []
    return dfeats, dgrads


def fake_masked_l1(real, fake, mask, reduction):
    shape = (real.shape[0],) if reduction == "none" else ()
    return real.new_empty(shape)


def fake_masked_l1_backward(grad_out, real, fake, mask, reduction, need_real, need_fake, need_mask):
    def grad_like(t, need):
        return torch.empty_like(t, memory_format=torch.contiguous_format) if need else t.new_empty((0,))

    return grad_like(real, need_real), grad_like(fake, need_fake), grad_like(mask, need_mask)


# ---------------------------------------------------------------- autograd

def _any_requires_grad(tensors) -> bool:
    return any(t.requires_grad for t in tensors)


def register_family(prefix: str = "") -> None:
    """Register fakes and autograd for ``camfast::{prefix}cam_mask`` and friends."""
    ns = torch.ops.camfast
    names = {op: f"camfast::{prefix}{op}" for op in OPS}
    mask_bwd = getattr(ns, f"{prefix}cam_mask_backward")
    l1_bwd = getattr(ns, f"{prefix}masked_l1_backward")

    torch.library.register_fake(names["cam_mask"])(fake_cam_mask)
    torch.library.register_fake(names["cam_mask_backward"])(fake_cam_mask_backward)
    torch.library.register_fake(names["masked_l1"])(fake_masked_l1)
    torch.library.register_fake(names["masked_l1_backward"])(fake_masked_l1_backward)

    def mask_setup(ctx, inputs, output):
        feats, grads, normalize, eps = inputs
        ctx.n = len(feats)
        ctx.normalize, ctx.eps = normalize, eps
        ctx.need = (_any_requires_grad(feats), _any_requires_grad(grads))
        ctx.save_for_backward(*feats, *grads)

    def mask_backward(ctx, grad_mask):
        saved = ctx.saved_tensors
        feats, grads = list(saved[: ctx.n]), list(saved[ctx.n:])
        need_f, need_g = ctx.need
        dfeats, dgrads = mask_bwd(grad_mask.contiguous(), feats, grads, ctx.normalize, ctx.eps, need_f, need_g)
        # register_autograd wants a list per Tensor[] input, with None for an unrequested entry.
        none = [None] * ctx.n
        return (list(dfeats) if need_f else none), (list(dgrads) if need_g else none), None, None

    torch.library.register_autograd(names["cam_mask"], mask_backward, setup_context=mask_setup)

    def l1_setup(ctx, inputs, output):
        real, fake, mask, reduction = inputs
        ctx.reduction = reduction
        ctx.need = (real.requires_grad, fake.requires_grad, mask.requires_grad)
        ctx.save_for_backward(real, fake, mask)

    def l1_backward(ctx, grad_out):
        real, fake, mask = ctx.saved_tensors
        need_r, need_f, need_m = ctx.need
        dr, df, dm = l1_bwd(grad_out.contiguous(), real, fake, mask, ctx.reduction, need_r, need_f, need_m)
        return (dr if need_r else None), (df if need_f else None), (dm if need_m else None), None

    torch.library.register_autograd(names["masked_l1"], l1_backward, setup_context=l1_setup)
