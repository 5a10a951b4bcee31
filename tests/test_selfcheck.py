"""The first-use self-check of backend="auto", exercised on the CPU.

auto runs a compiled GPU backend (cuda, triton) only after it matched the reference once on
that device and dtype. Here the CPU plays the GPU: auto's candidates on the CPU become
("triton", "cpu"), with the real Triton kernels (interpreted), or with injected ops that return
wrong values or raise.
"""
import os
import warnings

import pytest
import torch

import camfast
from camfast import api, reference

if not camfast.backends()["cpu"]["available"]:
    pytest.skip("camfast._C CPU kernels not built", allow_module_level=True)

CPU = torch.device("cpu")


@pytest.fixture
def gpu_like(monkeypatch):
    """auto on the CPU tries "triton" first (a self-checked backend), then "cpu"."""
    monkeypatch.setitem(api.AUTO_ORDER, "cpu", ("triton", "cpu"))
    monkeypatch.setattr(api, "_SELF_CHECKS", {})
    monkeypatch.setattr(api, "_AUTO_CHOICE", {})
    monkeypatch.delenv(api.SKIP_SELF_CHECK_ENV, raising=False)
    return monkeypatch


def _inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(5)
    real, fake = torch.randn(2, 2, 3, 9, 7, generator=g).to(dtype)
    f, gr = torch.randn(2, 2, 4, 3, 4, generator=g).to(dtype)
    return real, fake, f, gr


def _inject(monkeypatch, mask_op=None, l1_op=None):
    """Replace the "triton" ops that api dispatches to (both the check and real calls)."""
    real_ops = api._ops

    def ops(backend):
        m, l = real_ops("cpu")
        if backend == "triton":
            return (mask_op or m), (l1_op or l)
        return m, l

    monkeypatch.setattr(api, "_ops", ops)
    monkeypatch.setattr(api, "_family_loss_op", lambda backend: None)  # chain the injected stage ops


def _loss(dtype=torch.float32):
    real, fake, f, g = _inputs(dtype)
    return camfast.cam_consistency_loss(real, fake, f, g)


def test_real_triton_kernels_pass(gpu_like):
    pytest.importorskip("triton")
    if not camfast.backends()["triton"]["available"]:
        pytest.skip("triton backend unavailable")
    from camfast import kernels

    if not kernels.INTERPRETED:
        pytest.skip("the Triton kernels take CPU tensors only under the interpreter")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert api._auto(CPU, torch.float32) == "triton"
    assert api._SELF_CHECKS == {("triton", "cpu", torch.float32): None}
    assert camfast.backends()["triton"]["self_check"] == {"cpu float32": "passed"}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_correct_backend_passes_in_every_dtype(gpu_like, dtype):
    """The check's inputs keep clear of ties and kinks: a correct backend passes in low precision
    too (here the compiled CPU ops stand in for "triton")."""
    _inject(gpu_like)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert api._self_check_passed("triton", CPU, (dtype,))


def test_wrong_values_warn_once_and_fall_back(gpu_like):
    def wrong_mask(feats, grads, normalize, eps):
        return torch.ops.camfast.cam_mask(feats, grads, normalize, eps) * 0.9

    _inject(gpu_like, mask_op=wrong_mask)
    with pytest.warns(RuntimeWarning) as rec:
        loss = _loss()
    msgs = [str(w.message) for w in rec if "self-check" in str(w.message)]
    assert len(msgs) == 1
    for word in ("'triton'", "cpu", "float32", "differs from the reference"):
        assert word in msgs[0], (word, msgs[0])
    real, fake, f, g = _inputs()
    torch.testing.assert_close(loss, reference.cam_consistency_loss(real, fake, [f], [g]))  # the cpu backend ran
    assert api._auto(CPU, torch.float32) == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: no second warning, no second check
        _loss()
    report = camfast.backends()["triton"]["self_check"]
    assert report["cpu float32"].startswith("failed: ") and "differs" in report["cpu float32"]


def test_wrong_gradients_are_caught(gpu_like):
    """Right values, wrong gradient of the mask: the check compares every gradient."""
    real_l1 = torch.ops.camfast.masked_l1

    class Halved(torch.autograd.Function):
        @staticmethod
        def forward(ctx, mask):
            return mask.clone()

        @staticmethod
        def backward(ctx, g):
            return g * 0.5

    def l1(real, fake, mask, reduction):
        return real_l1(real, fake, Halved.apply(mask), reduction)

    _inject(gpu_like, l1_op=l1)
    with pytest.warns(RuntimeWarning, match=r"d/dfeats\[0\]|d/dgrads\[0\]"):
        assert api._auto(CPU, torch.float32) == "cpu"


def test_exception_warns_once_and_falls_back(gpu_like):
    def broken(*args):
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    _inject(gpu_like, mask_op=broken)
    with pytest.warns(RuntimeWarning, match="no kernel image is available") as rec:
        _loss()
    assert sum("self-check" in str(w.message) for w in rec) == 1
    assert api._auto(CPU, torch.float32) == "cpu"
    assert "RuntimeError" in camfast.backends()["triton"]["self_check"]["cpu float32"]


def test_eager_calls_choose_once_per_device_and_dtypes(gpu_like):
    """After the first call, auto's choice is looked up: no second self-check, no second choice."""
    def wrong_mask(feats, grads, normalize, eps):
        return torch.ops.camfast.cam_mask(feats, grads, normalize, eps) * 0.9

    _inject(gpu_like, mask_op=wrong_mask)
    choices = []
    real_auto = api._auto
    gpu_like.setattr(api, "_auto", lambda *a: choices.append(a) or real_auto(*a))
    with pytest.warns(RuntimeWarning, match="self-check"):
        _loss()
    assert len(choices) == 1 and api._AUTO_CHOICE == {(CPU, torch.float32, torch.float32): "cpu"}
    real, fake, f, g = _inputs()
    for _ in range(3):
        loss = camfast.cam_consistency_loss(real, fake, f, g)
    torch.testing.assert_close(loss, reference.cam_consistency_loss(real, fake, [f], [g]))
    assert len(choices) == 1
    with pytest.warns(RuntimeWarning, match="bfloat16"):  # another dtype: a choice of its own
        _loss(torch.bfloat16)
    assert len(choices) == 2 and api._AUTO_CHOICE[(CPU, torch.bfloat16, torch.bfloat16)] == "cpu"


def test_checked_per_dtype(gpu_like):
    """A failure in one dtype does not disable the backend for another."""
    def wrong_in_bf16(feats, grads, normalize, eps):
        u = torch.ops.camfast.cam_mask(feats, grads, normalize, eps)
        return u * 0.5 if feats[0].dtype == torch.bfloat16 else u

    _inject(gpu_like, mask_op=wrong_in_bf16)
    with pytest.warns(RuntimeWarning, match="bfloat16"):
        assert api._auto(CPU, torch.bfloat16) == "cpu"
    assert api._auto(CPU, torch.float32) == "triton"
    # Mixed call: bf16 features with fp32 images need both dtypes to have passed.
    assert api._auto(CPU, torch.bfloat16, (torch.bfloat16, torch.float32)) == "cpu"


def test_environment_variable_skips_the_check(gpu_like):
    def broken(*args):
        raise RuntimeError("boom")

    _inject(gpu_like, mask_op=broken)
    gpu_like.setenv(api.SKIP_SELF_CHECK_ENV, "1")
    assert api._auto(CPU, torch.float32) == "triton"  # unchecked, as asked
    assert api._SELF_CHECKS == {}
    assert "skipped" in camfast.backends()["triton"]["self_check"]["all"]


def test_explicit_backend_is_not_checked(gpu_like):
    def broken(*args):
        raise RuntimeError("boom")

    _inject(gpu_like, mask_op=broken)
    real, fake, f, g = _inputs()
    with pytest.raises(RuntimeError, match="boom"):
        camfast.cam_consistency_loss(real, fake, f, g, backend="triton")
    assert api._SELF_CHECKS == {}


def test_check_leaves_no_trace(gpu_like):
    """Global RNG state, grad mode and inference mode are untouched; works under no_grad and
    inference_mode (evaluation code)."""
    _inject(gpu_like)
    state = torch.get_rng_state()
    with torch.inference_mode():
        assert api._auto(CPU, torch.float32) == "triton"
        assert torch.is_inference_mode_enabled()
    assert torch.equal(state, torch.get_rng_state())
    gpu_like.setattr(api, "_SELF_CHECKS", {})
    with torch.no_grad():
        assert api._auto(CPU, torch.float32) == "triton"
        assert not torch.is_grad_enabled()


def test_cpu_backend_is_not_self_checked(monkeypatch):
    monkeypatch.setattr(api, "_SELF_CHECKS", {})
    assert api._auto(CPU, torch.float32) == "cpu"
    assert api._SELF_CHECKS == {}
    assert "cpu" not in api.SELF_CHECKED and set(api.SELF_CHECKED) == {"cuda", "triton"}


def test_inputs_are_awkward():
    """S=2 with different channel counts, h != w, H and W not multiples of h and w."""
    real, fake, feats, grads = api._self_check_inputs(torch.float32)
    B, K, H, W = real.shape
    (_, C0, h, w), (_, C1, _, _) = feats[0].shape, feats[1].shape
    assert len(feats) == 2 and C0 != C1 and h != w and H % h and W % w
    assert ((real - fake).abs() > 0.1).all()
