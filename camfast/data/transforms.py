"""Image loading and the crops the backbones were trained with (PIL + numpy, no torchvision).

CelebA's aligned images are 178 x 218 (w x h). Each original code base crops a square
around the face before resizing:

- ``stargan``: a centred 178 x 178 square (StarGAN's ``CenterCrop(178)``).
- ``attgan``: a centred 170 x 170 box (the PyTorch AttGAN port's ``CenterCrop(170)``,
  i.e. left 4, top 24 on a CelebA image; the TensorFlow originals of AttGAN/STGAN used
  left 3, top 26, two pixels lower).
- ``none``: no crop (for square images such as the built-in synthetic set).

The boxes are defined for 178 x 218 images. Images of another size are cropped with the
same box scaled to their width, so a down-scaled copy of CelebA sees the same face area.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

CROPS = ("stargan", "attgan", "none")
CELEBA_SIZE = (178, 218)  # (width, height) of img_align_celeba
_BOX_SIDE = {"stargan": 178, "attgan": 170}


def crop_box(crop: str, width: int, height: int) -> tuple[int, int, int, int]:
    """PIL box ``(left, top, right, bottom)`` of ``crop`` on a ``width x height`` image."""
    if crop not in CROPS:
        raise ValueError(f"crop: expected one of {CROPS}, got {crop!r}")
    if crop == "none":
        return (0, 0, width, height)
    side = round(_BOX_SIDE[crop] * width / CELEBA_SIZE[0])
    side = min(side, width, height)
    # round((w - side) / 2) as torchvision's CenterCrop does.
    left = int(round((width - side) / 2.0))
    top = int(round((height - side) / 2.0))
    return (left, top, left + side, top + side)


def load_image(path: str, crop: str, image_size: int) -> torch.Tensor:
    """Read ``path``, crop, resize to ``image_size`` square, return ``[3, H, W]`` in [-1, 1].

    Raises OSError (with PIL's reason) if the file cannot be decoded; callers add the path.
    """
    with Image.open(path) as im:
        im.load()  # decode now: a truncated or corrupt file fails here, not later
        im = im.convert("RGB")
    im = im.crop(crop_box(crop, *im.size))
    if im.size != (image_size, image_size):
        # Bilinear with antialiasing, as torchvision's Resize on PIL images.
        im = im.resize((image_size, image_size), Image.BILINEAR, reducing_gap=None)
    return to_tensor(im)


def to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor ``[3, H, W]`` in [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
    a = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(a.transpose(2, 0, 1).copy())


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` or ``[H, W, 3]``-able tensor in [-1, 1] -> uint8 ``[H, W, 3]``."""
    a = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return a.permute(1, 2, 0).cpu().numpy()
