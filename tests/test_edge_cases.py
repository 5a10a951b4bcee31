"""The op contract at its edges, the same for every backend (docs/kernels.md): empty inputs,
validation of direct calls through torch.ops.camfast.*, and second-order gradients.

Backends: the C++ ops (CPU here, CUDA where a GPU is), the Triton ops (interpreted on the CPU
without a GPU). Outputs are poisoned (NaN-filled) on allocation, so an element a kernel leaves
unwritten shows.
"""
import pytest
import torch

import camfast

from conftest import fused_backends, fused_ops, poisoned, rand

BACKENDS = fused_backends()
if not BACKENDS:
    pytest.skip("no fused backend is available", allow_module_level=True)
IDS = [b for b, _ in BACKENDS]


# ---------------------------------------------------------------- empty inputs

@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("B,Cs,h,w", [
    (0, (3,), 4, 5),          # no samples
    (2, (3,), 0, 5),          # h = 0 (used to segfault on the CPU)
    (2, (3,), 4, 0),          # w = 0
    (2, (3, 2), 0, 0),        # S = 2, nothing
])
def test_cam_mask_empty(backend, device, B, Cs, h, w):
    mask_op, mask_bwd, _, _ = fused_ops(backend)
    feats = [rand(B, C, h, w, device=device) for C in Cs]
    grads = [rand(B, C, h, w, device=device) for C in Cs]
    with poisoned(backend):
        u = mask_op(feats, grads, "minmax", 1e-6)
        assert u.shape == (B, h, w) and u.dtype == torch.float32
        df, dg = mask_bwd(torch.zeros(B, h, w, device=device), feats, grads, "minmax", 1e-6, True, True)
    assert [t.shape for t in df] == [f.shape for f in feats]
    assert [t.shape for t in dg] == [g.shape for g in grads]


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("normalize", ["minmax", "max"])
def test_cam_mask_source_without_channels(backend, device, normalize):
    """A source with C = 0 has a zero CAM (n = 0): alone it gives u = 0, in a union it changes
    nothing; its gradients are empty and the other source's are unchanged."""
    mask_op, mask_bwd, _, _ = fused_ops(backend)
    f1, g1 = rand(2, 3, 4, 5, device=device), rand(2, 3, 4, 5, device=device) + 0.3
    f0, g0 = rand(2, 0, 4, 5, device=device), rand(2, 0, 4, 5, device=device)
    gu = rand(2, 4, 5, device=device)
    with poisoned(backend):
        assert torch.equal(mask_op([f0], [g0], normalize, 1e-6), torch.zeros(2, 4, 5, device=device))
        u = mask_op([f0, f1], [g0, g1], normalize, 1e-6)
        df, dg = mask_bwd(gu, [f0, f1], [g0, g1], normalize, 1e-6, True, True)
        want_u = mask_op([f1], [g1], normalize, 1e-6)
        # n_0 = 0 ties with n_1 where n_1 = 0: there the gradient is split between them.
        gu_1 = gu * torch.where(want_u == 0, 0.5, 1.0)
        want_df, want_dg = mask_bwd(gu_1, [f1], [g1], normalize, 1e-6, True, True)
    assert torch.equal(u, want_u)
    assert df[0].shape == f0.shape and dg[0].shape == g0.shape
    torch.testing.assert_close(df[1], want_df[0])
    torch.testing.assert_close(dg[1], want_dg[0])


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("shape", [(0, 3, 8, 9), (2, 0, 8, 9), (2, 3, 0, 9), (2, 3, 8, 0)],
                         ids=["B0", "K0", "H0", "W0"])
def test_masked_l1_empty_images(backend, device, shape):
    """No pixels: the loss is 0 for every reduction (a mean over nothing is 0, not NaN), the image
    gradients have no elements, and dmask is 0."""
    _, _, l1, l1_bwd = fused_ops(backend)
    B = shape[0]
    real, fake = rand(*shape, device=device), rand(*shape, device=device)
    mask = torch.rand(B, 3, 4).to(device)
    with poisoned(backend):
        for reduction in ("mean", "sum", "none"):
            out = l1(real, fake, mask, reduction)
            assert out.shape == ((B,) if reduction == "none" else ()), reduction
            assert torch.equal(out, torch.zeros_like(out)), (reduction, out)
            g = torch.ones(B if reduction == "none" else (), device=device)
            dr, df, dm = l1_bwd(g, real, fake, mask, reduction, True, True, True)
            assert dr.shape == real.shape and df.shape == fake.shape and dm.shape == mask.shape
            assert torch.equal(dm, torch.zeros_like(dm)), (reduction, dm)


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("mask_shape", [(2, 0, 4), (2, 3, 0)])
def test_masked_l1_empty_mask_is_rejected(backend, device, mask_shape):
    """An empty mask cannot be sampled (the CPU op used to segfault)."""
    _, _, l1, l1_bwd = fused_ops(backend)
    real, fake = rand(2, 3, 8, 9, device=device), rand(2, 3, 8, 9, device=device)
    mask = torch.rand(*mask_shape).to(device)
    with pytest.raises(ValueError, match=r"mask must have h, w >= 1"):
        l1(real, fake, mask, "mean")
    with pytest.raises(ValueError, match=r"mask must have h, w >= 1"):
        l1_bwd(torch.ones((), device=device), real, fake, mask, "mean", True, True, True)


# ---------------------------------------------------------------- validation of direct calls

def _cam_args(device):
    f, g = rand(2, 3, 4, 5, device=device), rand(2, 3, 4, 5, device=device)
    return [f], [g]


CAM_BAD = [
    # (what to change, exception, words in the message)
    # With no tensor at all the dispatcher cannot pick a C++ kernel and says so itself.
    ("feats=[]", (ValueError, NotImplementedError), ["empty list"]),
    ("grads=2", ValueError, ["feats and grads", "same length"]),
    ("feats0_3d", ValueError, ["feats[0]", "[B, C, h, w]"]),
    ("grads_shape", ValueError, ["grads[0]", "shape of feats[0]"]),
    ("feats1_hw", ValueError, ["feats[1]", "h=4, w=5"]),
    ("int_dtype", TypeError, ["feats[0]", "Long"]),
    ("mixed_dtype", TypeError, ["grads[1]", "dtype of feats[0]"]),
]


def _bad_cam(change, device):
    feats, grads = _cam_args(device)
    f, g = feats[0], grads[0]
    if change == "feats=[]":
        return [], []
    if change == "grads=2":
        return feats, grads * 2
    if change == "feats0_3d":
        return [f[0]], [g[0]]
    if change == "grads_shape":
        return feats, [g[:, :2]]
    if change == "feats1_hw":
        return [f, f[:, :, :3]], [g, g[:, :, :3]]
    if change == "int_dtype":
        return [f.long()], [g.long()]
    if change == "mixed_dtype":
        return [f, f], [g, g.double()]
    raise AssertionError(change)


def _names(words, backend):
    # Triton names the dtype in torch's spelling ("torch.int64"), C++ in c10's ("Long").
    return [("int64" if (w == "Long" and backend == "triton") else w) for w in words]


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("change,exc,words", CAM_BAD, ids=[c[0] for c in CAM_BAD])
def test_cam_mask_direct_call_names_the_argument(backend, device, change, exc, words):
    mask_op, mask_bwd, _, _ = fused_ops(backend)
    feats, grads = _bad_cam(change, device)
    with pytest.raises(exc) as info:
        mask_op(feats, grads, "minmax", 1e-6)
    for word in _names(words, backend):
        assert word in str(info.value), (word, str(info.value))
    with pytest.raises(exc):
        mask_bwd(torch.zeros(2, 4, 5, device=device), feats, grads, "minmax", 1e-6, True, True)


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
def test_cam_mask_backward_checks_grad_mask(backend, device):
    _, mask_bwd, _, _ = fused_ops(backend)
    feats, grads = _cam_args(device)
    with pytest.raises(ValueError, match=r"grad_mask must be \[B=2, h=4, w=5\]"):
        mask_bwd(torch.zeros(2, 5, 4, device=device), feats, grads, "minmax", 1e-6, True, True)
    with pytest.raises(TypeError, match="grad_mask"):
        mask_bwd(torch.zeros(2, 4, 5, dtype=torch.int32, device=device), feats, grads, "minmax", 1e-6, True, True)


L1_BAD = [
    ("real_3d", ValueError, ["real", "[B, K, H, W]"]),
    ("fake_shape", ValueError, ["fake", "shape of real"]),
    ("fake_dtype", TypeError, ["fake", "dtype of real"]),
    ("mask_2d", ValueError, ["mask", "[B=2, h, w]"]),
    ("mask_batch", ValueError, ["mask", "[B=2, h, w]"]),
    ("mask_dtype", TypeError, ["mask must be", "for images of dtype"]),
    ("int_images", TypeError, ["real", "Long"]),
]


def _l1_args(device):
    return rand(2, 3, 8, 9, device=device), rand(2, 3, 8, 9, device=device), torch.rand(2, 3, 4).to(device)


def _bad_l1(change, device):
    real, fake, mask = _l1_args(device)
    return {
        "real_3d": (real[0], fake[0], mask),
        "fake_shape": (real, fake[:, :2], mask),
        "fake_dtype": (real, fake.double(), mask),
        "mask_2d": (real, fake, mask[0]),
        "mask_batch": (real, fake, mask[:1]),
        "mask_dtype": (real, fake, mask.double()),
        "int_images": (real.long(), fake.long(), mask),
    }[change]


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("change,exc,words", L1_BAD, ids=[c[0] for c in L1_BAD])
def test_masked_l1_direct_call_names_the_argument(backend, device, change, exc, words):
    _, _, l1, l1_bwd = fused_ops(backend)
    real, fake, mask = _bad_l1(change, device)
    with pytest.raises(exc) as info:
        l1(real, fake, mask, "mean")
    for word in _names(words, backend):
        assert word in str(info.value), (word, str(info.value))
    with pytest.raises(exc):
        l1_bwd(torch.ones((), device=device), real, fake, mask, "mean", True, True, True)


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
def test_masked_l1_backward_checks_grad_out(backend, device):
    _, _, _, l1_bwd = fused_ops(backend)
    real, fake, mask = _l1_args(device)
    with pytest.raises(ValueError, match=r"grad_out must have 2 element\(s\)"):
        l1_bwd(torch.ones(3, device=device), real, fake, mask, "none", True, True, True)
    with pytest.raises(TypeError, match="grad_out"):
        l1_bwd(torch.ones((), dtype=torch.int64, device=device), real, fake, mask, "mean", True, True, True)


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
def test_errors_have_one_form(backend, device):
    """Every backend's message begins "camfast.<op> [<backend>]: <argument> " (docs/kernels.md)."""
    mask_op, mask_bwd, l1, l1_bwd = fused_ops(backend)
    feats, grads = _cam_args(device)
    real, fake, mask = _l1_args(device)
    bad = [
        ("cam_mask", "normalize", ValueError, lambda: mask_op(feats, grads, "l2", 1e-6)),
        ("cam_mask", r"grads\[0\]", ValueError, lambda: mask_op(feats, [grads[0][:, :2]], "minmax", 1e-6)),
        ("cam_mask", r"feats\[0\]", TypeError, lambda: mask_op([feats[0].long()], [grads[0].long()], "minmax", 1e-6)),
        ("cam_mask_backward", "grad_mask", ValueError,
         lambda: mask_bwd(torch.zeros(2, 5, 4, device=device), feats, grads, "minmax", 1e-6, True, True)),
        ("masked_l1", "mask", TypeError, lambda: l1(real, fake, mask.double(), "mean")),
        ("masked_l1", "reduction", ValueError, lambda: l1(real, fake, mask, "avg")),
        ("masked_l1_backward", "grad_out", ValueError,
         lambda: l1_bwd(torch.ones(3, device=device), real, fake, mask, "none", True, True, True)),
    ]
    loss = getattr(torch.ops.camfast, "triton_cam_consistency" if backend == "triton" else "cam_consistency")
    bad += [("cam_consistency", "eps", ValueError, lambda: loss(real, fake, feats, grads, "minmax", 0.0, "mean")),
            ("cam_consistency", "normalize", ValueError, lambda: loss(real, fake, feats, grads, "l2", 1e-6, "mean")),
            ("cam_consistency", "reduction", ValueError, lambda: loss(real, fake, feats, grads, "max", 1e-6, "avg")),
            ("cam_consistency", "feats", ValueError, lambda: loss(real[:1], fake[:1], feats, grads, "max", 1e-6, "sum"))]
    for op, arg, exc, call in bad:
        with pytest.raises(exc, match=rf"^camfast\.{op} \[{backend}\]: {arg} "):
            call()


# ---------------------------------------------------------------- second-order gradients

def _double_backward_inputs(device, dtype):
    g = torch.Generator().manual_seed(3)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)  # noqa: E731
    real, fake = r(2, 3, 9, 7), r(2, 3, 9, 7).requires_grad_(True)
    feats, grads = r(2, 4, 3, 4).requires_grad_(True), (r(2, 4, 3, 4) + 0.3).requires_grad_(True)
    return real, fake, feats, grads


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
@pytest.mark.parametrize("wrt", ["grads", "feats", "fake"])
def test_second_order_gradient_raises_a_clear_error(backend, device, wrt):
    """A second derivative through a fused op used to come out as 0 (the reference: nonzero).
    First-order gradients taken with create_graph=True stay right; differentiating them again
    raises, naming the op and the backend that supports it."""
    dtype = torch.float32 if backend == "triton" else torch.float64
    real, fake, feats, grads = _double_backward_inputs(device, dtype)
    loss = camfast.cam_consistency_loss(real, fake, feats, grads, backend=backend)
    d_feats, d_fake = torch.autograd.grad(loss, [feats, fake], create_graph=True)
    ref = camfast.cam_consistency_loss(real, fake, feats, grads, backend="reference")
    r_feats, r_fake = torch.autograd.grad(ref, [feats, fake], create_graph=True)
    torch.testing.assert_close(d_feats, r_feats, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(d_fake, r_fake, rtol=1e-4, atol=1e-6)
    (want,) = torch.autograd.grad((r_feats.sum() + r_fake.sum()), [dict(grads=grads, feats=feats, fake=fake)[wrt]],
                                  allow_unused=True)
    if wrt == "grads":
        assert want is not None and want.abs().max() > 0  # the reference's answer is not 0
    with pytest.raises(RuntimeError, match="once-differentiable") as info:
        torch.autograd.grad(d_feats.sum() + d_fake.sum(), [dict(grads=grads, feats=feats, fake=fake)[wrt]])
    assert "backend='reference'" in str(info.value) and "camfast::" in str(info.value)


@pytest.mark.parametrize("backend,device", BACKENDS, ids=IDS)
def test_first_order_unchanged_without_create_graph(backend, device):
    """The usual backward (no create_graph) takes the plain path and gives the same numbers."""
    dtype = torch.float32 if backend == "triton" else torch.float64
    real, fake, feats, grads = _double_backward_inputs(device, dtype)
    loss = camfast.cam_consistency_loss(real, fake, feats, grads, backend=backend)
    a = torch.autograd.grad(loss, [fake, feats, grads], retain_graph=True)
    b = torch.autograd.grad(loss, [fake, feats, grads], create_graph=True)
    for x, y in zip(a, b):
        assert not x.requires_grad and torch.equal(x, y.detach())
