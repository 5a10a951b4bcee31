"""CelebA in its release layout, and anything written in the same layout.

    root/
      img_align_celeba/000001.jpg ...
      list_attr_celeba.txt       line 1: image count; line 2: attribute names;
                                 then "000001.jpg  -1  1 ..." (one +-1 per attribute)
      list_eval_partition.txt    "000001.jpg 0" (0 train, 1 val, 2 test)

Items are ``(image [3, H, W] in [-1, 1], attributes [n_attrs] float in {0, 1})``.
Every problem with the files raises :class:`DataError` naming the file.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
from torch.utils.data import Dataset

from .transforms import CROPS, load_image

IMAGE_DIR = "img_align_celeba"
ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
SPLITS = {"train": 0, "val": 1, "test": 2}


class DataError(Exception):
    """A data file is missing, unreadable or malformed; the message names it."""


def _read_lines(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise DataError(f"missing file: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return [ln for ln in f.read().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from None


def read_attributes(path: str) -> tuple[list[str], list[str], torch.Tensor]:
    """``(attribute names, image file names, labels [N, n_all] in {0, 1})`` of list_attr_celeba.txt."""
    lines = _read_lines(path)
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line and a header line, got {len(lines)} line(s)")
    try:
        count = int(lines[0].split()[0])
    except ValueError:
        raise DataError(f"{path}: line 1 should be the number of images, got {lines[0]!r}") from None
    names = lines[1].split()
    files, rows = [], []
    for i, ln in enumerate(lines[2:], start=3):
        parts = ln.split()
        if len(parts) != len(names) + 1 or any(v not in ("1", "-1") for v in parts[1:]):
            raise DataError(f"{path}: line {i}: expected a file name and {len(names)} values of 1/-1, got {ln[:80]!r}")
        files.append(parts[0])
        rows.append([v == "1" for v in parts[1:]])
    if len(files) != count:
        raise DataError(f"{path}: line 1 says {count} images but {len(files)} are listed")
    return names, files, torch.tensor(rows, dtype=torch.float32).reshape(len(files), len(names))


def read_partition(path: str) -> dict[str, int]:
    """``{file name: split id}`` of list_eval_partition.txt."""
    out = {}
    for i, ln in enumerate(_read_lines(path), start=1):
        parts = ln.split()
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{path}: line {i}: expected '<file> <0|1|2>', got {ln[:80]!r}")
        out[parts[0]] = int(parts[1])
    return out


def read_attribute_names(root: str) -> list[str]:
    """Only the header of list_attr_celeba.txt (cheap: used to resolve ``attrs``)."""
    path = os.path.join(root, ATTR_FILE)
    if not os.path.isfile(path):
        raise DataError(f"missing file: {path}")
    with open(path, encoding="utf-8") as f:
        f.readline()
        return f.readline().split()


class CelebA(Dataset):
    """CelebA (or a tree in its layout) with the chosen attributes, crop and size.

    Args:
        root: the folder holding ``img_align_celeba/`` and the two list files.
        attrs: attribute names, in the order of ``c`` and of D's logits.
        image_size: output side in pixels.
        crop: ``"stargan"``, ``"attgan"`` or ``"none"`` (see :mod:`camfast.data.transforms`).
        split: ``"train"``, ``"val"``, ``"test"`` (list_eval_partition.txt) or ``"all"``.
        check_files: check up front that every image of the split exists, so a missing
            file fails now and by name rather than hours into training.
    """

    def __init__(self, root: str, attrs: Sequence[str], image_size: int, crop: str = "stargan",
                 split: str = "train", check_files: bool = True):
        if crop not in CROPS:
            raise ValueError(f"crop: expected one of {CROPS}, got {crop!r}")
        if split not in (*SPLITS, "all"):
            raise ValueError(f"split: expected one of {[*SPLITS, 'all']}, got {split!r}")
        if not os.path.isdir(root):
            raise DataError(f"data folder not found: {root}")
        self.root, self.crop, self.image_size = root, crop, image_size
        self.image_dir = os.path.join(root, IMAGE_DIR)
        if not os.path.isdir(self.image_dir):
            raise DataError(f"missing folder: {self.image_dir}")

        names, files, labels = read_attributes(os.path.join(root, ATTR_FILE))
        missing = [a for a in attrs if a not in names]
        if missing:
            raise DataError(f"{os.path.join(root, ATTR_FILE)}: no attribute(s) {missing}; it has {names}")
        self.attrs = list(attrs)
        labels = labels[:, [names.index(a) for a in attrs]]

        if split != "all":
            part_path = os.path.join(root, PARTITION_FILE)
            part = read_partition(part_path)
            unlisted = [f for f in files if f not in part]
            if unlisted:
                raise DataError(f"{part_path}: {len(unlisted)} image(s) of {ATTR_FILE} are not listed, e.g. {unlisted[0]}")
            keep = [i for i, f in enumerate(files) if part[f] == SPLITS[split]]
            files, labels = [files[i] for i in keep], labels[keep]
        if not files:
            raise DataError(f"{root}: the {split!r} split has no images")
        self.files, self.labels = files, labels

        if check_files:
            absent = [f for f in files if not os.path.isfile(os.path.join(self.image_dir, f))]
            if absent:
                more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
                raise DataError(f"missing image: {os.path.join(self.image_dir, absent[0])}{more}")

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> str:
        return os.path.join(self.image_dir, self.files[index])

    def __getitem__(self, index: int):
        path = self.path(index)
        try:
            image = load_image(path, self.crop, self.image_size)
        except (OSError, ValueError, SyntaxError) as e:  # PIL raises all three on bad files
            raise DataError(f"cannot read image {path}: {e}") from None
        return image, self.labels[index]


def attribute_counts(dataset: CelebA) -> dict[str, int]:
    """How many images have each attribute set (for the log)."""
    return {a: int(n) for a, n in zip(dataset.attrs, dataset.labels.sum(0).tolist())}

