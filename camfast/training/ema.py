"""An exponential moving average of G's weights (``g_ema``), used for samples and evaluation.

GAN generators oscillate around a good solution; averaging their weights over the last
few thousand updates gives steadier, usually better, images at no cost to training. The
average is updated after every G step; buffers (batch-norm running statistics) are copied,
not averaged. Early on the decay is capped at ``(1 + n) / (10 + n)`` after n updates, so the
average is not dominated by the random initial weights in a short run.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"g_ema: expected a decay in (0, 1), got {decay!r}")
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1.0 - d)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
