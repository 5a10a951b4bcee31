"""The Triton backend as ``torch.ops.camfast.triton_*`` (kernels in ``camfast.kernels``).

Defines ``camfast::triton_cam_mask``, ``triton_cam_mask_backward``, ``triton_masked_l1`` and
``triton_masked_l1_backward`` with the schemas of docs/kernels.md, and the public loss as
``triton_cam_consistency`` and its backward (one op per direction), then lets
``camfast.registration.register_family("triton_")`` add the fake kernels and autograd shared by every
backend.

Why ``torch.library.custom_op`` and not ``torch.library.triton_op`` + ``wrap_triton``: a
triton_op is traced *into* the graph by torch.compile/opcheck, which runs the kernel on fake
tensors; under the Triton interpreter (``TRITON_INTERPRET=1``, how CI runs these ops on CPU)
that fails ("Attempted to set the storage of a tensor on device meta"; docs/kernels.md). A custom_op is opaque to the compiler and only its registered fake
kernel sees fake tensors, so it passes torch.compile(fullgraph=True) and opcheck both on GPUs
and under the interpreter. The price is that Inductor cannot fuse into our kernels, which it
would not do profitably anyway.

Importing this module never raises because triton is missing or broken: ``AVAILABLE`` says
whether the ops were defined and ``WHY_NOT`` says why not.
"""
import torch

from . import registration
from .reference import accumulate_dtype

AVAILABLE = False
WHY_NOT = ""

_k = None
try:
    import triton  # noqa: F401
except Exception as e:  # ImportError, or a triton that fails at import on this platform
    WHY_NOT = f"triton is not usable: {type(e).__name__}: {e}"
else:
    try:
        from . import kernels as _k
    except Exception as e:  # e.g. a kernels/ that fails to import (installed by setup.py's
        # package_dir mapping; in a checkout found by the finder in camfast/__init__.py)
        WHY_NOT = f"camfast.kernels failed to import: {type(e).__name__}: {e}"


if _k is not None:
    # Every op allocates its outputs inside the launchers, so none aliases an input.

    @torch.library.custom_op("camfast::triton_cam_mask", mutates_args=())
    def triton_cam_mask(feats: list[torch.Tensor], grads: list[torch.Tensor], normalize: str,
                        eps: float) -> torch.Tensor:
        return _k.cam_mask(feats, grads, normalize, eps)

    @torch.library.custom_op("camfast::triton_cam_mask_backward", mutates_args=())
    def triton_cam_mask_backward(grad_mask: torch.Tensor, feats: list[torch.Tensor],
                                 grads: list[torch.Tensor], normalize: str, eps: float,
                                 need_feats: bool, need_grads: bool
                                 ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return _k.cam_mask_backward(grad_mask, feats, grads, normalize, eps, need_feats, need_grads)

    @torch.library.custom_op("camfast::triton_masked_l1", mutates_args=())
    def triton_masked_l1(real: torch.Tensor, fake: torch.Tensor, mask: torch.Tensor,
                         reduction: str) -> torch.Tensor:
        return _k.masked_l1(real, fake, mask, reduction)

    @torch.library.custom_op("camfast::triton_masked_l1_backward", mutates_args=())
    def triton_masked_l1_backward(grad_out: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
                                  mask: torch.Tensor, reduction: str, need_real: bool,
                                  need_fake: bool, need_mask: bool
                                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _k.masked_l1_backward(grad_out, real, fake, mask, reduction,
                                     need_real, need_fake, need_mask)

    # The public loss in one op per direction, as the C++ family has it (for torch.ops and
    # torch.compile; two ops per direction plus a cast would double the host cost). Schemas as
    # csrc/schemas.cpp's cam_consistency; like it, the forward checks all the public API promises,
    # so the API calls it (eagerly: as registration.EAGER_LOSS) without checks of its own.

    def _loss(real: torch.Tensor, fake: torch.Tensor, feats: list[torch.Tensor],
              grads: list[torch.Tensor], normalize: str, eps: float, reduction: str
              ) -> tuple[torch.Tensor, torch.Tensor]:
        _k.check_loss_args("camfast.cam_consistency [triton]", real, fake, feats, grads, normalize, eps, reduction)
        mask = _k.cam_mask(feats, grads, normalize, eps).to(accumulate_dtype(real.dtype))
        return _k.masked_l1(real, fake, mask, reduction), mask

    def _loss_backward(grad_out: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
                       feats: list[torch.Tensor], grads: list[torch.Tensor], mask: torch.Tensor,
                       normalize: str, eps: float, reduction: str, need_real: bool,
                       need_fake: bool, need_feats: bool, need_grads: bool
                       ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        need_mask = need_feats or need_grads
        dreal, dfake, dmask = _k.masked_l1_backward(grad_out, real, fake, mask, reduction,
                                                    need_real, need_fake, need_mask)
        if not need_mask:
            return dreal, dfake, [], []
        dfeats, dgrads = _k.cam_mask_backward(dmask, feats, grads, normalize, eps, need_feats, need_grads)
        return dreal, dfake, list(dfeats), list(dgrads)

    triton_cam_consistency = torch.library.custom_op(
        "camfast::triton_cam_consistency", mutates_args=())(_loss)
    triton_cam_consistency_backward = torch.library.custom_op(
        "camfast::triton_cam_consistency_backward", mutates_args=())(_loss_backward)

    registration.register_family("triton_", eager=(_loss, _loss_backward))
    AVAILABLE = True
