"""Building and loading: the in-place checkout flow. No GPU needed."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

import camfast

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
