"""Every fused backend that can run here against the reference: values and gradients.

CI runs the compiled CPU kernels and the Triton kernels under the interpreter; CUDA and
Triton-on-GPU run where a GPU is present (benchmarks/gpu_check.sh).
"""
import itertools

import pytest
import torch

import camfast
from camfast import reference

from conftest import compare, dtypes_for, fused_backends, fused_ops, make_inputs, poisoned

BACKENDS = fused_backends()
if not BACKENDS:
    pytest.skip("no fused backend is available (camfast._C not built?)", allow_module_level=True)

# B, K, H, W, C, h, w
SHAPES = [
    (1, 1, 9, 7, 1, 3, 2),      # B=1, K=1, C=1, h != w, H not a multiple of h
    (2, 3, 13, 17, 5, 4, 6),    # odd everything
    (3, 2, 3, 5, 4, 6, 7),      # H < h, W < w: the mask is down-sampled
    (2, 3, 16, 24, 3, 4, 6),    # exact multiples
    (1, 4, 1, 1, 2, 2, 2),      # 1x1 images
]
NORMS = ["minmax", "max"]
REDUCTIONS = ["mean", "sum", "none"]


def run(backend, real, fake, feats, grads, normalize, reduction, gout_seed=1):
    loss = camfast.cam_consistency_loss(real, fake, feats, grads, normalize=normalize, reduction=reduction,
                                        backend=backend)
    gen = torch.Generator().manual_seed(gout_seed)
    gout = torch.rand(loss.shape, generator=gen, dtype=torch.float64).to(loss) + 0.5
    inputs = [real, fake, *feats, *grads]
    grads_out = torch.autograd.grad(loss, inputs, gout)
    return loss, grads_out


def check_against_reference(backend, device, shape, S, normalize, reduction, dtype, seed=0):
    inputs = make_inputs(shape, S, dtype, device, seed)
    with poisoned(backend):
        loss, gs = run(backend, *inputs, normalize, reduction)
    want_loss, want_gs = run("reference", *inputs, normalize, reduction)
    assert loss.dtype == want_loss.dtype == dtype and loss.shape == want_loss.shape
    # A backend and the reference each round fp32 sums to fp16/bf16 once: an ulp apart at most.
    # The table allows two; on a GPU, where that is not checked here, they keep what they had.
    low = {} if device == "cpu" else dict(float16=(2e-2, 2e-3), bfloat16=(5e-2, 1e-2))
    compare(loss, want_loss, "loss", **low)
    names = ["real", "fake"] + [f"feats[{s}]" for s in range(S)] + [f"grads[{s}]" for s in range(S)]
    for name, a, b in zip(names, gs, want_gs):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert torch.isfinite(a).all(), f"{name}: non-finite gradient"
        compare(a, b, f"d/d{name}", **low)


def full_grid(backend, device):
    return list(itertools.product(SHAPES, [1, 2], NORMS, REDUCTIONS, dtypes_for(backend, device)))


def light_grid(backend, device):
    """Interpreted Triton is slow: every shape and option, but not their full product."""
    out = []
    for i, (shape, S) in enumerate(itertools.product(SHAPES, [1, 2])):
        out.append((shape, S, NORMS[i % 2], REDUCTIONS[i % 3], torch.float32))
    return out


CASES = []
for be, dev in BACKENDS:
    grid = light_grid(be, dev) if (be == "triton" and dev == "cpu") else full_grid(be, dev)
    CASES += [(be, dev) + c for c in grid]


@pytest.mark.parametrize(
    "backend,device,shape,S,normalize,reduction,dtype", CASES,
    ids=[f"{c[0]}-{'x'.join(map(str, c[2]))}-S{c[3]}-{c[4]}-{c[5]}-{str(c[6])[6:]}" for c in CASES],
)
def test_matches_reference(backend, device, shape, S, normalize, reduction, dtype):
    check_against_reference(backend, device, shape, S, normalize, reduction, dtype)


# ---------------------------------------------------------------- special values

def _tie_inputs(device, dtype):
    """Two pixels share the CAM's maximum exactly, two others its minimum."""
    B, C, h, w = 2, 3, 4, 5
    feats = torch.randn(B, C, h, w, dtype=torch.float64)
    feats[:, :, 0, 0] = 4.0
    feats[:, :, 2, 3] = 4.0     # the same column of channels: identical pre-activations
    feats[:, :, 1, 1] = 0.5
    feats[:, :, 3, 4] = 0.5
    feats[:, :, 1:3, :2] = feats[:, :, 1:3, :2].clamp(0.6, 3.9)
    grads = torch.rand(B, C, h, w, dtype=torch.float64) + 0.5
    real, fake = torch.randn(2, B, 2, 11, 9, dtype=torch.float64)
    cast = lambda t: t.to(device=device, dtype=dtype).requires_grad_(True)  # noqa: E731
    return cast(real), cast(fake), [cast(feats)], [cast(grads)]


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("normalize", NORMS)
def test_ties_at_max_and_min(backend, device, normalize):
    dtype = torch.float64 if backend == "cpu" else torch.float32
    real, fake, feats, grads = _tie_inputs(device, dtype)
    with poisoned(backend):
        got = run(backend, real, fake, feats, grads, normalize, "mean")
    want = run("reference", real, fake, feats, grads, normalize, "mean")
    for a, b in zip((got[0],) + got[1], (want[0],) + want[1]):
        compare(a, b, "ties")


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_identical_sources_split_the_union_gradient(backend, device):
    dtype = torch.float64 if backend == "cpu" else torch.float32
    real, fake, feats, grads = make_inputs((2, 2, 7, 9, 3, 3, 4), 1, dtype, device)
    f2 = feats[0].detach().clone().requires_grad_(True)
    g2 = grads[0].detach().clone().requires_grad_(True)
    with poisoned(backend):
        loss, gs = run(backend, real, fake, [feats[0], f2], [grads[0], g2], "minmax", "sum")
    want_loss, want_gs = run("reference", real, fake, [feats[0], f2], [grads[0], g2], "minmax", "sum")
    for a, b in zip(gs, want_gs):
        compare(a, b, "union ties")
    compare(gs[2], gs[3], "both sources get the same share")


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("S", [1, 2])
def test_all_zero_cam(backend, device, S):
    dtype = torch.float64 if backend == "cpu" else torch.float32
    real, fake, feats, grads = make_inputs((2, 3, 8, 10, 3, 4, 5), S, dtype, device)
    with torch.no_grad():
        grads[0].copy_(-grads[0].abs() - 0.1)   # negative channel weights on positive feats
        feats[0].copy_(feats[0].abs())
    with poisoned(backend):
        loss, gs = run(backend, real, fake, feats, grads, "minmax", "mean")
    want_loss, want_gs = run("reference", real, fake, feats, grads, "minmax", "mean")
    compare(loss, want_loss, "loss")
    for a, b in zip(gs, want_gs):
        assert torch.isfinite(a).all()
        compare(a, b, "zero cam grads")
    if S == 1:
        torch.testing.assert_close(loss.detach(), (real - fake).abs().mean().detach())
        assert torch.count_nonzero(gs[2]) == 0 and torch.count_nonzero(gs[3]) == 0


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_constant_cam(backend, device):
    """Every pixel is both the minimum and the maximum.

    With minmax the gradient is a cancellation of terms of size 1/eps, so it is compared
    with an absolute tolerance scaled by 1/eps."""
    dtype = torch.float64 if backend == "cpu" else torch.float32
    real, fake, feats, grads = make_inputs((2, 2, 6, 6, 2, 3, 3), 1, dtype, device)
    with torch.no_grad():
        feats[0].copy_(torch.ones_like(feats[0]))
        grads[0].copy_(grads[0].abs() + 0.1)
    for normalize in NORMS:
        got = run(backend, real, fake, feats, grads, normalize, "mean")
        want = run("reference", real, fake, feats, grads, normalize, "mean")
        for a, b in zip((got[0],) + got[1], (want[0],) + want[1]):
            compare(a, b, "constant cam", scale=1e6 if normalize == "minmax" else 1.0)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_mask_matches_reference(backend, device):
    dtype = torch.float64 if backend == "cpu" else torch.float32
    _, _, feats, grads = make_inputs((3, 1, 1, 1, 4, 5, 3), 2, dtype, device)
    with poisoned(backend):
        m = camfast.grad_cam_mask(feats, grads, (11, 7), backend=backend)
    want = reference.grad_cam_mask(feats, grads, (11, 7))
    compare(m, want, "mask")
    gm = torch.randn_like(m)
    a = torch.autograd.grad(m, [*feats, *grads], gm)
    b = torch.autograd.grad(want, [*feats, *grads], gm)
    for x, y in zip(a, b):
        compare(x, y, "mask grads")


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_non_contiguous_inputs(backend, device):
    real, fake, feats, grads = make_inputs((2, 3, 9, 8, 3, 4, 4), 1, torch.float32, device)
    rt = real.detach().transpose(2, 3).contiguous().transpose(2, 3).requires_grad_(True)
    ft = feats[0].detach().transpose(2, 3).contiguous().transpose(2, 3).requires_grad_(True)
    assert not rt.is_contiguous() and not ft.is_contiguous()
    got = run(backend, rt, fake, [ft], grads, "minmax", "mean")
    want = run("reference", real, fake, feats, grads, "minmax", "mean")
    for a, b in zip((got[0],) + got[1], (want[0],) + want[1]):
        compare(a, b, "non-contiguous")


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_deterministic(backend, device):
    inputs = make_inputs((3, 3, 31, 29, 6, 5, 7), 2, torch.float32, device)
    a = run(backend, *inputs, "minmax", "mean")
    b = run(backend, *inputs, "minmax", "mean")
    for x, y in zip((a[0],) + a[1], (b[0],) + b[1]):
        assert torch.equal(x, y)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_only_requested_gradients(backend, device):
    cam_mask, cam_mask_backward, _, masked_l1_backward = fused_ops(backend)
    real, fake, feats, grads = [t.detach() if isinstance(t, torch.Tensor) else [x.detach() for x in t]
                                for t in make_inputs((2, 3, 9, 8, 3, 4, 4), 1, torch.float32, device)]
    u = cam_mask(feats, grads, "minmax", 1e-6)
    g = torch.ones((), device=device)
    dr, df, dm = masked_l1_backward(g, real, fake, u, "mean", False, True, False)
    assert dr.numel() == 0 and dm.numel() == 0 and df.shape == fake.shape
    dfe, dgr = cam_mask_backward(torch.ones_like(u), feats, grads, "minmax", 1e-6, False, True)
    assert len(dfe) == 0 and len(dgr) == 1 and dgr[0].shape == grads[0].shape
    # Only fake requires grad: the loss must not ask for the other gradients.
    f2 = fake.clone().requires_grad_(True)
    loss = camfast.cam_consistency_loss(real, f2, feats, grads, backend=backend)
    loss.backward()
    assert f2.grad is not None


# ---------------------------------------------------------------- CPU extension specifics

CPU = ("cpu", "cpu") in BACKENDS
needs_cpu = pytest.mark.skipif(not CPU, reason="camfast._C CPU kernels not built")


@needs_cpu
@pytest.mark.parametrize("normalize", NORMS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("S", [1, 2])
def test_cpu_gradcheck_fp64(normalize, reduction, S):
    real, fake, feats, grads = make_inputs((2, 2, 7, 5, 3, 3, 4), S, torch.float64, "cpu", seed=S)

    def fn(real, fake, *fg):
        return camfast.cam_consistency_loss(real, fake, list(fg[:S]), list(fg[S:]), normalize=normalize,
                                            reduction=reduction, backend="cpu")

    assert torch.autograd.gradcheck(fn, (real, fake, *feats, *grads), eps=1e-6, atol=1e-5)


@needs_cpu
def test_cpu_opcheck():
    real, fake, feats, grads = make_inputs((2, 3, 9, 7, 3, 4, 5), 2, torch.float32, "cpu")
    ns = torch.ops.camfast
    u = ns.cam_mask(feats, grads, "minmax", 1e-6).detach().requires_grad_(True)
    torch.library.opcheck(ns.cam_mask, (feats, grads, "minmax", 1e-6))
    torch.library.opcheck(ns.cam_mask, (feats, grads, "max", 1e-3))
    for red in REDUCTIONS:
        torch.library.opcheck(ns.masked_l1, (real, fake, u, red))
    d = [x.detach() for x in feats]
    torch.library.opcheck(ns.cam_mask_backward, (torch.randn_like(u), d, [x.detach() for x in grads],
                                                 "minmax", 1e-6, True, True))
    torch.library.opcheck(ns.masked_l1_backward, (torch.ones(2), real.detach(), fake.detach(), u.detach(),
                                                  "none", True, True, True))


@needs_cpu
def test_cpu_compile_matches_eager():
    real, fake, feats, grads = make_inputs((2, 3, 12, 10, 4, 3, 5), 2, torch.float32, "cpu")

    def step(real, fake, f0, f1, g0, g1):
        loss = camfast.cam_consistency_loss(real, fake, [f0, f1], [g0, g1], backend="cpu")
        return loss * 2.0

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    args = (real, fake, *feats, *grads)
    a = compiled(*args)
    b = step(*args)
    torch.testing.assert_close(a, b)
    ga = torch.autograd.grad(a, args)
    gb = torch.autograd.grad(b, args)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_compiled_autograd_matches_eager(backend, device):
    """A compiled training step with compiled autograd (torch._dynamo.config.compiled_autograd):
    the backward graph includes the loss's backward node. The C++ node once failed an internal
    assert there (an output marked non-differentiable)."""
    inputs = make_inputs((2, 3, 9, 7, 4, 3, 4), 2, torch.float32, device)

    def step(real, fake, feats, grads):
        loss = camfast.cam_consistency_loss(real, fake, feats, grads, reduction="sum", backend=backend)
        loss.backward()
        return loss.detach()

    def leaves():
        real, fake, feats, grads = (t.detach() if isinstance(t, torch.Tensor) else [x.detach() for x in t]
                                    for t in inputs)
        return real, fake.requires_grad_(), [f.requires_grad_() for f in feats], [g.requires_grad_() for g in grads]

    want, got = leaves(), leaves()
    step(*want)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(compiled_autograd=True):
        torch.compile(step, backend="eager")(*got)
    torch._dynamo.reset()
    for a, b in zip([got[1], *got[2], *got[3]], [want[1], *want[2], *want[3]]):
        assert a.grad is not None
        torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("reentrant", [False, True])
def test_checkpoint_matches_eager(backend, device, reentrant):
    """Activation checkpointing around the loss. Without reentrancy its recomputation stops by
    raising through the op once every saved tensor is back, and the API must let that pass."""
    from torch.utils.checkpoint import checkpoint

    inputs = make_inputs((2, 3, 9, 7, 4, 3, 4), 2, torch.float32, device)

    def loss(fake, f0, f1, g0, g1):
        return camfast.cam_consistency_loss(inputs[0], fake * 2, [f0, f1 * 1], [g0, g1], backend=backend)

    def leaves():
        return [t.detach().requires_grad_() for t in (inputs[1], *inputs[2], *inputs[3])]

    want, got = leaves(), leaves()
    loss(*want).backward()
    checkpoint(loss, *got, use_reentrant=reentrant).backward()
    for a, b in zip(got, want):
        torch.testing.assert_close(a.grad, b.grad)


NON_FINITE = [(float("nan"), "one"), (float("inf"), "one"), (float("nan"), "all"), (-float("inf"), "all")]


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("S", [1, 2])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy under the Triton interpreter, on NaN and inf
def test_non_finite_input_is_not_hidden(backend, device, S):
    """A NaN or an infinity in one sample's input (an image, or one source's activations or
    gradients: a diverging D) makes that sample's loss NaN or infinite exactly where the
    reference's is, and leaves each of that sample's gradients non-finite where the reference's
    is: never a finite number in their place. (Which elements of a gradient are non-finite may
    differ.) Comparisons that drop a NaN once gave a finite loss here."""
    names = ["real", "fake"] + [f"feats[{s}]" for s in range(S)] + [f"grads[{s}]" for s in range(S)]
    for which, (value, where), normalize in itertools.product(range(len(names)), NON_FINITE, NORMS):
        real, fake, feats, grads = make_inputs((2, 3, 9, 7, 4, 3, 4), S, torch.float32, device, seed=which)
        flat = [real, fake, *feats, *grads]
        with torch.no_grad():
            target = flat[which][0]
            if where == "one":
                target.view(-1)[5] = value
            else:
                target.fill_(value)
        got = run(backend, real, fake, feats, grads, normalize, "none")
        want = run("reference", real, fake, feats, grads, normalize, "none")
        case = f"{value} in {names[which]} ({where}), {normalize}"
        for name, a, b in zip(["loss"] + names, (got[0],) + got[1], (want[0],) + want[1]):
            if name == "loss":
                assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.isinf(), b.isinf()), (case, a, b)
                fin = a.isfinite() & b.isfinite()
                torch.testing.assert_close(a[fin], b[fin], rtol=1e-4, atol=1e-5)
            else:
                per_sample = [bool(t[i].isfinite().all()) for t in (a, b) for i in range(2)]
                assert per_sample[:2] == per_sample[2:], (case, name, per_sample)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_partial_requires_grad(backend, device):
    """G's step: grads made without create_graph, only feats and fake need gradients."""
    real, fake, feats, grads = make_inputs((2, 3, 9, 8, 3, 4, 4), 2, torch.float32, device)
    grads = [g.detach() for g in grads]
    real = real.detach()
    loss = camfast.cam_consistency_loss(real, fake, feats, grads, backend=backend)
    loss.backward()
    want = camfast.cam_consistency_loss(real, fake.detach().requires_grad_(True), feats, grads, backend="reference")
    assert fake.grad is not None and all(f.grad is not None for f in feats)
    ref_f = [f.detach().clone().requires_grad_(True) for f in feats]
    ref_fake = fake.detach().clone().requires_grad_(True)
    camfast.cam_consistency_loss(real, ref_fake, ref_f, grads, backend="reference").backward()
    compare(loss, want, "loss")
    compare(fake.grad, ref_fake.grad, "d/dfake")
    for a, b in zip(feats, ref_f):
        compare(a.grad, b.grad, "d/dfeats")
