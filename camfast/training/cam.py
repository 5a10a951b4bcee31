"""The CAM-consistency terms of the D and G steps (DESIGN.md sections 1 and 6).

Two Grad-CAM sources of D, unioned by ``camfast.cam_consistency_loss``:

- ``real``: D's Grad-CAM on the input, score ``sum_k w_real[b, k] * logit_k``;
- ``fake``: D's Grad-CAM on the translated image, score ``sum_k w_fake[b, k] * logit_k``.

With ``cam_score: changed`` (the default) ``w_real = a * (1 - b)`` picks the attributes
being removed (visible in the input) and ``w_fake = b * (1 - a)`` those being added
(visible in the output): each CAM looks where the attribute is present. ``flipped`` uses
every changed attribute for both images, ``all`` every attribute. A sample with no such
attribute gets a zero CAM, so its whole image must be preserved.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch

import camfast
from camfast.gradcam import GradCAM, unwrap


def score_weights(a: torch.Tensor, b: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w_real, w_fake)`` ``[B, K]`` of source attributes ``a`` and targets ``b`` (in {0, 1})."""
    if mode == "changed":
        return a * (1 - b), b * (1 - a)
    if mode == "flipped":
        d = (a != b).to(a.dtype)
        return d, d
    if mode == "all":
        one = torch.ones_like(a)
        return one, one
    raise ValueError(f"cam_score: expected changed, flipped or all, got {mode!r}")


class CamConsistency:
    """Grad-CAM capture settings and the loss, built once from the config."""

    def __init__(self, cfg: dict, D):
        self.layer = cfg["cam_layer"] or unwrap(D).default_cam_layer
        self.sources = cfg["cam_sources"]
        self.score = cfg["cam_score"]
        self.normalize, self.eps, self.backend = cfg["cam_normalize"], cfg["cam_eps"], cfg["cam_backend"]
        self.use_real = self.sources in ("both", "real")
        self.use_fake = self.sources in ("both", "fake")
        GradCAM(D, self.layer)  # fails now, naming the layer, if D has no such module

    def capture(self, D, enabled: bool):
        """A GradCAM context on D's layer, or a no-op context when the term is off."""
        return GradCAM(D, self.layer) if enabled else contextlib.nullcontext()

    def gradients(self, cam: GradCAM, a, b, real: Optional[tuple] = None, fake: Optional[tuple] = None,
                  create_graph: bool = True) -> tuple[list, list]:
        """``(feats, grads)`` lists of the enabled sources.

        ``real``/``fake`` are ``(logits, call)``: D's attribute logits on that image and the
        index of that forward among the calls captured by ``cam``.
        """
        w_real, w_fake = score_weights(a, b, self.score)
        feats, grads = [], []
        for on, src, w in ((self.use_real, real, w_real), (self.use_fake, fake, w_fake)):
            if on:
                logits, call = src
                f, g = cam.gradients(logits, w, call=call, create_graph=create_graph)
                feats.append(f)
                grads.append(g)
        return feats, grads

    def loss(self, real: torch.Tensor, fake: torch.Tensor, feats: list, grads: list) -> torch.Tensor:
        # The API wants one dtype per argument group: under bf16 autocast the images and
        # D's activations may differ, so both go in as float32 (cheap at D's resolution).
        feats = [f.float() for f in feats]
        grads = [g.float() for g in grads]
        return camfast.cam_consistency_loss(real.float(), fake.float(), feats, grads, normalize=self.normalize,
                                            eps=self.eps, backend=self.backend)

    @torch.no_grad()
    def mask_mean(self, feats: list, grads: list, size) -> torch.Tensor:
        """Mean of the full-resolution mask M, a scalar tensor (a collapse shows as M -> 1)."""
        m = camfast.grad_cam_mask([f.detach().float() for f in feats], [g.detach().float() for g in grads], size,
                                  normalize=self.normalize, eps=self.eps, backend=self.backend)
        return m.mean()
