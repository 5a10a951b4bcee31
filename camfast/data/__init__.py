"""Data: CelebA in its release layout, and a built-in synthetic set in the same layout.

    from camfast import data
    root = data.synthetic.ensure(n_images=4000, image_size=64)   # generated on first use
    ds = data.CelebA(root, attrs=data.synthetic.ATTRIBUTES, image_size=64, crop="none")
    image, attributes = ds[0]          # [3, 64, 64] in [-1, 1], [8] in {0, 1}
"""
from __future__ import annotations

from typing import Optional, Sequence

from . import synthetic
from .celeba import CelebA, DataError, attribute_counts, read_attribute_names
from .sampler import ResumableBatchSampler
from .transforms import CROPS, crop_box, load_image
from .workers import worker_init

# The crop each backbone was trained with on CelebA.
BACKBONE_CROP = {"stargan": "stargan", "attgan": "attgan", "stgan": "attgan"}


def resolve_root(path: Optional[str], *, synthetic_images: int = 4000, image_size: int = 64, synthetic_seed: int = 0,
                 cache: Optional[str] = None, progress: bool = True) -> str:
    """The data folder: ``path`` (checked), or the synthetic set (generated if needed)."""
    if path is None:
        return synthetic.ensure(synthetic_images, image_size, synthetic_seed, cache, progress=progress)
    import os
    if not os.path.isdir(path):
        raise DataError(f"data folder not found: {path}")
    return path


def default_attrs(root: str, backbone: str) -> list[str]:
    """The synthetic set's attributes, or on CelebA the backbone's original list."""
    if synthetic.is_synthetic(root):
        return list(synthetic.ATTRIBUTES)
    from ..models import ATTRIBUTES
    return list(ATTRIBUTES[backbone])


def open_dataset(root: str, backbone: str, attrs: Optional[Sequence[str]], image_size: int,
                 crop: str = "auto", split: str = "train") -> CelebA:
    """A :class:`CelebA` for training ``backbone`` (``attrs``/``crop`` may be left to defaults)."""
    if crop == "auto":
        crop = "none" if synthetic.is_synthetic(root) else BACKBONE_CROP[backbone]
    attrs = list(attrs) if attrs else default_attrs(root, backbone)
    return CelebA(root, attrs, image_size, crop=crop, split=split)


__all__ = ["CROPS", "BACKBONE_CROP", "CelebA", "DataError", "ResumableBatchSampler", "attribute_counts",
           "crop_box", "default_attrs", "load_image", "open_dataset", "read_attribute_names", "resolve_root",
           "synthetic", "worker_init"]
