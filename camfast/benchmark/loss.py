"""camfast-bench: speed and memory of the CAM-consistency loss (``python benchmarks/bench_loss.py``).

Providers: ``eager`` (``camfast.reference.cam_consistency_loss``), ``compile`` (``torch.compile``
of it, afresh per configuration) and the camfast backends this device has; modes ``forward``,
``backward`` (the forward re-run outside the timed region) and ``full``; ``--host``: the host
overhead per call at a size where the kernels cost nothing, the providers interleaved and alone. Timing,
memory and the bandwidth floor are the harness's (camfast/benchmark/harness.py); what is
measured and how is in docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from dataclasses import dataclass

import torch

from .harness import (MiB, device_name, fmt, last_level_cache, load_average, log, markdown, measure_bandwidth,
                      peak_memory, plot, positive_int, quantile, rotation_copies, sync, time_calls, write_csv)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("forward", "backward", "full")
WRT = ("real", "fake", "feats", "grads")
DEFAULT_WRT = ("fake", "feats", "grads")   # union of D's step (feats, grads) and G's step (fake)
FULL_GRID = dict(batch=(1, 16, 64), image=((3, 128, 128), (3, 256, 256)),
                 feat=((256, 16, 16), (512, 8, 8)), sources=(1, 2))
# --quick: the targets' sizes (benchmarks/RESULTS.md).
QUICK = (
    (16, (3, 128, 128), (256, 16, 16), 1),
    (64, (3, 256, 256), (256, 16, 16), 1),
)

# ---------------------------------------------------------------- configurations and bytes

@dataclass(frozen=True)
class Config:
    batch: int
    image: tuple      # (K, H, W)
    feat: tuple       # (C, h, w) of every source
    sources: int
    dtype: str

    def label(self) -> str:
        return (f"B={self.batch} {'x'.join(map(str, self.image))} "
                f"{'x'.join(map(str, self.feat))} S={self.sources} {self.dtype}")

    def numel(self) -> tuple[int, int]:
        """(elements of one image tensor, elements of one feats (or grads) tensor of all sources)."""
        k, h, w = self.image
        c, fh, fw = self.feat
        return self.batch * k * h * w, self.sources * self.batch * c * fh * fw


def bytes_moved(cfg: Config, mode: str, wrt=DEFAULT_WRT) -> int:
    """The bytes floor of docs/benchmarks.md, exactly, by dtype size.

    forward:  read real, fake, feats, grads once           2*E*img + 2*E*feat
    backward: read them once more, write each requested gradient once
              2*E*img + 2*E*feat + E*img*#{real, fake requested} + E*feat*#{feats, grads requested}
    full:     forward + backward
    (E = element size; img = B*K*H*W; feat = S*B*C*h*w. The scalar loss and the [B, h, w] mask are
    not counted.)
    """
    e = torch.empty((), dtype=DTYPES[cfg.dtype]).element_size()
    img, feat = cfg.numel()
    read = 2 * e * img + 2 * e * feat
    write = e * img * sum(n in wrt for n in ("real", "fake")) + e * feat * sum(n in wrt for n in ("feats", "grads"))
    return {"forward": read, "backward": read + write, "full": 2 * read + write}[mode]


def make_inputs(cfg: Config, device: torch.device, wrt, copies: int, seed: int = 0) -> list[dict]:
    """``copies`` independent input sets: real/fake images, activations and their gradients."""
    g = torch.Generator(device=device).manual_seed(seed)   # made on the device: fast on a GPU
    dt = DTYPES[cfg.dtype]
    b, (k, h, w), (c, fh, fw) = cfg.batch, cfg.image, cfg.feat
    kw = dict(generator=g, device=device)
    out = []
    for _ in range(copies):
        real = torch.rand(b, k, h, w, **kw) * 2 - 1
        fake = (real + 0.3 * torch.randn(b, k, h, w, **kw)).clamp(-1, 1)
        feats = [torch.randn(b, c, fh, fw, **kw).relu() for _ in range(cfg.sources)]
        grads = [torch.randn(b, c, fh, fw, **kw) * 1e-2 for _ in range(cfg.sources)]

        def prep(t, name):
            return t.to(dtype=dt).requires_grad_(name in wrt)

        out.append(dict(real=prep(real, "real"), fake=prep(fake, "fake"),
                        feats=[prep(t, "feats") for t in feats], grads=[prep(t, "grads") for t in grads]))
    return out


def grad_targets(x: dict, wrt) -> list:
    ts = []
    for name in WRT:
        if name in wrt:
            v = x[name]
            ts += v if isinstance(v, list) else [v]
    return ts


# ---------------------------------------------------------------- providers

def available_providers(device: torch.device) -> list[str]:
    import camfast

    names = ["eager", "compile"]
    avail = camfast.backends()
    wanted = ("cpu",) if device.type == "cpu" else ("cuda", "triton")
    names += [b for b in wanted if avail[b]["available"]]
    return names


def make_provider(name: str):
    """A function (real, fake, feats, grads) -> loss, and a flag: whether it compiles lazily."""
    import camfast
    from camfast import reference

    if name == "eager":
        return reference.cam_consistency_loss
    if name == "compile":
        torch._dynamo.reset()   # a fresh compile per configuration; no recompile limit reached
        return torch.compile(reference.cam_consistency_loss, dynamic=False)

    def fused(real, fake, feats, grads):
        return camfast.cam_consistency_loss(real, fake, feats, grads, backend=name)

    return fused


def _call(fn, x):
    return fn(x["real"], x["fake"], x["feats"], x["grads"])


def mode_fns(fn, inputs: list[dict], mode: str, wrt):
    """(setup, timed) for one mode; setup(i) picks input copy i (and runs the forward for backward)."""
    n = len(inputs)
    if mode == "forward":
        return (lambda i: inputs[i % n]), (lambda x: _call(fn, x))
    if mode == "full":
        def full(x):
            loss = _call(fn, x)
            return torch.autograd.grad(loss, grad_targets(x, wrt))
        return (lambda i: inputs[i % n]), full

    def setup(i):
        x = inputs[i % n]
        return _call(fn, x), grad_targets(x, wrt)

    return setup, (lambda st: torch.autograd.grad(st[0], st[1]))


# ---------------------------------------------------------------- host overhead

HOST_CONFIG = Config(1, (3, 8, 8), (4, 2, 2), 1, "fp32")
HOST_MODES = ("forward", "full")
HOST_BATCH = 20      # GPU: calls between synchronisations
HOST_ROUNDS = 400    # timed calls per provider and mode (after 50 of warm-up)


def cuda_graph_capture(fn, x: dict, wrt) -> str:
    """Whether forward + backward of ``fn`` can be captured in a CUDA graph and replayed."""
    try:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):   # warm-up on a side stream, as torch.cuda.graphs asks
            for _ in range(3):
                torch.autograd.grad(_call(fn, x), grad_targets(x, wrt))
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = torch.autograd.grad(_call(fn, x), grad_targets(x, wrt))
        graph.replay()
        torch.cuda.synchronize()
        want = torch.autograd.grad(_call(fn, x), grad_targets(x, wrt))
        ok = all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(out, want))
        return "yes" if ok else "captured, but the replay differs from an eager call"
    except Exception as e:  # report, do not fail the benchmark
        return f"no: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def run_host(args, device: torch.device, provs: list[str]) -> list[dict]:
    """Median time per call of every provider at HOST_CONFIG, one thread: interleaved, then alone."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    wrt = tuple(args.wrt)
    x = make_inputs(HOST_CONFIG, device, wrt, 1)[0]
    fns = {}
    for prov in provs:
        fn = make_provider(prov)
        try:
            torch.autograd.grad(_call(fn, x), grad_targets(x, wrt))   # compiles, if it does
            sync(device)
        except Exception as e:
            log(f"  host: {prov} failed, skipped: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            continue
        fns[prov] = fn
    times = {(p, m): [] for p in fns for m in HOST_MODES}
    calls = {p: {m: mode_fns(fn, [x], m, wrt)[1] for m in HOST_MODES} for p, fn in fns.items()}
    batch = HOST_BATCH if device.type == "cuda" else 1

    def once(timed) -> float:
        """Microseconds per call of ``timed``, over ``batch`` calls and one synchronisation."""
        t = time.perf_counter()
        for _ in range(batch):
            r = timed(x)
        sync(device)
        dt = (time.perf_counter() - t) / batch
        del r
        return dt * 1e6

    names = list(fns)
    for rnd in range(50 + HOST_ROUNDS):
        # A call right after another provider's pays for that one's cache footprint (about 14 us
        # forward after eager on the CPU): rotating the order gives every provider each predecessor.
        k = rnd % len(names)
        for p in names[k:] + names[:k]:
            for m in HOST_MODES:
                dt = once(calls[p][m])
                if rnd >= 50:
                    times[(p, m)].append(dt)
    # Then each provider alone, in its own loop, as timeit measures: its code and data stay in the
    # caches, so this is the least a call costs; the interleaved figure is what it costs amid other work.
    alone = {(p, m): statistics.median([once(calls[p][m]) for _ in range(50 + HOST_ROUNDS)][50:])
             for p in names for m in HOST_MODES}
    rows = []
    for p in fns:
        row = dict(provider=p, config=HOST_CONFIG.label(), device=device_name(device), threads=1)
        for m in HOST_MODES:
            ts = times[(p, m)]
            row[f"{m}_us"] = statistics.median(ts)
            row[f"{m}_p20_us"], row[f"{m}_p80_us"] = quantile(ts, 0.2), quantile(ts, 0.8)
            row[f"{m}_alone_us"] = alone[(p, m)]
        row["cuda_graph"] = cuda_graph_capture(fns[p], x, wrt) if device.type == "cuda" else "-"
        rows.append(row)
    for row in rows:
        for ref in ("eager", "compile"):
            base = next((r for r in rows if r["provider"] == ref), None)
            row[f"full_vs_{ref}"] = row["full_us"] / base["full_us"] if base else float("nan")
            row[f"full_alone_vs_{ref}"] = row["full_alone_us"] / base["full_alone_us"] if base else float("nan")
    torch.set_num_threads(threads)
    return rows


def host_markdown(rows: list[dict]) -> str:
    """Interleaved: median (p20-p80) of the rotated rounds; alone: median of the provider's own loop."""
    lines = ["| provider | forward us, interleaved (p20-p80) | alone | forward+backward us, interleaved (p20-p80) "
             "| alone | full / eager, interleaved / alone | full / compile, interleaved / alone | CUDA graph |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r['provider']} | {r['forward_us']:.1f} ({r['forward_p20_us']:.1f}-{r['forward_p80_us']:.1f}) "
            f"| {r['forward_alone_us']:.1f} "
            f"| {r['full_us']:.1f} ({r['full_p20_us']:.1f}-{r['full_p80_us']:.1f}) | {r['full_alone_us']:.1f} "
            f"| {r['full_vs_eager']:.2f} / {r['full_alone_vs_eager']:.2f} "
            f"| {r['full_vs_compile']:.2f} / {r['full_alone_vs_compile']:.2f} | {r['cuda_graph']} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- the run

def configs_from(args, device) -> list[Config]:
    dtypes = args.dtype or (["fp32", "bf16"] if device.type == "cuda" and not args.quick else ["fp32"])
    if args.quick:
        grid = QUICK
    else:
        grid = [(b, im, ft, s) for b in args.batch or FULL_GRID["batch"]
                for im in args.image or FULL_GRID["image"]
                for ft in args.feat or FULL_GRID["feat"]
                for s in args.sources or FULL_GRID["sources"]]
    return [Config(b, im, ft, s, dt) for dt in dtypes for (b, im, ft, s) in grid]


def providers(args, device: torch.device) -> list[str]:
    provs = available_providers(device)
    if args.provider:
        missing = [p for p in args.provider if p not in provs]
        if missing:
            raise SystemExit(f"camfast-bench: provider(s) {missing} not available on {device}; available: {provs}")
        provs = [p for p in provs if p in args.provider]
    return provs


def run(args) -> list[dict]:
    device = torch.device(args.device)
    wrt = tuple(args.wrt)
    provs = providers(args, device)
    modes = args.mode or list(MODES)
    llc = last_level_cache(device)
    bw = measure_bandwidth(device)
    log(f"bandwidth on {device}: copy {bw['copy_gbs']:.1f} GB/s, read {bw['read_gbs']:.1f} GB/s "
        f"(floor uses {bw['gbs']:.1f}); last-level cache {llc / MiB:.0f} MiB")
    configs = configs_from(args, device)
    rows = []
    for ci, cfg in enumerate(configs, 1):
        img, feat = cfg.numel()   # rotate copies of real, fake, feats and grads
        per_set = torch.empty((), dtype=DTYPES[cfg.dtype]).element_size() * 2 * (img + feat)
        copies = rotation_copies(per_set, device, llc)
        inputs = make_inputs(cfg, device, wrt, copies, seed=ci)
        log(f"[{ci}/{len(configs)}] {cfg.label()}: {copies} input copies")
        ref_loss, ref_name = None, None
        for prov in provs:
            fn = make_provider(prov)
            compile_s = float("nan")
            t = time.perf_counter()
            try:
                loss = _call(fn, inputs[0])           # first call: compiles, if it does
                torch.autograd.grad(loss, grad_targets(inputs[0], wrt))
                sync(device)
            except Exception as e:  # e.g. no C++ compiler for inductor: report, go on
                log(f"  {prov} failed, skipped: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                continue
            if prov == "compile":
                compile_s = time.perf_counter() - t
                log(f"  compile: {compile_s:.1f} s (first forward + backward)")
            val = float(loss.detach().float())
            if ref_loss is None:          # eager, unless --provider left it out
                ref_loss, ref_name = val, prov
            tol = 1e-3 if cfg.dtype == "fp32" else 3e-2
            if abs(val - ref_loss) > tol * max(abs(ref_loss), 1e-6):
                log(f"  WARNING: {prov} loss {val:.6g} differs from {ref_name}'s {ref_loss:.6g}")
            del loss
            for mode in modes:
                setup, timed = mode_fns(fn, inputs, mode, wrt)
                times = time_calls(setup, timed, device, args.reps, args.budget)
                peak, extra = peak_memory(setup, timed, device)
                med = statistics.median(times)
                nbytes = bytes_moved(cfg, mode, wrt)
                floor_ms = nbytes / (bw["gbs"] * 1e9) * 1e3
                rows.append(dict(
                    config=cfg.label(), batch=cfg.batch, image="x".join(map(str, cfg.image)),
                    feat="x".join(map(str, cfg.feat)), sources=cfg.sources, dtype=cfg.dtype,
                    mode=mode, provider=prov, reps=len(times), median_ms=med,
                    p20_ms=quantile(times, 0.2), p80_ms=quantile(times, 0.8),
                    peak_mib=peak / MiB, extra_mib=extra / MiB, bytes=nbytes,
                    floor_ms=floor_ms, floor_frac=floor_ms / med, compile_s=compile_s,
                    bandwidth_gbs=bw["gbs"], device=device_name(device),
                    threads=torch.get_num_threads(),
                ))
                log(f"  {mode:8s} {prov:7s} {med:9.3f} ms  (p20 {rows[-1]['p20_ms']:.3f}, "
                    f"p80 {rows[-1]['p80_ms']:.3f}, {len(times)} reps)  extra {extra / MiB:.1f} MiB")
            del fn
        del inputs
        if device.type == "cuda":
            torch.cuda.empty_cache()
    _speedups(rows)
    order = {m: i for i, m in enumerate(MODES)}
    labels = {c.label(): i for i, c in enumerate(configs)}
    rows.sort(key=lambda r: (labels[r["config"]], order[r["mode"]], provs.index(r["provider"])))
    return rows


def _speedups(rows: list[dict]) -> None:
    base = {(r["config"], r["mode"], r["provider"]): r["median_ms"] for r in rows}
    for r in rows:
        for ref in ("eager", "compile"):
            t = base.get((r["config"], r["mode"], ref))
            r[f"x_{ref}"] = t / r["median_ms"] if t else float("nan")


# ---------------------------------------------------------------- output

COLUMNS = [("config", "config"), ("mode", "mode"), ("provider", "provider"),
           ("median_ms", "median ms"), ("p20_ms", "p20"), ("p80_ms", "p80"),
           ("peak_mib", "peak MiB"), ("extra_mib", "extra MiB"), ("bytes", "MB moved"),
           ("floor_ms", "floor ms"), ("floor_frac", "floor %"), ("x_eager", "x eager"),
           ("x_compile", "x compile")]


def summary(rows: list[dict]) -> str:
    """One line per configuration and mode: every provider's median, and the camfast backends'
    speed-ups, fraction of the floor, and extra memory relative to eager's."""
    provs = list(dict.fromkeys(r["provider"] for r in rows))
    fused = [p for p in provs if p not in ("eager", "compile")]
    cols = [f"{p} ms" for p in provs]
    for p in fused:
        cols += [f"{p} x eager", f"{p} x compile", f"{p} floor %", f"{p} mem / eager"]
    lines = ["| config | mode | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    by = {}
    for r in rows:
        by.setdefault((r["config"], r["mode"]), {})[r["provider"]] = r
    for (cfg, mode), d in by.items():
        cells = [fmt("median_ms", d[p]["median_ms"]) if p in d else "-" for p in provs]
        for p in fused:
            r, e = d.get(p), d.get("eager")
            if r is None:
                cells += ["-"] * 4
                continue
            # only where eager needs a measurable amount (a ratio of a few KiB means nothing)
            mem = r["extra_mib"] / e["extra_mib"] if e and e["extra_mib"] >= 0.5 else float("nan")
            cells += [fmt("x_eager", r["x_eager"]), fmt("x_compile", r["x_compile"]),
                      fmt("floor_frac", r["floor_frac"]), "-" if mem != mem else f"{mem:.2f}"]
        lines.append(f"| {cfg} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def header(args, device: torch.device, rows: list[dict]) -> str:
    bw = rows[0]["bandwidth_gbs"] if rows else float("nan")
    return (f"camfast-bench {datetime.datetime.now().isoformat(timespec='minutes')} | {device_name(device)} | "
            f"torch {torch.__version__} | threads {torch.get_num_threads()} | load avg {load_average()} | "
            f"bandwidth {bw:.1f} GB/s | grads w.r.t. {','.join(args.wrt)}\n"
            f"command: camfast-bench {' '.join(args.argv)}")


# ---------------------------------------------------------------- command line

def _shape(n: int):
    def parse(s: str) -> tuple:
        parts = s.lower().split("x")
        try:
            vals = tuple(int(p) for p in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an int or CxHxW, got {s!r}")
        if len(vals) == 1 and n == 3:      # "128" -> 3x128x128
            vals = (3, vals[0], vals[0])
        if len(vals) != n or min(vals) < 1:
            raise argparse.ArgumentTypeError(f"expected {'x'.join('N' * n)} of positive ints, got {s!r}")
        return vals
    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="camfast-bench",
        description="Time and memory of the CAM-consistency loss: eager PyTorch, torch.compile and "
                    "the camfast backends, forward / backward / full, against the bytes floor.",
        epilog="Defaults: the full grid (B 1 16 64, images 128 256, feats 256x16x16 512x8x8, S 1 2; "
               "fp32, and bf16 on GPU). Table on stdout, progress on stderr, CSV and PNG in --out.")
    p.add_argument("--batch", type=positive_int, nargs="+", help="batch sizes")
    p.add_argument("--image", type=_shape(3), nargs="+", help="image shapes, KxHxW or H (=3xHxH)")
    p.add_argument("--feat", type=_shape(3), nargs="+", help="feature map shapes CxHxW of each CAM source")
    p.add_argument("--sources", type=positive_int, nargs="+", help="numbers of CAM sources S")
    p.add_argument("--dtype", choices=list(DTYPES), nargs="+", help="fp32 (default), bf16 (default too on GPU), fp16")
    p.add_argument("--mode", choices=MODES, nargs="+", help="default: all three")
    p.add_argument("--provider", nargs="+", help="eager, compile, cpu, cuda, triton (default: all this device has)")
    p.add_argument("--wrt", choices=WRT, nargs="+", default=list(DEFAULT_WRT),
                   help="inputs the gradient is taken with respect to (default: fake feats grads)")
    p.add_argument("--quick", action="store_true",
                   help="only B=16 3x128x128 and B=64 3x256x256, feats 256x16x16, S=1, fp32 (unless --dtype)")
    p.add_argument("--host", action="store_true",
                   help="also measure the host overhead per call: every provider at B=1 3x8x8 4x2x2, one thread")
    p.add_argument("--host-only", action="store_true", help="only the host-overhead table")
    p.add_argument("--reps", type=positive_int, help="timed calls per measurement (default: as many as fit in --budget, 10..200)")
    p.add_argument("--budget", type=float, help="seconds per measurement when --reps is not given (default 1; 0.3 with --quick)")
    p.add_argument("--threads", type=positive_int, help="CPU threads (default 2 on CPU, unchanged on GPU)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda (default: cuda if visible)")
    p.add_argument("--out", default="bench-out", help="folder for bench_loss.csv, bench_loss.png and (--host) bench_host.csv (default ./bench-out); '' for none")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    args.argv = argv
    if args.budget is None:
        args.budget = 0.3 if args.quick else 1.0
    if not args.budget > 0:
        raise SystemExit(f"camfast-bench: --budget: expected seconds > 0, got {args.budget}")
    if args.quick and (args.batch or args.image or args.feat or args.sources):
        raise SystemExit("camfast-bench: --quick fixes the sizes; drop --batch/--image/--feat/--sources or --quick")
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        raise SystemExit(f"camfast-bench: --device: {e}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("camfast-bench: --device cuda: no CUDA device is visible")
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"camfast-bench: --device: expected cpu or cuda, got {args.device!r}")
    if args.threads or device.type == "cpu":
        torch.set_num_threads(args.threads or 2)
    host_rows = []
    if args.host or args.host_only:
        log(f"host overhead: {HOST_CONFIG.label()}, one thread, providers interleaved, then alone")
        host_rows = run_host(args, device, providers(args, device))
    rows = [] if args.host_only else run(args)
    print(header(args, device, rows))
    print()
    if host_rows:
        print(f"Host overhead per call ({HOST_CONFIG.label()}, one thread, median of {HOST_ROUNDS} calls, "
              f"interleaved and alone{'; ' + str(HOST_BATCH) + ' calls per synchronisation' if device.type == 'cuda' else ''}):\n")
        print(host_markdown(host_rows))
        print()
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            write_csv(host_rows, os.path.join(args.out, "bench_host.csv"))
            log(f"wrote {os.path.join(args.out, 'bench_host.csv')}")
    if args.host_only:
        return 0
    if not rows:
        raise SystemExit("camfast-bench: nothing was measured")
    print(markdown(rows, COLUMNS))
    print("\nSummary (medians; mem / eager = extra MiB relative to eager's):\n")
    print(summary(rows))
    comp = [r for r in rows if r["provider"] == "compile" and r["mode"] == (args.mode or MODES)[0]]
    if comp:
        print("\ntorch.compile time (first forward + backward, excluded above):")
        print("\n".join(f"- {r['config']}: {r['compile_s']:.1f} s" for r in comp))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        write_csv(rows, os.path.join(args.out, "bench_loss.csv"))
        png = os.path.join(args.out, "bench_loss.png")
        drawn = plot(rows, png, MODES, f"cam_consistency_loss on {rows[0]['device']}")
        log(f"wrote {os.path.join(args.out, 'bench_loss.csv')}" + (f" and {png}" if drawn else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
