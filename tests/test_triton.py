"""The Triton backend (torch.ops.camfast.triton_*) against camfast/reference.py.

Without a GPU the kernels run under the Triton interpreter on CPU tensors
(TRITON_INTERPRET=1, set here before anything imports the kernels). The interpreter executes
every program in Python, so sizes are small (images up to 3x20x23, feats up to 5x6x7) and the
image tiles are shrunk to 4x8 so that those small images still span many tiles and windows.

Every gradient is checked through autograd: the ops are called with leaves that require
grad, .backward() runs the registered backward ops, and the grads are compared with those of
the reference under the same upstream gradient. All outputs are poisoned (NaN) on allocation,
so an element a kernel forgets to write fails the comparison.
"""
import importlib
import math
import os
import subprocess
import sys

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before the kernels are imported

import pytest  # noqa: E402

pytest.importorskip("triton")

from camfast import reference as R  # noqa: E402
from camfast import triton_ops  # noqa: E402
from conftest import compare, poisoned  # noqa: E402

K = importlib.import_module("camfast.kernels")
# import_module, not attribute access: the package re-exports the launcher *functions* under
# the submodule names.
L1 = importlib.import_module("camfast.kernels.masked_l1")

ops = torch.ops.camfast
DEVICE = "cpu" if K.INTERPRETED or not torch.cuda.is_available() else "cuda"
ON_GPU = DEVICE == "cuda"
EPS = 1e-6

# The truth is the reference run in fp64 on the same (upcast) inputs. The kernels sum in another
# order than the reference (channel blocks, tiles, tree reductions), so they carry rounding
# errors of the same kind as the reference in the input dtype, not the same bits; some
# gradients cancel almost completely (C = 1 with minmax: dgrads is O(eps) made of O(1) terms),
# which no relative tolerance covers. So Triton may be a few times as far from the truth as that
# reference is (``compare``'s ``ref``). fp32 gradients go through 1/R of the normalisation,
# which amplifies rounding: (rtol, atol) 1e-4, 1e-5 against 1e-5, 1e-6 for values.
VALUE_TOL, GRAD_TOL = (1e-5, 1e-6), (1e-4, 1e-5)


@pytest.fixture(autouse=True)
def _poison_and_small_tiles(monkeypatch):
    """Poison every output; use 4x8 image tiles so small images cover many tiles."""
    monkeypatch.setattr(L1, "TILE_H", 4)
    monkeypatch.setattr(L1, "TILE_W", 8)
    with poisoned("triton"):
        yield


def expect(actual, ref, ref64, name, fp32):
    """``actual`` against the fp64 truth ``ref64``; ``ref``, the reference in the input dtype,
    fixes the shape, the dtype and how much rounding error to expect."""
    assert (actual.shape, actual.dtype, actual.device) == (ref.shape, ref.dtype, ref.device), name
    assert torch.isfinite(actual).all(), f"{name}: non-finite values (an element left unwritten?)"
    compare(actual, ref64, name, scale=0.0, ref=ref, float32=fp32)


def randn(*shape, dtype=torch.float32):
    return torch.randn(*shape, device=DEVICE, dtype=dtype)


def sources(B, Cs, h, w, dtype=torch.float32):
    return [randn(B, C, h, w, dtype=dtype) for C in Cs], [randn(B, C, h, w, dtype=dtype) for C in Cs]


def leaves(tensors, dtype=None):
    return [t.detach().to(dtype or t.dtype).clone().requires_grad_() for t in tensors]


def check(triton_fn, reference_fn, inputs, names):
    """Run ``triton_fn(*inputs)`` and ``reference_fn(*inputs)`` (in the inputs' dtype and in
    fp64), backpropagate the same upstream gradient through all three and compare the outputs
    and the gradients of every input. Returns the Triton output."""
    a, b, c = leaves(inputs), leaves(inputs), leaves(inputs, torch.float64)
    out, ref, ref64 = triton_fn(*a), reference_fn(*b), reference_fn(*c)
    expect(out, ref, ref64, "output", VALUE_TOL)
    upstream = torch.rand(ref64.shape, dtype=torch.float64, device=ref64.device) + 0.5
    out.backward(upstream.to(out.dtype))
    ref.backward(upstream.to(ref.dtype))
    ref64.backward(upstream)
    for x, y, z, name in zip(a, b, c, names):
        expect(x.grad, y.grad, z.grad, f"d{name}", GRAD_TOL)
    return out


def check_loss(real, fake, feats, grads, normalize="minmax", reduction="mean"):
    """Full loss (both ops chained) vs reference: value and the grads of all four inputs."""
    S = len(feats)

    def fused(real, fake, *fg):
        u = ops.triton_cam_mask(list(fg[:S]), list(fg[S:]), normalize, EPS)
        return ops.triton_masked_l1(real, fake, u, reduction)

    def reference(real, fake, *fg):
        return R.cam_consistency_loss(real, fake, fg[:S], fg[S:], normalize, EPS, reduction)

    names = ["real", "fake"] + [f"feats[{s}]" for s in range(S)] + [f"grads[{s}]" for s in range(S)]
    check(fused, reference, [real, fake, *feats, *grads], names)


def check_cam_mask(feats, grads, normalize):
    """Stage 1 alone: u and the grads of feats/grads under a random upstream gradient."""
    S = len(feats)
    names = [f"feats[{s}]" for s in range(S)] + [f"grads[{s}]" for s in range(S)]
    return check(
        lambda *fg: ops.triton_cam_mask(list(fg[:S]), list(fg[S:]), normalize, EPS),
        lambda *fg: R.lowres_mask(fg[:S], fg[S:], normalize, EPS),
        [*feats, *grads], names,
    )


def test_available():
    assert triton_ops.AVAILABLE, triton_ops.WHY_NOT
    assert ON_GPU or K.INTERPRETED, "no GPU: TRITON_INTERPRET=1 must be set before camfast.kernels is imported"


def test_import_without_triton():
    """camfast.triton_ops imports cleanly without triton and says why the ops are missing."""
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "from camfast import triton_ops as t\n"
        "assert not t.AVAILABLE and 'triton' in t.WHY_NOT, t.WHY_NOT\n"
        "import torch; assert not hasattr(torch.ops.camfast, 'triton_cam_mask')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


# ------------------------------------------------------------------------------ stage 1

@pytest.mark.parametrize("normalize", ["minmax", "max"])
@pytest.mark.parametrize(
    "B,Cs,h,w",
    [
        (2, (5,), 6, 7),        # odd everything
        (1, (1,), 1, 5),        # B=1, C=1, h=1
        (3, (3, 2), 5, 3),      # S=2, different C per source
        (1, (1, 4), 4, 4),      # S=2, B=1
        (2, (37,), 2, 3),       # C not a power of two: padded channel block
    ],
)
def test_cam_mask(B, Cs, h, w, normalize):
    feats, grads = sources(B, Cs, h, w)
    check_cam_mask(feats, grads, normalize)


@pytest.mark.parametrize("normalize", ["minmax", "max"])
def test_cam_mask_many_channel_blocks_and_pixel_tiles(monkeypatch, normalize):
    """C spanning several channel blocks and P several pixel tiles in every kernel (the blocks
    are shrunk to 4 channels x 8 pixels, the per-sample tile to 16 pixels)."""
    cm = importlib.import_module("camfast.kernels.cam_mask")
    monkeypatch.setattr(cm, "BLOCK_C", 4)
    monkeypatch.setattr(cm, "BLOCK_P", 8)
    monkeypatch.setattr(cm, "FINISH_BLOCK", 16)
    assert cm.channel_blocks(13, 42) == (4, 8, 4) and cm.finish_block(42) == 16
    feats, grads = sources(2, (13, 6), 6, 7)
    check_cam_mask(feats, grads, normalize)


@pytest.mark.parametrize("normalize", ["minmax", "max"])
def test_cam_mask_ties(normalize):
    """Tied maxima and minima (exact: small integers, alpha an integer), split evenly."""
    B, C, h, w = 2, 3, 5, 6
    feats = torch.randint(1, 5, (B, C, h, w), device=DEVICE).float()
    feats[:, :, 0, 0] = feats[:, :, 3, 4] = feats[:, :, 4, 5] = 6.0   # three-way tie at the max
    feats[:, :, 1, 1] = feats[:, :, 2, 2] = 0.5                       # tie at a positive min
    grads = torch.randint(1, 3, (B, C, 1, 1), device=DEVICE).float().expand(B, C, h, w).contiguous()
    check_cam_mask([feats], [grads], normalize)


def test_cam_mask_union_ties():
    """Two identical sources: n_0 == n_1 everywhere, so each gets half of the gradient."""
    feats, grads = sources(2, (4,), 5, 6)
    check_cam_mask([feats[0], feats[0].clone()], [grads[0], grads[0].clone()], "minmax")


@pytest.mark.parametrize("normalize", ["minmax", "max"])
def test_cam_mask_all_zero(normalize):
    """Sample 0's CAM is zero everywhere (every pre < 0): n = 0, finite zero gradients."""
    feats, grads = sources(2, (3, 3), 4, 5)
    feats[0][0] = feats[0][0].abs()
    grads[0][0] = -grads[0][0].abs()
    u = check_cam_mask(feats[:1], grads[:1], normalize)
    assert torch.equal(u[0], torch.zeros_like(u[0]))
    # In a union (the DESIGN's "nothing removed" case): ties where the other n is 0 too.
    check_cam_mask(feats, grads, normalize)


# ------------------------------------------------------------------------------ stage 2

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "B,K_,H,W,h,w",
    [
        (2, 3, 20, 23, 6, 7),   # H not a multiple of h, h != w, several tiles each way
        (1, 1, 13, 5, 4, 3),    # B=1, K=1, W < tile
        (2, 3, 3, 4, 6, 7),     # H < h, W < w: downsampling, large windows
        (1, 2, 1, 1, 5, 4),     # a single pixel
        (2, 1, 9, 17, 1, 1),    # a single low-res cell
        (1, 3, 6, 7, 6, 7),     # same size: sampling is the identity
    ],
)
def test_masked_l1(B, K_, H, W, h, w, reduction):
    real, fake = randn(B, K_, H, W), randn(B, K_, H, W)
    fake[:, :, 0, :] = real[:, :, 0, :]   # sign(0) = 0 on a row
    u = torch.rand(B, h, w, device=DEVICE)
    out = check(lambda r, f, m: ops.triton_masked_l1(r, f, m, reduction),
                lambda r, f, m: R.masked_l1(r, f, m, reduction),
                [real, fake, u], ("real", "fake", "mask"))
    assert out.shape == ((B,) if reduction == "none" else ())


def test_masked_l1_shrunk_tiles(monkeypatch):
    """The backward shrinks its tile when the adjoint's window products would be too big."""
    monkeypatch.setattr(L1, "TILE_H", 8)
    monkeypatch.setattr(L1, "TILE_W", 16)
    monkeypatch.setattr(L1, "MAX_PRODUCT", 64)
    assert L1._backward_tiles(20, 23, 6, 7)[:2] != (8, 16)
    real, fake = randn(2, 3, 20, 23), randn(2, 3, 20, 23)
    u = torch.rand(2, 6, 7, device=DEVICE)
    check(lambda r, f, m: ops.triton_masked_l1(r, f, m, "mean"), R.masked_l1,
          [real, fake, u], ("real", "fake", "mask"))


@pytest.mark.parametrize("block", [1, 2, 4, 8, 16, 32])
def test_window_bound(block):
    """The backward's window covers every low-res row a tile touches (sizes up to 40 vs 12)."""
    for out_size in range(1, 41):
        for size in range(1, 13):
            scale = torch.tensor(size / out_size, dtype=torch.float32)
            src = (scale * (torch.arange(out_size, dtype=torch.float32) + 0.5) - 0.5).clamp(min=0)
            i0 = src.long().clamp(max=size - 1)
            i1 = i0 + (i0 < size - 1).long()
            for t in range(math.ceil(out_size / block)):
                span = i1[t * block:(t + 1) * block].max() - i0[t * block] + 1
                assert span <= L1._window(block, size, out_size), (block, out_size, size)


# ------------------------------------------------------------------------------ both stages

@pytest.mark.parametrize(
    "normalize,reduction,B,Cs,hw,KHW",
    [
        ("minmax", "mean", 2, (5,), (6, 7), (3, 20, 23)),
        ("max", "sum", 1, (1,), (3, 5), (1, 7, 11)),
        ("minmax", "none", 3, (2, 3), (5, 3), (3, 11, 4)),
        ("max", "none", 2, (4, 1), (6, 7), (2, 4, 5)),
        ("minmax", "sum", 1, (3, 3), (2, 2), (3, 9, 9)),
    ],
)
def test_loss(normalize, reduction, B, Cs, hw, KHW):
    feats, grads = sources(B, Cs, *hw)
    real, fake = randn(B, *KHW), randn(B, *KHW)
    check_loss(real, fake, feats, grads, normalize, reduction)


def test_loss_default_tiles(monkeypatch):
    """The production tile sizes (the other tests shrink them)."""
    monkeypatch.setattr(L1, "TILE_H", 16)
    monkeypatch.setattr(L1, "TILE_W", 32)
    feats, grads = sources(2, (5, 2), 6, 7)
    check_loss(randn(2, 3, 20, 23), randn(2, 3, 20, 23), feats, grads)


def test_partial_requires_grad():
    """G's view: grads computed without create_graph (constant), real constant, and a term
    with the mask detached, so each backward op is asked for a subset of its gradients."""
    feats, grads = sources(2, (3, 2), 5, 6)
    real = randn(2, 3, 11, 13)

    def loss(cam_mask, masked_l1):
        def f(fake, f0, f1):
            u = cam_mask([f0, f1], [g.to(fake.dtype) for g in grads], "minmax", EPS)
            r = real.to(fake.dtype)
            return masked_l1(r, fake, u, "mean") + masked_l1(r, fake, u.detach(), "sum")
        return f

    check(loss(ops.triton_cam_mask, ops.triton_masked_l1), loss(R.lowres_mask, R.masked_l1),
          [randn(2, 3, 11, 13), *feats], ("fake", "feats[0]", "feats[1]"))


def test_unrequested_gradients():
    """Unrequested grads come back as [] / shape-[0] tensors; requested ones are unchanged."""
    feats, grads = sources(2, (3, 2), 4, 5)
    gu = randn(2, 4, 5)
    full_f, full_g = ops.triton_cam_mask_backward(gu, feats, grads, "minmax", EPS, True, True)
    df, dg = ops.triton_cam_mask_backward(gu, feats, grads, "minmax", EPS, True, False)
    assert dg == [] and all(torch.equal(x, y) for x, y in zip(df, full_f))
    df, dg = ops.triton_cam_mask_backward(gu, feats, grads, "minmax", EPS, False, True)
    assert df == [] and all(torch.equal(x, y) for x, y in zip(dg, full_g))
    assert ops.triton_cam_mask_backward(gu, feats, grads, "minmax", EPS, False, False) == ([], [])

    real, fake, u = randn(2, 3, 9, 11), randn(2, 3, 9, 11), torch.rand(2, 4, 5, device=DEVICE)
    g = randn(2)
    full = ops.triton_masked_l1_backward(g, real, fake, u, "none", True, True, True)
    for need in [(True, False, False), (False, True, False), (False, False, True), (False, False, False)]:
        got = ops.triton_masked_l1_backward(g, real, fake, u, "none", *need)
        for wanted, x, y in zip(need, got, full):
            if wanted:
                assert torch.equal(x, y)
            else:
                assert x.shape == (0,) and x.dtype == y.dtype and x.device == y.device


def test_rejects_float64():
    feats, grads = sources(1, (2,), 3, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match="float64"):
        ops.triton_cam_mask(feats, grads, "minmax", EPS)
    real = randn(1, 3, 5, 5, dtype=torch.float64)
    with pytest.raises(TypeError, match="float64"):
        ops.triton_masked_l1(real, real.clone(), torch.rand(1, 3, 3, device=DEVICE), "mean")


@pytest.mark.skipif(not ON_GPU, reason="fp16/bf16 kernels are checked on a GPU only")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_low_precision(dtype, reduction):
    feats, grads = sources(4, (64, 32), 16, 16, dtype=dtype)
    real, fake = randn(4, 3, 128, 128, dtype=dtype), randn(4, 3, 128, 128, dtype=dtype)
    check_loss(real, fake, feats, grads, "minmax", reduction)


@pytest.mark.skipif(not ON_GPU, reason="realistic sizes are too slow for the interpreter")
@pytest.mark.parametrize("normalize", ["minmax", "max"])
def test_realistic_sizes_gpu(monkeypatch, normalize):
    monkeypatch.setattr(L1, "TILE_H", 16)
    monkeypatch.setattr(L1, "TILE_W", 32)
    feats, grads = sources(8, (256, 128), 16, 16)
    check_loss(randn(8, 3, 128, 128), randn(8, 3, 128, 128), feats, grads, normalize, "mean")
    feats, grads = sources(4, (512,), 32, 32)
    check_loss(randn(4, 3, 100, 75), randn(4, 3, 100, 75), feats, grads, normalize, "none")


# ------------------------------------------------------------------------------ devices

KERNELS = {
    "camfast.kernels.cam_mask": ["_cam_partial_kernel", "_cam_finish_kernel", "_union_grad_kernel",
                                 "_cam_norm_backward_kernel", "_cam_input_grad_kernel"],
    "camfast.kernels.masked_l1": ["_masked_l1_fwd_kernel", "_sum_rows_kernel", "_masked_l1_bwd_kernel",
                                  "_gather_windows_kernel"],
}


def test_every_launch_runs_under_the_tensors_device(monkeypatch):
    """Triton launches on the current CUDA device: every launcher must make its tensors' device
    current (device_guard) around every kernel launch. Checked on the CPU by spying on the guard
    and on every kernel."""
    state = {"device": None, "launches": 0, "guards": []}

    class Guard:
        def __init__(self, t):
            self.device = t.device

        def __enter__(self):
            state["guards"].append(self.device)
            state["device"] = self.device

        def __exit__(self, *exc):
            state["device"] = None

    class Spy:
        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, grid):
            launch = self.kernel[grid]

            def run(*args, **kwargs):
                tensors = [a for a in args if isinstance(a, torch.Tensor)]
                assert state["device"] is not None, "a kernel was launched outside device_guard"
                assert all(t.device == state["device"] for t in tensors), "launched under another device"
                state["launches"] += 1
                return launch(*args, **kwargs)
            return run

    for mod, names in KERNELS.items():
        m = importlib.import_module(mod)
        monkeypatch.setattr(m, "device_guard", Guard)
        for name in names:
            monkeypatch.setattr(m, name, Spy(getattr(m, name)))
    feats, grads = sources(2, (3, 2), 4, 5)
    real, fake = randn(2, 3, 9, 11), randn(2, 3, 9, 11)
    u = ops.triton_cam_mask(feats, grads, "minmax", EPS)
    ops.triton_cam_mask_backward(torch.ones_like(u), feats, grads, "minmax", EPS, True, True)
    ops.triton_masked_l1(real, fake, u, "mean")
    ops.triton_masked_l1_backward(randn(()), real, fake, u, "mean", True, True, True)
    assert state["launches"] >= 9 and len(state["guards"]) == 4
    assert all(d == torch.device(DEVICE) or d.type == DEVICE for d in state["guards"])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_tensors_on_another_gpu():
    """Tensors on cuda:1 while cuda:0 is current: results on cuda:1, equal to running there."""
    feats, grads = sources(2, (3, 2), 4, 5)
    real, fake = randn(2, 3, 9, 11), randn(2, 3, 9, 11)
    to1 = lambda ts: [t.to("cuda:1") for t in ts]  # noqa: E731
    with torch.cuda.device(0):
        u1 = ops.triton_cam_mask(to1(feats), to1(grads), "minmax", EPS)
        l1 = ops.triton_masked_l1(*to1([real, fake]), u1, "mean")
        d1 = ops.triton_masked_l1_backward(torch.ones((), device="cuda:1"), *to1([real, fake]), u1, "mean",
                                           True, True, True)
    with torch.cuda.device(1):
        u = ops.triton_cam_mask(to1(feats), to1(grads), "minmax", EPS)
        want = ops.triton_masked_l1(*to1([real, fake]), u, "mean")
    torch.cuda.synchronize(1)
    assert u1.device == torch.device("cuda:1") and torch.equal(u1, u) and torch.equal(l1, want)
    assert all(t.device == torch.device("cuda:1") for t in d1)


# ------------------------------------------------------------------------------ torch.library

def _opcheck_cases():
    feats, grads = sources(2, (3, 2), 4, 5)
    real, fake = randn(2, 3, 7, 9), randn(2, 3, 7, 9)
    u = torch.rand(2, 4, 5, device=DEVICE)

    def rg(ts):
        return [t.clone().requires_grad_() for t in ts]

    return {
        "cam_mask": [
            (ops.triton_cam_mask, (rg(feats), rg(grads), "minmax", EPS)),
            (ops.triton_cam_mask, (rg(feats[:1]), grads[:1], "max", EPS)),
        ],
        "cam_mask_backward": [
            (ops.triton_cam_mask_backward, (randn(2, 4, 5), feats, grads, "minmax", EPS, True, True)),
            (ops.triton_cam_mask_backward, (randn(2, 4, 5), feats[:1], grads[:1], "max", EPS, False, True)),
        ],
        "masked_l1": [
            (ops.triton_masked_l1, (*rg([real, fake, u]), "mean")),
            (ops.triton_masked_l1, (real, *rg([fake, u]), "none")),
        ],
        "masked_l1_backward": [
            (ops.triton_masked_l1_backward, (randn(()), real, fake, u, "sum", True, True, True)),
            (ops.triton_masked_l1_backward, (randn(2), real, fake, u, "none", False, True, False)),
        ],
        "cam_consistency": [
            (ops.triton_cam_consistency, (real, *rg([fake]), rg(feats), rg(grads), "minmax", EPS, "mean")),
            (ops.triton_cam_consistency, (*rg([real, fake]), feats[:1], rg(grads[:1]), "max", EPS, "none")),
        ],
        "cam_consistency_backward": [
            (ops.triton_cam_consistency_backward,
             (randn(()), real, fake, feats, grads, u, "minmax", EPS, "sum", True, True, True, True)),
            (ops.triton_cam_consistency_backward,
             (randn(2), real, fake, feats[:1], grads[:1], u, "max", EPS, "none", False, True, False, False)),
        ],
    }


OP_NAMES = ["cam_mask", "cam_mask_backward", "masked_l1", "masked_l1_backward", "cam_consistency",
            "cam_consistency_backward"]


@pytest.mark.parametrize("name", OP_NAMES)
def test_opcheck(name):
    for op, args in _opcheck_cases()[name]:
        torch.library.opcheck(
            op, args,
            test_utils=("test_schema", "test_autograd_registration", "test_faketensor",
                        "test_aot_dispatch_dynamic"),
        )


@pytest.mark.parametrize("name", OP_NAMES)
def test_schema_matches_cpp(name):
    """Same argument names and types as the C++ ops of csrc/schemas.cpp (when they are loaded)."""
    try:
        cpp = getattr(ops, name).default._schema
    except (AttributeError, RuntimeError):
        pytest.skip("the C++ ops are not loaded")
    ours = getattr(ops, f"triton_{name}").default._schema
    assert str(ours).split("(", 1)[1] == str(cpp).split("(", 1)[1]


def test_torch_compile_fullgraph():
    """Both forward ops under torch.compile(fullgraph=True) match eager, values and grads."""
    torch._dynamo.reset()

    def loss(real, fake, f0, f1, g0, g1):
        u = ops.triton_cam_mask([f0, f1], [g0, g1], "minmax", EPS)
        return ops.triton_masked_l1(real, fake, u, "mean")

    compiled = torch.compile(loss, fullgraph=True)
    feats, grads = sources(2, (3, 2), 5, 6)
    inputs = [randn(2, 3, 11, 13), randn(2, 3, 11, 13), *feats, *grads]
    a, b = leaves(inputs), leaves(inputs)
    out_c, out_e = compiled(*a), loss(*b)
    out_c.backward()
    out_e.backward()
    assert torch.equal(out_c, out_e)
    for x, y in zip(a, b):
        assert torch.equal(x.grad, y.grad)


def _camfast_ops_run_by(fn) -> list:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return [e.name for e in prof.events() if e.name.startswith("camfast::") and e.cpu_parent is None]


def test_public_loss_is_one_function_per_direction(monkeypatch):
    """The API's eager calls run the combined loss as one plain autograd.Function, no custom op
    (host cost: a Python custom op adds ~20 us forward, ~45 us forward+backward); its backward
    skips the mask's backward when feats and grads need no gradient (G's step)."""
    import camfast
    from camfast import kernels

    f, g = sources(2, (3, 2), 4, 5)
    real, fake = randn(2, 3, 7, 9), randn(2, 3, 7, 9).requires_grad_()

    def loss(feats, grads):
        return camfast.cam_consistency_loss(real, fake, feats, grads, backend="triton")

    assert _camfast_ops_run_by(lambda: loss(f, g)) == []
    assert type(loss(f, g).grad_fn).__name__ == "TritonCamConsistencyBackward"
    ran = []
    mask_bwd = kernels.cam_mask_backward
    monkeypatch.setattr(kernels, "cam_mask_backward", lambda *a: ran.append("cam_mask_backward") or mask_bwd(*a))
    (d_fake,) = torch.autograd.grad(loss(f, g), [fake])
    assert ran == []
    want = torch.autograd.grad(camfast.cam_consistency_loss(real, fake, f, g, backend="reference"), [fake])[0]
    compare(d_fake, want, "d/dfake", float32=(1e-4, 1e-5))
    grads = leaves(g)
    torch.autograd.grad(loss(f, grads), [grads[1]])
    assert ran == ["cam_mask_backward"]


def test_public_loss_under_torch_compile_fullgraph():
    """The combined op under torch.compile(fullgraph=True): the same loss and gradients as eager."""
    import camfast

    torch._dynamo.reset()
    f, g = sources(2, (3, 2), 4, 5)
    inputs = [randn(2, 3, 7, 9), randn(2, 3, 7, 9), *f, *g]

    def loss(real, fake, f0, f1, g0, g1):
        return camfast.cam_consistency_loss(real, fake, [f0, f1], [g0, g1], backend="triton")

    a, b = leaves(inputs), leaves(inputs)
    out_c, out_e = torch.compile(loss, fullgraph=True)(*a), loss(*b)
    assert torch.equal(out_c, out_e)
    for x, y in zip(torch.autograd.grad(out_c, a), torch.autograd.grad(out_e, b)):
        assert torch.equal(x, y)
