"""Blocks and argument checks shared by the backbones."""
from __future__ import annotations

import torch
from torch import nn

IMAGE_SIZES = (64, 128, 256)


# ---------------------------------------------------------------- argument checks

def check_int(name: str, value, low: int, high: int | None = None) -> int:
    """``value`` must be an int in [low, high]; bool is refused (True is not a width)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an int, got {value!r} ({type(value).__name__})")
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name}: expected an int {rng}, got {value}")
    return value


def check_choice(name: str, value, choices: tuple, what: str = "one of") -> int:
    """``value`` must be an int among ``choices`` (128.0 and True are refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
        raise ValueError(f"{name}: expected {what} {choices}, got {value!r}")
    return value


def check_slope(value) -> float:
    """A LeakyReLU negative slope in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"lrelu_slope: expected a number in [0, 1), got {value!r}")
    return float(value)


def check_image_size(image_size, n_down: int, n_down_name: str) -> int:
    """``image_size`` must be supported and survive ``n_down`` halvings."""
    check_choice("image_size", image_size, IMAGE_SIZES)
    if image_size % 2 ** n_down:
        raise ValueError(
            f"{n_down_name}={n_down}: image_size {image_size} is not divisible by 2**{n_down}; "
            f"use at most {image_size.bit_length() - 1} down-sampling layers"
        )
    return image_size


# ---------------------------------------------------------------- tensors

def tile(c: torch.Tensor, size) -> torch.Tensor:
    """Attribute vector [B, K] -> [B, K, h, w], the same value at every position."""
    if c.dim() != 2:
        raise ValueError(f"c: expected [B, n_attrs], got shape {tuple(c.shape)}")
    return c.view(c.size(0), c.size(1), 1, 1).expand(-1, -1, size[0], size[1])


# ---------------------------------------------------------------- AttGAN / STGAN blocks
# Named as in the PyTorch AttGAN port (a `layers` Sequential inside each block), so
# state-dict keys read the same as there.

def _norm(kind: str, n: int) -> list[nn.Module]:
    if kind == "batch":
        return [nn.BatchNorm2d(n)]
    if kind == "instance":
        return [nn.InstanceNorm2d(n, affine=True)]
    if kind == "none":
        return []
    raise ValueError(f"norm: expected 'batch', 'instance' or 'none', got {kind!r}")


def _act(kind: str, slope: float = 0.2) -> list[nn.Module]:
    # Not in-place: D's activations are captured for Grad-CAM and differentiated twice.
    acts = {
        "relu": nn.ReLU,
        "lrelu": lambda: nn.LeakyReLU(slope),
        "tanh": nn.Tanh,
        "none": None,
    }
    if kind not in acts:
        raise ValueError(f"act: expected one of {list(acts)}, got {kind!r}")
    return [acts[kind]()] if acts[kind] else []


class ConvBlock(nn.Module):
    """4x4 stride-2 conv (or transposed conv) -> norm -> activation.

    The conv has no bias when a norm follows: the norm's shift replaces it.
    """

    def __init__(self, n_in, n_out, norm="batch", act="relu", transpose=False,
                 kernel_size=4, stride=2, padding=1, slope=0.2):
        super().__init__()
        conv = nn.ConvTranspose2d if transpose else nn.Conv2d
        self.layers = nn.Sequential(
            conv(n_in, n_out, kernel_size, stride, padding, bias=(norm == "none")),
            *_norm(norm, n_out),
            *_act(act, slope),
        )

    def forward(self, x):
        return self.layers(x)


class LinearBlock(nn.Module):
    """Linear -> activation (the discriminator heads use no norm)."""

    def __init__(self, n_in, n_out, act="relu"):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(n_in, n_out), *_act(act))

    def forward(self, x):
        return self.layers(x)
