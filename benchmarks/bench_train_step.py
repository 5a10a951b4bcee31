#!/usr/bin/env python
"""One training step (D step + G step) of each backbone, CAM-consistency off / reference / fused.

    python benchmarks/bench_train_step.py                       # all backbones, defaults below
    python benchmarks/bench_train_step.py --backbone stargan --batch 16 --reps 10

The step is camfast-train's own (``Trainer.iteration`` of camfast/training/trainer.py: a D
update and a G update, WGAN-GP + attribute classification + reconstruction, CAM on both sides:
D through its create_graph Grad-CAM of real and fake, G with the mask detached), on a Trainer
built without data (``Trainer.without_data``), run on random images with the backbone's
default config and ``n_critic`` 1; only the data loading is left out.

CAM modes: ``off`` (lambda_cam_g = lambda_cam_d = 0: no Grad-CAM at all), ``reference``
(cam_backend=reference, the pure-PyTorch loss) and ``fused`` (cam_backend=auto). Time: median
and p20/p80 of whole steps after warm-up (perf_counter around a synchronised step; the modes'
steps are interleaved, so a change in the machine's load hits them alike). Memory: the
peak allocated during one step above what was allocated before it (CPU: allocation events of
torch.profiler, i.e. PyTorch's allocator only; GPU: torch.cuda.max_memory_allocated).
"""
import argparse
import os
import statistics
import sys
import time

import torch

try:
    import camfast
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import camfast
from camfast import models
from camfast.benchmark import harness

CAM_MODES = {"off": None, "reference": "reference", "fused": "auto"}


# ---------------------------------------------------------------- the step

def trainer_step(backbone, image_size, cam, conv_dim, device):
    """(step(x, a), G): camfast-train's own iteration (Trainer.iteration), without data or outputs."""
    from camfast.training import Trainer, config

    flags = {"image_size": image_size, "cam_backend": CAM_MODES[cam] or "auto", "n_critic": 1, "model": {}}
    if conv_dim:
        flags["model"]["conv_dim"] = conv_dim
    if cam == "off":
        flags.update(lambda_cam_g=0.0, lambda_cam_d=0.0)
    t = Trainer.without_data(config.resolve(backbone, flags=flags), device)
    return t.iteration, t.G_inner


# ---------------------------------------------------------------- measuring

def build(args, backbone, cam, device):
    """``run_step(i)`` of one CAM mode; every mode gets the same weights and data."""
    step, G = trainer_step(backbone, args.image_size, cam, args.conv_dim, device)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.rand(args.batch, 3, args.image_size, args.image_size, generator=g).mul(2).sub(1).to(device),
                (torch.rand(args.batch, G.n_attrs, generator=g) < 0.5).float().to(device)) for _ in range(2)]

    def run_step(i):
        torch.manual_seed(i)   # the same targets and penalty points in every mode
        step(*batches[i % 2])

    return run_step


def measure(args, backbone, device) -> list[dict]:
    """Every CAM mode of one backbone; timed steps interleave the modes, so drift in the
    machine's load hits them alike."""
    steps = {}
    for cam in args.cam:
        run_step = build(args, backbone, cam, device)
        t0 = time.perf_counter()
        for i in range(args.warmup):
            run_step(i)
        harness.sync(device)
        harness.log(f"  {cam}: built, warm-up {args.warmup} steps {time.perf_counter() - t0:.1f} s")
        steps[cam] = run_step
    times = {cam: [] for cam in steps}
    for i in range(args.reps):
        for cam, run_step in steps.items():
            harness.sync(device)
            t = time.perf_counter()
            run_step(i)
            harness.sync(device)
            times[cam].append((time.perf_counter() - t) * 1e3)
        harness.log(f"  rep {i + 1}/{args.reps}: " + ", ".join(f"{c} {times[c][-1]:.0f} ms" for c in steps))
    rows = []
    for cam, run_step in steps.items():
        peak, _ = harness.peak_memory(lambda i: i, run_step, device)
        ts = times[cam]
        rows.append(dict(backbone=backbone, cam=cam, median_ms=statistics.median(ts),
                         p20_ms=harness.quantile(ts, 0.2), p80_ms=harness.quantile(ts, 0.8), peak_mib=peak / harness.MiB))
    del steps
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def main(argv=None):
    on_gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description="Time and peak memory of one D + G training step, CAM off / reference / fused.")
    p.add_argument("--backbone", nargs="+", choices=models.BACKBONES, default=list(models.BACKBONES))
    p.add_argument("--cam", nargs="+", choices=list(CAM_MODES), default=list(CAM_MODES))
    p.add_argument("--image-size", type=int, choices=(64, 128, 256), default=128 if on_gpu else 64,
                   help="default 128 on GPU, 64 on CPU")
    p.add_argument("--batch", type=harness.positive_int, default=16 if on_gpu else 8, help="default 16 on GPU, 8 on CPU")
    p.add_argument("--conv-dim", type=harness.positive_int, default=None if on_gpu else 32,
                   help="every base width of the backbone (default: the original's, 64, on GPU; 32 on CPU)")
    p.add_argument("--reps", type=harness.positive_int, default=20 if on_gpu else 5, help="timed steps (default 20 GPU, 5 CPU)")
    p.add_argument("--warmup", type=harness.positive_int, default=3 if on_gpu else 2)
    p.add_argument("--threads", type=harness.positive_int, help="CPU threads (default 2 on CPU)")
    p.add_argument("--device", default="cuda" if on_gpu else "cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_train_step: --device cuda: no CUDA device is visible")
    if args.threads or device.type == "cpu":
        torch.set_num_threads(args.threads or 2)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    fused = camfast.backends()["auto"]["cuda" if device.type == "cuda" else "cpu"]
    if fused == "reference":
        harness.log("WARNING: backend auto resolves to the reference here (no usable compiled kernels): "
                  "'fused' measures the reference; see camfast.backends()")

    rows = []
    for backbone in args.backbone:
        harness.log(f"{backbone}: CAM {', '.join(args.cam)}; {args.warmup} + {args.reps} steps each")
        rows += measure(args, backbone, device)
    for r in rows:
        base = {x["cam"]: x["median_ms"] for x in rows if x["backbone"] == r["backbone"]}
        r["vs_off"] = r["median_ms"] / base["off"] - 1 if "off" in base else float("nan")
        r["vs_ref"] = r["median_ms"] / base["reference"] if "reference" in base else float("nan")

    print(f"bench_train_step | {harness.device_name(device)} | torch {torch.__version__} | threads "
          f"{torch.get_num_threads()} | load avg {harness.load_average()} | "
          f"image {args.image_size} | batch {args.batch} | conv_dim {args.conv_dim or 'default'} | fused = {fused}")
    print(f"command: python benchmarks/bench_train_step.py {' '.join(sys.argv[1:] if argv is None else argv)}\n")
    print("| backbone | cam | median ms | p20 | p80 | peak MiB | over off | / reference |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        over = "-" if r["vs_off"] != r["vs_off"] else f"{100 * r['vs_off']:+.0f}%"
        ref = "-" if r["vs_ref"] != r["vs_ref"] else f"{r['vs_ref']:.2f}"
        print(f"| {r['backbone']} | {r['cam']} | {r['median_ms']:.1f} | {r['p20_ms']:.1f} | "
              f"{r['p80_ms']:.1f} | {r['peak_mib']:.0f} | {over} | {ref} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
