#!/usr/bin/env python
"""One training step (D step + G step) of each backbone, CAM-consistency off / reference / fused.

    python benchmarks/bench_train_step.py                       # all backbones, defaults below
    python benchmarks/bench_train_step.py --backbone stargan --batch 16 --reps 10

The step is camfast-train's own (``Trainer.d_step`` and ``Trainer.g_step`` of
camfast/training/trainer.py, WGAN-GP + attribute classification + reconstruction, CAM on both
sides: D through its create_graph Grad-CAM of real and fake, G with the mask detached), run on
random images with the backbone's default config; only the data loading is left out. If the
trainer cannot be used (``--step own``, or it fails to import or run), a minimal step with the
same terms, written below, is used instead and the table says so.

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
from camfast import bench, models

CAM_MODES = {"off": None, "reference": "reference", "fused": "auto"}


# ---------------------------------------------------------------- the step

def trainer_step(backbone, image_size, cam, conv_dim, device):
    """(step(x, a), cfg) using camfast.training's Trainer objective, without its data and outputs."""
    from camfast.training import Trainer, config
    from camfast.training.cam import CamConsistency
    from camfast.training.conditions import Conditions, sample_targets

    flags = {"image_size": image_size, "cam_backend": CAM_MODES[cam] or "auto", "model": {}}
    if conv_dim:
        flags["model"]["conv_dim"] = conv_dim
    if cam == "off":
        flags.update(lambda_cam_g=0.0, lambda_cam_d=0.0)
    cfg = config.resolve(backbone, flags=flags)
    G, D = models.build(backbone, image_size=image_size, **cfg["model"])
    G, D = G.to(device), D.to(device)
    t = Trainer.__new__(Trainer)          # the objective of Trainer.__init__, minus data, DDP, run folder
    t.cfg, t.device, t.amp = cfg, device, False
    t.G = t.G_inner = G
    t.D = t.D_inner = D
    t.cam = CamConsistency(cfg, D)
    t.cond = Conditions(backbone, cfg["thres_int"], cfg["b_distribution"])
    betas = (cfg["beta1"], cfg["beta2"])
    t.g_opt = torch.optim.Adam(G.parameters(), cfg["g_lr"], betas=betas)
    t.d_opt = torch.optim.Adam(D.parameters(), cfg["d_lr"], betas=betas)

    def step(x, a):
        b = sample_targets(a)
        c_edit = t.cond.edit(a, b)
        t.d_step(x, a, b, c_edit)
        t.g_step(x, a, b, c_edit)

    return step, G


def own_step(backbone, image_size, cam, conv_dim, device):
    """A minimal step with the same terms (StarGAN's weights), for when the trainer is not usable."""
    import torch.nn.functional as F

    kw = {"conv_dim": conv_dim} if conv_dim else {}
    G, D = models.build(backbone, image_size=image_size, **kw)
    G, D = G.to(device), D.to(device)
    g_opt = torch.optim.Adam(G.parameters(), 1e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(D.parameters(), 1e-4, betas=(0.5, 0.999))
    layer, backend = D.default_cam_layer, CAM_MODES[cam]

    def cond(a, b):   # StarGAN: target; AttGAN: +-0.5; STGAN: the difference
        return b if backbone == "stargan" else (b - 0.5) if backbone == "attgan" else (b - a)

    def cam_terms(capture, a, b, real, fake, create_graph):
        """Sources: real image, removed attributes; fake image, added ones. real/fake: (logits, call)."""
        f_r, g_r = capture.gradients(real[0], a * (1 - b), call=real[1], create_graph=create_graph)
        f_f, g_f = capture.gradients(fake[0], b * (1 - a), call=fake[1], create_graph=create_graph)
        return [f_r, f_f], [g_r, g_f]

    def step(x, a):
        b = a[torch.randperm(a.size(0), device=a.device)]
        with torch.no_grad():
            fake = G(x, cond(a, b))
        with camfast.GradCAM(D, layer) as capture:                      # D step
            adv_r, lr = D(x)
            adv_f, lf = D(fake)
            loss = adv_f.mean() - adv_r.mean() + F.binary_cross_entropy_with_logits(lr, a, reduction="sum") / x.size(0)
            if backend:
                fs, gs = cam_terms(capture, a, b, (lr, 0), (lf, 1), create_graph=True)
                loss = loss + camfast.cam_consistency_loss(x, fake, fs, gs, backend=backend)
        alpha = torch.rand(x.size(0), 1, 1, 1, device=device)
        x_hat = (alpha * x + (1 - alpha) * fake).requires_grad_(True)
        (gr,) = torch.autograd.grad(D(x_hat)[0].sum(), x_hat, create_graph=True)
        loss = loss + 10 * ((gr.flatten(1).norm(dim=1) - 1) ** 2).mean()
        d_opt.zero_grad(set_to_none=True)
        loss.backward()
        d_opt.step()

        D.requires_grad_(False)                                         # G step
        with camfast.GradCAM(D, layer) as capture:
            fake = G(x, cond(a, b))
            adv_f, lf = D(fake)
            loss = -adv_f.mean() + F.binary_cross_entropy_with_logits(lf, b, reduction="sum") / x.size(0)
            rec = G(fake, a) if backbone == "stargan" else G(x, cond(a, a))
            loss = loss + 10 * (rec - x).abs().mean()
            if backend:
                _, lr = D(x.detach().requires_grad_(True))
                fs, gs = cam_terms(capture, a, b, (lr, 1), (lf, 0), create_graph=False)
                fs, gs = [f.detach() for f in fs], [g.detach() for g in gs]   # G: D's mask as given
                loss = loss + 10 * camfast.cam_consistency_loss(x, fake, fs, gs, backend=backend)
        g_opt.zero_grad(set_to_none=True)
        loss.backward()
        g_opt.step()
        D.requires_grad_(True)

    return step, G


# ---------------------------------------------------------------- measuring

def build(args, backbone, cam, device):
    """``(run_step(i), which step)`` of one CAM mode; every mode gets the same weights and data."""
    torch.manual_seed(0)
    which = args.step
    if which == "trainer":
        try:
            step, G = trainer_step(backbone, args.image_size, cam, args.conv_dim, device)
        except Exception as e:  # the trainer is optional here: say why and use the minimal step
            bench.log(f"  camfast.training not usable ({type(e).__name__}: {e}); using the minimal step")
            which = "own"
    if which == "own":
        step, G = own_step(backbone, args.image_size, cam, args.conv_dim, device)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.rand(args.batch, 3, args.image_size, args.image_size, generator=g).mul(2).sub(1).to(device),
                (torch.rand(args.batch, G.n_attrs, generator=g) < 0.5).float().to(device)) for _ in range(2)]

    def run_step(i):
        torch.manual_seed(i)   # the same targets and penalty points in every mode
        step(*batches[i % 2])

    return run_step, which


def measure(args, backbone, device) -> list[dict]:
    """Every CAM mode of one backbone; timed steps interleave the modes, so drift in the
    machine's load hits them alike."""
    steps = {}
    for cam in args.cam:
        run_step, which = build(args, backbone, cam, device)
        t0 = time.perf_counter()
        for i in range(args.warmup):
            run_step(i)
        bench.sync(device)
        bench.log(f"  {cam}: built ({which} step), warm-up {args.warmup} steps {time.perf_counter() - t0:.1f} s")
        steps[cam] = (run_step, which)
    times = {cam: [] for cam in steps}
    for i in range(args.reps):
        for cam, (run_step, _) in steps.items():
            bench.sync(device)
            t = time.perf_counter()
            run_step(i)
            bench.sync(device)
            times[cam].append((time.perf_counter() - t) * 1e3)
        bench.log(f"  rep {i + 1}/{args.reps}: " + ", ".join(f"{c} {times[c][-1]:.0f} ms" for c in steps))
    rows = []
    for cam, (run_step, which) in steps.items():
        peak, _ = bench.peak_memory(lambda i: i, run_step, device)
        ts = times[cam]
        rows.append(dict(backbone=backbone, cam=cam, step=which, median_ms=statistics.median(ts),
                         p20_ms=bench.quantile(ts, 0.2), p80_ms=bench.quantile(ts, 0.8), peak_mib=peak / bench.MiB))
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
    p.add_argument("--batch", type=bench._positive, default=16 if on_gpu else 8, help="default 16 on GPU, 8 on CPU")
    p.add_argument("--conv-dim", type=bench._positive, default=None if on_gpu else 32,
                   help="every base width of the backbone (default: the original's, 64, on GPU; 32 on CPU)")
    p.add_argument("--reps", type=bench._positive, default=20 if on_gpu else 5, help="timed steps (default 20 GPU, 5 CPU)")
    p.add_argument("--warmup", type=bench._positive, default=3 if on_gpu else 2)
    p.add_argument("--step", choices=("trainer", "own"), default="trainer",
                   help="camfast.training's d_step/g_step (default) or the minimal one in this script")
    p.add_argument("--threads", type=bench._positive, help="CPU threads (default 2 on CPU)")
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
        bench.log("WARNING: backend auto resolves to the reference here (no usable compiled kernels): "
                  "'fused' measures the reference; see camfast.backends()")

    rows = []
    for backbone in args.backbone:
        bench.log(f"{backbone}: CAM {', '.join(args.cam)}; {args.warmup} + {args.reps} steps each")
        rows += measure(args, backbone, device)
    for r in rows:
        base = {x["cam"]: x["median_ms"] for x in rows if x["backbone"] == r["backbone"]}
        r["vs_off"] = r["median_ms"] / base["off"] - 1 if "off" in base else float("nan")
        r["vs_ref"] = r["median_ms"] / base["reference"] if "reference" in base else float("nan")

    print(f"bench_train_step | {bench.device_name(device)} | torch {torch.__version__} | threads "
          f"{torch.get_num_threads()} | load avg {', '.join(f'{x:.2f}' for x in os.getloadavg())} | "
          f"image {args.image_size} | batch {args.batch} | conv_dim {args.conv_dim or 'default'} | fused = {fused}")
    print(f"command: python benchmarks/bench_train_step.py {' '.join(sys.argv[1:] if argv is None else argv)}\n")
    print("| backbone | cam | step | median ms | p20 | p80 | peak MiB | over off | / reference |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        over = "-" if r["vs_off"] != r["vs_off"] else f"{100 * r['vs_off']:+.0f}%"
        ref = "-" if r["vs_ref"] != r["vs_ref"] else f"{r['vs_ref']:.2f}"
        print(f"| {r['backbone']} | {r['cam']} | {r['step']} | {r['median_ms']:.1f} | {r['p20_ms']:.1f} | "
              f"{r['p80_ms']:.1f} | {r['peak_mib']:.0f} | {over} | {ref} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
