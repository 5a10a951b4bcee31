"""Checkpoints written atomically, and the random state that makes a resume exact.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then
renamed over the old one with ``os.replace`` (atomic on POSIX and Windows), so a crash or
Ctrl-C during the write leaves the previous checkpoint whole.
"""
from __future__ import annotations

import os
import random
import tempfile

import numpy as np
import torch

LAST = "checkpoint.pt"
FORMAT = 1


def atomic_save(obj, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def find(path: str) -> str:
    """``path`` if it is a file, else ``path/checkpoint.pt``; ValueError if there is none."""
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        candidate = os.path.join(path, LAST)
        if os.path.isfile(candidate):
            return candidate
        raise ValueError(f"--resume: no {LAST} in {path}")
    raise ValueError(f"--resume: no such file or folder: {path}")


def load(path: str) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line error
        raise ValueError(f"--resume: cannot read checkpoint {path}: {e}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"--resume: {path} is not a camfast-train checkpoint (format {FORMAT})")
    return ckpt


# ---------------------------------------------------------------- random state

def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)
