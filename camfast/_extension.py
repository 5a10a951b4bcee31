"""Load the compiled extension camfast._C and describe it.

A missing, unloadable or stale extension gives one warning and leaves the reference
backend working: importing camfast never fails because of the build.
"""
from __future__ import annotations

import os
import warnings

import torch

from ._srchash import source_hash
from ._version import __version__

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LOADED = False   # camfast._C imported and its ops registered
STALE = False    # ... but built from other sources or another version: auto selection skips it
ERROR = ""
INFO: dict = {}


def _parse(info: str) -> dict:
    return dict(item.split("=", 1) for item in info.split(";") if "=" in item)


def _current_source_hash(with_cuda: bool) -> str | None:
    """Hash of csrc/ now, when the sources sit next to the package (a development checkout)."""
    if not os.path.isdir(os.path.join(_ROOT, "csrc")):
        return None
    return source_hash(_ROOT, with_cuda)


def _load() -> None:
    global LOADED, STALE, ERROR, INFO
    if os.environ.get("CAMFAST_NO_EXTENSION") == "1":  # a deliberate choice: no warning
        ERROR = "disabled by CAMFAST_NO_EXTENSION=1"
        return
    try:
        from . import _C  # noqa: F401  (loading registers the ops)
    except ImportError as e:
        ERROR = f"camfast._C could not be imported ({e}); build it with `pip install --no-build-isolation -e .`"
    else:
        LOADED = True
        INFO = _parse(torch.ops.camfast._build_info())
        from .ops import register_family

        register_family("")
        problems = []
        if INFO.get("version") != __version__:
            problems.append(f"it was built for camfast {INFO.get('version')}, this is {__version__}")
        current = _current_source_hash(INFO.get("cuda") == "1")
        if current is not None and INFO.get("source_hash") != current:
            problems.append("csrc/ changed since it was built")
        if problems:
            STALE = True
            ERROR = "camfast._C is stale: " + "; ".join(problems) + "; rebuild with `pip install --no-build-isolation -e .`"
    if ERROR and os.environ.get("CAMFAST_QUIET") != "1":
        warnings.warn(f"camfast: {ERROR}. Falling back to the pure-PyTorch reference.", RuntimeWarning, stacklevel=3)


_load()


def build_info() -> dict:
    """What was built and loaded: extension state, version, CUDA kernels compiled in."""
    return {
        "version": __version__,
        "extension_loaded": LOADED,
        "extension_stale": STALE,
        "extension_error": ERROR or None,
        "extension_version": INFO.get("version"),
        "source_hash": INFO.get("source_hash"),
        "cuda_kernels": INFO.get("cuda") == "1",
        "cuda_archs": INFO.get("cuda_archs") or None,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
    }
