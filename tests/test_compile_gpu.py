"""Every GPU kernel compiles for sm_80 and sm_90 without local-memory spills; no GPU needed.

One run of benchmarks/kernel_resources.py (its --quick set of Triton configurations) in a fresh
process without TRITON_INTERPRET:
- Triton: every @triton.jit kernel, at the specialisations its launcher picks for realistic
  sizes (B 16/64, C 256, 16x16 and 64x64 features, 3x128^2 and 3x256^2 images, S 1/2,
  fp32/bf16/fp16, the gradients G's and D's steps request) and for edge sizes, compiled with
  triton.compile for GPUTarget("cuda", 80/90, 32): no compile error, no spill at the realistic
  sizes, no approximate fp32 division in the PTX.
- CUDA: csrc/cuda/*.cu compiled with the build's flags and -Xptxas -v for sm_80 and sm_90: no
  spill in any instantiation (fp32, fp16, bf16 and fp64).
Results are cached (build/kernel-resources/ and Triton's cache): the first run on a machine
takes a minute or two, later runs seconds.
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "kernel_resources.py")

pytest.importorskip("triton")


def _load_script():
    spec = importlib.util.spec_from_file_location("kernel_resources", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


KR = _load_script()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("resources") / "rows.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CAMFAST_QUIET"] = "1"
    res = subprocess.run([sys.executable, SCRIPT, "--quick", "--json", str(out)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    with open(out) as f:
        data = json.load(f)
    data["stdout"] = res.stdout
    return data


def _jit_kernel_names():
    """Every @triton.jit kernel defined in kernels/ (by source: this process may be interpreted)."""
    import ast

    names = set()
    for mod in ("cam_mask.py", "masked_l1.py"):
        with open(os.path.join(ROOT, "kernels", mod)) as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_kernel") and any(
                    "jit" in ast.unparse(d) for d in node.decorator_list):
                names.add(node.name)
    return names


def test_every_triton_kernel_compiles_for_sm80_and_sm90(report):
    rows = report["triton"]
    errors = [r for r in rows if r.get("error")]
    assert not errors, "\n".join(f"{r['kernel']} sm_{r['arch']}: {r['error']}" for r in errors)
    kernels = _jit_kernel_names()
    assert len(kernels) == 9, kernels
    for arch in KR.ARCHS:
        compiled = {r["kernel"] for r in rows if r["arch"] == arch and r["realistic"]}
        assert compiled == kernels, (arch, kernels - compiled)
    # The kernels that read or write storage dtypes were compiled in each of them.
    for kernel in ("_cam_partial_kernel", "_cam_input_grad_kernel", "_masked_l1_fwd_kernel",
                   "_masked_l1_bwd_kernel", "_sum_rows_kernel"):
        assert {r["dtype"] for r in rows if r["kernel"] == kernel and r["realistic"]} == {"fp32", "bf16", "fp16"}


def test_triton_kernels_do_not_spill_at_realistic_sizes(report):
    bad = [r for r in report["triton"] if r["realistic"] and (r["spill_st"] or r["spill_ld"] or r["stack"])]
    assert not bad, "\n".join(f"{r['kernel']} {r['dtype']} {r['constexprs']} sm_{r['arch']}: {r['regs']} regs, "
                              f"{r['spill_st']}/{r['spill_ld']} B spilled" for r in bad)
    assert max(r["regs"] for r in report["triton"]) <= 255


def test_triton_kernels_divide_round_to_nearest(report):
    """Triton's fp32 '/' is div.full.f32 on a GPU (up to 2 ulp); the kernels use div_rn."""
    bad = [f"{r['kernel']} sm_{r['arch']}" for r in report["triton"] if r["approx_div"]]
    assert not bad, bad


def test_cuda_kernels_do_not_spill(report):
    rows = report["cuda"]
    if rows is None:
        pytest.skip("nvcc not found")
    kernels = {r["kernel"] for r in rows}
    assert {"cam_partial_kernel", "cam_finish_forward_kernel", "cam_finish_backward_kernel", "cam_input_grad_kernel",
            "l1_forward_kernel", "l1_reduce_kernel", "l1_backward_kernel", "l1_index_kernel",
            "l1_mask_grad_kernel"} <= kernels
    for dtype in ("fp32", "fp16", "bf16"):
        for arch in KR.ARCHS:
            assert any(r["dtype"] == dtype and r["arch"] == arch for r in rows), (dtype, arch)
    bad = [r for r in rows if r["spill_st"] or r["spill_ld"] or r["stack"]]
    assert not bad, "\n".join(f"{r['kernel']}<{r['dtype']}> sm_{r['arch']}: {r['regs']} regs, "
                              f"{r['spill_st']}/{r['spill_ld']} B spilled, {r['stack']} B stack" for r in bad)


def test_docs_have_the_resource_tables():
    with open(KR.DOC) as f:
        doc = f.read()
    for tag in ("cuda", "triton"):
        begin, end = KR.MARK.format(tag, "begin"), KR.MARK.format(tag, "end")
        assert begin in doc and end in doc
        assert "| kernel |" in doc[doc.index(begin):doc.index(end)]


def test_parse_ptxas():
    log = """ptxas info    : Compiling entry function '_Z3fooPf' for 'sm_90'
ptxas info    : Function properties for _Z3fooPf
    16 bytes stack frame, 20 bytes spill stores, 24 bytes spill loads
ptxas info    : Used 80 registers, used 1 barriers, 16 bytes cumulative stack size, 1088 bytes smem
ptxas info    : Compiling entry function '_Z3barv' for 'sm_90'
ptxas info    : Function properties for _Z3barv
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers, used 0 barriers
"""
    got = KR.parse_ptxas(log)
    assert got["_Z3fooPf"] == dict(regs=80, spill_st=20, spill_ld=24, stack=16, smem=1088)
    assert got["_Z3barv"] == dict(regs=12, spill_st=0, spill_ld=0, stack=0, smem=0)
