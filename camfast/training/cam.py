"""The trainer's CAM-consistency term: ``camfast.CAMConsistency`` built from the config.

The config keys map one to one: ``cam_layer`` (null: ``D.default_cam_layer``),
``cam_sources``, ``cam_score``, ``cam_normalize``, ``cam_eps``, ``cam_backend``. The math
and the choices are in docs/method.md; the object in docs/api.md. ``d_step`` and ``g_step``
use the public object's methods, so the trainer and user code share one path.
"""
from __future__ import annotations

from camfast.consistency import CAMConsistency


class CamConsistency(CAMConsistency):
    """``camfast.CAMConsistency`` from the trainer's config ``cfg`` for discriminator ``D``."""

    def __init__(self, cfg: dict, D):
        super().__init__(D, cfg["cam_layer"] or None, sources=cfg["cam_sources"], score=cfg["cam_score"],
                         normalize=cfg["cam_normalize"], eps=cfg["cam_eps"], backend=cfg["cam_backend"])
