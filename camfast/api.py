"""The public surface: validated entry points that dispatch to a backend.

``cam_consistency_loss`` and ``grad_cam_mask`` check every input, pick a backend
(``backend="auto"``: the compiled CUDA kernels, then Triton, then the reference on a GPU;
the compiled CPU kernels, then the reference on the CPU) and call it. ``auto`` uses a compiled
GPU backend only after it passed a first-use self-check on that device and dtype (see
``_self_check_passed``; ``CAMFAST_SKIP_SELF_CHECK=1`` skips it).
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import warnings
from typing import Optional, Sequence, Union

import torch

from . import _extension, reference, registration

BACKENDS = ("auto", "reference", "cpu", "cuda", "triton")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

TensorOrList = Union[torch.Tensor, Sequence[torch.Tensor]]


# ---------------------------------------------------------------- backends

def _triton_status() -> tuple[bool, str]:
    try:
        from . import triton_ops
    except Exception as e:  # a broken triton install must not break camfast
        return False, f"camfast.triton_ops failed to import: {e}"
    return triton_ops.AVAILABLE, triton_ops.WHY_NOT


def _cuda_device(device: Optional[torch.device]) -> torch.device:
    """``device`` with its index filled in (the current device for "cuda")."""
    if device is None or device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


@functools.lru_cache(maxsize=None)
def _arch_problem(archs: Optional[str], index: int) -> Optional[str]:
    return _extension.arch_mismatch(archs, torch.cuda.get_device_capability(index))


def _why_not(name: str, device: Optional[torch.device] = None) -> Optional[str]:
    """None if backend ``name`` can run on ``device`` (default: somewhere on this machine; for
    CUDA the current device), else the reason."""
    if name == "reference":
        return None
    if name in ("cpu", "cuda"):
        if not _extension.usable():
            return _extension.ERROR
        if name == "cuda":
            if _extension.INFO.get("cuda") != "1":
                return "camfast._C was built without CUDA kernels (no CUDA toolkit found, or CAMFAST_CPU_ONLY=1)"
            if not torch.cuda.is_available():
                return "no CUDA device is visible"
            return _arch_problem(_extension.INFO.get("cuda_archs") or None, _cuda_device(device).index)
        return None
    if name == "triton":
        ok, why = _triton_status()
        if not ok:
            return why
        if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
            return "no CUDA device is visible (set TRITON_INTERPRET=1 before importing camfast to run Triton on the CPU)"
        return None
    raise ValueError(f"backend: expected one of {BACKENDS}, got {name!r}")


#: The fused backends ``auto`` tries, fastest first, by device type (none for float64 on a GPU).
#: Data, not code: the CPU fast path of ``_fast_loss`` reads it without calling ``_candidates``,
#: a call that cost about 3 µs on a cold cache (docs/kernels.md).
AUTO_ORDER = {"cuda": ("cuda", "triton"), "cpu": ("cpu",)}


def _candidates(device: torch.device, dtype: torch.dtype) -> tuple:
    """The fused backends ``auto`` tries on ``device`` for ``dtype``, fastest first."""
    kind = device.type
    if kind == "cuda" and dtype == torch.float64:
        return ()
    return AUTO_ORDER.get(kind, ())


def _auto(device: torch.device, dtype: torch.dtype, dtypes: Sequence[torch.dtype] = ()) -> str:
    """The first candidate that can run and passed its self-check for ``dtypes`` (default
    ``(dtype,)``: the dtypes whose kernels the call will run)."""
    for name in _candidates(device, dtype):
        if _why_not(name, device) is None and _self_check_passed(name, device, dtypes or (dtype,)):
            return name
    return "reference"


# ---------------------------------------------------------------- first-use self-check
#
# The compiled GPU backends are checked once per (backend, device, dtype) before ``auto`` first
# uses them: one small loss with awkward shapes (two sources of different channel counts,
# h != w, image sizes that are not multiples of the mask's), values and every gradient, against
# the reference in float64. A mismatch or an exception gives one warning and ``auto`` moves on
# to the next backend. An explicit ``backend=`` is never checked (the caller chose it).

SELF_CHECKED = ("cuda", "triton")
SKIP_SELF_CHECK_ENV = "CAMFAST_SKIP_SELF_CHECK"
#: (backend, device, dtype) -> None (passed) or why it failed.
_SELF_CHECKS: dict = {}
# Relative tolerance of the self-check per dtype: loose against rounding (the inputs keep every
# value well away from ties and kinks), tight against a wrong kernel (O(1) errors).
_SELF_CHECK_RTOL = {torch.float32: 1e-3, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def _self_check_passed(name: str, device: torch.device, dtypes: Sequence[torch.dtype]) -> bool:
    if name not in SELF_CHECKED or os.environ.get(SKIP_SELF_CHECK_ENV) == "1":
        return True
    dev = _cuda_device(device) if device.type == "cuda" else device
    for dtype in dict.fromkeys(dtypes):
        key = (name, str(dev), dtype)
        if key not in _SELF_CHECKS:
            _SELF_CHECKS[key] = why = _run_self_check(name, dev, dtype)
            if why is not None:
                warnings.warn(
                    f"camfast: backend {name!r} failed its self-check on {dev} for {str(dtype)[6:]} ({why}); "
                    f"backend='auto' uses the next backend there. camfast.backends() shows the result; "
                    f"{SKIP_SELF_CHECK_ENV}=1 skips the check.", RuntimeWarning, stacklevel=4)
        if _SELF_CHECKS[key] is not None:
            return False
    return True


def _self_check_inputs(dtype: torch.dtype):
    """float64 CPU inputs, exactly representable in ``dtype``, whose CAMs keep every value away
    from the ReLU kink, from the min/max and from the other source (ties there may be broken
    differently by rounding), and whose images differ everywhere (sign(0) is a kink too)."""
    B, K, H, W, h, w, Cs = 2, 3, 13, 10, 3, 4, (5, 3)
    for seed in range(1000):
        g = torch.Generator().manual_seed(seed)
        feats = [torch.randn(B, C, h, w, generator=g, dtype=torch.float64).to(dtype).double() for C in Cs]
        grads = [(torch.randn(B, C, h, w, generator=g, dtype=torch.float64) + 0.3).to(dtype).double() for C in Cs]
        ns = []
        ok = True
        for f, gr in zip(feats, grads):
            pre = (gr.mean(dim=(2, 3), keepdim=True) * f).sum(dim=1).flatten(1)     # [B, P]
            scale = pre.abs().amax(dim=1, keepdim=True)
            cam = pre.clamp(min=0)
            srt = cam.sort(dim=1).values
            gaps = srt[:, 1:] - srt[:, :-1]
            # exact zeros (ReLU) tie exactly in every backend; anything else must be separated
            ok &= bool((pre.abs() > 0.05 * scale).all() and ((gaps > 0.02 * scale) | (srt[:, 1:] == 0)).all())
            mn, mx = cam.amin(dim=1, keepdim=True), cam.amax(dim=1, keepdim=True)
            ns.append((cam - mn) / (mx - mn + 1e-2))
        d = (ns[0] - ns[1]).abs()
        ok &= bool(((d > 0.02) | ((ns[0] == 0) & (ns[1] == 0))).all())
        if ok:
            break
    real = (torch.rand(B, K, H, W, generator=g, dtype=torch.float64) * 2 - 1).to(dtype).double()
    step = torch.rand(B, K, H, W, generator=g, dtype=torch.float64) * 0.8 + 0.2
    sign = torch.randint(0, 2, (B, K, H, W), generator=g).double() * 2 - 1
    fake = (real + sign * step).to(dtype).double()
    return real, fake, feats, grads


def _self_check_impl(name: str, device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """None if backend ``name`` matches the reference on ``device`` in ``dtype``, else why not."""
    eps, names = 1e-2, ["loss", "d/dreal", "d/dfake", "d/dfeats[0]", "d/dfeats[1]", "d/dgrads[0]", "d/dgrads[1]"]
    autocast = torch.autocast(device.type, enabled=False) if device.type in ("cuda", "cpu") else contextlib.nullcontext()
    try:
        # Also when called under no_grad / inference_mode / autocast (evaluation code).
        with torch.inference_mode(False), torch.enable_grad(), autocast:
            real, fake, feats, grads = _self_check_inputs(dtype)
            ref_in = [t.clone().requires_grad_(True) for t in (real, fake, *feats, *grads)]
            want = reference.cam_consistency_loss(ref_in[0], ref_in[1], ref_in[2:4], ref_in[4:6], "minmax", eps, "mean")
            want = [want.detach()] + [x.detach() for x in torch.autograd.grad(want, ref_in)]
            dev_in = [t.to(device=device, dtype=dtype).requires_grad_(True) for t in (real, fake, *feats, *grads)]
            loss = _fused_loss(name, dev_in[0], dev_in[1], dev_in[2:4], dev_in[4:6], "minmax", eps, "mean")
            got = [loss.detach()] + [x.detach() for x in torch.autograd.grad(loss, dev_in)]
            got = [x.double().cpu() for x in got]  # also waits for the device: its errors surface here
        rtol = _SELF_CHECK_RTOL.get(dtype, 1e-3)
        for what, a, b in zip(names, got, want):
            if a.shape != b.shape:
                return f"{what} has shape {tuple(a.shape)}, expected {tuple(b.shape)}"
            err = (a - b).abs().max().item() if a.numel() else 0.0
            tol = rtol * max(b.abs().max().item() if b.numel() else 0.0, 1e-6)
            if not err <= tol:  # also catches NaN
                return f"{what} differs from the reference by {err:.3g} (tolerance {tol:.3g})"
    except Exception as e:  # any failure of the backend counts as a failed check
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return f"{type(e).__name__}: {first}"
    return None


# Under torch.compile the check runs eagerly, outside the graph (a graph break on first use).
_run_self_check = torch.compiler.disable(_self_check_impl)


def backends() -> dict:
    """Which backends can run here, why not where they cannot, the results of the self-checks
    that ``auto`` ran so far, and what ``auto`` picks (for float32 on the CPU and on the current
    CUDA device; this runs the self-check there if it has not run yet)."""
    out = {}
    for name in BACKENDS[1:]:
        why = _why_not(name)
        out[name] = {"available": why is None, "why_not": why}
    out["auto"] = {
        "cpu": _auto(torch.device("cpu"), torch.float32),
        "cuda": _auto(_cuda_device(None), torch.float32) if torch.cuda.is_available() else None,
    }
    skipped = os.environ.get(SKIP_SELF_CHECK_ENV) == "1"
    for name in SELF_CHECKED:
        out[name]["self_check"] = {
            f"{dev} {str(dt)[6:]}": "passed" if why is None else f"failed: {why}"
            for (n, dev, dt), why in _SELF_CHECKS.items() if n == name
        }
        if skipped:
            out[name]["self_check"]["all"] = f"skipped ({SKIP_SELF_CHECK_ENV}=1)"
    return out


def _resolve_backend(backend: str, device: torch.device, dtype: torch.dtype,
                     dtypes: Sequence[torch.dtype] = ()) -> str:
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return _auto(device, dtype, dtypes)
    why = _why_not(backend, device if backend == "cuda" and device.type == "cuda" else None)
    if why is not None:
        raise RuntimeError(f"backend: {backend!r} is not available: {why}")
    if backend == "cpu" and device.type != "cpu":
        raise ValueError(f"backend: 'cpu' expects CPU tensors, got tensors on {device}")
    if backend == "cuda" and device.type != "cuda":
        raise ValueError(f"backend: 'cuda' expects CUDA tensors, got tensors on {device}")
    if backend == "triton":
        if dtype == torch.float64:
            raise TypeError("backend: 'triton' expects float16, bfloat16 or float32 tensors, got float64")
        if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError("backend: 'triton' expects CUDA tensors (or TRITON_INTERPRET=1), got tensors on cpu")
    return backend


# ---------------------------------------------------------------- validation

def _check_float_tensor(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a float16, bfloat16, float32 or float64 tensor, got {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty tensor, got shape {tuple(t.shape)}")


def _as_list(name: str, x: TensorOrList) -> list:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        if len(x) == 0:
            raise ValueError(f"{name}: expected at least one tensor, got an empty {type(x).__name__}")
        return list(x)
    raise TypeError(f"{name}: expected a tensor or a list/tuple of tensors, got {type(x).__name__}")


def _check_sources(feats: TensorOrList, grads: TensorOrList) -> tuple[list, list]:
    fl, gl = _as_list("feats", feats), _as_list("grads", grads)
    if len(fl) != len(gl):
        raise ValueError(f"feats and grads: expected the same number of CAM sources, got {len(fl)} feats and {len(gl)} grads")
    ref = fl[0]
    for s, (f, g) in enumerate(zip(fl, gl)):
        _check_float_tensor(f"feats[{s}]", f)
        _check_float_tensor(f"grads[{s}]", g)
        if f.dim() != 4:
            raise ValueError(f"feats[{s}]: expected [B, C, h, w], got shape {tuple(f.shape)}")
        if g.shape != f.shape:
            raise ValueError(f"grads[{s}]: expected shape {tuple(f.shape)} (as feats[{s}]), got {tuple(g.shape)}")
        if f.dtype != ref.dtype or g.dtype != ref.dtype:
            raise TypeError(f"feats[{s}]/grads[{s}]: expected dtype {ref.dtype} (as feats[0]), got {f.dtype} and {g.dtype}")
        if f.device != ref.device or g.device != ref.device:
            raise ValueError(f"feats[{s}]/grads[{s}]: expected device {ref.device} (as feats[0]), got {f.device} and {g.device}")
        if (f.shape[0], f.shape[2], f.shape[3]) != (ref.shape[0], ref.shape[2], ref.shape[3]):
            raise ValueError(
                f"feats[{s}]: expected [B, C, h, w] = [{ref.shape[0]}, C, {ref.shape[2]}, {ref.shape[3]}] "
                f"(the sources are unioned pixel by pixel), got {tuple(f.shape)}"
            )
    return fl, gl


_NO_REDUCTION = object()  # grad_cam_mask has no reduction to check


def _check_options(normalize: str, eps: float, reduction=_NO_REDUCTION) -> float:
    if not isinstance(normalize, str) or normalize not in reference.NORMALIZE_MODES:
        raise ValueError(f"normalize: expected one of {reference.NORMALIZE_MODES}, got {normalize!r}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"eps: expected a float, got {type(eps).__name__}")
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps: expected a finite number > 0, got {eps}")
    if reduction is not _NO_REDUCTION and (not isinstance(reduction, str) or reduction not in reference.REDUCTIONS):
        raise ValueError(f"reduction: expected one of {reference.REDUCTIONS}, got {reduction!r}")
    return float(eps)


def _check_images(real, fake) -> None:
    _check_float_tensor("real", real)
    _check_float_tensor("fake", fake)
    if real.dim() != 4:
        raise ValueError(f"real: expected [B, C, H, W], got shape {tuple(real.shape)}")
    if fake.shape != real.shape:
        raise ValueError(f"fake: expected shape {tuple(real.shape)} (as real), got {tuple(fake.shape)}")
    if fake.dtype != real.dtype:
        raise TypeError(f"fake: expected dtype {real.dtype} (as real), got {fake.dtype}")
    if fake.device != real.device:
        raise ValueError(f"fake: expected device {real.device} (as real), got {fake.device}")


def _size(size) -> tuple[int, int]:
    if isinstance(size, bool):
        raise TypeError(f"size: expected an int or a pair (H, W), got {size!r}")
    if isinstance(size, int):
        size = (size, size)
    if isinstance(size, torch.Size):
        size = tuple(size)
    if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
        raise TypeError(f"size: expected an int or a pair of ints (H, W), got {size!r}")
    if min(size) < 1:
        raise ValueError(f"size: expected positive sizes, got {tuple(size)}")
    return int(size[0]), int(size[1])


# ---------------------------------------------------------------- fused paths

def _ops(backend: str):
    if backend == "triton":
        from . import triton_ops  # noqa: F401  (defines the ops)

        ns = torch.ops.camfast
        return ns.triton_cam_mask, ns.triton_masked_l1
    return torch.ops.camfast.cam_mask, torch.ops.camfast.masked_l1


def _contig(ts: list) -> list:
    return [t.contiguous() for t in ts]


def _lowres(fl, gl, normalize, eps, backend) -> torch.Tensor:
    if backend == "reference":
        return reference.lowres_mask(fl, gl, normalize, eps)
    mask_op, _ = _ops(backend)
    return mask_op(_contig(fl), _contig(gl), normalize, eps)


_FAMILY_LOSS_OPS: dict = {}  # backend -> its combined op or None (a dict, not lru_cache: dynamo traces it)


def _family_loss_op(backend: str):
    """The family's combined loss op (one op per direction), or None: then its stage ops are chained."""
    if backend not in _FAMILY_LOSS_OPS:
        _ops(backend)  # defines the family's ops
        prefix = f"{backend}_"
        _FAMILY_LOSS_OPS[backend] = (getattr(torch.ops.camfast, f"{prefix}cam_consistency")
                                     if registration.has_loss_ops(prefix) else None)
    return _FAMILY_LOSS_OPS[backend]


def _family_eager_loss(backend: str):
    """For calls outside torch.compile: the family's combined loss as a plain autograd.Function
    where it has one (registration.EAGER_LOSS: same kernels and autograd, no dispatcher), else
    its op, or None."""
    op = _family_loss_op(backend)
    return None if op is None else registration.EAGER_LOSS.get(f"{backend}_", op)


def _fused_loss(backend, real, fake, fl, gl, normalize, eps, reduction) -> torch.Tensor:
    if backend in ("cpu", "cuda"):  # both stages, their casts and autograd in one C++ op
        return torch.ops.camfast.cam_consistency(real, fake, fl, gl, normalize, eps, reduction)[0]
    loss_op = _family_loss_op(backend)
    if loss_op is not None:
        return loss_op(real.contiguous(), fake.contiguous(), _contig(fl), _contig(gl), normalize, eps, reduction)[0]
    u = _lowres(fl, gl, normalize, eps, backend).to(reference.accumulate_dtype(real.dtype))
    _, l1_op = _ops(backend)
    return l1_op(real.contiguous(), fake.contiguous(), u, reduction)


_SEQ = (list, tuple)
_CPU_OP_ONLY = ("cpu",)
#: What the op and ``_fast_loss`` raise for bad input or an unavailable backend, after which the
#: API's own checks run and raise their message. Anything else raised through the op propagates
#: as it is: an exception of a saved-tensor hook, say, or the one with which non-reentrant
#: activation checkpointing stops its recomputation (caught here, the op ran a second time and
#: the checkpoint failed an assertion).
_INPUT_ERRORS = (ValueError, TypeError, RuntimeError, AttributeError, IndexError)
#: (device, feats dtype, images dtype) -> what ``auto`` chose there in an eager call. The choice
#: is final once made: availability does not change in a process, and each self-check runs once
#: (its environment variable is read when the choice is made).
_AUTO_CHOICE: dict = {}


def _fast_loss(real, fake, feats, grads, normalize, eps, reduction, backend):
    """The loss through a family's combined op with no validation in this module, or None where
    that does not apply (the reference, a family without one, or an eps the op would take but the
    API rejects).

    The op checks everything the API promises (csrc/cam_consistency.cpp; for Triton
    kernels.check_loss_args), so valid input pays for one backend choice and one op call. It
    raises on invalid input, and the caller then validates in Python to give the API's own
    message."""
    if type(eps) is not float and type(eps) is not int:  # noqa: E721  (bool is not accepted)
        return None
    # Lists and tuples go to the op as they are; anything else gets the API's message below.
    fl = [feats] if isinstance(feats, torch.Tensor) else feats if type(feats) in _SEQ else None
    gl = [grads] if isinstance(grads, torch.Tensor) else grads if type(grads) in _SEQ else None
    if fl is None or gl is None:
        return None
    # CPU tensors: "cpu", and "auto" when the C++ op is its only candidate (_candidates: on the
    # CPU the same for every dtype), mean that op when it is usable (_why_not); decided without
    # building a device object or calling into this module again, which is most of what this
    # module costs a call on a cold cache.
    if real.is_cpu and _extension.usable() and (
            backend == "cpu" or backend == "auto" and AUTO_ORDER["cpu"] == _CPU_OP_ONLY):
        return _loss_op()(real, fake, fl, gl, normalize, eps, reduction)[0]
    f0 = fl[0]
    dtype = real.dtype
    # auto's choice is made once per (device, dtypes), then looked up: on a GPU it is a dozen
    # Python calls (availability, self-check record), each paid again on a cold cache.
    key = (real.device, f0.dtype, dtype)
    name = _AUTO_CHOICE.get(key) if backend == "auto" else None
    if name is None:
        name = _resolve_backend(backend, key[0], dtype if dtype == torch.float64 else f0.dtype, (f0.dtype, dtype))
        if backend == "auto":
            _AUTO_CHOICE[key] = name
    if name == "cpu" or name == "cuda":
        return _loss_op()(real, fake, fl, gl, normalize, eps, reduction)[0]
    loss_op = None if name == "reference" else _family_eager_loss(name)
    return None if loss_op is None else loss_op(real, fake, fl, gl, normalize, eps, reduction)[0]


@functools.lru_cache(maxsize=None)
def _loss_op():
    return torch.ops.camfast.cam_consistency.default


# ---------------------------------------------------------------- public API

def cam_consistency_loss(
    real: torch.Tensor,
    fake: torch.Tensor,
    feats: TensorOrList,
    grads: TensorOrList,
    *,
    normalize: str = "minmax",
    eps: float = reference.DEFAULT_EPS,
    reduction: str = "mean",
    backend: str = "auto",
) -> torch.Tensor:
    """L1 between ``real`` and ``fake`` outside the Grad-CAM mask (docs/method.md, steps in docs/kernels.md).

    Args:
        real, fake: images ``[B, C_img, H, W]`` of one dtype and device.
        feats, grads: one CAM source as two tensors ``[B, C, h, w]``, or S sources as two lists
            (the activations of a layer of D and the gradient of an attribute score w.r.t. them).
            Sources share ``B, h, w`` and are unioned (pixel-wise max of the normalised CAMs).
        normalize: ``"minmax"`` (default) or ``"max"``.
        eps: added to the normaliser's denominator.
        reduction: ``"mean"`` (default), ``"sum"``, or ``"none"`` (per-sample mean, ``[B]``).
        backend: ``"auto"``, ``"reference"``, ``"cpu"``, ``"cuda"`` or ``"triton"``; see
            :func:`camfast.backends`.

    Returns the loss in ``real.dtype``: a scalar, or ``[B]`` for ``reduction="none"``.
    Gradients reach ``real``, ``fake``, ``feats`` and ``grads``; detach ``feats``/``grads``
    to treat the mask as given (the default for G's step in camfast-train).
    """
    # Eager calls try the compiled op first: validation in C++, none in Python (per-call cost,
    # docs/kernels.md). Under torch.compile the checks below run once, at trace time.
    if backend != "reference" and not torch.compiler.is_compiling():
        try:
            loss = _fast_loss(real, fake, feats, grads, normalize, eps, reduction, backend)
        except _INPUT_ERRORS:  # bad input (or an unavailable backend): the checks below say why
            loss = None
        if loss is not None:
            return loss
    _check_images(real, fake)
    fl, gl = _check_sources(feats, grads)
    eps = _check_options(normalize, eps, reduction)
    if fl[0].shape[0] != real.shape[0]:
        raise ValueError(f"feats: expected batch size {real.shape[0]} (as real), got {fl[0].shape[0]}")
    if fl[0].device != real.device:
        raise ValueError(f"feats: expected device {real.device} (as real), got {fl[0].device}")
    name = _resolve_backend(backend, real.device, real.dtype if real.dtype == torch.float64 else fl[0].dtype,
                            (fl[0].dtype, real.dtype))
    if name == "triton" and fl[0].dtype == torch.float64:
        raise TypeError("backend: 'triton' expects float16, bfloat16 or float32 tensors, got float64 feats")
    if name == "reference":
        return reference.cam_consistency_loss(real, fake, fl, gl, normalize, eps, reduction)
    return _fused_loss(name, real, fake, fl, gl, normalize, eps, reduction)


def grad_cam_mask(
    feats: TensorOrList,
    grads: TensorOrList,
    size=None,
    *,
    normalize: str = "minmax",
    eps: float = reference.DEFAULT_EPS,
    backend: str = "auto",
) -> torch.Tensor:
    """The Grad-CAM mask ``M`` in [0, 1], shape ``[B, 1, H, W]`` (float32; float64 for float64 input).

    ``size`` is ``(H, W)`` or an int; ``None`` gives the mask at feature resolution.
    The mask is differentiable with respect to ``feats`` and ``grads``.
    """
    fl, gl = _check_sources(feats, grads)
    eps = _check_options(normalize, eps)
    name = _resolve_backend(backend, fl[0].device, fl[0].dtype)
    u = _lowres(fl, gl, normalize, eps, name)
    if size is None:
        return u.unsqueeze(1)
    return reference.upsample_mask(u, _size(size))
