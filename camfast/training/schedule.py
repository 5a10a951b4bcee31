"""Learning-rate schedules as a pure function of the iteration (so resuming needs no state).

- ``linear`` (StarGAN): constant, then linearly to 0 over ``[start, steps)``. The original
  lowers it every 1000 iterations by ``lr / (steps - start) * 1000``; this is the same line
  without the stairs.
- ``step`` (AttGAN, STGAN): constant, then ``lr * factor`` from ``start`` (the originals
  divide by 10 after 100 of 200 epochs).
- ``none``: constant.

The weight of G's CAM term can also be switched on late (``cam_g_start``) and ramped in
(``cam_g_ramp``): G then learns to edit, and D's CAM to localise, before G is asked to keep
everything outside D's mask.
"""
from __future__ import annotations


def decay_start(cfg: dict) -> int:
    return cfg["lr_decay_start"] if cfg["lr_decay_start"] is not None else cfg["steps"] // 2


def lr_factor(cfg: dict, step: int) -> float:
    """Multiplier of the base learning rates at iteration ``step`` (0-based)."""
    start, steps = decay_start(cfg), cfg["steps"]
    if cfg["lr_decay"] == "none" or step < start:
        return 1.0
    if cfg["lr_decay"] == "step":
        return cfg["lr_decay_factor"]
    return max(0.0, (steps - step) / max(1, steps - start))


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def cam_g_factor(cfg: dict, step: int) -> float:
    """Multiplier of ``lambda_cam_g`` at iteration ``step``: 0 before ``cam_g_start``, then
    linearly to 1 over ``cam_g_ramp`` iterations."""
    start, ramp = cfg["cam_g_start"], cfg["cam_g_ramp"]
    if step < start:
        return 0.0
    if ramp <= 0:
        return 1.0
    return min(1.0, (step - start + 1) / ramp)
