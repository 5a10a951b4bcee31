"""Feature extractors for the Frechet distance (metrics.frechet_distance does the maths).

- classifier-FID: the fixed attribute classifier's pooled features (classifier.py). Cheap,
  available everywhere, and trained on this data, but NOT comparable with published FIDs:
  it is always reported under the name "classifier_fid".
- Inception FID: torchvision's inception_v3 with weights the user supplies by path
  (``--inception-weights``, a state dict). Nothing is downloaded; without weights (or
  without torchvision) the field is null and the reason is given. Note: torchvision's
  ImageNet inception differs slightly from the TF-FID network (pytorch-fid's weights), so
  even this is "Inception FID with these weights", comparable only across runs of its own.
"""
from __future__ import annotations

import os
from typing import Callable, Optional

import torch
import torch.nn.functional as F


def inception_features(weights: str) -> tuple[Optional[Callable], Optional[str]]:
    """``(feature function, None)`` or ``(None, reason)``: 2048-d pool features of
    torchvision's inception_v3 loaded from ``weights``."""
    if not os.path.isfile(weights):
        return None, f"--inception-weights: no such file: {weights}"
    try:
        import torchvision
    except ImportError:
        return None, "torchvision is not installed (needed for inception_v3)"
    try:
        net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        missing, _ = net.load_state_dict(state, strict=False)
        if [k for k in missing if not k.startswith("AuxLogits")]:
            return None, f"--inception-weights: {weights} lacks {len(missing)} inception_v3 parameters, e.g. {missing[0]}"
    except Exception as e:  # noqa: BLE001 - report, do not crash the whole evaluation
        return None, f"--inception-weights: cannot load {weights}: {e}"
    net.fc = torch.nn.Identity()
    net.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    @torch.no_grad()
    def f(x):
        x = F.interpolate((x.float() + 1) / 2, size=(299, 299), mode="bilinear", align_corners=False)
        return net((x - mean) / std).double()
    return f, None
