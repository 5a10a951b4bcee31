"""Load the compiled extension camfast._C and describe it.

A missing, unloadable, damaged or stale extension gives one warning and leaves the reference
backend working: importing camfast never fails because of the build. Before the library is
loaded, its file is checked for truncation (loading a cut-off shared library maps pages past
the end of the file, and the first touch kills the interpreter with SIGBUS); after loading, the
ops the Python side needs are checked before anything is registered for them (an extension
built before an op was added lacks it).
"""
from __future__ import annotations

import importlib.util
import os
import struct
import sys
import warnings
from typing import Optional

import torch

from ._srchash import source_hash
from ._version import __version__

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LOADED = False   # camfast._C imported and its ops registered
STALE = False    # ... but built from other sources or another version: auto selection skips it
ERROR = ""
INFO: dict = {}
REBUILD = "rebuild with `pip install --no-build-isolation -e .`"


def _parse(info: str) -> dict:
    return dict(item.split("=", 1) for item in info.split(";") if "=" in item)


def _current_source_hash(with_cuda: bool) -> str | None:
    """Hash of csrc/ now, when the sources sit next to the package (a development checkout)."""
    if not os.path.isdir(os.path.join(_ROOT, "csrc")):
        return None
    return source_hash(_ROOT, with_cuda)


def elf_problem(path: str) -> Optional[str]:
    """Why the ELF shared library at ``path`` cannot be loaded safely, or None.

    Checks what a truncated or overwritten file gets wrong: the magic, and that the program
    headers, every loadable segment and the section header table lie inside the file. Files
    that are not ELF (other platforms) are not judged.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 52 or head[:4] != b"\x7fELF":
                return f"not an ELF shared library ({size} bytes)"
            is64, order = head[4] == 2, "<" if head[5] == 1 else ">"
            if is64:
                if len(head) < 64:
                    return f"file truncated to {size} bytes"
                phoff, shoff = struct.unpack_from(order + "QQ", head, 0x20)
                phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", head, 0x36)
            else:
                phoff, shoff = struct.unpack_from(order + "II", head, 0x1C)
                phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", head, 0x2A)
            need = phoff + phnum * phentsize
            if need > size:
                return f"file truncated to {size} bytes (program headers end at {need})"
            f.seek(phoff)
            table = f.read(phnum * phentsize)
            for i in range(phnum):
                entry = table[i * phentsize:(i + 1) * phentsize]
                if is64:
                    ptype, _, offset, _, _, filesz = struct.unpack_from(order + "IIQQQQ", entry)
                else:
                    ptype, offset, _, _, filesz = struct.unpack_from(order + "IIIII", entry)
                if ptype == 1 and offset + filesz > size:  # PT_LOAD
                    return f"file truncated to {size} bytes (a loadable segment ends at {offset + filesz})"
            if shoff and shoff + shnum * shentsize > size:
                return f"file truncated to {size} bytes (section headers end at {shoff + shnum * shentsize})"
    except (OSError, struct.error) as e:
        return f"unreadable: {e}"
    return None


# ---------------------------------------------------------------- loading

def missing_ops(names) -> list:
    """The ops of ``names`` that the loaded library does not define."""
    out = []
    for name in names:
        try:
            getattr(torch.ops.camfast, name)
        except (AttributeError, RuntimeError):
            out.append(name)
    return out


def _load() -> None:
    global LOADED, STALE, ERROR, INFO
    if os.environ.get("CAMFAST_NO_EXTENSION") == "1":  # a deliberate choice: no warning
        ERROR = "disabled by CAMFAST_NO_EXTENSION=1"
        return
    try:
        spec = importlib.util.find_spec(__package__ + "._C")
    except (ImportError, ValueError) as e:
        spec, why = None, str(e)
    else:
        why = "no compiled library in the package"
    if spec is None or not spec.origin:
        ERROR = f"camfast._C could not be imported ({why}); build it with `pip install --no-build-isolation -e .`"
    elif (bad := elf_problem(spec.origin)) is not None:
        ERROR = f"camfast._C is damaged ({bad}: {spec.origin}); {REBUILD}"
    else:
        try:
            from . import _C  # noqa: F401  (loading registers the ops)
        except ImportError as e:
            ERROR = f"camfast._C could not be imported ({e}); build it with `pip install --no-build-isolation -e .`"
        else:
            LOADED = True
            _check_loaded()
    if ERROR and os.environ.get("CAMFAST_QUIET") != "1":
        warnings.warn(f"camfast: {ERROR}. Falling back to the pure-PyTorch reference.", RuntimeWarning, stacklevel=3)


def _check_loaded() -> None:
    """Staleness and op checks of a loaded library; registers the op family when complete."""
    global STALE, ERROR, INFO
    from .ops import OPS, register_family

    problems = []
    lacking = missing_ops(("_build_info",) + OPS)
    if lacking:
        problems.append("it lacks " + ", ".join(f"camfast::{op}" for op in lacking)
                        + " (it was built before they were added)")
    if "_build_info" not in lacking:
        INFO = _parse(torch.ops.camfast._build_info())
        if INFO.get("version") != __version__:
            problems.append(f"it was built for camfast {INFO.get('version')}, this is {__version__}")
        current = _current_source_hash(INFO.get("cuda") == "1")
        if current is not None and INFO.get("source_hash") != current:
            problems.append("csrc/ changed since it was built")
    if not any(op in lacking for op in OPS):
        try:
            register_family("")
        except Exception as e:  # a library whose schemas differ from what ops.py expects
            problems.append(f"registering its ops failed ({type(e).__name__}: {e})")
    if problems:
        STALE = True
        ERROR = "camfast._C is stale: " + "; ".join(problems) + "; " + REBUILD


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
