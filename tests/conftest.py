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
