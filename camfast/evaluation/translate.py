"""The test-time edits shared by camfast-eval, the learning curve and the sample grids.

For faces ``x`` with attributes ``a``: the reconstruction (G told "no change") and, for each
attribute k, the edit "flip k" (a hair colour switched on switches the others off) at the
test intensity. G runs in the backbone's test mode (``test_g_mode``): AttGAN's and STGAN's
test code use running batch-norm statistics (``eval``); StarGAN's test code never calls
``eval()``, so its instance norms use the image's own statistics (``train``).
"""
from __future__ import annotations

import torch

from ..training.conditions import Conditions, flip

G_MODES = ("train", "eval")


class GMode:
    """G in ``mode`` for the ``with`` block; its buffers and train/eval flag are restored after,
    so evaluating never changes the model (train mode would update running statistics)."""

    def __init__(self, G, mode: str):
        if mode not in G_MODES:
            raise ValueError(f"g_mode: expected one of {G_MODES}, got {mode!r}")
        self.G, self.mode = G, mode

    def __enter__(self):
        self.was = self.G.training
        self.buffers = {k: v.clone() for k, v in self.G.named_buffers()}
        self.G.train(self.mode == "train")
        return self.G

    def __exit__(self, *exc):
        with torch.no_grad():
            for k, v in self.G.named_buffers():
                v.copy_(self.buffers[k])
        self.G.train(self.was)


def translate_all(G, cond: Conditions, x: torch.Tensor, a: torch.Tensor, attrs: list, test_int: float):
    """``(rec, fakes, targets)``: the reconstruction and, per attribute k, the edit and its
    target attributes (lists of length K). Call under ``torch.no_grad()`` and ``GMode``."""
    rec = G(x, cond.identity(a)).float()
    fakes, targets = [], []
    for k in range(len(attrs)):
        b = flip(a, k, attrs)
        fakes.append(G(x, cond.test_edit(a, b, k, test_int)).float())
        targets.append(b)
    return rec, fakes, targets
