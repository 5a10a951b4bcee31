"""torch.library glue: fake kernels and autograd for the fused ops.

The C++ extension defines ``camfast::{cam_mask, masked_l1}`` and their backwards, and the
public loss in one op per direction, ``camfast::cam_consistency`` (schemas in csrc/schemas.cpp,
kernels per device, autograd in C++: csrc/autograd.cpp). The Triton backend defines the same six
ops under the prefix ``triton_`` (camfast/triton_ops.py). ``register_family`` gives any such
family its fake kernels, and its autograd where the family has none of its own, so all
backends behave the same under autograd and torch.compile. A family may leave out the combined
pair: the API then chains its stage ops.
"""
from __future__ import annotations

import torch

from .reference import accumulate_dtype as acc_dtype

OPS = ("cam_mask", "cam_mask_backward", "masked_l1", "masked_l1_backward")
#: The combined loss: one op per direction.
LOSS_OPS = ("cam_consistency", "cam_consistency_backward")


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


def fake_cam_consistency(real, fake, feats, grads, normalize, eps, reduction):
    f = feats[0]
    mask = f.new_empty((f.shape[0], f.shape[2], f.shape[3]), dtype=acc_dtype(real.dtype))
    return fake_masked_l1(real, fake, mask, reduction), mask


def fake_cam_consistency_backward(grad_out, real, fake, feats, grads, mask, normalize, eps, reduction,
                                  need_real, need_fake, need_feats, need_grads):
    dreal, dfake, _ = fake_masked_l1_backward(grad_out, real, fake, mask, reduction, need_real, need_fake, False)
    dfeats, dgrads = fake_cam_mask_backward(mask, feats, grads, normalize, eps, need_feats, need_grads)
    return dreal, dfake, dfeats, dgrads


# ---------------------------------------------------------------- autograd

def _any_requires_grad(tensors) -> bool:
    return any(t.requires_grad for t in tensors)


def once_differentiable(outputs, inputs, op: str, backend: str):
    """Mark the gradients of a fused op as not differentiable again.

    The backward ops have no derivative of their own. Under ``create_graph=True`` their results
    would silently be treated as constants, so a second-order gradient through the fused op
    would come out as 0. Instead (as ``torch.autograd.function.once_differentiable`` does) the
    results are routed through a node that raises as soon as anything differentiates through
    them; first-order gradients taken with ``create_graph=True`` stay correct. The node hangs
    off ``inputs`` (those that require grad), so differentiating with respect to any of them
    reaches it and raises, instead of reporting the input as unused.
    """
    msg = (f"camfast: the fused op {op} ({backend} backend) is once-differentiable: "
           f"a second-order gradient through it is not implemented. Use backend='reference' "
           f"(plain autograd, supports double backward) for this loss.")
    flat = [t for t in outputs if t is not None]
    links = [t for t in inputs if t.requires_grad]
    if not flat or not links:
        return outputs
    marked = torch._C._functions.DelayedError(msg, len(flat) + len(links))(*flat, *links)
    it = iter(marked[: len(flat)])
    return [next(it) if t is not None else None for t in outputs]


def has_loss_ops(prefix: str) -> bool:
    """Whether the family defines the combined loss ops ``camfast::{prefix}cam_consistency``."""
    return hasattr(torch.ops.camfast, f"{prefix}cam_consistency")


def register_family(prefix: str = "", eager=None) -> None:
    """Register fakes for ``camfast::{prefix}cam_mask`` and friends and, where the family defines
    it, the combined loss; for the families other than C++ (Triton) also autograd, which the C++
    family has in C++. ``eager``: the Python functions behind the combined pair, (forward,
    backward), for the eager path (``EAGER_LOSS``)."""
    ns = torch.ops.camfast
    backend = prefix.rstrip("_")
    names = {op: f"camfast::{prefix}{op}" for op in OPS}
    mask_bwd = getattr(ns, f"{prefix}cam_mask_backward")
    l1_bwd = getattr(ns, f"{prefix}masked_l1_backward")

    torch.library.register_fake(names["cam_mask"])(fake_cam_mask)
    torch.library.register_fake(names["cam_mask_backward"])(fake_cam_mask_backward)
    torch.library.register_fake(names["masked_l1"])(fake_masked_l1)
    torch.library.register_fake(names["masked_l1_backward"])(fake_masked_l1_backward)
    if has_loss_ops(prefix):
        torch.library.register_fake(f"camfast::{prefix}cam_consistency")(fake_cam_consistency)
        torch.library.register_fake(f"camfast::{prefix}cam_consistency_backward")(fake_cam_consistency_backward)
        if prefix != "":
            _register_loss_autograd(prefix, backend)
            if eager is not None:
                EAGER_LOSS[prefix] = _eager_loss(prefix, backend, *eager)
    if prefix == "":
        return

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
        args = (grad_mask.contiguous(), feats, grads, ctx.normalize, ctx.eps, need_f, need_g)
        if torch.is_grad_enabled() and (grad_mask.requires_grad or _any_requires_grad(saved)):
            with torch.no_grad():  # create_graph=True: differentiable results would be wrong
                dfeats, dgrads = mask_bwd(*args)
            marked = once_differentiable(list(dfeats) + list(dgrads), [grad_mask, *saved],
                                         f"camfast::{prefix}cam_mask", backend)
            dfeats, dgrads = marked[: len(dfeats)], marked[len(dfeats):]
        else:
            dfeats, dgrads = mask_bwd(*args)
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
        args = (grad_out.contiguous(), real, fake, mask, ctx.reduction, need_r, need_f, need_m)
        if torch.is_grad_enabled() and _any_requires_grad((grad_out, real, fake, mask)):
            with torch.no_grad():  # create_graph=True: differentiable results would be wrong
                dr, df, dm = l1_bwd(*args)
            dr, df, dm = once_differentiable([dr if need_r else None, df if need_f else None, dm if need_m else None],
                                             (grad_out, real, fake, mask), f"camfast::{prefix}masked_l1", backend)
        else:
            dr, df, dm = l1_bwd(*args)
        return (dr if need_r else None), (df if need_f else None), (dm if need_m else None), None

    torch.library.register_autograd(names["masked_l1"], l1_backward, setup_context=l1_setup)


def _register_loss_autograd(prefix: str, backend: str) -> None:
    """Autograd of a Python family's combined loss: what csrc/autograd.cpp does for the C++ one."""
    name = f"camfast::{prefix}cam_consistency"
    setup, backward = _loss_autograd(name, backend, getattr(torch.ops.camfast, f"{prefix}cam_consistency_backward"))
    torch.library.register_autograd(name, backward, setup_context=setup)


def _loss_autograd(name: str, backend: str, loss_bwd):
    """(setup_context, backward) of a combined loss whose backward is ``loss_bwd``, in the form
    ``torch.library.register_autograd`` takes (a list per Tensor[] input)."""

    def setup(ctx, inputs, output):
        real, fake, feats, grads, normalize, eps, reduction = inputs
        ctx.n, ctx.opts = len(feats), (normalize, eps, reduction)
        # From requires_grad: Python autograd cannot ask the engine which inputs this backward
        # serves (the C++ family can), so d/dfeats and d/dgrads are computed whenever they require
        # grad; G's step in camfast-train detaches them.
        ctx.need = (real.requires_grad, fake.requires_grad, _any_requires_grad(feats), _any_requires_grad(grads))
        ctx.save_for_backward(real, fake, output[1], *feats, *grads)
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)  # the mask's gradient is never used: no zeros for it

    def backward(ctx, grad_out, _grad_mask):
        none = [None] * ctx.n
        if grad_out is None:
            return None, None, none, none, None, None, None
        saved = ctx.saved_tensors
        real, fake, mask = saved[:3]
        feats, grads = list(saved[3:3 + ctx.n]), list(saved[3 + ctx.n:])
        need_r, need_f, need_fs, need_gs = ctx.need
        args = (grad_out.contiguous(), real, fake, feats, grads, mask, *ctx.opts, *ctx.need)
        if torch.is_grad_enabled() and _any_requires_grad((grad_out, *saved)):
            with torch.no_grad():  # create_graph=True: differentiable results would be wrong
                dr, df, dfs, dgs = loss_bwd(*args)
            flat = [dr if need_r else None, df if need_f else None, *dfs, *dgs]
            flat = once_differentiable(flat, (grad_out, *saved), name, backend)
            dr, df, rest = flat[0], flat[1], flat[2:]
            dfs, dgs = rest[: len(dfs)], rest[len(dfs):]
        else:
            dr, df, dfs, dgs = loss_bwd(*args)
        # register_autograd wants a list per Tensor[] input, with None for an unrequested entry.
        return ((dr if need_r else None), (df if need_f else None), (list(dfs) if need_fs else none),
                (list(dgs) if need_gs else none), None, None, None)

    return setup, backward


#: prefix -> the family's combined loss for eager calls (``register_family(..., eager=...)``).
EAGER_LOSS: dict = {}


def _eager_loss(prefix: str, backend: str, forward, backward_impl):
    """The combined loss as a plain ``torch.autograd.Function`` around the same forward and
    backward functions as the family's custom ops, and the same autograd (``_loss_autograd``).
    Outside torch.compile the dispatcher adds nothing but host time: a Python custom op costs
    about 20 us forward and 45 us forward+backward per call more than a Function (no-op bodies,
    one CPU thread, benchmarks/RESULTS.md). torch.compile and ``torch.ops`` keep the ops."""
    setup, backward = _loss_autograd(f"camfast::{prefix}cam_consistency", backend, backward_impl)

    def fn_forward(ctx, real, fake, normalize, eps, reduction, n, *sources):
        inputs = (real, fake, list(sources[:n]), list(sources[n:]), normalize, eps, reduction)
        out = forward(*inputs)
        setup(ctx, inputs, out)
        return out

    def fn_backward(ctx, grad_out, grad_mask):
        dr, df, dfs, dgs = backward(ctx, grad_out, grad_mask)[:4]
        return (dr, df, None, None, None, None, *dfs, *dgs)

    # Named for the family (the graph shows e.g. TritonCamConsistencyBackward).
    Loss = type(f"{backend.capitalize()}CamConsistency", (torch.autograd.Function,),
                dict(forward=staticmethod(fn_forward), backward=staticmethod(fn_backward)))

    def loss(real, fake, feats, grads, normalize, eps, reduction):
        return Loss.apply(real, fake, normalize, eps, reduction, len(feats), *feats, *grads)

    return loss
