"""The CUDA kernels (csrc/cuda/) called directly through torch.ops.camfast.*, against the
pure-PyTorch reference evaluated in float64 on the same (dtype-rounded) inputs.

Covers values and every gradient for fp32/fp16/bf16/fp64 at awkward shapes, ties, an all-zero
CAM, bitwise determinism, independence from memory alignment (vector vs scalar paths), the
current stream, and that unrequested gradients are neither returned nor written. Every test runs
with output poisoning on (new outputs are NaN-filled), so a kernel that skips an element fails.

Skipped without a GPU. CAMFAST_TEST_DEVICE=cpu runs the device-neutral tests against whatever
kernels are registered for the CPU (the CUDA-only ones skip).
"""
import glob
import os

import pytest
import torch

DEVICE = os.environ.get("CAMFAST_TEST_DEVICE", "cuda")
if DEVICE == "cuda" and not torch.cuda.is_available():
    pytest.skip("CUDA is not available", allow_module_level=True)

import camfast  # noqa: E402  (loads camfast._C, which registers the ops)
from camfast import reference  # noqa: E402
from conftest import compare, poisoned  # noqa: E402


def _load_ops():
    try:
        torch.ops.camfast.cam_mask  # noqa: B018
    except (AttributeError, RuntimeError):
        for so in glob.glob(os.path.join(os.path.dirname(camfast.__file__), "_C*.so")):
            torch.ops.load_library(so)
    return torch.ops.camfast


ops = _load_ops()
on_cuda = pytest.mark.skipif(DEVICE != "cuda", reason="CUDA-specific")

F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
DTYPES = [F32, F16, BF16, F64]
EPS = 1e-6


def acc(dtype):
    return F64 if dtype == F64 else F32


@pytest.fixture(autouse=True)
def _poison():
    with poisoned("cuda"):
        yield


def rand(shape, dtype, seed, kind="normal"):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g, dtype=F64) if kind == "normal" else torch.rand(shape, generator=g, dtype=F64)
    return t.to(dtype).to(DEVICE)


def bits(t):
    """A view of t's bits, for exact comparisons (distinguishes -0.0 and +0.0, NaN payloads)."""
    return t.contiguous().view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def assert_bitwise_equal(a, b, what):
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert torch.equal(bits(a), bits(b)), f"{what}: results differ bitwise"


def expect_close(got, want, what, scale=0.0):
    """conftest.compare, atol relative to ``scale`` if larger than max|want|. fp32 results are
    sums of up to ~1e6 fp32 terms: 3e-5 of the scale; fp16 ones may be subnormal, 6e-8 apart."""
    compare(got, want, what, scale, floor=6e-8 if got.dtype == F16 else 0.0, float32=(3e-5, 3e-5))


def misaligned(t):
    """The same values, contiguous, but with a data pointer that is not 16-byte aligned."""
    buf = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)
    out = buf[1:].view(t.shape)
    out.copy_(t)
    assert out.data_ptr() % 16 != 0
    return out


# ---------------------------------------------------------------- reference in float64

def ref_cam(feats, grads, normalize, eps, gu):
    f64 = [f.detach().double().requires_grad_(True) for f in feats]
    g64 = [g.detach().double().requires_grad_(True) for g in grads]
    u = reference.lowres_mask(f64, g64, normalize, eps)
    d = torch.autograd.grad(u, f64 + g64, gu.double())
    return u.detach(), list(d[: len(feats)]), list(d[len(feats):])


def ref_l1(real, fake, mask, reduction, gout):
    r, f, m = (t.detach().double().requires_grad_(True) for t in (real, fake, mask))
    out = reference.masked_l1(r, f, m, reduction)
    d = torch.autograd.grad(out, (r, f, m), gout.double())
    return out.detach(), d


def grad_scales(feats, grads, normalize, eps, gu, want_df, want_dg):
    """Natural magnitudes of dfeats and dgrads: |gu| / R times |alpha| (resp. |feats|)."""
    g_pre = 0.0
    f_max = a_max = 0.0
    for f, g in zip(feats, grads):
        cam = reference.source_cam(f.double(), g.double())           # [B, h, w]
        mx = cam.amax(dim=(1, 2))
        R = mx - cam.amin(dim=(1, 2)) + eps if normalize == "minmax" else mx + eps
        g_pre = max(g_pre, gu.double().abs().max().item() / R.min().item())
        a_max = max(a_max, g.double().mean(dim=(2, 3)).abs().max().item())
        f_max = max(f_max, f.double().abs().max().item())
    sf = max(max(t.abs().max().item() for t in want_df), g_pre * a_max)
    sg = max(max(t.abs().max().item() for t in want_dg), g_pre * f_max)
    return sf, sg


def check_cam(feats, grads, normalize, eps=EPS, gu_seed=99, what=""):
    dtype = feats[0].dtype
    S = len(feats)
    u = ops.cam_mask(feats, grads, normalize, eps)
    assert u.dtype == acc(dtype) and u.shape == (feats[0].shape[0],) + tuple(feats[0].shape[2:])
    gu = rand(u.shape, acc(dtype), gu_seed)
    want_u, want_df, want_dg = ref_cam(feats, grads, normalize, eps, gu)
    expect_close(u, want_u, f"{what} mask")
    df, dg = ops.cam_mask_backward(gu, feats, grads, normalize, eps, True, True)
    assert len(df) == S and len(dg) == S
    # Tolerances scale with the size of the terms, not of the result: gpre = gn/R + (min/max
    # terms) can cancel to nearly nothing (a 1x1 CAM, a source that loses the union everywhere).
    sf, sg = grad_scales(feats, grads, normalize, eps, gu, want_df, want_dg)
    for s in range(S):
        assert df[s].dtype == dtype and df[s].shape == feats[s].shape
        assert dg[s].dtype == dtype and dg[s].shape == grads[s].shape
        expect_close(df[s], want_df[s], f"{what} dfeats[{s}]", scale=sf)
        expect_close(dg[s], want_dg[s], f"{what} dgrads[{s}]", scale=sg)
    return u, df, dg


def check_l1(real, fake, mask, reduction, what=""):
    dtype = real.dtype
    out = ops.masked_l1(real, fake, mask, reduction)
    B = real.shape[0]
    assert out.dtype == dtype and out.shape == ((B,) if reduction == "none" else ())
    gout = rand(out.shape, dtype, 7) + 0.5
    want, (wr, wf, wm) = ref_l1(real, fake, mask, reduction, gout)
    expect_close(out, want, f"{what} loss")
    dr, df, dm = ops.masked_l1_backward(gout, real, fake, mask, reduction, True, True, True)
    assert dr.dtype == dtype and dr.shape == real.shape and df.shape == fake.shape
    assert dm.dtype == mask.dtype and dm.shape == mask.shape
    expect_close(dr, wr, f"{what} dreal")
    expect_close(df, wf, f"{what} dfake")
    expect_close(dm, wm, f"{what} dmask")
    return out, dr, df, dm


# ---------------------------------------------------------------- stage 1: cam_mask

# (B, [C_s], h, w)
CAM_SHAPES = [
    (1, [1], 1, 1),          # a single pixel: R = eps, n = 0
    (1, [1], 3, 5),          # B=1, C=1, h != w
    (2, [7], 4, 3),
    (3, [19], 5, 7),         # odd sizes, two channel chunks, P not a multiple of the vector width
    (2, [40], 16, 16),       # vectorised path, three channel chunks
    (1, [300], 5, 7),        # many channel chunks
    (2, [3], 40, 41),        # P > 1024: several pixels per thread
    (2, [5, 18], 3, 4),      # S=2, different channel counts
    (1, [2, 3, 4], 6, 6),    # S=3
]


def cam_inputs(B, Cs, h, w, dtype, seed=0):
    feats = [rand((B, C, h, w), dtype, seed + 10 * s) for s, C in enumerate(Cs)]
    grads = [rand((B, C, h, w), dtype, seed + 10 * s + 1) + 0.2 for s, C in enumerate(Cs)]
    return feats, grads


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("normalize", ["minmax", "max"])
@pytest.mark.parametrize("shape", CAM_SHAPES, ids=lambda s: f"B{s[0]}-C{'+'.join(map(str, s[1]))}-{s[2]}x{s[3]}")
def test_cam_mask_matches_reference(shape, normalize, dtype):
    B, Cs, h, w = shape
    feats, grads = cam_inputs(B, Cs, h, w, dtype)
    # With several sources and eps = 1e-6 the normalised maxima are 1 - O(1e-7): two sources
    # peaking at the same pixel can round to the same fp32 value (a union tie that the fp64
    # reference does not see), so the random multi-source cases use a larger eps.
    eps = EPS if len(Cs) == 1 else 1e-2
    check_cam(feats, grads, normalize, eps, what=f"{shape} {normalize}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("normalize", ["minmax", "max"])
def test_cam_ties_at_max(dtype, normalize):
    """Pixels that share the maximum exactly (identical channel columns) split its gradient.

    Dyadic values (P = 32, grads in quarters, feats +-8 at the tied pixels) make the tied
    pre-activations exact in any summation order, so the reference sees the same ties."""
    feats, grads = cam_inputs(2, [6], 4, 8, dtype, seed=3)
    grads = [(torch.round(g.double() * 4) / 4).to(dtype) for g in grads]
    a = grads[0].double().mean(dim=(2, 3))                       # [B, C]
    big = (8 * torch.sign(a)).to(dtype)                          # aligned with alpha: a large CAM
    for col in (0, 3):
        feats[0][:, :, :, col] = big[:, :, None]                 # 2 columns x 4 rows tied at the max
    u, _, _ = check_cam(feats, grads, normalize, what="ties")
    assert (u[:, :, 0] == u.amax(dim=(1, 2))[:, None]).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("normalize", ["minmax", "max"])
def test_cam_positive_everywhere(dtype, normalize):
    """No ReLU zeros: the minimum is a single pixel and its gradient reaches the inputs."""
    feats, grads = cam_inputs(2, [5], 3, 7, dtype, seed=4)
    feats = [(f.abs() + 0.5).to(dtype) for f in feats]
    grads = [g.abs().to(dtype) for g in grads]
    check_cam(feats, grads, normalize, what="positive")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("normalize", ["minmax", "max"])
def test_cam_identical_sources_split_the_union(dtype, normalize):
    feats, grads = cam_inputs(2, [6], 4, 5, dtype, seed=5)
    f2, g2 = [feats[0], feats[0].clone()], [grads[0], grads[0].clone()]
    u, df, dg = check_cam(f2, g2, normalize, what="identical sources")
    assert_bitwise_equal(df[0], df[1], "dfeats of identical sources")
    assert_bitwise_equal(dg[0], dg[1], "dgrads of identical sources")
    u1 = ops.cam_mask(feats, grads, normalize, EPS)
    assert_bitwise_equal(u, u1, "union of a source with itself")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("normalize", ["minmax", "max"])
@pytest.mark.parametrize("S", [1, 2])
def test_cam_all_zero(dtype, normalize, S):
    """A source whose CAM is zero everywhere gives n = 0 and zero gradients."""
    feats, grads = cam_inputs(2, [4] * S, 5, 3, dtype, seed=6)
    grads[0] = torch.zeros_like(grads[0])                        # alpha = 0
    u, df, dg = check_cam(feats, grads, normalize, eps=EPS if S == 1 else 1e-2, what="zero cam")
    assert torch.count_nonzero(df[0]) == 0 and torch.count_nonzero(dg[0]) == 0
    if S == 1:
        assert torch.count_nonzero(u) == 0
    else:
        assert_bitwise_equal(u, ops.cam_mask(feats[1:], grads[1:], normalize, 1e-2), "union with a zero CAM")


# ---------------------------------------------------------------- stage 2: masked_l1

# (B, K, H, W, h, w)
L1_SHAPES = [
    (1, 1, 1, 1, 1, 1),
    (2, 3, 7, 5, 3, 2),        # H, W not multiples of h, w
    (1, 2, 2, 3, 5, 7),        # H < h, W < w: down-sampling
    (2, 1, 13, 11, 4, 4),
    (1, 1, 9, 1, 4, 1),        # w = 1, W = 1
    (2, 3, 64, 64, 16, 16),    # vectorised path
    (1, 3, 33, 130, 5, 9),     # several items per row, odd everything
    (1, 2, 3, 2, 10, 9),
]


def l1_inputs(B, K, H, W, h, w, dtype, seed=0):
    real = rand((B, K, H, W), dtype, seed)
    fake = rand((B, K, H, W), dtype, seed + 1)
    fake[..., 0, :] = real[..., 0, :]                            # sign(0) = 0 on a whole row
    mask = rand((B, h, w), acc(dtype), seed + 2, kind="uniform")
    return real, fake, mask


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", L1_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_masked_l1_matches_reference(shape, reduction, dtype):
    check_l1(*l1_inputs(*shape, dtype), reduction, what=f"{shape} {reduction}")


@pytest.mark.parametrize("dtype", [F32, F16, F64], ids=str)
def test_masked_l1_very_wide_rows(dtype):
    """Rows too wide for dM in shared memory use the global scratch fallback."""
    check_l1(*l1_inputs(2, 1, 3, 12007, 3, 5, dtype), "mean", what="wide")


def test_masked_l1_identical_images():
    real, _, mask = l1_inputs(2, 3, 9, 7, 3, 3, F32)
    out, dr, df, dm = check_l1(real, real.clone(), mask, "sum", what="identical")
    assert out.item() == 0
    assert torch.count_nonzero(dr) == 0 and torch.count_nonzero(df) == 0 and torch.count_nonzero(dm) == 0


# ---------------------------------------------------------------- both stages chained

@pytest.mark.parametrize("dtype", [F32, BF16], ids=str)
@pytest.mark.parametrize("normalize", ["minmax", "max"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_chained_loss_matches_reference(dtype, normalize, reduction):
    """cam_mask -> masked_l1 and the two backwards chained by hand == reference autograd."""
    B, K, H, W, h, w = 3, 3, 37, 29, 5, 4
    real, fake, _ = l1_inputs(B, K, H, W, h, w, dtype, seed=11)
    feats, grads = cam_inputs(B, [6, 9], h, w, dtype, seed=12)
    eps = 1e-2
    u = ops.cam_mask(feats, grads, normalize, eps)
    loss = ops.masked_l1(real, fake, u, reduction)
    gout = rand(loss.shape, dtype, 13) + 0.5
    dr, df, dm = ops.masked_l1_backward(gout, real, fake, u, reduction, True, True, True)
    dfe, dgr = ops.cam_mask_backward(dm, feats, grads, normalize, eps, True, True)

    leaves = [t.detach().double().requires_grad_(True) for t in [real, fake, *feats, *grads]]
    want = reference.cam_consistency_loss(leaves[0], leaves[1], leaves[2:4], leaves[4:6], normalize, eps, reduction)
    wgrads = torch.autograd.grad(want, leaves, gout.double())
    expect_close(loss, want, "loss")
    for name, got, exp in zip(["real", "fake", "feats0", "feats1", "grads0", "grads1"], [dr, df, *dfe, *dgr], wgrads):
        expect_close(got, exp, f"d{name}")


@on_cuda
@pytest.mark.parametrize("dtype", [F32, BF16], ids=str)
def test_realistic_size(dtype):
    """The benchmark's shape: B=16, 3x128x128 images, 256x16x16 features, two sources."""
    real, fake, _ = l1_inputs(16, 3, 128, 128, 16, 16, dtype, seed=21)
    feats, grads = cam_inputs(16, [256, 256], 16, 16, dtype, seed=22)
    u, _, _ = check_cam(feats, grads, "minmax", eps=1e-2, what="realistic")
    check_l1(real, fake, u, "mean", what="realistic")


# ---------------------------------------------------------------- determinism and layout

def _run_all(real, fake, feats, grads, normalize="minmax", reduction="mean", eps=1e-2):
    u = ops.cam_mask(feats, grads, normalize, eps)
    loss = ops.masked_l1(real, fake, u, reduction)
    g = torch.ones_like(loss)
    dr, df, dm = ops.masked_l1_backward(g, real, fake, u, reduction, True, True, True)
    dfe, dgr = ops.cam_mask_backward(dm, feats, grads, normalize, eps, True, True)
    return [u, loss, dr, df, dm, *dfe, *dgr]


@pytest.mark.parametrize("dtype", [F32, F16], ids=str)
def test_bitwise_deterministic(dtype):
    real, fake, _ = l1_inputs(8, 3, 96, 80, 12, 10, dtype, seed=31)
    feats, grads = cam_inputs(8, [64, 40], 12, 10, dtype, seed=32)
    a = _run_all(real, fake, feats, grads)
    for _ in range(2):
        b = _run_all(real, fake, feats, grads)
        for i, (x, y) in enumerate(zip(a, b)):
            assert_bitwise_equal(x, y, f"output {i}")


@on_cuda
@pytest.mark.parametrize("dtype", [F32, F16, BF16, F64], ids=str)
def test_alignment_does_not_change_results(dtype):
    """Misaligned inputs take the scalar path; it must give the vector path's bits."""
    real, fake, _ = l1_inputs(2, 3, 16, 32, 4, 8, dtype, seed=41)
    feats, grads = cam_inputs(2, [20], 4, 8, dtype, seed=42)
    a = _run_all(real, fake, feats, grads)
    b = _run_all(misaligned(real), misaligned(fake), [misaligned(f) for f in feats], [misaligned(g) for g in grads])
    for i, (x, y) in enumerate(zip(a, b)):
        assert_bitwise_equal(x, y, f"output {i}")


def test_non_contiguous_inputs():
    real, fake, _ = l1_inputs(2, 3, 9, 8, 4, 4, F32, seed=51)
    feats, grads = cam_inputs(2, [5], 4, 4, F32, seed=52)
    nc = lambda t: t.transpose(2, 3).contiguous().transpose(2, 3)  # noqa: E731
    rt, ft = nc(real), nc(feats[0])
    assert not rt.is_contiguous() and not ft.is_contiguous()
    a = _run_all(real, fake, feats, grads)
    b = _run_all(rt, fake, [ft], grads)
    for i, (x, y) in enumerate(zip(a, b)):
        assert_bitwise_equal(x, y.contiguous(), f"output {i}")


# ---------------------------------------------------------------- only requested gradients

def test_only_requested_gradients():
    real, fake, mask = l1_inputs(2, 3, 11, 9, 4, 3, F32, seed=61)
    feats, grads = cam_inputs(2, [5, 7], 4, 3, F32, seed=62)
    g = torch.ones((), device=DEVICE)
    full = ops.masked_l1_backward(g, real, fake, mask, "mean", True, True, True)
    for need in [(False, True, False), (True, False, False), (False, False, True), (False, False, False)]:
        got = ops.masked_l1_backward(g, real, fake, mask, "mean", *need)
        for n, x, y in zip(need, got, full):
            if n:
                assert_bitwise_equal(x, y, "requested gradient")
            else:
                assert x.shape == (0,) and x.dtype == y.dtype
    gu = rand(mask.shape, F32, 63)
    f_full, g_full = ops.cam_mask_backward(gu, feats, grads, "minmax", EPS, True, True)
    df, dg = ops.cam_mask_backward(gu, feats, grads, "minmax", EPS, True, False)
    assert len(dg) == 0 and len(df) == 2
    for x, y in zip(df, f_full):
        assert_bitwise_equal(x, y, "dfeats alone")
    df, dg = ops.cam_mask_backward(gu, feats, grads, "minmax", EPS, False, True)
    assert len(df) == 0 and len(dg) == 2
    for x, y in zip(dg, g_full):
        assert_bitwise_equal(x, y, "dgrads alone")
    assert ops.cam_mask_backward(gu, feats, grads, "minmax", EPS, False, False) == ([], [])


# ---------------------------------------------------------------- streams

@on_cuda
def test_runs_on_the_current_stream():
    """Inputs produced on a side stream behind a long GPU sleep: a kernel that ran on another
    stream would read them before they exist."""
    real, fake, _ = l1_inputs(4, 3, 64, 48, 8, 6, F32, seed=71)
    feats, grads = cam_inputs(4, [32, 16], 8, 6, F32, seed=72)
    want = _run_all(real, fake, feats, grads)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)                           # ~0.1 s of GPU time on `side`
        r2, f2 = real * 1.0, fake * 1.0
        fe2, gr2 = [f * 1.0 for f in feats], [g * 1.0 for g in grads]
        got = _run_all(r2, f2, fe2, gr2)
    side.synchronize()
    for i, (x, y) in enumerate(zip(got, want)):
        assert_bitwise_equal(x, y, f"output {i} on a side stream")


@on_cuda
def test_no_host_synchronisation():
    """The ops enqueue work and return while the GPU is still busy."""
    real, fake, mask = l1_inputs(2, 3, 32, 32, 8, 8, F32, seed=81)
    feats, grads = cam_inputs(2, [16], 8, 8, F32, seed=82)
    _run_all(real, fake, feats, grads)                           # warm up the allocator
    torch.cuda.synchronize()
    torch.cuda._sleep(500_000_000)
    done = torch.cuda.Event()
    _run_all(real, fake, feats, grads)
    done.record()
    assert not done.query(), "an op waited for the GPU"
    torch.cuda.synchronize()


# ---------------------------------------------------------------- direct calls with bad input

@on_cuda
def test_rejects_mixed_devices_and_too_many_sources():
    real, fake, mask = l1_inputs(2, 3, 8, 8, 4, 4, F32, seed=93)
    with pytest.raises(ValueError, match="device"):
        ops.masked_l1(real, fake, mask.cpu(), "mean")
    feats, grads = cam_inputs(1, [1] * 33, 2, 2, F32, seed=94)
    with pytest.raises(ValueError, match="sources"):
        ops.cam_mask(feats, grads, "minmax", EPS)


@on_cuda
def test_extension_has_cuda_kernels():
    info = dict(kv.split("=", 1) for kv in torch.ops.camfast._build_info().split(";") if "=" in kv)
    assert info.get("cuda") == "1", f"camfast._C was built without CUDA kernels: {info}"
