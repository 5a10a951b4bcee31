"""Building and loading: the in-place checkout flow, safe replacement and loading of camfast/_C,
and the CUDA architecture check of backend selection. No GPU needed."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

import camfast
from camfast import _extension, api

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SITE = os.path.dirname(os.path.dirname(torch.__file__))
SO = sorted(f for f in os.listdir(os.path.join(ROOT, "camfast")) if f.startswith("_C") and f.endswith(".so"))


def run_isolated(code, pythonpath, cwd, extra_env=None):
    """``python -S -c code`` with only ``pythonpath`` and torch's site-packages importable: no
    editable-install finder can supply camfast from elsewhere."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(pythonpath), SITE]))
    for k in ("CAMFAST_QUIET", "CAMFAST_NO_EXTENSION"):
        env.pop(k, None)
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, cwd=cwd,
                          timeout=300)


# ---------------------------------------------------------------- the in-place flow

@pytest.mark.skipif(not SO, reason="camfast/_C*.so is not built in the checkout")
def test_checkout_imports_kernels_as_camfast_kernels():
    """`setup.py build_ext --inplace` + PYTHONPATH=checkout (benchmarks/gpu_check.sh): the
    top-level kernels/ is camfast.kernels, so the Triton backend is there, and the extension
    loads and is current."""
    pytest.importorskip("triton")
    code = (
        "import os, camfast, camfast.triton_ops as t\n"
        "assert t.AVAILABLE, t.WHY_NOT\n"
        "import camfast.kernels as k\n"
        f"assert os.path.samefile(k.__file__, {os.path.join(ROOT, 'kernels', '__init__.py')!r}), k.__file__\n"
        "info = camfast.build_info()\n"
        "assert info['extension_loaded'] and not info['extension_stale'], info\n"
        "assert camfast.backends()['triton']['available']\n"
    )
    out = run_isolated(code, ROOT, "/", {"TRITON_INTERPRET": "1"})
    assert out.returncode == 0, out.stderr[-3000:]


def test_kernels_finder_only_in_a_checkout(tmp_path):
    """An installed layout (camfast/kernels inside the package) gets no finder."""
    pkg = tmp_path / "site" / "camfast"
    shutil.copytree(os.path.join(ROOT, "camfast"), pkg, ignore=shutil.ignore_patterns("_C*.so", "__pycache__"))
    shutil.copytree(os.path.join(ROOT, "kernels"), pkg / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import sys, camfast\n"
        "assert not any(type(f).__name__ == '_KernelsFinder' for f in sys.meta_path)\n"
        "import importlib; k = importlib.import_module('camfast.kernels')\n"
        f"assert k.__file__.startswith({str(pkg)!r}), k.__file__\n"
    )
    out = run_isolated(code, tmp_path / "site", tmp_path, {"CAMFAST_NO_EXTENSION": "1", "TRITON_INTERPRET": "1"})
    assert out.returncode == 0, out.stderr[-3000:]


# ---------------------------------------------------------------- setup.py

def _setup_scope():
    """setup.py's globals, executed for `--name` (no build)."""
    scope = {"__file__": os.path.join(ROOT, "setup.py"), "__name__": "__setup__"}
    argv, env = sys.argv, dict(os.environ)
    sys.argv = ["setup.py", "-q", "--name"]
    try:
        with open(os.path.join(ROOT, "setup.py")) as f:
            exec(compile(f.read(), "setup.py", "exec"), scope)
    finally:
        sys.argv = argv
        os.environ.clear()
        os.environ.update(env)  # setup.py sets CUDA_HOME and TORCH_CUDA_ARCH_LIST
    return scope


def test_default_archs_include_ptx():
    scope = _setup_scope()
    assert scope["DEFAULT_CUDA_ARCHS"] == "8.0;9.0+PTX"
    sass, ptx = _extension.parse_arch_list(scope["DEFAULT_CUDA_ARCHS"])
    assert sass == ["80", "90"] and ptx == ["90"]


def test_inplace_copy_replaces_the_library_atomically(tmp_path):
    """A process that mapped the old library must keep a complete file: the copy goes to a new
    inode that is renamed over the old name (distutils truncates and rewrites in place)."""
    from setuptools.dist import Distribution

    build_ext = _setup_scope()["build_ext"]
    cmd = build_ext(Distribution())
    old, new = tmp_path / "lib.so", tmp_path / "new.so"
    old.write_bytes(b"old" * 1000)
    new.write_bytes(b"new" * 2000)
    held = open(old, "rb")  # noqa: SIM115  (stands for a process that mapped the library)
    try:
        ino = os.fstat(held.fileno()).st_ino
        assert cmd.copy_file(str(new), str(old)) == (str(old), True)
        assert old.read_bytes() == b"new" * 2000
        assert os.stat(old).st_ino != ino
        assert held.read() == b"old" * 1000  # the old file is intact for its users
    finally:
        held.close()
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


# ---------------------------------------------------------------- a damaged or outdated library

def _package_copy(tmp_path):
    pkg = tmp_path / "camfast"
    shutil.copytree(os.path.join(ROOT, "camfast"), pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return pkg


FALLBACK = (
    "import warnings, torch\n"
    "with warnings.catch_warnings(record=True) as w:\n"
    "    warnings.simplefilter('always')\n"
    "    import camfast\n"
    "msgs = [str(x.message) for x in w if 'camfast' in str(x.message)]\n"
    "assert len(msgs) == 1, msgs\n"
    "assert WORDS in msgs[0] and 'reference' in msgs[0], msgs\n"
    "assert camfast.backends()['auto']['cpu'] == 'reference'\n"
    "r, f = torch.randn(2, 1, 2, 5, 5)\n"
    "print(camfast.cam_consistency_loss(r, f, torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 3)).item())\n"
)


def test_missing_extension_warns_once_and_falls_back(tmp_path):
    pkg = os.path.dirname(camfast.__file__)
    shutil.copytree(pkg, tmp_path / "camfast", ignore=shutil.ignore_patterns("_C*.so", "__pycache__"))
    code = FALLBACK.replace("WORDS", "'could not be imported'") + "assert not camfast.build_info()['extension_loaded']\n"
    out = run_isolated(code, tmp_path, tmp_path)
    assert out.returncode == 0, out.stderr


@pytest.mark.skipif(not SO, reason="camfast/_C*.so is not built in the checkout")
def test_truncated_library_warns_instead_of_crashing(tmp_path):
    """A cut-off _C.so (an interrupted copy) used to kill the interpreter with SIGBUS."""
    pkg = _package_copy(tmp_path)
    so = pkg / SO[0]
    so.write_bytes(so.read_bytes()[: os.path.getsize(so) // 2])
    assert "truncated" in _extension.elf_problem(str(so))
    out = run_isolated(FALLBACK.replace("WORDS", "'damaged'"), tmp_path, tmp_path)
    assert out.returncode == 0, (out.returncode, out.stderr[-3000:])


@pytest.mark.skipif(not SO, reason="camfast/_C*.so is not built in the checkout")
def test_library_missing_a_new_op_warns_instead_of_failing(tmp_path):
    """After a pull that adds an op on both sides, the unrebuilt library lacks it: one warning
    naming the op and the reference path, not an import error."""
    pkg = _package_copy(tmp_path)
    ops = (pkg / "registration.py").read_text()
    assert 'OPS = ("cam_mask",' in ops
    (pkg / "registration.py").write_text(ops.replace('OPS = ("cam_mask",', 'OPS = ("cam_mask_v2", "cam_mask",'))
    out = run_isolated(FALLBACK.replace("WORDS", "'camfast::cam_mask_v2'"), tmp_path, tmp_path)
    assert out.returncode == 0, (out.returncode, out.stderr[-3000:])


def test_elf_check_accepts_real_libraries():
    assert _extension.elf_problem(torch._C.__file__) is None
    for so in SO:
        assert _extension.elf_problem(os.path.join(ROOT, "camfast", so)) is None


def test_elf_check_rejects_garbage(tmp_path):
    p = tmp_path / "x.so"
    p.write_bytes(b"\x7fELF")
    assert _extension.elf_problem(str(p)) is not None
    p.write_bytes(b"not a library at all, just text" * 10)
    assert "not an ELF" in _extension.elf_problem(str(p))


# ---------------------------------------------------------------- CUDA architectures

@pytest.mark.parametrize("archs,cap,runs", [
    ("8.0,9.0", (8, 0), True),
    ("8.0,9.0", (8, 6), True),         # sm_80 SASS runs on 8.x
    ("8.0,9.0", (9, 0), True),
    ("8.0,9.0", (10, 0), False),       # the old default: no SASS and no PTX for a B200
    ("8.0,9.0", (12, 0), False),
    ("8.0,9.0+PTX", (10, 0), True),    # PTX is JIT-compiled for newer GPUs
    ("8.0,9.0+PTX", (12, 0), True),
    ("8.0,9.0+PTX", (7, 5), False),    # ... but not for older ones
    ("9.0a", (9, 0), True),
    ("9.0a+PTX", (10, 0), False),      # arch-specific code runs on exactly that arch
    ("10.0f", (10, 3), True),          # family code: same major, newer minor
    ("native", (7, 0), True),          # a list that cannot be judged is not judged
])
def test_arch_mismatch(archs, cap, runs):
    why = _extension.arch_mismatch(archs, cap)
    assert (why is None) == runs, why
    if not runs:
        assert f"{cap[0]}.{cap[1]}" in why and "TORCH_CUDA_ARCH_LIST" in why


def _fake_cuda(monkeypatch, archs, cap):
    monkeypatch.setattr(_extension, "LOADED", True)
    monkeypatch.setattr(_extension, "STALE", False)
    monkeypatch.setattr(_extension, "INFO", dict(_extension.INFO, cuda="1", cuda_archs=archs))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cap)
    api._arch_problem.cache_clear()


def test_auto_skips_cuda_when_no_kernel_image_fits(monkeypatch):
    """On a GPU newer than every built architecture (and no PTX), CUDA is unavailable with the
    reason; auto moves on instead of failing with "no kernel image is available"."""
    monkeypatch.setattr(api, "SELF_CHECKED", ())
    try:
        _fake_cuda(monkeypatch, "8.0,9.0", (12, 0))
        why = api._why_not("cuda", torch.device("cuda", 0))
        assert why and "12.0" in why and "sm_80" in why
        assert api._auto(torch.device("cuda", 0), torch.float32) != "cuda"
        with pytest.raises(RuntimeError, match="12.0"):
            api._resolve_backend("cuda", torch.device("cuda", 0), torch.float32)
        _fake_cuda(monkeypatch, "8.0,9.0+PTX", (12, 0))
        assert api._why_not("cuda", torch.device("cuda", 0)) is None
        assert api._auto(torch.device("cuda", 0), torch.float32) == "cuda"
    finally:
        api._arch_problem.cache_clear()


def test_build_info_reports_archs():
    info = camfast.build_info()
    assert {"cuda_archs", "cuda_sass", "cuda_ptx"} <= set(info)
    if info["cuda_kernels"] and info["cuda_archs"]:
        parsed = _extension.parse_arch_list(info["cuda_archs"])
        if parsed is not None:
            assert info["cuda_sass"] == [f"sm_{c}" for c in parsed[0]]
            assert info["cuda_ptx"] == [f"compute_{c}" for c in parsed[1]]
