"""The CPU kernels' two compiled copies of their row loops (baseline x86-64 and AVX2, picked per
process: csrc/cpu/reduce.h) give the same bits, so a result does not depend on the machine's
instruction set. The baseline copy runs in a subprocess with CAMFAST_CPU_ISA=baseline."""
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import camfast

if not camfast.backends()["cpu"]["available"]:
    pytest.skip("camfast._C CPU kernels not built", allow_module_level=True)


ROOT = Path(__file__).resolve().parents[1]
# (B, K, H, W, h, w): a mask that does not divide the image, one of a single pixel, and sizes
# whose rows end inside an 8-float vector.
SHAPES = [(2, 3, 9, 7, 3, 4), (1, 1, 1, 1, 1, 1), (3, 2, 17, 33, 5, 2), (2, 3, 40, 24, 16, 16)]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
FLAGS = list(itertools.product((False, True), repeat=3))

# Runs in both processes: every masked_l1 result, for every shape, dtype, reduction and
# combination of requested gradients, from the inputs saved in `path`.
COMPUTE = """
import os, sys, itertools, torch, camfast
assert camfast.build_info()["cpu_simd"] == os.environ["CAMFAST_CPU_ISA"], camfast.build_info()
ns = torch.ops.camfast
cases = torch.load(sys.argv[1])
out = []
for real, fake, mask, red in cases:
    g = torch.linspace(-1.5, 2.0, real.shape[0]) if red == "none" else torch.tensor(0.75)
    out.append(ns.masked_l1(real, fake, mask, red))
    for flags in itertools.product((False, True), repeat=3):
        out.extend(ns.masked_l1_backward(g, real, fake, mask, red, *flags))
torch.save(out, sys.argv[2])
"""


def _cases():
    gen = torch.Generator().manual_seed(0)
    cases = []
    for (B, K, H, W, h, w), dtype, red in itertools.product(SHAPES, DTYPES, ("mean", "none")):
        real = torch.rand(B, K, H, W, generator=gen) * 2 - 1
        fake = real + 0.3 * torch.randn(B, K, H, W, generator=gen)
        fake.view(-1)[::5] = real.view(-1)[::5]  # ties: sign(0) = 0
        mask = torch.rand(B, h, w, generator=gen, dtype=torch.float64)
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        cases.append((real.to(dtype), fake.to(dtype), mask.to(acc), red))
    return cases


@pytest.mark.skipif(camfast.build_info()["cpu_simd"] != "avx2",
                    reason="this process runs the baseline copy (no AVX2, or CAMFAST_CPU_ISA=baseline)")
def test_baseline_and_avx2_copies_give_the_same_bits(tmp_path):
    cases = _cases()
    torch.save(cases, tmp_path / "cases.pt")
    for isa in ("baseline", "avx2"):
        env = dict(os.environ, CAMFAST_CPU_ISA=isa)
        subprocess.run([sys.executable, "-c", COMPUTE, str(tmp_path / "cases.pt"), str(tmp_path / f"{isa}.pt")],
                       check=True, env=env, timeout=300, cwd=ROOT)  # cwd first on sys.path: this checkout
    base, avx2 = torch.load(tmp_path / "baseline.pt"), torch.load(tmp_path / "avx2.pt")
    assert len(base) == len(avx2) == len(cases) * (1 + 3 * len(FLAGS))
    for i, (a, b) in enumerate(zip(base, avx2)):
        assert a.dtype == b.dtype and a.shape == b.shape, i
        # NaN != NaN would hide nothing here: no input is NaN and no output may be.
        assert torch.equal(a, b), f"result {i} differs between the baseline and AVX2 copies"
