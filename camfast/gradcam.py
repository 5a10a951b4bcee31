"""Differentiable Grad-CAM capture from a named layer of any model.

``GradCAM`` records the activations of one layer for every forward run inside its ``with``
block and keeps their graph, so the CAM-consistency loss can reach D's parameters through
``grads`` (a second-order path) when ``create_graph=True``, and the same forwards can still
feed the adversarial and classification losses. docs/api.md is the reference.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn


class GradCAMError(ValueError, RuntimeError):
    """Grad-CAM capture used wrongly: the message names the problem and the fix.

    A ``ValueError`` (what was passed is wrong: the logits, the call index, a frozen model,
    a layer the model never runs); also a ``RuntimeError``, which these errors were before.
    """


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
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
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


def layer_name(model: nn.Module, layer: nn.Module) -> str:
    """The dotted name of ``layer`` inside ``model`` (unwrapped)."""
    for name, m in unwrap(model).named_modules():
        if m is layer:
            return name
    raise ValueError("layer: the given module is not part of the model")


def attribute_score(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-sample score ``sum_k weights[b, k] * logits[b, k]``, shape [B], float32."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits: expected the attribute logits, a Tensor [B, K], got {type(logits).__name__} "
                        "(if D returns (adv, logits), pass the second element)")
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"weights: expected a Tensor [B, K], got {type(weights).__name__}")
    if logits.dim() != 2:
        raise ValueError(f"logits: expected [B, K], got shape {tuple(logits.shape)}")
    if weights.shape != logits.shape:
        raise ValueError(f"weights: expected shape {tuple(logits.shape)} (as logits), got {tuple(weights.shape)}")
    return (logits.float() * weights.to(device=logits.device, dtype=torch.float32)).sum(dim=1)


class GradCAM:
    """Capture activations of one layer and their gradient w.r.t. a per-sample score.

    Use as a context manager so the hook is removed however the block ends::

        with GradCAM(D, "main.5") as cam:
            adv, logits = D(x)                       # the hook records this forward
            feats, grads = cam.gradients(logits, weights)

    Every forward through the layer while the hook is active appends one entry to
    ``activations`` (call 0 is the first forward of the block). ``gradients`` finds the
    forward its ``logits`` came from (or takes ``call=i``), so a model run on real and then
    on fake images gives both. The forwards' graphs are kept (``retain_graph``): the same
    outputs can feed the adversarial and classification losses afterwards.

    The score is ``sum_b sum_k weights[b, k] * logits[b, k]``; because samples are
    independent in D (instance norm or none), its gradient at sample b is the
    gradient of sample b's own score.

    Works through DistributedDataParallel and torch.compile wrappers: under compilation the
    hook runs eagerly (a graph break at the layer), so the recorded activations stay in
    the autograd graph between the two compiled halves.
    """

    def __init__(self, model: nn.Module, layer: Union[str, nn.Module]):
        self.model = model
        self.layer = find_layer(model, layer)
        self.name = layer if isinstance(layer, str) else layer_name(model, layer)
        self.activations: list[torch.Tensor] = []
        self._grad_enabled: list[bool] = []
        self._handle: Optional[torch.utils.hooks.RemovableHandle] = None

    @torch.compiler.disable
    def _hook(self, module, inputs, output):
        # Disabled for torch.compile: the graph breaks here, so ``output`` is a real tensor
        # between two compiled graphs and the logits' graph reaches it.
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"GradCAM: layer {self.name!r} must output a Tensor, got {type(output).__name__}")
        if output.dim() != 4:
            raise ValueError(f"GradCAM: layer {self.name!r} must output [B, C, h, w], got shape {tuple(output.shape)}")
        self.activations.append(output)
        self._grad_enabled.append(torch.is_grad_enabled())

    @property
    def recording(self) -> bool:
        """True between ``attach()`` (entering the ``with`` block) and ``remove()``."""
        return self._handle is not None

    def attach(self) -> "GradCAM":
        if self._handle is None:
            self._handle = self.layer.register_forward_hook(self._hook)
        return self

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.clear()

    def clear(self) -> None:
        self.activations.clear()
        self._grad_enabled.clear()

    def __enter__(self) -> "GradCAM":
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.remove()

    # ---------------------------------------------------------------- gradients

    def _why_no_graph(self, i: int) -> str:
        if not self._grad_enabled[i]:
            return (f"forward call {i} ran under torch.no_grad() (or inference_mode), so its activations have "
                    f"no graph: run the model with grad enabled (torch.enable_grad())")
        return (f"the activations of forward call {i} do not require grad although grad was enabled: the "
                f"model's parameters up to layer {self.name!r} are frozen (requires_grad_(False)) and its input "
                f"does not require grad. Run it on an input that requires grad, e.g. "
                f"model(x.detach().requires_grad_()): the mask is then computed and the model stays frozen")

    def gradients(
        self,
        logits: torch.Tensor,
        weights: torch.Tensor,
        call: Optional[int] = None,
        create_graph: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(feats, grads)`` of one captured forward, both ``[B, C, h, w]``.

        ``feats`` are the layer's activations in that forward, ``grads`` the gradient of
        ``sum_b sum_k weights[b, k] * logits[b, k]`` with respect to them. ``call=None``
        (default) picks the forward that ``logits`` came from; ``call=i`` names it (0 = the
        first forward of the block, negative counts from the latest). ``create_graph=True``
        (default) keeps ``grads`` differentiable (D's side of the loss); pass ``False`` where
        the mask is taken as given (G's side). The forward graph is always retained.

        A sample whose weights are all zero gets zero grads (and so a zero CAM).
        Raises ``GradCAMError`` (a ValueError) for a call index out of range, logits that are
        not from the chosen forward (or from none of them), a forward without a graph; a
        ``RuntimeError`` outside the ``with`` block.
        """
        if not self.recording:
            raise RuntimeError(
                f"GradCAM: not recording at layer {self.name!r}: call gradients() inside the "
                f"`with GradCAM(...)` block (its activations are dropped when the block ends)")
        n = len(self.activations)
        if n == 0:
            raise GradCAMError(
                f"GradCAM: no activations captured at layer {self.name!r}: no forward reached it inside the "
                f"`with` block. Run the model inside the block; if it did run, its forward does not go through "
                f"{self.name!r} (pick a layer the forward uses)")
        if call is not None:
            if isinstance(call, bool) or not isinstance(call, int):
                raise TypeError(f"call: expected an int (the index of a captured forward) or None, got {type(call).__name__}")
            if not -n <= call < n:
                raise GradCAMError(
                    f"call: {call} is out of range: {n} forward{'s' if n != 1 else ''} captured at layer {self.name!r} "
                    f"in this block (call 0 .. {n - 1}, or -1 for the latest); pass call=None to use the forward "
                    f"the logits came from")
            call = call % n
        with torch.enable_grad():  # also under an outer no_grad(): a Grad-CAM needs the gradient
            return self._gradients(logits, weights, call, create_graph, n)

    # Eager under torch.compile: with create_graph, the graph between the logits and the
    # activations must be double-differentiable, and compiled graphs are not.
    @torch.compiler.disable
    def _gradients(self, logits, weights, call, create_graph, n):
        score = attribute_score(logits, weights).sum()
        live = [i for i in range(n) if self.activations[i].requires_grad]
        dead = [i for i in range(n) if i not in live]
        if call is not None and call in dead:
            raise GradCAMError(f"GradCAM: {self._why_no_graph(call)}")
        if not score.requires_grad:
            if dead:
                raise GradCAMError(f"GradCAM: {self._why_no_graph(dead[-1])}")
            raise GradCAMError(
                f"logits: they have no graph (detached, or computed under torch.no_grad()), so they come from none "
                f"of the {n} forward(s) captured at layer {self.name!r}; pass the attribute logits of a forward "
                f"run inside the `with` block")
        if not live:
            raise GradCAMError(f"GradCAM: {self._why_no_graph(dead[-1])}")
        wanted = live if call is None else [call]
        got = torch.autograd.grad(score, [self.activations[i] for i in wanted], create_graph=create_graph,
                                  retain_graph=True, allow_unused=True)
        used = [i for i, g in zip(wanted, got) if g is not None]
        if len(used) == 1:
            i = used[0]
            feats, grads = self.activations[i], got[wanted.index(i)]
            if create_graph and _compiled_between(grads, feats):
                raise GradCAMError(
                    f"GradCAM: create_graph=True needs the double backward of the layers between {self.name!r} and "
                    f"the logits, and they ran under torch.compile, whose compiled graphs have no double backward. "
                    f"Run those layers eagerly (torch.compiler.disable on them, or compile only the layers up to "
                    f"{self.name!r}; see docs/api.md, torch.compile), or pass create_graph=False where the mask "
                    f"is taken as given (G's side)")
            return feats, grads
        if len(used) > 1:
            raise GradCAMError(
                f"logits: they depend on forward calls {used} captured at layer {self.name!r}; pass call= to pick one")
        # Not from the chosen forward: say where they do come from, if anywhere.
        others = [i for i in live if i not in wanted]
        found = []
        if others:
            probe = torch.autograd.grad(score, [self.activations[i] for i in others], retain_graph=True, allow_unused=True)
            found = [i for i, g in zip(others, probe) if g is not None]
        if call is not None and found:
            raise GradCAMError(
                f"logits: they are not from forward call {call} but from call {found[0]} of the {n} captured at layer "
                f"{self.name!r}; pass call={found[0]}, or call=None to find it")
        hint = f" ({self._why_no_graph(dead[-1])})" if dead else ""
        where = f"forward call {call}" if call is not None else f"any of the {n} forward(s)"
        raise GradCAMError(
            f"logits: they do not come from {where} captured at layer {self.name!r}{hint}; pass the attribute logits "
            f"of a forward of this model run inside the `with` block (not from a forward before the block, nor "
            f"from another model)")


def _compiled_between(grads: torch.Tensor, feats: torch.Tensor) -> bool:
    """Whether the graph of ``grads`` (down to ``feats``) holds a torch.compile'd backward,
    which AOTAutograd makes raise "does not currently support double backward" when used."""
    stop, seen, stack = feats.grad_fn, set(), [grads.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node is stop or node in seen:
            continue
        seen.add(node)
        if node.name() == "CompiledFunctionBackwardBackward":
            return True
        stack.extend(f for f, _ in node.next_functions)
    return False


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
