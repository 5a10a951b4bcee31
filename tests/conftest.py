import contextlib
import os

import pytest
import torch

# Triton kernels run on CPU tensors through the interpreter when there is no GPU; the
# variable must be set before any Triton kernel is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("CAMFAST_QUIET", "0")

import camfast  # noqa: E402

HAS_CUDA = torch.cuda.is_available()


def fused_backends():
    """(backend, device) pairs that can run here, on the GPU where there is one; CI has cpu and
    triton (interpreted)."""
    avail = camfast.backends()
    fused = [b for b in camfast.api.BACKENDS if b not in ("auto", "reference") and avail[b]["available"]]
    return [(b, "cuda" if HAS_CUDA and b != "cpu" else "cpu") for b in fused]


# ----------------------------------------------------------------- backend helpers

# Every backend's tests compare with these (see ``compare``): (rtol, atol) by dtype, atol as a
# fraction of the scale. Each row is the strictest that any backend's tests used, but fp32's:
# fp32 results carry the error of summing in fp32, which differs from test to test (``own``).
TOL = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (2e-5, 2e-6),
    torch.float16: (2e-3, 1e-3),
    torch.bfloat16: (1.6e-2, 8e-3),
}


def dtypes_for(backend, device):
    """The dtypes a backend takes: all four, but only fp32 for interpreted Triton and no fp64 for
    Triton on a GPU."""
    if backend == "triton":
        return [torch.float32] if device == "cpu" else [torch.float32, torch.float16, torch.bfloat16]
    return list(TOL)


def fused_ops(backend):
    """(cam_mask, cam_mask_backward, masked_l1, masked_l1_backward) of a backend, as torch.ops."""
    ns = torch.ops.camfast
    p = "" if backend in ("cpu", "cuda") else f"{backend}_"  # the C++ family has no prefix
    return (getattr(ns, f"{p}cam_mask"), getattr(ns, f"{p}cam_mask_backward"),
            getattr(ns, f"{p}masked_l1"), getattr(ns, f"{p}masked_l1_backward"))


@contextlib.contextmanager
def poisoned(backend):
    """New outputs of the kernels are filled with NaN: a kernel that skips an element fails."""
    if backend == "triton":
        from camfast import kernels
        set_poison = kernels.set_poison
    else:
        set_poison = torch.ops.camfast._set_poison
    set_poison(True)
    try:
        yield
    finally:
        set_poison(False)


def make_inputs(shape=(2, 3, 9, 7, 3, 3, 4), S=2, dtype=torch.float64, device="cpu", seed=0,
                feat_dtype=None, requires_grad=True):
    """(real, fake, feats, grads) for shape (B, K, H, W, C, h, w): source s has C + s channels,
    grads are mostly positive (non-zero CAMs); feats and grads in ``feat_dtype`` if given."""
    B, K, H, W, C, h, w = shape
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    real, fake = r(B, K, H, W), r(B, K, H, W)
    feats = [r(B, C + s, h, w) for s in range(S)]
    grads = [r(B, C + s, h, w) + 0.3 for s in range(S)]

    def cast(t, dt):
        return t.to(device=device, dtype=dt).requires_grad_(requires_grad)

    fd = feat_dtype or dtype
    return cast(real, dtype), cast(fake, dtype), [cast(f, fd) for f in feats], [cast(x, fd) for x in grads]


def rand(*shape, device, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype).to(device)


# CAMFAST_TEST_TOL_REPORT=<file>: where a call site uses its own bounds, also append how close
# it came to the table's (err/bound, > 1: the table's would fail), so that one GPU run tells
# whether those bounds can go (benchmarks/gpu_check.sh).
TOL_REPORT = os.environ.get("CAMFAST_TEST_TOL_REPORT")


def _bounds(rtol, a, want, scale, floor, ref, slack):
    atol = max(a * max(want.abs().max().item() if want.numel() else 0.0, scale), floor)
    if ref is not None and want.numel():
        atol = max(atol, slack * (ref.detach().double().cpu() - want).abs().max().item())
    return rtol, atol


def compare(got, want, what, scale=1.0, floor=0.0, ref=None, slack=4.0, **own):
    """Assert |got - want| <= rtol * |want| + atol, (rtol, a) = TOL[got.dtype], atol the largest
    of a * max(max|want|, scale), ``floor`` and ``slack`` * max|ref - want|.

    scale: the size of the terms that may cancel in a result (inputs are O(1), so are they).
    floor: the resolution of got's dtype near zero.
    ref: the same math in got's dtype when want is its fp64 truth: got may be slack times as far off.
    own: a call site's own (rtol, a) for a dtype, by name (float32=...), where its math needs
    other bounds than the table's; each call site says why."""
    dtype, name = got.dtype, str(got.dtype)[6:]
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    rtol, atol = _bounds(*own.get(name, TOL[dtype]), want, scale, floor, ref, slack)
    if TOL_REPORT and name in own and want.numel():
        err = (got - want).abs()

        def used(rtol, atol):  # the largest err/bound; > 1 fails
            bound = atol + rtol * want.abs()
            return torch.where(bound > 0, err / bound, torch.where(err > 0, float("inf"), 0.0)).max().item()

        table = used(*_bounds(*TOL[dtype], want, scale, floor, ref, slack))
        with open(TOL_REPORT, "a") as f:
            test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
            f.write(f"{table:.4g}\t{used(rtol, atol):.4g}\t{name}\t{what}\t{test}\n")
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


@pytest.fixture(autouse=True)
def _keep_thread_count():
    """Tiny training configs ask for one thread (much faster on a busy 2-core machine);
    give the rest of the session its thread count back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------- tiny training runs

TINY_IMAGES = 40  # synthetic faces in the tiny set the training tests share


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory):
    """Folder holding the tiny synthetic set (64 px), generated once per session."""
    from camfast.data import synthetic
    path = str(tmp_path_factory.mktemp("cache"))
    synthetic.ensure(n_images=TINY_IMAGES, image_size=64, seed=0, cache=path, progress=False)
    return path


def tiny_sets(backbone, **over):
    """``--set`` items for a run of a few steps on the tiny set with every width cut down."""
    sets = {"image_size": 64, "batch_size": 2, "n_critic": 2, "steps": 2, "synthetic_images": TINY_IMAGES,
            "num_workers": 0, "n_samples": 1, "log_every": 1, "sample_every": 0, "save_every": 0,
            "tensorboard": False, "progress": False, "threads": 1, "model.conv_dim": 8}
    sets.update({"model.g_repeat_num": 1} if backbone == "stargan" else {"model.dis_fc_dim": 16})
    sets.update(over)
    return [f"{k}={v}" for k, v in sets.items()]


def tiny_args(backbone, cache, out, **over):
    """camfast-train's arguments for such a run."""
    args = ["--backbone", backbone, "--data-cache", cache, "--out", str(out)]
    for item in tiny_sets(backbone, **over):
        args += ["--set", item]
    return args
