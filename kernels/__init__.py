"""Triton kernels of the fused CAM-consistency loss (installed as ``camfast.kernels``).

Two stages, each with its own backward, as docs/kernels.md specifies:

- ``cam_mask.py``: stage 1, feats/grads -> low-resolution mask ``u`` [B, h, w] (fp32).
- ``masked_l1.py``: stage 2, real/fake + ``u`` -> masked L1, sampling ``u`` bilinearly on
  the fly so that no image-sized mask is ever written.

The launchers here are plain Python functions on tensors; ``camfast/triton_ops.py`` wraps
them as ``torch.ops.camfast.triton_*``. Kernels run on CUDA tensors, or on CPU tensors under
the Triton interpreter (``TRITON_INTERPRET=1`` set before this package is imported: the
``@triton.jit`` decorator reads it once, at import).

Accumulation is fp32 for fp32/fp16/bf16 storage. fp64 is not supported (a TypeError says so);
the reference and the C++ backend cover fp64/gradcheck.

Every launcher validates its arguments (``check_cam_args``, ``check_l1_args``: the messages of
the C++ ops), runs on the tensors' CUDA device (``device_guard``: Triton launches on the
current device and its current stream) and defines empty inputs as docs/kernels.md does.
Divisions use ``tl.math.div_rn`` (IEEE round-to-nearest): on a GPU Triton's ``/`` on fp32 is
the approximate ``div.full.f32`` (up to 2 ulp), unlike the interpreter.
"""
import contextlib
import math
import os

import torch

# Set before the submodules are imported: they bind these helpers at import time.
_POISON = False



def _interpreted() -> bool:
    try:  # what @triton.jit itself consults (triton >= 3.3)
        from triton import knobs

        return bool(knobs.runtime.interpret)
    except (ImportError, AttributeError):
        return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


#: True when the kernels are built for the Triton interpreter (they then run on CPU tensors).
INTERPRETED = _interpreted()

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def set_poison(enabled: bool) -> None:
    """Fill every output (and scratch buffer) with NaN / -1 on allocation.

    Tests turn this on to prove that the kernels write every element they return.
    """
    global _POISON
    _POISON = bool(enabled)


def poisoned() -> bool:
    return _POISON


def new_output(shape, dtype: torch.dtype, device) -> torch.Tensor:
    """``torch.empty``, poisoned when ``set_poison(True)`` (NaN for floats, -1 for ints)."""
    t = torch.empty(shape, dtype=dtype, device=device)
    if _POISON:
        t.fill_(float("nan") if dtype.is_floating_point else -1)
    return t


def check_tensor(op: str, name: str, t: torch.Tensor) -> None:
    """The dtype and device checks of the Triton kernels, after the checks every backend shares."""
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{op}: {name} must be float32, float16 or bfloat16 (for float64 use the reference "
                        f"or cpu backend), got {t.dtype}")
    if t.device.type == "cpu" and not INTERPRETED:
        raise ValueError(f"{op}: {name} must be on a CUDA device (set TRITON_INTERPRET=1 before importing "
                         f"camfast.kernels to run them on the CPU), got {t.device}")


def device_guard(t: torch.Tensor):
    """Make ``t``'s CUDA device current while launching (a no-op for CPU tensors).

    Triton launches on ``torch.cuda.current_device()`` and that device's current stream, so
    without the guard tensors on cuda:1 with cuda:0 current would be handed to a kernel running
    on the wrong GPU."""
    if t.device.type == "cuda":
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


_FLOAT = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _shape(t) -> tuple:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else ()


def check_cam_args(op: str, feats, grads):
    """(B, h, w) of valid stage-1 arguments; raises as the C++ ops do (argument names, ValueError
    for shapes and devices, TypeError for dtypes)."""
    if len(feats) == 0:
        raise ValueError(f"{op}: feats must hold at least one tensor, got an empty list")
    if len(feats) != len(grads):
        raise ValueError(f"{op}: feats and grads must have the same length, got {len(feats)} feats and {len(grads)} grads")
    f0 = feats[0]
    if not isinstance(f0, torch.Tensor) or f0.dim() != 4:
        raise ValueError(f"{op}: feats[0] must be [B, C, h, w], got {list(_shape(f0))}")
    if f0.dtype not in _FLOAT:
        raise TypeError(f"{op}: feats[0] must be float32, float16, bfloat16 or float64, got {f0.dtype}")
    B, _, h, w = f0.shape
    for s, (f, g) in enumerate(zip(feats, grads)):
        if not isinstance(f, torch.Tensor) or f.dim() != 4 or (f.shape[0], f.shape[2], f.shape[3]) != (B, h, w):
            raise ValueError(f"{op}: feats[{s}] must be [B={B}, C, h={h}, w={w}] (as feats[0]), got {list(_shape(f))}")
        if not isinstance(g, torch.Tensor) or g.shape != f.shape:
            raise ValueError(f"{op}: grads[{s}] must have the shape of feats[{s}] {list(f.shape)}, got {list(_shape(g))}")
        if f.dtype != f0.dtype or g.dtype != f0.dtype:
            raise TypeError(f"{op}: feats[{s}] and grads[{s}] must have the dtype of feats[0] ({f0.dtype}), "
                            f"got {f.dtype} and {g.dtype}")
        if f.device != f0.device or g.device != f0.device:
            raise ValueError(f"{op}: feats[{s}] and grads[{s}] must be on the device of feats[0] ({f0.device}), "
                             f"got {f.device} and {g.device}")
        check_tensor(op, f"feats[{s}]", f)
        check_tensor(op, f"grads[{s}]", g)
    return B, h, w


def check_grad_mask(op: str, grad_mask, B: int, h: int, w: int, like: torch.Tensor) -> None:
    if not isinstance(grad_mask, torch.Tensor) or tuple(grad_mask.shape) != (B, h, w):
        raise ValueError(f"{op}: grad_mask must be [B={B}, h={h}, w={w}], got {list(_shape(grad_mask))}")
    if grad_mask.dtype not in _FLOAT:
        raise TypeError(f"{op}: grad_mask must have a floating dtype, got {grad_mask.dtype}")
    if grad_mask.device != like.device:
        raise ValueError(f"{op}: grad_mask must be on the device of feats ({like.device}), got {grad_mask.device}")


def check_l1_args(op: str, real, fake, mask):
    """(B, K, H, W, h, w) of valid stage-2 arguments; raises as the C++ ops do."""
    if not isinstance(real, torch.Tensor) or real.dim() != 4:
        raise ValueError(f"{op}: real must be [B, K, H, W], got {list(_shape(real))}")
    if real.dtype not in _FLOAT:
        raise TypeError(f"{op}: real must be float32, float16, bfloat16 or float64, got {real.dtype}")
    if not isinstance(fake, torch.Tensor) or fake.shape != real.shape:
        raise ValueError(f"{op}: fake must have the shape of real {list(real.shape)}, got {list(_shape(fake))}")
    if fake.dtype != real.dtype:
        raise TypeError(f"{op}: fake must have the dtype of real ({real.dtype}), got {fake.dtype}")
    if fake.device != real.device:
        raise ValueError(f"{op}: fake must be on the device of real ({real.device}), got {fake.device}")
    B = real.shape[0]
    if not isinstance(mask, torch.Tensor) or mask.dim() != 3 or mask.shape[0] != B:
        raise ValueError(f"{op}: mask must be [B={B}, h, w], got {list(_shape(mask))}")
    if mask.shape[1] < 1 or mask.shape[2] < 1:
        raise ValueError(f"{op}: mask must have h, w >= 1 (an empty mask cannot be sampled), got {list(mask.shape)}")
    acc = torch.float64 if real.dtype == torch.float64 else torch.float32
    if mask.dtype != acc:
        raise TypeError(f"{op}: mask must be {acc} for images of dtype {real.dtype}, got {mask.dtype}")
    if mask.device != real.device:
        raise ValueError(f"{op}: mask must be on the device of real ({real.device}), got {mask.device}")
    check_tensor(op, "real", real)
    return (*real.shape, mask.shape[1], mask.shape[2])


def is_minmax(op: str, normalize: str) -> bool:
    if normalize not in ("minmax", "max"):
        raise ValueError(f"{op}: normalize must be 'minmax' or 'max', got {normalize!r}")
    return normalize == "minmax"


def check_reduction(op: str, reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def check_loss_args(op: str, real, fake, feats, grads, normalize, eps, reduction) -> None:
    """What the public loss promises on top of the stage ops' checks, as the C++ combined op
    checks it (csrc/cam_consistency.cpp): one batch and one device, no empty tensor, eps > 0;
    and its options, so that a bad one is reported under the combined op's name."""
    is_minmax(op, normalize)
    check_reduction(op, reduction)
    B = check_cam_args(op, feats, grads)[0]
    if not isinstance(real, torch.Tensor) or real.dim() != 4:
        raise ValueError(f"{op}: real must be [B, K, H, W], got {list(_shape(real))}")
    if not isinstance(fake, torch.Tensor) or fake.shape != real.shape:
        raise ValueError(f"{op}: fake must have the shape of real {list(real.shape)}, got {list(_shape(fake))}")
    if real.shape[0] != B:
        raise ValueError(f"{op}: feats must have the batch size of real ({real.shape[0]}), got {B}")
    if feats[0].device != real.device:
        raise ValueError(f"{op}: feats must be on the device of real ({real.device}), got {feats[0].device}")
    for name, ts in (("real", [real]), ("fake", [fake]), ("feats", feats), ("grads", grads)):
        if any(t.numel() == 0 for t in ts):
            raise ValueError(f"{op}: {name} must be non-empty, got shapes {[list(t.shape) for t in ts]}")
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"{op}: eps must be a finite number > 0, got {eps}")


def check_grad_out(op: str, grad_out, numel: int, real: torch.Tensor) -> None:
    if not isinstance(grad_out, torch.Tensor) or grad_out.numel() != numel:
        raise ValueError(f"{op}: grad_out must have {numel} element(s), got shape {list(_shape(grad_out))}")
    if grad_out.dtype not in _FLOAT:
        raise TypeError(f"{op}: grad_out must have a floating dtype, got {grad_out.dtype}")
    if grad_out.device != real.device:
        raise ValueError(f"{op}: grad_out must be on the device of real ({real.device}), got {grad_out.device}")


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (>= 1): tl.arange only takes power-of-two lengths."""
    return 1 << max(0, int(n) - 1).bit_length()


from .cam_mask import cam_mask, cam_mask_backward  # noqa: E402
from .masked_l1 import masked_l1, masked_l1_backward  # noqa: E402

__all__ = [
    "INTERPRETED",
    "cam_mask",
    "cam_mask_backward",
    "masked_l1",
    "masked_l1_backward",
    "set_poison",
]
