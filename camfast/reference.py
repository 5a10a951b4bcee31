"""Pure-PyTorch CAM-consistency loss: docs/kernels.md (steps 1-7), executable.

Every other backend is tested against this file, so it favours being obviously
right over being fast. Autograd supplies all gradients, including the second
order ones that reach D through ``grads`` when they were built with
``create_graph=True``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

NORMALIZE_MODES = ("minmax", "max")
REDUCTIONS = ("mean", "sum", "none")
DEFAULT_EPS = 1e-6


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp64 stays fp64 (for gradcheck); every other float type computes in fp32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def normalize_cam(cam: torch.Tensor, normalize: str = "minmax", eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Normalise ``cam`` [B, h, w] per sample over (h, w).

    ``amax``/``amin`` split the gradient evenly between tied extremes, which is
    the convention every kernel follows.
    """
    mx = cam.amax(dim=(1, 2), keepdim=True)
    if normalize == "minmax":
        mn = cam.amin(dim=(1, 2), keepdim=True)
        return (cam - mn) / (mx - mn + eps)
    if normalize == "max":
        return cam / (mx + eps)
    raise ValueError(f"camfast.cam_mask [reference]: normalize must be one of {NORMALIZE_MODES}, got {normalize!r}")


def source_cam(feats: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Un-normalised Grad-CAM [B, h, w] of one source, in the accumulate dtype."""
    acc = accumulate_dtype(feats.dtype)
    f = feats.to(acc)
    g = grads.to(acc)
    alpha = g.mean(dim=(2, 3), keepdim=True)            # [B, C, 1, 1]
    return torch.relu((alpha * f).sum(dim=1))           # [B, h, w]


def lowres_mask(
    feats: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    normalize: str = "minmax",
    eps: float = DEFAULT_EPS,
) -> torch.Tensor:
    """Union over sources of the normalised CAMs, at feature resolution: [B, h, w]."""
    ns = [normalize_cam(source_cam(f, g), normalize, eps) for f, g in zip(feats, grads)]
    if len(ns) == 1:
        return ns[0]
    # amax over a stacked dim splits the gradient evenly between tied sources.
    return torch.stack(ns, dim=0).amax(dim=0)


def upsample_mask(u: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, align_corners=False: [B, h, w] -> [B, 1, H, W]."""
    return F.interpolate(u.unsqueeze(1), size=size, mode="bilinear", align_corners=False)


def grad_cam_mask(
    feats: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    size: tuple[int, int],
    normalize: str = "minmax",
    eps: float = DEFAULT_EPS,
) -> torch.Tensor:
    """The mask M of docs/kernels.md step 5, [B, 1, H, W], in the accumulate dtype."""
    return upsample_mask(lowres_mask(feats, grads, normalize, eps), size)


def masked_l1(real: torch.Tensor, fake: torch.Tensor, u: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Steps 5-7 of docs/kernels.md from a low-resolution mask ``u`` [B, h, w]."""
    acc = accumulate_dtype(real.dtype)
    m = upsample_mask(u.to(acc), tuple(real.shape[-2:]))
    e = (real.to(acc) - fake.to(acc)).abs() * (1 - m)
    if reduction == "mean":
        out = e.mean()
    elif reduction == "sum":
        out = e.sum()
    elif reduction == "none":
        out = e.flatten(1).mean(dim=1)
    else:
        raise ValueError(f"camfast.masked_l1 [reference]: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return out.to(real.dtype)


def cam_consistency_loss(
    real: torch.Tensor,
    fake: torch.Tensor,
    feats: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    normalize: str = "minmax",
    eps: float = DEFAULT_EPS,
    reduction: str = "mean",
) -> torch.Tensor:
    """CAM-consistency loss, docs/kernels.md steps 3-7; no input validation (see camfast.api)."""
    return masked_l1(real, fake, lowres_mask(feats, grads, normalize, eps), reduction)
