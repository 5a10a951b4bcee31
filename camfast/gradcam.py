"""Differentiable Grad-CAM capture from a named layer of any model.

``GradCAM`` keeps the graph of the hooked activations, so the CAM-consistency loss
can reach D's parameters through ``grads`` (a second-order path) when
``create_graph=True``.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def find_layer(model: nn.Module, layer: Union[str, nn.Module]) -> nn.Module:
    """Resolve ``layer`` (a dotted name from ``named_modules`` or the module itself)."""
    inner = unwrap(model)
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in inner.modules()):
            raise ValueError("layer: the given module is not part of the model")
        return layer
    if not isinstance(layer, str):
        raise TypeError(f"layer: expected a module name (str) or an nn.Module, got {type(layer).__name__}")
    modules = dict(inner.named_modules())
    if layer not in modules:
        names = [n for n in modules if n]
        hint = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
        raise ValueError(f"layer: no module named {layer!r} in {type(inner).__name__}; it has: {hint}")
    return modules[layer]


def attribute_score(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-sample score ``sum_k weights[b, k] * logits[b, k]``, shape [B]."""
    if logits.dim() != 2:
        raise ValueError(f"logits: expected [B, K], got shape {tuple(logits.shape)}")
    if weights.shape != logits.shape:
        raise ValueError(f"weights: expected shape {tuple(logits.shape)} (as logits), got {tuple(weights.shape)}")
    return (logits.float() * weights.to(device=logits.device, dtype=torch.float32)).sum(dim=1)


class GradCAM:
    """Capture activations of one layer and their gradient w.r.t. a per-sample score.

    Use as a context manager so the hook is removed however the block ends::

        with GradCAM(D, "main.5") as cam:
            adv, logits = D(x)                       # hook records feats of this call
            feats, grads = cam.gradients(logits, weights)

    Every forward through the model while the hook is active appends one entry to
    ``activations``; ``gradients(..., call=i)`` picks one (default: the latest), so a
    model run on real and then on fake images gives both.

    The score is ``sum_b sum_k weights[b, k] * logits[b, k]``; because samples are
    independent in D (instance norm or none), its gradient at sample b is the
    gradient of sample b's own score.
    """

    def __init__(self, model: nn.Module, layer: Union[str, nn.Module]):
        self.model = model
        self.layer = find_layer(model, layer)
        self.activations: list[torch.Tensor] = []
        self._handle: Optional[torch.utils.hooks.RemovableHandle] = None

    def _hook(self, module, inputs, output):
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"GradCAM: layer output must be a Tensor, got {type(output).__name__}")
        if output.dim() != 4:
            raise ValueError(f"GradCAM: layer output must be [B, C, h, w], got shape {tuple(output.shape)}")
        self.activations.append(output)

    def attach(self) -> "GradCAM":
        if self._handle is None:
            self._handle = self.layer.register_forward_hook(self._hook)
        return self

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.activations.clear()

    def clear(self) -> None:
        self.activations.clear()

    def __enter__(self) -> "GradCAM":
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.remove()

    def gradients(
        self,
        logits: torch.Tensor,
        weights: torch.Tensor,
        call: int = -1,
        create_graph: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(feats, grads)`` of forward call ``call``; ``grads`` keeps the graph if asked.

        A sample whose weights are all zero gets zero grads (and so a zero CAM).
        """
        if not self.activations:
            raise RuntimeError("GradCAM: no activations captured; run the model inside the `with` block first")
        feats = self.activations[call]
        if not feats.requires_grad:
            raise RuntimeError(
                "GradCAM: the captured activations do not require grad (model run under torch.no_grad()?)"
            )
        score = attribute_score(logits, weights).sum()
        (grads,) = torch.autograd.grad(score, feats, create_graph=create_graph, retain_graph=True)
        return feats, grads


def grad_cam(
    model: nn.Module,
    layer: Union[str, nn.Module],
    x: torch.Tensor,
    weights: torch.Tensor,
    create_graph: bool = True,
    logits_fn=None,
):
    """One-shot capture: run ``model(x)`` and return ``(outputs, feats, grads)``.

    ``logits_fn(outputs)`` picks the attribute logits from the model's outputs; by default
    the model is expected to return ``(adv, logits)`` and the second element is used.
    """
    with GradCAM(model, layer) as cam:
        out = model(x)
        logits = logits_fn(out) if logits_fn is not None else out[1]
        feats, grads = cam.gradients(logits, weights, create_graph=create_graph)
    return out, feats, grads
