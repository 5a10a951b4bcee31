"""The C++ autograd path of the compiled ops (csrc/autograd.cpp) and the combined loss op
``camfast::cam_consistency`` (csrc/cam_consistency.cpp), which the public API calls for the cpu
and cuda backends: what the generic backend tests (test_fused.py) do not pin down."""
import itertools

import pytest
import torch

import camfast
from camfast import api

from conftest import make_inputs

if not camfast.backends()["cpu"]["available"]:
    pytest.skip("camfast._C CPU kernels not built", allow_module_level=True)

ns = torch.ops.camfast
NORMS, REDUCTIONS = ("minmax", "max"), ("mean", "sum", "none")


def inputs(S=2, dtype=torch.float64, feat_dtype=None, B=2, H=9, W=7):
    """Awkward sizes: image sizes no multiple of the mask's, h != w, sources of different C."""
    return make_inputs((B, 3, H, W, 3, 3, 4), S, dtype, feat_dtype=feat_dtype, requires_grad=False)


def loss_and_grads(backend, real, fake, feats, grads, want, **kw):
    """The loss and its gradients w.r.t. the inputs named in ``want`` (the others do not require grad)."""
    ts = dict(real=[real], fake=[fake], feats=feats, grads=grads)
    leaves = {k: [t.detach().clone().requires_grad_(k in want) for t in v] for k, v in ts.items()}
    loss = camfast.cam_consistency_loss(leaves["real"][0], leaves["fake"][0], leaves["feats"], leaves["grads"],
                                        backend=backend, **kw)
    targets = [t for k in want for t in leaves[k]]
    gout = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
    return loss, torch.autograd.grad(loss, targets, gout) if targets else ()


WANTS = [("fake",), ("feats", "grads"), ("real", "fake", "feats", "grads"), ("grads",), ("real",), ("feats",)]


@pytest.mark.parametrize("normalize,reduction,S", list(itertools.product(NORMS, REDUCTIONS, (1, 2))))
@pytest.mark.parametrize("want", WANTS, ids=["+".join(w) for w in WANTS])
def test_values_and_partial_gradients_match_the_reference(normalize, reduction, S, want):
    """G's step (fake only), D's step (feats, grads) and every other subset, every option."""
    x = inputs(S)
    got, got_g = loss_and_grads("cpu", *x, want, normalize=normalize, reduction=reduction)
    ref, ref_g = loss_and_grads("reference", *x, want, normalize=normalize, reduction=reduction)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    assert len(got_g) == len(ref_g)
    for a, b in zip(got_g, ref_g):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_float64_feats_with_float32_images():
    """The mask is cast to the images' accumulation dtype inside the op, as the two-op path did."""
    x = inputs(2, dtype=torch.float32, feat_dtype=torch.float64)
    want = ("fake", "feats", "grads")
    got, got_g = loss_and_grads("cpu", *x, want)
    ref, ref_g = loss_and_grads("reference", *x, want)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=2e-5, atol=1e-6)
    for a, b in zip(got_g, ref_g):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("normalize", NORMS)
def test_gradcheck_of_the_combined_op(normalize):
    real, fake, feats, grads = [t.requires_grad_(True) if isinstance(t, torch.Tensor) else
                                [u.requires_grad_(True) for u in t] for t in inputs(2, B=2, H=5, W=6)]

    def fn(real, fake, f0, f1, g0, g1):
        return ns.cam_consistency(real, fake, [f0, f1], [g0, g1], normalize, 1e-6, "none")[0]

    assert torch.autograd.gradcheck(fn, (real, fake, *feats, *grads), eps=1e-6, atol=1e-5)


def test_autograd_is_the_cpp_kernel():
    """No Python on the differentiable path: the ops have Autograd kernels and the graph node is
    the C++ function, not torch.library's Python glue."""
    for op in ("cam_consistency", "cam_mask", "masked_l1"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"camfast::{op}", "Autograd"), op
    real, fake, feats, grads = inputs(1)
    fake.requires_grad_(True)
    loss = camfast.cam_consistency_loss(real, fake, feats, grads, backend="cpu")
    assert "CamConsistencyFn" in loss.grad_fn.name()
    assert "CamMaskFn" in ns.cam_mask([feats[0].requires_grad_(True)], grads, "minmax", 1e-6).grad_fn.name()


def _ops_run_by(fn) -> set:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.name for e in prof.events() if e.name.startswith("camfast::")}


def test_backward_computes_only_what_the_engine_needs():
    """G's step differentiates w.r.t. fake only, with feats/grads requiring grad for D's step:
    the mask's backward must not run, and one backward op serves the whole loss."""
    real, fake, feats, grads = inputs(1)
    for t in (fake, *feats, *grads):
        t.requires_grad_(True)
    loss = camfast.cam_consistency_loss(real, fake, feats, grads, backend="cpu")
    ran = _ops_run_by(lambda: torch.autograd.grad(loss, [fake]))
    assert "camfast::cam_consistency_backward" in ran and "camfast::cam_mask_backward" not in ran, ran
    loss = camfast.cam_consistency_loss(real, fake, feats, grads, backend="cpu")
    ran = _ops_run_by(lambda: torch.autograd.grad(loss, grads))
    assert "camfast::cam_mask_backward" in ran, ran


def test_forward_is_one_dispatcher_call():
    real, fake, feats, grads = inputs(2)
    fake.requires_grad_(True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        camfast.cam_consistency_loss(real, fake, feats, grads, backend="cpu")
    top = [e.name for e in prof.events() if e.name.startswith("camfast::") and e.cpu_parent is None]
    assert top == ["camfast::cam_consistency"], top


@pytest.mark.parametrize("op", ["cam_mask", "masked_l1", "cam_consistency"])
def test_double_backward_through_each_op_raises(op):
    """First-order gradients under create_graph are exact; a second order raises, naming the op."""
    real, fake, feats, grads = inputs(1)
    f = feats[0].requires_grad_(True)
    fake.requires_grad_(True)
    if op == "cam_mask":
        out, x = ns.cam_mask([f], grads, "minmax", 1e-6).pow(2).sum(), f
    elif op == "masked_l1":
        u = ns.cam_mask([feats[0].detach()], grads, "minmax", 1e-6).requires_grad_(True)
        out, x = ns.masked_l1(real, fake, u, "sum"), u
    else:
        out, x = ns.cam_consistency(real, fake, [f], grads, "minmax", 1e-6, "sum")[0], f
    (d,) = torch.autograd.grad(out, [x], create_graph=True)
    (d_plain,) = torch.autograd.grad(out, [x], retain_graph=True)
    assert torch.equal(d.detach(), d_plain)
    with pytest.raises(RuntimeError, match=f"camfast::{op} .*once-differentiable"):
        torch.autograd.grad(d.sum(), [x])


def test_mask_output_is_not_differentiable():
    real, fake, feats, grads = inputs(1)
    fake.requires_grad_(True)
    loss, mask = ns.cam_consistency(real, fake, feats, grads, "minmax", 1e-6, "mean")
    assert loss.requires_grad and not mask.requires_grad
    assert mask.shape == (2, 3, 4) and mask.dtype == torch.float64


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_opcheck_combined_ops(reduction):
    real, fake, feats, grads = inputs(2, dtype=torch.float32)
    for t in (real, fake, *feats, *grads):
        t.requires_grad_(True)
    torch.library.opcheck(ns.cam_consistency, (real, fake, feats, grads, "minmax", 1e-6, reduction))
    d = [t.detach() for t in (real, fake)]
    fd, gd = [t.detach() for t in feats], [t.detach() for t in grads]
    _, mask = ns.cam_consistency(*d, fd, gd, "max", 1e-3, reduction)
    gout = torch.ones(2) if reduction == "none" else torch.ones(())
    for need in itertools.product((True, False), repeat=4):
        torch.library.opcheck(ns.cam_consistency_backward, (gout, *d, fd, gd, mask, "max", 1e-3, reduction, *need))


def test_compile_fullgraph_matches_eager():
    real, fake, feats, grads = inputs(2, dtype=torch.float32)
    args = [fake, *feats, *grads]
    for t in args:
        t.requires_grad_(True)

    def step(real, fake, f0, f1, g0, g1):
        return camfast.cam_consistency_loss(real, fake, [f0, f1], [g0, g1], reduction="none", backend="cpu") * 2

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    a, b = compiled(real, *args), step(real, *args)
    torch.testing.assert_close(a, b)
    for x, y in zip(torch.autograd.grad(a.sum(), args), torch.autograd.grad(b.sum(), args)):
        torch.testing.assert_close(x, y)


BAD_DIRECT = [
    (dict(real=torch.zeros(0, 3, 9, 7)), ValueError, "real"),
    (dict(eps=0.0), ValueError, "eps"),
    (dict(eps=float("inf")), ValueError, "eps"),
    (dict(real=torch.zeros(3, 3, 9, 7)), ValueError, "batch"),
    (dict(normalize="l2"), ValueError, "normalize"),
    (dict(reduction="avg"), ValueError, "reduction"),
]


@pytest.mark.parametrize("change,exc,word", BAD_DIRECT, ids=[str(i) for i in range(len(BAD_DIRECT))])
def test_combined_op_checks_what_the_api_promises(change, exc, word):
    """The API skips its Python checks on the fast path: the op must reject what they reject."""
    real, fake, feats, grads = inputs(1, dtype=torch.float32)
    kw = dict(real=real, fake=fake, feats=feats, grads=grads, normalize="minmax", eps=1e-6, reduction="mean")
    kw.update(change)
    if kw["real"].shape != fake.shape:
        kw["fake"] = torch.zeros_like(kw["real"])
    with pytest.raises(exc, match=word):
        ns.cam_consistency(**kw)


def test_fast_path_declines_a_bool_eps():
    """eps=True would pass the op as 1.0; the API rejects it, and the fast path leaves it to the API."""
    real, fake, feats, grads = inputs(1, dtype=torch.float32)
    assert api._fast_loss(real, fake, feats, grads, "minmax", True, "mean", "cpu") is None
    with pytest.raises(TypeError, match="eps"):
        camfast.cam_consistency_loss(real, fake, feats, grads, eps=True, backend="cpu")
