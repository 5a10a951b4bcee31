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


# ---------------------------------------------------------------- CUDA architectures

def parse_arch_list(archs: str):
    """(sass, ptx) of an arch list as TORCH_CUDA_ARCH_LIST spells it ("8.0;9.0+PTX", also with
    commas or spaces): lists of codes like "80", "90a", "100f". None when a token is not an
    X.Y[a|f][+PTX] number (e.g. "native"): the list then cannot be judged."""
    sass, ptx = [], []
    for token in archs.replace(",", ";").replace(" ", ";").split(";"):
        token = token.strip()
        if not token:
            continue
        with_ptx = token.upper().endswith("+PTX")
        base = token[:-4] if with_ptx else token
        suffix = base[-1] if base[-1:] in ("a", "f") else ""
        num = base[:-1] if suffix else base
        major, _, minor = num.partition(".")
        if not (major.isdigit() and minor.isdigit() and len(minor) == 1):
            return None
        code = f"{int(major)}{minor}{suffix}"
        sass.append(code)
        if with_ptx:
            ptx.append(code)
    return sass, ptx


def _split(code: str):
    suffix = code[-1] if code[-1] in ("a", "f") else ""
    digits = code[:-1] if suffix else code
    return int(digits[:-1]), int(digits[-1]), suffix


def sass_runs_on(code: str, capability) -> bool:
    """Binary code for sm_<code> runs on a device of this (major, minor) capability: same
    major and minor <= the device's ("a": exactly that arch; "f": the same family)."""
    major, minor, suffix = _split(code)
    if suffix == "a":
        return (major, minor) == tuple(capability)
    return major == capability[0] and minor <= capability[1]


def ptx_runs_on(code: str, capability) -> bool:
    """PTX for compute_<code> is JIT-compiled by the driver for any device at least as new
    ("a"/"f" PTX only for that arch / family)."""
    major, minor, suffix = _split(code)
    if suffix:
        return sass_runs_on(code, capability)
    return (major, minor) <= tuple(capability)


def arch_mismatch(archs: Optional[str], capability) -> Optional[str]:
    """Why kernels built for ``archs`` cannot run on a device of ``capability``, or None
    (also when the list cannot be judged)."""
    parsed = parse_arch_list(archs) if archs else None
    if parsed is None:
        return None
    sass, ptx = parsed
    if any(sass_runs_on(c, capability) for c in sass) or any(ptx_runs_on(c, capability) for c in ptx):
        return None
    cc = f"{capability[0]}.{capability[1]}"
    have = ", ".join(f"sm_{c}" for c in sass) or "none"
    have_ptx = ", ".join(f"compute_{c}" for c in ptx) or "none"
    return (f"camfast._C has CUDA code for SASS {have} and PTX {have_ptx}; neither runs on this GPU "
            f"(compute capability {cc}): rebuild with TORCH_CUDA_ARCH_LIST=\"{cc}\"")


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


def usable() -> bool:
    """Whether the C++ ops can be called: loaded, and built from these sources."""
    return LOADED and not STALE


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
    from .registration import LOSS_OPS, OPS, register_family

    problems = []
    lacking = missing_ops(("_build_info",) + OPS + LOSS_OPS)
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
    if not any(op in lacking for op in OPS + LOSS_OPS):
        try:
            register_family("")
        except Exception as e:  # a library whose schemas differ from what ops.py expects
            problems.append(f"registering its ops failed ({type(e).__name__}: {e})")
    if problems:
        STALE = True
        ERROR = "camfast._C is stale: " + "; ".join(problems) + "; " + REBUILD


_load()


def build_info() -> dict:
    """What was built and loaded: extension state, version, CUDA kernels and architectures."""
    archs = INFO.get("cuda_archs") or None
    sass, ptx = (parse_arch_list(archs) or ([], [])) if archs else ([], [])
    return {
        "version": __version__,
        "extension_loaded": LOADED,
        "extension_stale": STALE,
        "extension_error": ERROR or None,
        "extension_version": INFO.get("version"),
        "source_hash": INFO.get("source_hash"),
        "cuda_kernels": INFO.get("cuda") == "1",
        "cuda_archs": archs,
        "cuda_sass": [f"sm_{a}" for a in sass],
        "cuda_ptx": [f"compute_{a}" for a in ptx],
        "cpu_simd": INFO.get("cpu_simd"),   # the CPU kernels' row loops: "avx2" or "baseline"
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
    }
