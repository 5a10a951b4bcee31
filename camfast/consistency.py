"""``CAMConsistency``: the CAM-consistency loss of a discriminator as one loss module.

It holds what stays fixed over training (D, its layer, the CAM sources and score, the
normalisation, the backend) and turns a batch (real and translated images, source and target
attributes, D's attribute logits) into the loss, on D's side (D's gradient flows through its
own Grad-CAM) or on G's side (D's mask taken as given). docs/api.md is the reference and
docs/method.md the formulation.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Optional, Union

import torch
from torch import nn

from . import api, reference
from .gradcam import GradCAM, find_layer, layer_name, unwrap

SOURCES = ("both", "real", "fake")
SCORES = ("changed", "flipped", "all")


def score_weights(c_src: torch.Tensor, c_trg: torch.Tensor, score: str = "changed") -> tuple[torch.Tensor, torch.Tensor]:
    """``(w_real, w_fake)``, the Grad-CAM score weights ``[B, K]`` of the real and the translated image.

    ``c_src``/``c_trg``: source and target attributes ``[B, K]`` in {0, 1}. ``changed``: the
    attributes being removed (``c_src * (1 - c_trg)``, visible in the input) for the real
    image and those being added (``c_trg * (1 - c_src)``, visible in the output) for the
    translated one; ``flipped``: every changed attribute for both; ``all``: every attribute.
    """
    if score not in SCORES:
        raise ValueError(f"score: expected one of {SCORES}, got {score!r}")
    for name, c in (("c_src", c_src), ("c_trg", c_trg)):
        if not isinstance(c, torch.Tensor):
            raise TypeError(f"{name}: expected a Tensor [B, K] of attributes in {{0, 1}}, got {type(c).__name__}")
        if c.dim() != 2:
            raise ValueError(f"{name}: expected attributes [B, K], got shape {tuple(c.shape)}")
    if c_trg.shape != c_src.shape:
        raise ValueError(f"c_trg: expected shape {tuple(c_src.shape)} (as c_src), got {tuple(c_trg.shape)}")
    a = c_src if c_src.is_floating_point() else c_src.float()
    b = c_trg if c_trg.is_floating_point() else c_trg.float()
    if score == "changed":
        return a * (1 - b), b * (1 - a)
    if score == "flipped":
        d = (a != b).to(a.dtype)
        return d, d
    one = torch.ones_like(a)
    return one, one


def _default_logits(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and len(out) == 2:
        return out[1]
    raise TypeError(f"D returned {type(out).__name__}: pass logits_fn= to CAMConsistency to pick the attribute "
                    "logits [B, K] from D's output (the default takes out[1] of a pair (adv, logits), or the tensor)")


def _without_ddp(model: nn.Module) -> nn.Module:
    """``model`` without DistributedDataParallel / DataParallel (a compiled DDP gives the module inside)."""
    ddp = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    if isinstance(model, ddp):
        return model.module
    orig = getattr(model, "_orig_mod", None)
    if isinstance(orig, ddp):
        return orig.module
    return model


class CAMConsistency(nn.Module):
    """The CAM-consistency loss of discriminator ``D``, as a loss module.

    Args:
        D: the discriminator (plain, DistributedDataParallel- or torch.compile-wrapped). It is
            not registered as a submodule: its parameters stay D's own.
        layer: the layer of D whose Grad-CAM is taken, a dotted name from
            ``D.named_modules()`` or the module; ``None`` takes ``D.default_cam_layer``.
        sources: ``"both"`` (default), ``"real"`` or ``"fake"``: the CAM of the real image, of
            the translated image, or both unioned.
        score: ``"changed"`` (default), ``"flipped"`` or ``"all"``: see :func:`score_weights`.
        normalize, eps, reduction, backend: as in :func:`camfast.cam_consistency_loss`.
        logits_fn: picks the attribute logits ``[B, K]`` from ``D(x)`` when the object runs D
            itself; default: ``out[1]`` of a pair ``(adv, logits)``, or ``out`` if a tensor.

    Call it as ``cam(real, fake, c_src, c_trg, logits_real, logits_fake, *, detach_mask=False)``
    or through :meth:`d_loss` / :meth:`g_loss`. Logits that are given must come from forwards
    of D run inside ``with cam.capture():``; a source whose logits are omitted is computed
    by running D on that image.
    """

    def __init__(
        self,
        D: nn.Module,
        layer: Union[str, nn.Module, None] = None,
        *,
        sources: str = "both",
        score: str = "changed",
        normalize: str = "minmax",
        eps: float = reference.DEFAULT_EPS,
        reduction: str = "mean",
        backend: str = "auto",
        logits_fn: Optional[Callable] = None,
    ):
        super().__init__()
        if not isinstance(D, nn.Module):
            raise TypeError(f"D: expected an nn.Module, got {type(D).__name__}")
        if layer is None:
            layer = getattr(unwrap(D), "default_cam_layer", None)
            if layer is None:
                raise ValueError(f"layer: {type(unwrap(D)).__name__} has no default_cam_layer; name the layer of D "
                                 "whose Grad-CAM to take (a name from D.named_modules(), e.g. a middle conv block)")
        module = find_layer(D, layer)
        if sources not in SOURCES:
            raise ValueError(f"sources: expected one of {SOURCES}, got {sources!r}")
        if score not in SCORES:
            raise ValueError(f"score: expected one of {SCORES}, got {score!r}")
        eps = api._check_options(normalize, eps, reduction)
        if not isinstance(backend, str) or backend not in api.BACKENDS:
            raise ValueError(f"backend: expected one of {api.BACKENDS}, got {backend!r}")
        if logits_fn is not None and not callable(logits_fn):
            raise TypeError(f"logits_fn: expected a callable (D's output -> logits [B, K]), got {type(logits_fn).__name__}")
        # Plain attributes, not submodules: D's parameters must not become the loss's own.
        object.__setattr__(self, "D", D)
        object.__setattr__(self, "layer_module", module)
        self.layer = layer if isinstance(layer, str) else layer_name(D, module)
        self.sources, self.score = sources, score
        self.normalize, self.eps, self.reduction, self.backend = normalize, eps, reduction, backend
        self.logits_fn = logits_fn
        self._tape: Optional[GradCAM] = None

    def extra_repr(self) -> str:
        return (f"layer={self.layer!r}, sources={self.sources!r}, score={self.score!r}, normalize={self.normalize!r}, "
                f"eps={self.eps:g}, reduction={self.reduction!r}, backend={self.backend!r}")

    @property
    def use_real(self) -> bool:
        return self.sources in ("both", "real")

    @property
    def use_fake(self) -> bool:
        return self.sources in ("both", "fake")

    # ---------------------------------------------------------------- capture

    @contextlib.contextmanager
    def _capture(self):
        if self._tape is not None:
            raise RuntimeError("CAMConsistency.capture(): a capture block is already open; they do not nest")
        with GradCAM(self.D, self.layer_module) as tape:
            self._tape = tape
            try:
                yield tape
            finally:
                self._tape = None

    def capture(self, enabled: bool = True):
        """Context manager recording D's forwards at the layer; a no-op if ``enabled`` is False.

        Run D inside it and compute the loss inside it too: the recordings end with the block.
        Yields the underlying :class:`camfast.GradCAM`.
        """
        return self._capture() if enabled else contextlib.nullcontext()

    # ---------------------------------------------------------------- the loss

    def forward(
        self,
        real: torch.Tensor,
        fake: torch.Tensor,
        c_src: torch.Tensor,
        c_trg: torch.Tensor,
        logits_real: Optional[torch.Tensor] = None,
        logits_fake: Optional[torch.Tensor] = None,
        *,
        detach_mask: bool = False,
        return_mask: bool = False,
    ):
        """The loss (a scalar, ``[B]`` for ``reduction="none"``); with ``return_mask``, ``(loss, mask)``.

        ``detach_mask=False``: D's side, the gradient also flows through D's Grad-CAM (a
        second-order path into D). ``True``: G's side, D's mask is a constant (no
        second-order graph is built). ``mask`` is ``[B, 1, H, W]``, detached.
        """
        feats, grads = self._sources(real, fake, c_src, c_trg, logits_real, logits_fake, detach_mask)
        loss = self._loss(real, fake, feats, grads, detach_mask)
        if return_mask:
            return loss, self._mask(feats, grads, tuple(real.shape[-2:]))
        return loss

    def d_loss(self, real, fake, c_src, c_trg, logits_real=None, logits_fake=None, *, return_mask: bool = False):
        """D's side: ``self(..., detach_mask=False)``. Pass ``fake`` detached from G."""
        return self(real, fake, c_src, c_trg, logits_real, logits_fake, detach_mask=False, return_mask=return_mask)

    def g_loss(self, real, fake, c_src, c_trg, logits_real=None, logits_fake=None, *, return_mask: bool = False):
        """G's side: ``self(..., detach_mask=True)``; the gradient reaches G through ``fake`` only."""
        return self(real, fake, c_src, c_trg, logits_real, logits_fake, detach_mask=True, return_mask=return_mask)

    @torch.no_grad()
    def mask(self, real, fake, c_src, c_trg, logits_real=None, logits_fake=None, size=None) -> torch.Tensor:
        """D's mask ``M`` in [0, 1], ``[B, 1, H, W]`` (``size``, default the images' ``H, W``), detached."""
        feats, grads = self._sources(real, fake, c_src, c_trg, logits_real, logits_fake, True)
        return self._mask(feats, grads, tuple(real.shape[-2:]) if size is None else size)

    # ---------------------------------------------------------------- pieces

    def _logits(self, out) -> torch.Tensor:
        return self.logits_fn(out) if self.logits_fn is not None else _default_logits(out)

    def _check_images(self, real, fake) -> None:
        api._check_float_tensor("real", real)
        api._check_float_tensor("fake", fake)
        if real.dim() != 4:
            raise ValueError(f"real: expected images [B, C, H, W], got shape {tuple(real.shape)}")
        if fake.shape != real.shape:
            raise ValueError(f"fake: expected shape {tuple(real.shape)} (as real), got {tuple(fake.shape)}")

    def _sources(self, real, fake, c_src, c_trg, logits_real, logits_fake, detach_mask: bool) -> tuple[list, list]:
        """``(feats, grads)`` lists of the enabled sources, real first."""
        self._check_images(real, fake)
        w_real, w_fake = score_weights(c_src, c_trg, self.score)
        if w_real.shape[0] != real.shape[0]:
            raise ValueError(f"c_src: expected batch size {real.shape[0]} (as real), got {w_real.shape[0]}")
        todo = []
        if self.use_real:
            todo.append(("real", real, logits_real, w_real))
        if self.use_fake:
            todo.append(("fake", fake, logits_fake, w_fake))
        if any(lg is not None for _, _, lg, _ in todo) and self._tape is None:
            raise RuntimeError(
                "CAMConsistency: logits were given outside `with cam.capture():`. Run D and compute the loss "
                "inside the block (the logits' forwards must be recorded), or omit the logits and the object "
                "runs D itself")
        # G's side runs D outside its DDP wrapper (DDP must only see D's own step) and on
        # inputs that require grad (so a frozen D still has a Grad-CAM).
        model = _without_ddp(self.D) if detach_mask else self.D
        with contextlib.ExitStack() as stack:
            tape = self._tape
            if tape is None:
                tape = stack.enter_context(GradCAM(self.D, self.layer_module))
            stack.enter_context(torch.enable_grad())
            logits = []
            for name, img, lg, _ in todo:
                if lg is None:
                    x = img.detach().requires_grad_(True) if detach_mask else img
                    lg = self._logits(model(x))
                logits.append(lg)
            feats, grads = [], []
            for (name, _, _, w), lg in zip(todo, logits):
                try:
                    f, g = tape.gradients(lg, w, create_graph=not detach_mask)
                except (ValueError, TypeError) as e:
                    given = logits_real if name == "real" else logits_fake
                    what = f"logits_{name}" if given is not None else f"D({name}), run by CAMConsistency"
                    raise type(e)(f"{what}: {e}") from None
                feats.append(f)
                grads.append(g)
        return feats, grads

    def _loss(self, real, fake, feats: list, grads: list, detach_mask: bool) -> torch.Tensor:
        # Images of different float dtypes (G under autocast) are promoted; D's activations
        # (bf16 under autocast) go in as float32, which is cheap at D's resolution.
        dt = torch.promote_types(real.dtype, fake.dtype)
        feats = [f.to(reference.accumulate_dtype(f.dtype)) for f in feats]
        grads = [g.to(reference.accumulate_dtype(g.dtype)) for g in grads]
        if detach_mask:
            feats, grads = [f.detach() for f in feats], [g.detach() for g in grads]
        return api.cam_consistency_loss(real.to(dt), fake.to(dt), feats, grads, normalize=self.normalize, eps=self.eps,
                                        reduction=self.reduction, backend=self.backend)

    @torch.no_grad()
    def _mask(self, feats: list, grads: list, size) -> torch.Tensor:
        fl = [f.detach().to(reference.accumulate_dtype(f.dtype)) for f in feats]
        gl = [g.detach().to(reference.accumulate_dtype(g.dtype)) for g in grads]
        return api.grad_cam_mask(fl, gl, size, normalize=self.normalize, eps=self.eps, backend=self.backend)
