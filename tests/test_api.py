"""Validation of the public API, backend reporting and build information."""
import pytest
import torch

import camfast
from camfast import reference


def _inputs(B=2, K=3, H=8, W=9, C=4, h=3, w=4, dt=torch.float32):
    real, fake = torch.randn(2, B, K, H, W, dtype=dt)
    f, g = torch.randn(2, B, C, h, w, dtype=dt)
    return real, fake, f, g


def test_loss_matches_reference_with_defaults():
    real, fake, f, g = _inputs()
    got = camfast.cam_consistency_loss(real, fake, f, g)
    want = reference.cam_consistency_loss(real, fake, [f], [g])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_single_tensor_and_list_sources_agree(backend):
    real, fake, f, g = _inputs()
    a = camfast.cam_consistency_loss(real, fake, f, g, backend=backend)
    b = camfast.cam_consistency_loss(real, fake, [f], (g,), backend=backend)
    assert torch.equal(a, b)


def test_grad_cam_mask_shapes_and_range():
    _, _, f, g = _inputs()
    m = camfast.grad_cam_mask(f, g, (8, 9))
    assert m.shape == (2, 1, 8, 9) and m.dtype == torch.float32
    assert m.min() >= 0 and m.max() <= 1
    assert camfast.grad_cam_mask(f, g).shape == (2, 1, 3, 4)
    assert camfast.grad_cam_mask(f, g, 5).shape == (2, 1, 5, 5)
    torch.testing.assert_close(m, reference.grad_cam_mask([f], [g], (8, 9)))


BAD = [
    # (kwargs changes, exception, words the message must contain)
    (dict(real="x"), TypeError, ["real", "torch.Tensor"]),
    (dict(real=torch.randn(3, 8, 9)), ValueError, ["real", "[B, C, H, W]", "(3, 8, 9)"]),
    (dict(fake=torch.randn(2, 3, 8, 8)), ValueError, ["fake", "(2, 3, 8, 9)", "(2, 3, 8, 8)"]),
    (dict(fake=torch.randn(2, 3, 8, 9, dtype=torch.float64)), TypeError, ["fake", "float32", "float64"]),
    (dict(real=torch.zeros(2, 3, 8, 9, dtype=torch.int64)), TypeError, ["real", "int64"]),
    (dict(real=torch.zeros(0, 3, 8, 9)), ValueError, ["real", "non-empty"]),
    (dict(feats=[]), ValueError, ["feats", "at least one"]),
    (dict(feats=3), TypeError, ["feats", "int"]),
    (dict(feats=(t for t in [torch.randn(2, 4, 3, 4)])), TypeError, ["feats", "list/tuple", "generator"]),
    (dict(feats=torch.randn(2, 4, 3)), ValueError, ["feats[0]", "[B, C, h, w]"]),
    (dict(grads=torch.randn(2, 4, 3, 5)), ValueError, ["grads[0]", "(2, 4, 3, 4)", "(2, 4, 3, 5)"]),
    (dict(grads=torch.randn(2, 4, 3, 4, dtype=torch.float64)), TypeError, ["grads[0]", "float64"]),
    (dict(feats=torch.randn(3, 4, 3, 4), grads=torch.randn(3, 4, 3, 4)), ValueError, ["feats", "batch size 2", "3"]),
    (dict(normalize="l2"), ValueError, ["normalize", "minmax", "'l2'"]),
    (dict(eps=0.0), ValueError, ["eps", "> 0"]),
    (dict(eps="1e-6"), TypeError, ["eps", "str"]),
    (dict(reduction="avg"), ValueError, ["reduction", "'avg'"]),
    (dict(backend="fast"), ValueError, ["backend", "'fast'"]),
]


@pytest.mark.parametrize("change,exc,words", BAD, ids=[str(i) for i in range(len(BAD))])
def test_validation_errors_name_the_argument(change, exc, words):
    real, fake, f, g = _inputs()
    kw = dict(real=real, fake=fake, feats=f, grads=g)
    kw.update(change)
    with pytest.raises(exc) as info:
        camfast.cam_consistency_loss(**kw)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def _backends_here():
    info = camfast.backends()
    out = ["reference"] + [b for b in ("cpu", "triton") if info[b]["available"]]
    return out + (["cuda"] if info["cuda"]["available"] else [])


@pytest.mark.parametrize("backend", _backends_here())
@pytest.mark.parametrize("reduction", [None, 1, "avg", ""])
def test_bad_reduction_is_one_value_error_for_every_backend(backend, reduction):
    """reduction=None used to reach the C++ schema (a schema error) on compiled backends."""
    real, fake, f, g = _inputs()
    dev = "cuda" if backend in ("cuda", "triton") and torch.cuda.is_available() else "cpu"
    real, fake, f, g = (t.to(dev) for t in (real, fake, f, g))
    with pytest.raises(ValueError) as info:
        camfast.cam_consistency_loss(real, fake, f, g, reduction=reduction, backend=backend)
    assert str(info.value) == f"reduction: expected one of ('mean', 'sum', 'none'), got {reduction!r}"


def test_other_errors_raised_through_the_op_pass_unchanged(monkeypatch):
    """Only input and backend errors send the API to its checks (and the op a second time); an
    exception a hook raises through the op propagates as it is, after one call."""
    from camfast import api

    if not camfast.backends()["cpu"]["available"]:
        pytest.skip("camfast._C CPU kernels not built")

    class Stop(Exception):
        pass

    calls = []

    def op(*args):
        calls.append(args)
        raise Stop("from a hook")

    monkeypatch.setattr(api, "_loss_op", lambda: op)
    with pytest.raises(Stop, match="from a hook"):
        camfast.cam_consistency_loss(*_inputs(), backend="cpu")
    assert len(calls) == 1


@pytest.mark.parametrize("normalize", [None, 3])
def test_bad_normalize_is_a_value_error(normalize):
    real, fake, f, g = _inputs()
    with pytest.raises(ValueError, match="normalize"):
        camfast.cam_consistency_loss(real, fake, f, g, normalize=normalize)
    with pytest.raises(ValueError, match="normalize"):
        camfast.grad_cam_mask(f, g, normalize=normalize)


def test_mismatched_sources():
    real, fake, f, g = _inputs()
    with pytest.raises(ValueError, match="2 feats and 1 grads"):
        camfast.cam_consistency_loss(real, fake, [f, f], [g])
    f2 = torch.randn(2, 4, 5, 4)
    with pytest.raises(ValueError, match=r"feats\[1\].*unioned"):
        camfast.cam_consistency_loss(real, fake, [f, f2], [g, torch.randn_like(f2)])
    f3 = torch.randn(2, 4, 3, 4, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"feats\[1\]"):
        camfast.cam_consistency_loss(real, fake, [f, f3], [g, f3])
    # Sources may differ in channels.
    f4 = torch.randn(2, 7, 3, 4)
    out = camfast.cam_consistency_loss(real, fake, [f, f4], [g, torch.randn_like(f4)])
    assert torch.isfinite(out)


def test_grad_cam_mask_bad_size():
    _, _, f, g = _inputs()
    with pytest.raises(TypeError, match="size"):
        camfast.grad_cam_mask(f, g, (8.0, 9))
    with pytest.raises(ValueError, match="size"):
        camfast.grad_cam_mask(f, g, (0, 9))


def test_backends_report():
    info = camfast.backends()
    assert info["reference"]["available"]
    for name in ("cpu", "cuda", "triton"):
        expected = {"available", "why_not"} | ({"self_check"} if name in ("cuda", "triton") else set())
        assert set(info[name]) == expected
        assert info[name]["available"] == (info[name]["why_not"] is None)
    assert info["auto"]["cpu"] in ("cpu", "reference")
    if not torch.cuda.is_available():
        assert not info["cuda"]["available"] and info["cuda"]["why_not"]
        with pytest.raises(RuntimeError, match="not available"):
            real, fake, f, g = _inputs()
            camfast.cam_consistency_loss(real, fake, f, g, backend="cuda")


def test_build_info_fields():
    info = camfast.build_info()
    assert info["version"] == camfast.__version__
    assert {"extension_loaded", "extension_stale", "cuda_kernels", "cuda_archs", "torch"} <= set(info)
    if info["extension_loaded"] and not info["extension_stale"]:
        assert camfast.backends()["cpu"]["available"]


def test_extension_is_built_in_ci():
    """In CI (`make test`) the extension must be present: the fused path is what we ship."""
    import os

    if os.environ.get("CI") != "true":
        pytest.skip("only enforced in CI")
    info = camfast.build_info()
    assert info["extension_loaded"] and not info["extension_stale"], info
