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
"""
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


def check_tensor(name: str, t: torch.Tensor) -> None:
    """The dtype/device checks every launcher shares (shapes are validated by camfast.api)."""
    if t.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"camfast Triton kernels support float32, float16 and bfloat16; "
            f"{name} has dtype {t.dtype} (use the reference or cpu backend for float64)"
        )
    if t.device.type == "cpu" and not INTERPRETED:
        raise ValueError(
            f"camfast Triton kernels need CUDA tensors; {name} is on the CPU "
            f"(set TRITON_INTERPRET=1 before importing camfast.kernels to run them on the CPU)"
        )


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
