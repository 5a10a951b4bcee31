"""Sample grids: each face with every attribute flipped, and D's Grad-CAM under each edit.

For each of the n faces, two rows:

    input   | reconstruction | attr 1 flipped      | attr 2 flipped      | ...
    (blank) | (blank)        | D's mask over edit 1 | D's mask over edit 2 | ...   (red = 1)

The mask is the one the CAM-consistency loss uses for that edit (the union of the enabled
sources: D's CAM of the removed attribute on the input and of the added attribute on the
output), so the grid shows whether D points at what G changed.

G runs in the backbone's test mode (``test_g_mode``; see camfast.evaluation.translate): the
image's own statistics for StarGAN, running statistics for AttGAN and STGAN, as their test
code. Its buffers are restored afterwards and no random stream is touched, so drawing
samples never changes the run.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..data.transforms import to_uint8
from ..gradcam import unwrap

PAD = 2


def cam_mask(cam, x: torch.Tensor, fake: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """D's mask ``[B, 1, H, W]`` for the edit ``x`` (attributes a) -> ``fake`` (attributes b): the
    one the CAM-consistency loss would use (``cam`` runs its own D on both images)."""
    with torch.enable_grad():
        return cam.mask(x.detach(), fake.detach(), a, b)


def _overlay(img: torch.Tensor, m: torch.Tensor, alpha: float = 0.6) -> torch.Tensor:
    """``img`` [3, H, W] in [-1, 1] tinted red where ``m`` [1, H, W] is high."""
    red = torch.tensor([1.0, -1.0, -1.0], device=img.device).view(3, 1, 1)
    base = 0.5 * img + 0.5 * img.mean(0, keepdim=True)  # desaturated, so the red reads on any face
    return base * (1 - alpha * m) + red * (alpha * m)


def make_grid(G, D, cond, cam, x: torch.Tensor, a: torch.Tensor, attrs: list, test_int: float = 1.0,
              g_mode: str = "train") -> np.ndarray:
    """The uint8 ``[H, W, 3]`` grid for faces ``x`` with attributes ``a``."""
    from ..evaluation.translate import GMode, translate_all

    G, D = unwrap(G), unwrap(D)
    was_d = D.training
    D.eval()
    try:
        with GMode(G, g_mode) as g, torch.no_grad():
            rec, fakes, targets = translate_all(g, cond, x, a, attrs, test_int)
        blank = torch.full_like(x, 1.0)
        top, bottom = [x.float(), rec], [blank, blank]
        for fake, b in zip(fakes, targets):
            m = cam_mask(cam, x, fake, a, b)
            top.append(fake)
            bottom.append(torch.stack([_overlay(fake[i], m[i]) for i in range(len(x))]))
    finally:
        D.train(was_d)
    n, _, h, w = x.shape
    head = _header(["input", "recon"] + list(attrs), w)
    canvas = np.full((head.shape[0] + 2 * n * (h + PAD) + PAD, len(top) * (w + PAD) + PAD, 3), 255, np.uint8)
    canvas[:head.shape[0], :head.shape[1]] = head[:, :canvas.shape[1]]
    for i in range(n):
        for r, row in enumerate((top, bottom)):
            for j, imgs in enumerate(row):
                y0, x0 = head.shape[0] + PAD + (2 * i + r) * (h + PAD), PAD + j * (w + PAD)
                canvas[y0:y0 + h, x0:x0 + w] = to_uint8(imgs[i])
    return canvas


def _header(names: list, w: int) -> np.ndarray:
    """Column titles (attribute names broken at underscores) in PIL's built-in font."""
    font = ImageFont.load_default()
    lines = [n.replace("_", " ").split() for n in names]
    line_h = 11
    img = Image.new("RGB", (len(names) * (w + PAD) + PAD, line_h * max(len(ln) for ln in lines) + 2), "white")
    d = ImageDraw.Draw(img)
    for j, words in enumerate(lines):
        for k, word in enumerate(words):
            d.text((PAD + j * (w + PAD) + 1, 1 + k * line_h), word, fill=(0, 0, 0), font=font)
    return np.asarray(img)


def save_png(grid: np.ndarray, path: str) -> None:
    """Write atomically, so a viewer never sees half a PNG."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    Image.fromarray(grid).save(tmp, format="PNG")
    os.replace(tmp, path)
