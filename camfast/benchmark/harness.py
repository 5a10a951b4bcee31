"""The benchmark harness: timing, peak memory, bandwidth floor, tables, CSV and plot.

Public and free of any one benchmark; camfast/benchmark/loss.py (``camfast-bench``) and
benchmarks/bench_train_step.py are built on it. A measurement takes ``setup(i)``, run outside
the timed region (pick input copy ``i``, run what must come first), and ``timed(state)``; see
``time_calls`` and ``peak_memory``. CONTRIBUTING.md says how to add a benchmark.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import sys
import time

import torch

MiB = 2 ** 20


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {s!r}")
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {s!r}")
    return v


def last_level_cache(device: torch.device, base: str = "/sys/devices/system/cpu/cpu0/cache") -> int:
    """Bytes of the largest cache: the GPU's L2, or the largest CPU cache listed under ``base``."""
    if device.type == "cuda":
        return int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 50 * MiB))
    try:
        entries = os.listdir(base)
    except OSError:
        entries = []
    best = 0
    # Only the index* folders describe caches; the folder also holds files such as uevent, and
    # one unreadable entry must not end the search (it once left the 32 MiB default in place of
    # a 480 MiB L3, so the rotation kept its inputs in the cache).
    for name in entries:
        if not name.startswith("index"):
            continue
        try:
            with open(os.path.join(base, name, "size")) as f:
                best = max(best, parse_cache_size(f.read()))
        except (OSError, ValueError):
            continue
    return best or 32 * MiB


def parse_cache_size(text: str) -> int:
    """Bytes of a sysfs cache size such as '48K', '2048K', '491520K' or '32M'."""
    s = text.strip()
    mult = {"K": 1024, "M": MiB, "G": 1024 * MiB}.get(s[-1:].upper(), 1)
    return int(s.rstrip("KMGkmg")) * mult


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def rotation_copies(per_set: int, device: torch.device, llc: int) -> int:
    """Input sets of ``per_set`` bytes to rotate: 3..64, >= twice the cache together, in memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = free // 4
    else:
        budget = 2048 * MiB
    want = max(3, math.ceil(2 * llc / per_set))
    return int(max(1, min(want, 64, budget // per_set)))


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


# ---------------------------------------------------------------- timing, memory, bandwidth

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(setup, timed, device: torch.device, reps: int | None, budget_s: float,
               warmup_s: float = 0.2) -> list[float]:
    """Per-call times in ms of ``timed(setup(i))``; ``setup`` runs outside the timed region.

    Warm-up: at least 3 calls and ``warmup_s``. ``reps=None``: as many as fit in ``budget_s``,
    between 10 and 200.
    """
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < warmup_s:
        st = setup(n)
        r = timed(st)
        del r, st
        sync(device)
        n += 1
    if reps is None:
        per_call = (time.perf_counter() - t0) / n   # includes setup: errs on fewer reps
        reps = max(10, min(200, int(budget_s / per_call)))
    times = []
    if device.type == "cuda":
        events = []
        for i in range(reps):
            st = setup(i)
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            r = timed(st)
            b.record()
            events.append((a, b))
            del r, st
        torch.cuda.synchronize(device)
        times = [a.elapsed_time(b) for a, b in events]
    else:
        for i in range(reps):
            st = setup(i)
            t = time.perf_counter()
            r = timed(st)
            times.append((time.perf_counter() - t) * 1e3)
            del r, st
    return times


def quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    pos = q * (len(xs) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def returned_bytes(r) -> int:
    """Bytes of the distinct storages behind the returned tensors (an expanded view counts once)."""
    seen = {}
    todo = [r]
    while todo:
        x = todo.pop()
        if isinstance(x, torch.Tensor):
            st = x.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        elif isinstance(x, (list, tuple)):
            todo.extend(x)
    return sum(seen.values())


def _cpu_allocations(prof) -> list:
    from torch._C._profiler import _EventType

    out, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            out.append(node)
        stack.extend(node.children)
    return sorted(out, key=lambda n: n.start_time_ns)


def peak_memory(setup, timed, device: torch.device) -> tuple[float, float]:
    """(peak bytes allocated during ``timed(setup(0))``, the same minus the returned tensors).

    NaN where it cannot be measured (a profiler without allocation events).
    """
    st = setup(0)
    sync(device)
    if device.type == "cuda":
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        r = timed(st)
        sync(device)
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        from torch.profiler import ProfilerActivity, profile

        try:
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                r = timed(st)
            cur = peak = 0
            for node in _cpu_allocations(prof):
                if node.extra_fields.device.type == "cpu":
                    cur += node.extra_fields.alloc_size
                    peak = max(peak, cur)
        except Exception as e:  # a private profiler API: degrade, do not fail the benchmark
            log(f"  memory not measured: {type(e).__name__}: {e}")
            return float("nan"), float("nan")
    peak = max(peak, 0)
    return float(peak), float(max(peak - returned_bytes(r), 0))


def measure_bandwidth(device: torch.device, size_bytes: int | None = None) -> dict:
    """GB/s of a large copy (read + write counted) and of a sum (read), on this device, now.

    By default the tensor is 256 MiB (GPU: 1 GiB) or twice the last-level cache if that is
    larger (at most 1 GiB on the CPU), so that, like the benchmark's rotated inputs, it comes
    from memory and not from the cache.
    """
    if size_bytes is None:
        if device.type == "cuda":
            size_bytes = 1024 * MiB
        else:
            size_bytes = min(max(256 * MiB, 2 * last_level_cache(device)), 1024 * MiB)
    n = size_bytes // 4
    src = torch.rand(n, device=device)
    dst = torch.empty_like(src)
    # best of 20, as STREAM reports: the bandwidth the device can give, not the average under load
    copy_ms = min(time_calls(lambda i: None, lambda _: dst.copy_(src), device, reps=20, budget_s=0))
    sum_ms = min(time_calls(lambda i: None, lambda _: src.sum(), device, reps=20, budget_s=0))
    copy = 2 * size_bytes / copy_ms / 1e6
    read = size_bytes / sum_ms / 1e6
    return {"copy_gbs": copy, "read_gbs": read, "gbs": max(copy, read)}


# ---------------------------------------------------------------- output

def fmt(key: str, v) -> str:
    """A cell by its column's name (``*_ms``, ``*_mib``, ``bytes``, ``floor_frac``, ``x_*``)."""
    if isinstance(v, float) and math.isnan(v):
        return "-"
    if key == "bytes":
        return f"{v / 1e6:.1f}"
    if key == "floor_frac":
        return f"{100 * v:.0f}%"
    if key in ("x_eager", "x_compile"):
        return f"{v:.2f}x"
    if key.endswith("_ms"):
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    if key.endswith("_mib"):
        return f"{v:.1f}"
    return str(v)


def markdown(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A markdown table of ``rows``: ``columns`` are (key, heading); the first three left-aligned."""
    lines = ["| " + " | ".join(h for _, h in columns) + " |",
             "|" + "|".join("---" if i < 3 else "---:" for i in range(len(columns))) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(k, r[k]) for k, _ in columns) + " |")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def plot(rows: list[dict], path: str, modes, title: str) -> bool:
    """Median, p20-p80 and ``floor_ms`` per config and provider, a panel per mode; False: no matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    modes = [m for m in modes if any(r["mode"] == m for r in rows)]
    configs = list(dict.fromkeys(r["config"] for r in rows))
    provs = list(dict.fromkeys(r["provider"] for r in rows))
    fig, axes = plt.subplots(len(modes), 1, figsize=(max(6, 0.5 * len(configs) + 3), 3.2 * len(modes)),
                             squeeze=False, sharex=True)
    for ax, mode in zip(axes[:, 0], modes):
        for p in provs:
            pts = {r["config"]: r for r in rows if r["mode"] == mode and r["provider"] == p}
            xs = [i for i, c in enumerate(configs) if c in pts]
            ax.errorbar(xs, [pts[configs[i]]["median_ms"] for i in xs],
                        yerr=[[pts[configs[i]]["median_ms"] - pts[configs[i]]["p20_ms"] for i in xs],
                              [pts[configs[i]]["p80_ms"] - pts[configs[i]]["median_ms"] for i in xs]],
                        marker="o", ls="none", capsize=2, label=p)
        floor = {r["config"]: r["floor_ms"] for r in rows if r["mode"] == mode}
        ax.plot(range(len(configs)), [floor.get(c, float("nan")) for c in configs], "k_", ms=14, label="bytes floor")
        ax.set_yscale("log")
        ax.set_ylabel("ms (median, p20-p80)")
        ax.set_title(mode)
        ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xticks(range(len(configs)))
    axes[-1, 0].set_xticklabels(configs, rotation=60, ha="right", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
