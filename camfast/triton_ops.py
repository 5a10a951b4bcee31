"""The Triton backend as ``torch.ops.camfast.triton_*`` (kernels in ``camfast.kernels``).

Defines ``camfast::triton_cam_mask``, ``triton_cam_mask_backward``, ``triton_masked_l1`` and
``triton_masked_l1_backward`` with the schemas of docs/kernels.md, then lets
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

    registration.register_family("triton_")
    AVAILABLE = True
