"""The trainer's CAM-consistency term: ``camfast.CAMConsistency`` built from the config.

The config keys map one to one: ``cam_layer`` (null: ``D.default_cam_layer``),
``cam_sources``, ``cam_score``, ``cam_normalize``, ``cam_eps``, ``cam_backend``. The math
and the choices are in docs/method.md; the object in docs/api.md. ``d_step`` and ``g_step``
use the public object's methods, so the trainer and user code share one path.
"""
from __future__ import annotations

import contextlib
from typing import Optional

from camfast.consistency import CAMConsistency, score_weights  # noqa: F401  (score_weights: re-exported)
from camfast.gradcam import GradCAM


class CamConsistency(CAMConsistency):
    """``camfast.CAMConsistency`` from the trainer's config ``cfg`` for discriminator ``D``."""

    def __init__(self, cfg: dict, D):
        super().__init__(D, cfg["cam_layer"] or None, sources=cfg["cam_sources"], score=cfg["cam_score"],
                         normalize=cfg["cam_normalize"], eps=cfg["cam_eps"], backend=cfg["cam_backend"])

    # -- The interface before camfast.CAMConsistency, kept while samples.py and
    # -- evaluation/evaluate.py use it; new code calls capture(enabled=...) and mask().

    def capture(self, D=None, enabled: bool = True):
        """``capture(enabled=...)``; the older form ``capture(D, enabled)`` records on ``D``'s layer."""
        if isinstance(D, bool):
            D, enabled = None, D
        if D is None or D is self.D:
            return super().capture(enabled)
        return GradCAM(D, self.layer) if enabled else contextlib.nullcontext()

    def gradients(self, cam: GradCAM, a, b, real: Optional[tuple] = None, fake: Optional[tuple] = None,
                  create_graph: bool = True) -> tuple[list, list]:
        """Older form: ``(feats, grads)`` lists of the enabled sources; ``real``/``fake`` are ``(logits, call)``."""
        w_real, w_fake = score_weights(a, b, self.score)
        feats, grads = [], []
        for on, src, w in ((self.use_real, real, w_real), (self.use_fake, fake, w_fake)):
            if on:
                logits, call = src
                f, g = cam.gradients(logits, w, call=call, create_graph=create_graph)
                feats.append(f)
                grads.append(g)
        return feats, grads

