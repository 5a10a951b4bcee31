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
    """(backend, device) pairs that can run here; CI has cpu and triton (interpreted)."""
    avail = camfast.backends()
    out = []
    if avail["cpu"]["available"]:
        out.append(("cpu", "cpu"))
    if avail["cuda"]["available"]:
        out.append(("cuda", "cuda"))
    if avail["triton"]["available"]:
        out.append(("triton", "cuda" if HAS_CUDA else "cpu"))
    return out


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
