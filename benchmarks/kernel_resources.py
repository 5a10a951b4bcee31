#!/usr/bin/env python
"""Registers, spills and shared memory of every GPU kernel of camfast, measured without a GPU.

    python benchmarks/kernel_resources.py            # print both tables
    python benchmarks/kernel_resources.py --write    # ... and rewrite them in docs/kernels.md
    python benchmarks/kernel_resources.py --check    # exit 1 on a compile error or a spill

CUDA (csrc/cuda/*.cu): compiled for sm_80 and sm_90, device code only, with the flags of the
build (setup.py's NVCC_FLAGS and the ones torch's CUDAExtension adds) and ``-Xptxas -v``; for
every kernel instantiation: registers, spill stores/loads, stack frame, static shared memory.

Triton (kernels/): every ``@triton.jit`` kernel compiled ahead of time for sm_80 and sm_90
(``triton.compile`` with a GPUTarget) at exactly the specialisation its launcher picks: the
launchers run on meta tensors for the configurations of ``triton_configs()`` while every kernel
is replaced by a recorder, and each recorded launch is specialised the way the Triton JIT does
it (argument types, divisibility, constexprs). Triton's bundled ptxas (``-v``) reports
registers, spills and shared memory; the PTX is also searched for approximate fp32 division
(``div.full.f32``/``div.approx.f32``), which the kernels must not use.

Realistic configurations (the spill check applies to them): B 16 and 64, features 256 x 16 x 16
and 256 x 64 x 64, images 3 x 128^2 and 3 x 256^2, S 1 and 2, fp32/bf16/fp16, the gradients
that G's and D's steps request. Edge configurations (tiny and odd sizes) must compile.

Results are cached under build/kernel-resources/ (keyed by the PTX / source hash), and Triton
caches its compilations, so a second run takes seconds. ``--json PATH`` writes the raw rows.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import glob
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "kernels.md")
CACHE = os.path.join(ROOT, "build", "kernel-resources")
ARCHS = (80, 90)
MARK = "<!-- kernel-resources:{}:{} -->"

# ---------------------------------------------------------------- shared


def parse_ptxas(log: str) -> dict:
    """{mangled kernel: {regs, spill_st, spill_ld, stack, smem}} from a ``ptxas -v`` log."""
    out: dict = {}
    current = None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            current = out.setdefault(m.group(1), dict(regs=0, spill_st=0, spill_ld=0, stack=0, smem=0))
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            current["stack"], current["spill_st"], current["spill_ld"] = map(int, m.groups())
        m = re.search(r"Used (\d+) registers", line)
        if m:
            current["regs"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            current["smem"] = int(s.group(1)) if s else 0
    return out


def _cache_get(key: str):
    path = os.path.join(CACHE, key + ".json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return None


def _cache_put(key: str, value) -> None:
    os.makedirs(CACHE, exist_ok=True)
    tmp = os.path.join(CACHE, f"{key}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, os.path.join(CACHE, key + ".json"))


def _sha(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
    return h.hexdigest()[:24]


# ---------------------------------------------------------------- CUDA


def find_nvcc() -> str | None:
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.path.isfile(os.path.join(home, "bin", "nvcc")):
            return os.path.join(home, "bin", "nvcc")
    return shutil.which("nvcc")


def build_nvcc_flags() -> list:
    """setup.py's NVCC_FLAGS (read from its source) plus what torch's CUDAExtension adds."""
    with open(os.path.join(ROOT, "setup.py")) as f:
        tree = ast.parse(f.read())
    ours = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "NVCC_FLAGS" for t in node.targets):
            ours = ast.literal_eval(node.value)
    if ours is None:
        raise RuntimeError("setup.py defines no NVCC_FLAGS")
    torch_flags = ["-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
                   "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__",
                   "--expt-relaxed-constexpr", "-std=c++20"]
    return torch_flags + list(ours)


_DTYPES = {"float": "fp32", "__half": "fp16", "__nv_bfloat16": "bf16", "double": "fp64"}


def _demangle(names: list) -> dict:
    filt = shutil.which("c++filt")
    if not filt or not names:
        return {n: n for n in names}
    out = subprocess.run([filt], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return dict(zip(names, out)) if len(out) == len(names) else {n: n for n in names}


def _short(demangled: str):
    """('l1_backward_kernel', 'fp16') from the demangled signature."""
    m = re.search(r"(\w+_kernel)<([^>]*)>", demangled)
    if not m:
        m2 = re.search(r"(\w+_kernel)", demangled)
        return (m2.group(1) if m2 else demangled), ""
    return m.group(1), _DTYPES.get(m.group(2).strip(), m.group(2).strip())


def cuda_resources(verbose: bool = False) -> list | None:
    """Rows {source, kernel, dtype, arch, regs, spill_st, spill_ld, stack, smem}; None without nvcc."""
    nvcc = find_nvcc()
    if nvcc is None:
        return None
    flags = build_nvcc_flags()
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    sources = sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))
    headers = sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cuh")) + glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.h")))
    rows = []
    for src, arch in itertools.product(sources, ARCHS):
        blobs = [open(p, "rb").read() for p in [src] + headers]
        key = "cuda-" + _sha(version, flags, arch, *blobs)
        parsed = _cache_get(key)
        if parsed is None:
            t0 = time.time()
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [nvcc, "-cubin", f"-arch=sm_{arch}", "-Xptxas", "-v", "-I", os.path.join(ROOT, "csrc"),
                       *flags, src, "-o", os.path.join(tmp, "k.cubin")]
                res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"nvcc failed on {src} for sm_{arch}:\n{res.stderr[-4000:]}")
            parsed = parse_ptxas(res.stderr)
            _cache_put(key, parsed)
            if verbose:
                print(f"  nvcc {os.path.basename(src)} sm_{arch}: {time.time() - t0:.1f}s", file=sys.stderr)
        names = _demangle(sorted(parsed))
        for mangled, r in parsed.items():
            kernel, dtype = _short(names[mangled])
            rows.append(dict(source=os.path.basename(src), kernel=kernel, dtype=dtype, arch=arch, **r))
    rows.sort(key=lambda r: (r["source"], r["kernel"], r["dtype"], r["arch"]))
    return rows


# ---------------------------------------------------------------- Triton


def triton_configs(quick: bool = False):
    """(name, realistic, stage, kwargs) for the launchers; see the module docstring.

    ``quick`` (the CI test): fewer combinations of the same sizes, still every kernel in every
    dtype at realistic sizes, the backward's three gradient sets and the largest windows."""
    out = []
    dtypes = ("fp32", "bf16", "fp16")
    TT, TF = (True, True), (True, False)
    ALL, G_STEP, D_STEP = (True, True, True), (False, True, False), (False, False, True)
    if quick:
        cams = [((16, 256, 16, 16), 2, dt, (TT, TF), ("minmax",)) for dt in dtypes] + [
            ((64, 256, 64, 64), 1, "fp32", (TT,), ("minmax", "max"))]
        l1s = ([((16, 3, 128, 128, 16, 16), dt, ("mean",), (ALL,) if dt != "fp32" else (ALL, G_STEP, D_STEP))
                for dt in dtypes]
               + [((16, 3, 128, 128, 64, 64), dt, ("mean",), (ALL,)) for dt in ("fp32", "fp16")]
               + [((64, 3, 256, 256, 64, 64), "fp32", ("mean", "none"), (ALL, G_STEP, D_STEP))])
    else:
        cams = [(shape, S, dt, (TT, TF), ("minmax", "max")) for shape, S, dt in itertools.product(
            [(16, 256, 16, 16), (64, 256, 64, 64)], (1, 2), dtypes)]
        l1s = [(shape, dt, ("mean", "none"), (ALL, G_STEP, D_STEP)) for shape, dt in itertools.product(
            [(16, 3, 128, 128, 16, 16), (64, 3, 256, 256, 16, 16), (16, 3, 128, 128, 64, 64),
             (64, 3, 256, 256, 64, 64)], dtypes)]
    for (B, C, h, w), S, dt, need, normalizes in cams:
        for normalize in normalizes:
            out.append((f"cam B{B} C{C} {h}x{w} S{S} {dt} {normalize}", True, "cam",
                        dict(B=B, Cs=(C,) * S, h=h, w=w, dtype=dt, normalize=normalize, need=need)))
    for (B, K, H, W, h, w), dt, reductions, need in l1s:
        out.append((f"l1 B{B} {K}x{H}x{W} mask {h}x{w} {dt}", True, "l1",
                    dict(B=B, K=K, H=H, W=W, h=h, w=w, dtype=dt, reductions=reductions, need=need)))
    # Edge sizes: must compile (no spill check).
    for (B, Cs, h, w) in [(2, (5, 3), 3, 7)] + ([] if quick else [(1, (1,), 1, 1), (1, (37,), 1, 300)]):
        out.append((f"cam edge B{B} C{Cs} {h}x{w}", False, "cam",
                    dict(B=B, Cs=Cs, h=h, w=w, dtype="fp32", normalize="minmax", need=(TT,))))
    for (B, K, H, W, h, w) in [(2, 3, 13, 10, 3, 4), (1, 2, 2, 3, 16, 16)] + (
            [] if quick else [(1, 1, 1, 1, 1, 1), (1, 1, 3, 4000, 5, 5)]):
        out.append((f"l1 edge B{B} {K}x{H}x{W} mask {h}x{w}", False, "l1",
                    dict(B=B, K=K, H=H, W=W, h=h, w=w, dtype="fp32", reductions=("mean", "none", "sum"),
                         need=(ALL,))))
    return out


def _record_launches(configs):
    """Run the launchers on meta tensors with every @triton.jit kernel replaced by a recorder;
    returns [(kernel name, JITFunction, args, kwargs, config name, realistic)]."""
    os.environ.pop("TRITON_INTERPRET", None)
    sys.path.insert(0, ROOT)
    import importlib

    import torch
    from triton.runtime.jit import JITFunction

    kernels = importlib.import_module("camfast.kernels")
    if kernels.INTERPRETED:
        raise RuntimeError("camfast.kernels was imported under TRITON_INTERPRET=1: run this in a fresh process")
    mods = [importlib.import_module("camfast.kernels.cam_mask"), importlib.import_module("camfast.kernels.masked_l1")]
    records = []
    state = {"config": None}

    class Recorder:
        def __init__(self, name, fn):
            self.name, self.fn = name, fn

        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                records.append((self.name, self.fn, args, kwargs) + state["config"])
            return launch

    originals = []
    for m in mods:
        for name, obj in list(vars(m).items()):
            if isinstance(obj, JITFunction):
                originals.append((m, name, obj))
                setattr(m, name, Recorder(name, obj))
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    meta = torch.device("meta")
    try:
        for cname, realistic, stage, kw in configs:
            state["config"] = (cname, realistic)
            dtype = dt[kw["dtype"]]
            if stage == "cam":
                B, h, w = kw["B"], kw["h"], kw["w"]
                feats = [torch.empty(B, C, h, w, dtype=dtype, device=meta) for C in kw["Cs"]]
                grads = [torch.empty(B, C, h, w, dtype=dtype, device=meta) for C in kw["Cs"]]
                mods[0].cam_mask(feats, grads, kw["normalize"], 1e-6)
                for nf, ng in kw["need"]:
                    mods[0].cam_mask_backward(torch.empty(B, h, w, device=meta), feats, grads, kw["normalize"], 1e-6,
                                              nf, ng)
            else:
                B, K, H, W, h, w = (kw[k] for k in "BKHWhw")
                real = torch.empty(B, K, H, W, dtype=dtype, device=meta)
                mask = torch.empty(B, h, w, dtype=torch.float32, device=meta)
                for red in kw["reductions"]:
                    mods[1].masked_l1(real, real, mask, red)
                    g = torch.empty((B,) if red == "none" else (), device=meta)
                    for need in kw["need"]:
                        mods[1].masked_l1_backward(g, real, real, mask, red, *need)
    finally:
        for m, name, obj in originals:
            setattr(m, name, obj)
    return records


def _specialise(fn, args, kwargs, backend):
    """What JITFunction.run would compile for these arguments: (options, signature, constexprs, attrs)."""
    from triton import knobs
    from triton.runtime.jit import create_function_from_signature

    kwargs = dict(kwargs)
    kwargs["debug"] = kwargs.get("debug", fn.debug) or knobs.runtime.debug
    kwargs["instrumentation_mode"] = knobs.compilation.instrumentation_mode
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound_args, specialization, options = binder(*args, **kwargs)
    return fn._pack_args(backend, kwargs, bound_args, specialization, options)


def _ptxas_path(arch: int) -> str:
    from triton import knobs

    return (knobs.nvidia.ptxas_blackwell if arch >= 100 else knobs.nvidia.ptxas).path


APPROX_DIV = re.compile(r"\b(div\.full\.f32|div\.approx\.f32|div\.approx\.ftz\.f32)\b")


def triton_resources(configs=None, verbose: bool = False) -> list:
    """Rows {kernel, dtype, arch, regs, spill_st, spill_ld, stack, smem, configs, realistic,
    constexprs, approx_div}: one per distinct compiled specialisation and arch."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import sm_arch_from_capability
    from triton.compiler import ASTSource, make_backend

    records = _record_launches(configs or triton_configs())
    groups: dict = {}
    for arch in ARCHS:
        target = GPUTarget("cuda", arch, 32)
        backend = make_backend(target)
        for name, fn, args, kwargs, cname, realistic in records:
            options, signature, constexprs, attrs = _specialise(fn, args, kwargs, backend)
            key = (name, arch, repr(sorted(signature.items())), repr(sorted(constexprs.items())),
                   repr(sorted(attrs.items())), options.num_warps, options.num_stages)
            g = groups.get(key)
            if g is None:
                g = groups[key] = dict(name=name, fn=fn, arch=arch, target=target, options=options,
                                       signature=signature, constexprs=constexprs, attrs=attrs,
                                       configs=[], realistic=False)
            g["configs"].append(cname)
            g["realistic"] |= realistic
    ptxas_version = {a: subprocess.run([_ptxas_path(a), "--version"], capture_output=True, text=True).stdout
                     for a in ARCHS}
    rows = []
    for g in groups.values():
        t0 = time.time()
        try:
            ck = triton.compile(ASTSource(g["fn"], g["signature"], g["constexprs"], g["attrs"]),
                                target=g["target"], options=g["options"].__dict__)
        except Exception as e:  # a compile error is a finding, not a crash of the report
            rows.append(dict(kernel=g["name"], arch=g["arch"], error=f"{type(e).__name__}: {e}"[:2000],
                             configs=sorted(set(g["configs"])), realistic=g["realistic"], dtype="", regs=0,
                             spill_st=0, spill_ld=0, stack=0, smem=0, approx_div=False, constexprs=""))
            continue
        ptx = ck.asm["ptx"]
        key = "triton-" + _sha(ptx, g["arch"], ptxas_version[g["arch"]])
        res = _cache_get(key)
        if res is None:
            with tempfile.TemporaryDirectory() as tmp:
                src = os.path.join(tmp, "k.ptx")
                with open(src, "w") as f:
                    f.write(ptx)
                cmd = [_ptxas_path(g["arch"]), "-lineinfo", "-v", "--regAllocOptLevel=2",
                       f"--gpu-name={sm_arch_from_capability(g['arch'])}", src, "-o", os.path.join(tmp, "k.cubin")]
                out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"ptxas failed on {g['name']}:\n{out.stderr[-3000:]}")
            parsed = parse_ptxas(out.stderr)
            res = next(iter(parsed.values())) if parsed else dict(regs=0, spill_st=0, spill_ld=0, stack=0, smem=0)
            _cache_put(key, res)
        ptr_types = [v for k, v in g["signature"].items() if isinstance(v, str) and v.startswith("*")]
        data = [t[1:] for t in ptr_types if t[1:] in ("bf16", "fp16")]
        dtype = data[0] if data else "fp32"
        rows.append(dict(kernel=g["name"], dtype=dtype, arch=g["arch"], **res,
                         smem_total=max(res["smem"], int(ck.metadata.shared)),
                         num_warps=g["options"].num_warps, configs=sorted(set(g["configs"])),
                         realistic=g["realistic"], approx_div=bool(APPROX_DIV.search(ptx)),
                         constexprs=_constexpr_text(g["fn"], g["constexprs"]), error=None))
        if verbose:
            print(f"  {g['name']:28s} sm_{g['arch']} {dtype:4s} {time.time() - t0:5.1f}s", file=sys.stderr)
    rows.sort(key=lambda r: (r["kernel"], r["dtype"], r["constexprs"], r["arch"]))
    return rows


def _constexpr_text(fn, constexprs) -> str:
    names = fn.arg_names
    parts = []
    for path, v in sorted(constexprs.items(), key=lambda kv: kv[0]):
        i = path[0] if isinstance(path, tuple) else path
        name = names[i] if isinstance(i, int) and i < len(names) else str(i)
        if name.isupper():  # the kernel's own constexprs, not ints specialised to 1
            parts.append(f"{name}={int(v) if isinstance(v, bool) else v}")
    return " ".join(parts)


# ---------------------------------------------------------------- report


def problems(cuda_rows, triton_rows) -> list:
    out = []
    for r in cuda_rows or []:
        if r["spill_st"] or r["spill_ld"] or r["stack"]:
            out.append(f"CUDA {r['kernel']}<{r['dtype']}> sm_{r['arch']}: {r['spill_st']} B spill stores, "
                       f"{r['spill_ld']} B spill loads, {r['stack']} B stack")
    for r in triton_rows or []:
        what = f"Triton {r['kernel']} ({r.get('dtype')}, {r['constexprs']}) sm_{r['arch']}"
        if r.get("error"):
            out.append(f"{what}: compile error: {r['error']}")
            continue
        if r["approx_div"]:
            out.append(f"{what}: approximate fp32 division in the PTX")
        if r["realistic"] and (r["spill_st"] or r["spill_ld"] or r["stack"]):
            out.append(f"{what}: {r['spill_st']} B spill stores, {r['spill_ld']} B spill loads, {r['stack']} B stack "
                       f"(configs: {'; '.join(r['configs'][:3])})")
    return out


def _cell(r) -> str:
    spill = r["spill_st"] + r["spill_ld"]
    return f"{r['regs']} / {spill} / {r.get('smem_total', r['smem'])}"


def cuda_table(rows) -> str:
    if rows is None:
        return "_nvcc not found: table not generated._"
    lines = ["| kernel | dtype | sm_80 regs / spill B / smem B | sm_90 regs / spill B / smem B |",
             "|---|---|---|---|"]
    table: dict = {}
    for r in rows:
        table.setdefault((r["source"], r["kernel"], r["dtype"]), {})[r["arch"]] = r
    for (src, kernel, dtype), by_arch in sorted(table.items()):
        cells = [_cell(by_arch[a]) if a in by_arch else "-" for a in ARCHS]
        lines.append(f"| `{kernel}` | {dtype} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def triton_table(rows) -> str:
    """Per kernel and dtype, over its realistic specialisations: the largest registers, spill
    and shared memory (the specialisations differ in block sizes and gradient flags)."""
    lines = ["| kernel | dtype | specialisations | sm_80 max regs / spill B / smem B | sm_90 max regs / spill B / smem B |",
             "|---|---|---|---|---|"]
    table: dict = {}
    for r in rows:
        if not r["realistic"] or r.get("error"):
            continue
        table.setdefault((r["kernel"], r["dtype"]), {}).setdefault(r["arch"], []).append(r)
    for (kernel, dtype), by_arch in sorted(table.items()):
        cells = []
        for a in ARCHS:
            rs = by_arch.get(a, [])
            if not rs:
                cells.append("-")
                continue
            cells.append(f"{max(r['regs'] for r in rs)} / {max(r['spill_st'] + r['spill_ld'] for r in rs)} / "
                         f"{max(r['smem_total'] for r in rs)}")
        n = max(len(v) for v in by_arch.values())
        lines.append(f"| `{kernel}` | {dtype} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_docs(cuda_text: str, triton_text: str) -> None:
    with open(DOC) as f:
        doc = f.read()
    for tag, text in (("cuda", cuda_text), ("triton", triton_text)):
        begin, end = MARK.format(tag, "begin"), MARK.format(tag, "end")
        if begin not in doc or end not in doc:
            raise RuntimeError(f"docs/kernels.md lacks the markers {begin} ... {end}")
        a, b = doc.index(begin) + len(begin), doc.index(end)
        doc = doc[:a] + "\n" + text + "\n" + doc[b:]
    tmp = DOC + ".tmp"
    with open(tmp, "w") as f:
        f.write(doc)
    os.replace(tmp, DOC)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite the tables in docs/kernels.md")
    ap.add_argument("--check", action="store_true", help="exit 1 on a compile error, a spill or approximate division")
    ap.add_argument("--cuda-only", action="store_true")
    ap.add_argument("--triton-only", action="store_true")
    ap.add_argument("--quick", action="store_true", help="the CI subset of Triton configurations")
    ap.add_argument("--json", help="write the raw rows to this file")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.time()
    cuda_rows = None if args.triton_only else cuda_resources(args.verbose)
    triton_rows = None if args.cuda_only else triton_resources(triton_configs(args.quick), verbose=args.verbose)
    if cuda_rows is not None:
        print("CUDA kernels (regs / spill bytes / static smem bytes):\n" + cuda_table(cuda_rows) + "\n")
    elif not args.triton_only:
        print("CUDA: nvcc not found, skipped\n")
    if triton_rows is not None:
        print("Triton kernels, realistic specialisations (regs / spill bytes / smem bytes):\n"
              + triton_table(triton_rows) + "\n")
        print(f"{len(triton_rows)} Triton compilations "
              f"({sum(r['realistic'] for r in triton_rows)} at realistic sizes)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(cuda=cuda_rows, triton=[{k: v for k, v in r.items()} for r in triton_rows or []]), f,
                      indent=1, default=str)
    if args.write:
        if cuda_rows is None or triton_rows is None or args.quick:
            print("--write needs both tables, from the full set of configurations", file=sys.stderr)
            return 2
        write_docs(cuda_table(cuda_rows), triton_table(triton_rows))
        print(f"wrote the tables to {os.path.relpath(DOC, ROOT)}")
    found = problems(cuda_rows, triton_rows)
    for p in found:
        print("PROBLEM:", p)
    print(f"done in {time.time() - t0:.0f}s")
    return 1 if (args.check and found) else 0


if __name__ == "__main__":
    sys.exit(main())
