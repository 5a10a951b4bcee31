"""Regenerate every table and figure of docs/results.md from the committed run results.

    python experiments/report.py                         # experiments/results -> docs/
    python experiments/report.py --results DIR --doc OUT.md --img DIR   (tests, other copies)

Input: ``<results>/<experiment>/<backbone>-<variant>-s<seed>/`` folders, each holding what
``experiments/run_experiment.sh collect`` copied from a run: eval.json (camfast-eval on the
test split), config.yaml, curve.csv (the validation learning curve) and metrics.csv.

Output: the tables between ``<!-- begin NAME -->`` and ``<!-- end NAME -->`` markers of the
document (any other text is left as it is), and PNG figures:

- ``curves-<experiment>.png``: edit accuracy and reconstruction PSNR against the step, one
  panel pair per backbone, one line per run;
- ``tradeoff-<experiment>.png``: outside-region L1 against edit accuracy, per run and per
  variant mean, so "better preservation at the same edit accuracy" can be read off.

Table names: ``<experiment>-claim`` (mean +- std over seeds per backbone and variant) and
``<experiment>-runs`` (one row per run, with wall time).

The budget search (``<results>/budget-search/<name>/``: config.yaml, curve.csv, metrics.csv
of the candidate runs, validation only) gives the ``budget-search`` table and
``curves-budget-search.png``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import statistics
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = re.compile(r"^(?P<backbone>stargan|attgan|stgan)-(?P<variant>[A-Za-z0-9_.+]+)-s(?P<seed>\d+)$")
BACKBONES = ("stargan", "attgan", "stgan")

# (eval.json metric, column title, digits, better)
METRICS = [
    ("edit_accuracy", "edit acc", 3, "high"),
    ("outside_l1", "outside L1", 4, "low"),
    ("outside_psnr", "outside PSNR", 2, "high"),
    ("inside_l1", "inside L1", 4, None),
    ("cam_iou", "CAM IoU", 3, "high"),
    ("cam_pointing", "pointing", 3, "high"),
    ("recon_psnr", "recon PSNR", 2, "high"),
    ("recon_ssim", "recon SSIM", 3, "high"),
    ("classifier_fid", "classifier-FID", 1, "low"),
]


# ---------------------------------------------------------------- reading

def read_csv(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_runs(results: str) -> dict[str, list[dict]]:
    """``{experiment: [run, ...]}``; a run is a dict of its name parts, eval report, config,
    curve rows and wall time."""
    out: dict[str, list[dict]] = {}
    if not os.path.isdir(results):
        raise SystemExit(f"report: no results folder {results}")
    for exp in sorted(os.listdir(results)):
        folder = os.path.join(results, exp)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            m = NAME.match(name)
            path = os.path.join(folder, name)
            if not m or not os.path.isfile(os.path.join(path, "eval.json")):
                continue
            with open(os.path.join(path, "eval.json")) as f:
                report = json.load(f)
            cfg = {}
            if os.path.isfile(os.path.join(path, "config.yaml")):
                with open(os.path.join(path, "config.yaml")) as f:
                    cfg = yaml.safe_load(f) or {}
            metrics = read_csv(os.path.join(path, "metrics.csv"))
            wall = float(metrics[-1]["time_s"]) if metrics and metrics[-1].get("time_s") else None
            out.setdefault(exp, []).append({
                "name": name, "backbone": m["backbone"], "variant": m["variant"], "seed": int(m["seed"]),
                "report": report, "config": cfg, "curve": read_csv(os.path.join(path, "curve.csv")), "wall_s": wall,
            })
    return out


def metric(run: dict, key: str):
    v = run["report"]["metrics"].get(key)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def load_search(folder: str) -> list[dict]:
    """The budget search's candidate runs: name, config, curve and speed (no test numbers)."""
    out = []
    if not os.path.isdir(folder):
        return out
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        curve = read_csv(os.path.join(path, "curve.csv"))
        if not curve:
            continue
        with open(os.path.join(path, "config.yaml")) as f:
            cfg = yaml.safe_load(f) or {}
        metrics = read_csv(os.path.join(path, "metrics.csv"))
        last = metrics[-1] if metrics else {}
        out.append({"name": name, "backbone": cfg.get("backbone"), "variant": name, "seed": cfg.get("seed", 0),
                    "config": cfg, "curve": curve,
                    "it_per_s": (int(last["step"]) / float(last["time_s"])) if last.get("time_s") else None})
    return out


def search_table(cands: list[dict]) -> str:
    """One row per candidate: what it changes, its speed, and its validation curve."""
    rows = ["| candidate | backbone | CAM G/D | batch | D width | layers | schedule | it/s | steps | "
            "edit acc (val) by step | recon PSNR at end |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cands:
        cfg, m = c["config"], c["config"].get("model", {})
        curve = " → ".join(f"{float(r['edit_accuracy']):.2f}@{r['step']}" for r in c["curve"] if r.get("edit_accuracy"))
        sched = f"{cfg.get('lr_decay')}, n_critic {cfg.get('n_critic')}, ema {cfg.get('g_ema', 0)}"
        if cfg.get("d_lr") is not None and cfg.get("d_lr") != cfg.get("g_lr"):
            sched += f", lr G/D {cfg['g_lr']:g}/{cfg['d_lr']:g}"
        d_width = m.get("dis_dim", m.get("d_conv_dim", m.get("conv_dim")))
        layers = m.get("enc_layers", m.get("d_repeat_num", "default"))
        speed = f"{c['it_per_s']:.2f}" if c["it_per_s"] else "n/a"
        rows.append(f"| {c['name']} | {c['backbone']} | {cfg.get('lambda_cam_g', 0):g}/{cfg.get('lambda_cam_d', 0):g} | "
                    f"{cfg.get('batch_size')} | {d_width} | {layers} | {sched} | {speed} | {c['curve'][-1]['step']} | "
                    f"{curve} | {float(c['curve'][-1]['recon_psnr']):.1f} |")
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------- tables

def _mean_std(values: list):
    """``(n, mean, std)`` of the values that exist, or None."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return len(vals), statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def claim_table(runs: list[dict]) -> str:
    """Mean +- standard deviation over seeds, one row per backbone and variant."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((BACKBONES.index(r["backbone"]), r["backbone"], r["variant"]), []).append(r)
    head = "| backbone | variant | λ_cam G/D | seeds | " + " | ".join(t for _, t, _, _ in METRICS) + " |"
    rows = [head, "|" + "---|" * (4 + len(METRICS))]
    for (_, backbone, variant), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2] != "base", kv[0][2])):
        cfg = rs[0]["config"]
        lam = f"{cfg.get('lambda_cam_g', '?'):g}/{cfg.get('lambda_cam_d', '?'):g}" if cfg else "?"
        cells = []
        for key, _, digits, _ in METRICS:
            ms = _mean_std([metric(r, key) for r in rs])
            cells.append("n/a" if ms is None else f"{ms[1]:.{digits}f}" + (f" ± {ms[2]:.{digits}f}" if ms[0] > 1 else ""))
        seeds = ",".join(str(r["seed"]) for r in sorted(rs, key=lambda r: r["seed"]))
        rows.append(f"| {backbone} | {variant} | {lam} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def runs_table(runs: list[dict]) -> str:
    """One row per run: step, wall time and the headline numbers."""
    rows = ["| run | steps | wall (min) | edit acc | outside L1 | CAM IoU | recon PSNR | weakest attribute (edit acc) |",
            "|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (BACKBONES.index(r["backbone"]), r["variant"] != "base", r["variant"], r["seed"])):
        per = r["report"].get("per_attribute", {})
        accs = {a: v.get("edit_accuracy") for a, v in per.items() if v.get("edit_accuracy") is not None}
        weakest = min(accs, key=accs.get) if accs else None
        weak = f"{weakest} {accs[weakest]:.2f}" if weakest else "n/a"
        wall = f"{r['wall_s'] / 60:.1f}" if r["wall_s"] is not None else "n/a"
        f = lambda k, d: "n/a" if metric(r, k) is None else f"{metric(r, k):.{d}f}"  # noqa: E731
        rows.append(f"| {r['name']} | {r['report'].get('step')} | {wall} | {f('edit_accuracy', 3)} | "
                    f"{f('outside_l1', 4)} | {f('cam_iou', 3)} | {f('recon_psnr', 2)} | {weak} |")
    return "\n".join(rows) + "\n"


TARGETS = {"edit_accuracy": 0.80, "attribute": 0.50, "recon_psnr": 25.0, "wall_min": 30.0}


def targets_table(runs: list[dict]) -> str:
    """The baselines against the budget's targets (mean over seeds; an attribute counts as
    below when its mean edit accuracy over the seeds is)."""
    rows = ["| backbone | seeds | wall (min) | edit acc (>= 0.80) | attributes below 0.50 | recon PSNR (>= 25 dB) | met |",
            "|---|---|---|---|---|---|---|"]
    for backbone in BACKBONES:
        rs = sorted((r for r in runs if r["backbone"] == backbone and r["variant"] == "base"), key=lambda r: r["seed"])
        if not rs:
            continue
        acc, psnr = _mean_std([metric(r, "edit_accuracy") for r in rs]), _mean_std([metric(r, "recon_psnr") for r in rs])
        per: dict[str, list] = {}
        for r in rs:
            for a, v in r["report"].get("per_attribute", {}).items():
                if v.get("edit_accuracy") is not None:
                    per.setdefault(a, []).append(v["edit_accuracy"])
        below = {a: statistics.mean(v) for a, v in per.items() if statistics.mean(v) < TARGETS["attribute"]}
        walls = [r["wall_s"] / 60 for r in rs if r["wall_s"] is not None]
        met = (acc is not None and acc[1] >= TARGETS["edit_accuracy"] and not below and psnr is not None
               and psnr[1] >= TARGETS["recon_psnr"] and walls and max(walls) <= TARGETS["wall_min"])
        pm = lambda ms, d: "n/a" if ms is None else f"{ms[1]:.{d}f}" + (f" ± {ms[2]:.{d}f}" if ms[0] > 1 else "")  # noqa: E731
        rows.append(f"| {backbone} | {','.join(str(r['seed']) for r in rs)} | "
                    f"{f'{min(walls):.0f}-{max(walls):.0f}' if walls else 'n/a'} | {pm(acc, 3)} | "
                    f"{', '.join(f'{a} {v:.2f}' for a, v in sorted(below.items(), key=lambda kv: kv[1])) or 'none'} | "
                    f"{pm(psnr, 1)} | {'yes' if met else 'no'} |")
    return "\n".join(rows) + "\n"


def replace_block(doc: str, name: str, body: str) -> tuple[str, bool]:
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    i, j = doc.find(begin), doc.find(end)
    if i < 0 or j < i:
        return doc, False
    return doc[:i + len(begin)] + "\n" + body + doc[j:], True


# ---------------------------------------------------------------- figures

def _series(curve: list[dict], key: str):
    pts = [(int(r["step"]), float(r[key])) for r in curve if r.get(key) not in (None, "")]
    return [p[0] for p in pts], [p[1] for p in pts]


def curves_figure(runs: list[dict], path: str) -> bool:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backbones = [b for b in BACKBONES if any(r["backbone"] == b and r["curve"] for r in runs)]
    if not backbones:
        return False
    fig, axes = plt.subplots(2, len(backbones), figsize=(4.2 * len(backbones), 6), squeeze=False)
    for j, b in enumerate(backbones):
        for r in sorted((r for r in runs if r["backbone"] == b and r["curve"]), key=lambda r: (r["variant"], r["seed"])):
            style = "-" if r["variant"] == "base" else "--"
            for i, key in enumerate(("edit_accuracy", "recon_psnr")):
                xs, ys = _series(r["curve"], key)
                if xs:
                    axes[i][j].plot(xs, ys, style, lw=1, marker=".", ms=4, label=f"{r['variant']} s{r['seed']}")
        axes[0][j].set_title(b)
        axes[0][j].axhline(0.8, color="grey", lw=0.5)
        axes[1][j].axhline(25, color="grey", lw=0.5)
        axes[0][j].set_ylabel("edit accuracy (val)")
        axes[1][j].set_ylabel("recon PSNR dB (val)")
        axes[1][j].set_xlabel("iteration")
        axes[0][j].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def tradeoff_figure(runs: list[dict], path: str) -> bool:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backbones = [b for b in BACKBONES if any(r["backbone"] == b for r in runs)]
    if not backbones:
        return False
    fig, axes = plt.subplots(1, len(backbones), figsize=(4.5 * len(backbones), 3.6), squeeze=False)
    for j, b in enumerate(backbones):
        ax = axes[0][j]
        variants = sorted({r["variant"] for r in runs if r["backbone"] == b}, key=lambda v: (v != "base", v))
        for k, v in enumerate(variants):
            rs = [r for r in runs if r["backbone"] == b and r["variant"] == v]
            pts = [(metric(r, "edit_accuracy"), metric(r, "outside_l1")) for r in rs]
            pts = [p for p in pts if None not in p]
            if not pts:
                continue
            colour = "black" if v == "base" else f"C{k}"
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=12, color=colour, alpha=0.5)
            ax.scatter([statistics.mean(p[0] for p in pts)], [statistics.mean(p[1] for p in pts)], s=60,
                       color=colour, marker="*" if v == "base" else "o", label=v)
        ax.set_title(b)
        ax.set_xlabel("edit accuracy (test)")
        ax.set_ylabel("outside-region L1 (test; lower keeps more)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=os.path.join(ROOT, "experiments", "results"))
    p.add_argument("--doc", default=os.path.join(ROOT, "docs", "results.md"))
    p.add_argument("--img", default=os.path.join(ROOT, "docs", "img"))
    p.add_argument("--no-figures", action="store_true", help="tables only (no matplotlib needed)")
    args = p.parse_args(argv)
    search = load_search(os.path.join(args.results, "budget-search"))
    experiments = load_runs(args.results)
    experiments.pop("budget-search", None)
    if not experiments and not search:
        print(f"report: no runs with eval.json under {args.results}", file=sys.stderr)
        return 1
    with open(args.doc) as f:
        doc = f.read()
    missing = []
    if search:
        doc, ok = replace_block(doc, "budget-search", search_table(search))
        if not ok:
            missing.append("budget-search")
        if not args.no_figures:
            os.makedirs(args.img, exist_ok=True)
            curves_figure(search, os.path.join(args.img, "curves-budget-search.png"))
        print(f"report: budget search: {len(search)} candidates")
    for exp, runs in experiments.items():
        for name, body in ((f"{exp}-claim", claim_table(runs)), (f"{exp}-runs", runs_table(runs)),
                           (f"{exp}-targets", targets_table(runs))):
            doc, ok = replace_block(doc, name, body)
            if not ok:
                missing.append(name)
        if not args.no_figures:
            os.makedirs(args.img, exist_ok=True)
            curves_figure(runs, os.path.join(args.img, f"curves-{exp}.png"))
            tradeoff_figure(runs, os.path.join(args.img, f"tradeoff-{exp}.png"))
        print(f"report: {exp}: {len(runs)} runs")
    with open(args.doc, "w") as f:
        f.write(doc)
    for name in missing:
        print(f"report: notice: {args.doc} has no <!-- begin {name} --> block; table not written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
