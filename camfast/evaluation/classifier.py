"""The attribute classifier that judges edits: a small CNN trained once, then held fixed.

Why its own model and not D's classifier head: D is one of the players being compared (and
+CAM trains D differently), so D would grade its own G. One classifier, trained on the real
train split of the same data and frozen, scores every run alike. Its penultimate features
also give "classifier-FID" (fid.py).

File format (torch.save of a dict): ``format`` (FORMAT), ``state_dict``, ``attrs``,
``image_size``, ``width``, ``data`` (where it was trained), ``val_accuracy`` (per attribute).
"""
from __future__ import annotations

import os
import time
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

FORMAT = "camfast-attribute-classifier-1"


class AttributeClassifier(nn.Module):
    """4 stride-2 conv blocks (width w, 2w, 4w, 4w) + global average pool -> features [4w]
    -> linear logits [K]. Input ``[B, 3, H, W]`` in [-1, 1], any H, W >= 16."""

    def __init__(self, n_attrs: int, width: int = 32):
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        layers = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], n_attrs)
        self.feature_dim = chans[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def save(model: AttributeClassifier, path: str, attrs: list, image_size: int, data: str, val_accuracy: dict) -> None:
    """Only tensors and plain data (so :func:`load` reads it with ``weights_only=True``),
    written to a temporary and renamed into place: never a half-written classifier."""
    from ..training.checkpoint import atomic_save

    atomic_save({"format": FORMAT, "state_dict": model.state_dict(), "attrs": [str(a) for a in attrs],
                 "image_size": int(image_size), "width": int(model.body[0].out_channels), "data": str(data),
                 "val_accuracy": {str(k): float(v) for k, v in dict(val_accuracy).items()}}, path)


def load(path: str, trusted: bool = False) -> tuple[AttributeClassifier, dict]:
    """``(model in eval mode, the saved dict)``; ValueError (one line) if unusable.

    Read with ``torch.load(weights_only=True)``: a file that needs more (arbitrary Python
    objects, whose unpickling can run code) is refused unless ``trusted``.
    """
    from ..training.checkpoint import torch_load

    if not os.path.isfile(path):
        raise ValueError(f"--classifier: no such file: {path}")
    ck = torch_load(path, trusted, what="--classifier", trust_flag="trusted=True (only for files you trust)")
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ValueError(f"--classifier: {path} is not a camfast-train-classifier file")
    try:
        model = AttributeClassifier(len(ck["attrs"]), ck["width"])
        model.load_state_dict(ck["state_dict"])
    except (KeyError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"--classifier: {path}: cannot rebuild the classifier: {first}") from None
    return model.eval(), ck


@torch.no_grad()
def accuracy(model: nn.Module, loader) -> torch.Tensor:
    """Per-attribute accuracy ``[K]`` over a loader of (x, a)."""
    model.eval()
    hits, n = 0, 0
    for x, a in loader:
        hits = hits + ((model(x) > 0).float() == a).double().sum(0)
        n += x.shape[0]
    return hits / max(n, 1)


def train(train_set, val_set, epochs: int = 8, batch_size: int = 32, lr: float = 1e-3, width: int = 32,
          seed: int = 0, flip: bool = True, log=print) -> tuple[AttributeClassifier, dict]:
    """Train on ``train_set`` (items (x, a)), report accuracy on ``val_set``; returns
    ``(model in eval mode, {attr index: val accuracy})``. Deterministic given ``seed``."""
    torch.manual_seed(seed)
    n_attrs = train_set[0][1].numel()
    model = AttributeClassifier(n_attrs, width)
    opt = torch.optim.Adam(model.parameters(), lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=g, drop_last=True)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=128)
    for epoch in range(epochs):
        model.train()
        t0, total, n = time.time(), 0.0, 0
        for x, a in loader:
            if flip:  # the GAN trainer flips too; attributes are symmetric
                f = torch.rand(x.shape[0], generator=g) < 0.5
                x = torch.where(f.view(-1, 1, 1, 1), x.flip(-1), x)
            loss = F.binary_cross_entropy_with_logits(model(x), a)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + loss.item() * x.shape[0], n + x.shape[0]
        sched.step()
        acc = accuracy(model, val_loader)
        log(f"epoch {epoch + 1}/{epochs}: train BCE {total / max(n, 1):.4f}, val accuracy "
            f"{float(acc.mean()):.4f} (min {float(acc.min()):.3f}), {time.time() - t0:.0f} s")
    return model.eval(), acc


def preload(dataset, limit: Optional[int] = None):
    """All items in memory as a TensorDataset (the 64 px sets are a few MB; decoding each JPEG
    once instead of once per epoch is most of the speed-up on a small CPU)."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    xs, as_ = zip(*(dataset[i] for i in range(n)))
    return torch.utils.data.TensorDataset(torch.stack(xs), torch.stack(as_))
