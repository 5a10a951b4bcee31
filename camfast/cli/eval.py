"""camfast-eval: evaluate a camfast-train run on the test split.

    camfast-eval --run runs/exp/attgan-cam --classifier runs/exp/classifier.pt
    camfast-eval --run runs/quick --classifier clf.pt --out /tmp/eval --limit 100
    camfast-eval --run runs/x --classifier clf.pt --inception-weights inception_v3.pth
    camfast-eval --table runs/exp/*/eval.json          # one comparison table of several runs

Writes eval.json, eval.md and samples.png into the run folder (or --out). Metrics: edit
accuracy (the fixed classifier of camfast-train-classifier), L1 / PSNR outside the edited
attribute's ground-truth region, D's CAM against that region (IoU, pointing game),
reconstruction PSNR / SSIM, classifier-FID and, with weights given, Inception FID.
A metric that cannot be computed is null with its reason. See docs/evaluation.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

from . import EXIT_ERROR, EXIT_USAGE, OneLineParser as _Parser


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="camfast-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="a camfast-train run folder (or its checkpoint file)")
    p.add_argument("--classifier", help="attribute classifier of camfast-train-classifier (without it: "
                                        "edit_accuracy and classifier_fid are null)")
    p.add_argument("--out", help="output folder (default: the run folder)")
    p.add_argument("--data", help="data folder (default: the run's own data; CelebA has no region masks)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    p.add_argument("--limit", type=int, help="evaluate only the first N images of the split")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--cam-threshold", type=float, default=0.5, help="threshold of D's mask for the IoU (default 0.5)")
    p.add_argument("--g-mode", choices=["train", "eval"],
                   help="G's normalisation: running statistics (eval; default for AttGAN and STGAN, as their test "
                        "code) or the batch's own (train; default for StarGAN, as its test code). Default: the run's "
                        "test_g_mode")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="load files that hold Python objects beyond tensors and plain data (unpickling them can "
                        "run code: only for files from a source you trust)")
    p.add_argument("--weights", default="auto", choices=["auto", "ema", "raw"],
                   help="G's weights: the moving average (ema) when the run kept one (auto, default) or as trained (raw)")
    p.add_argument("--inception-weights", metavar="PATH",
                   help="torchvision inception_v3 state dict for Inception FID (nothing is downloaded)")
    p.add_argument("--n-samples", type=int, default=4, help="faces on samples.png (0: no sheet)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--scorecard", action="store_true", help="also print a short human-readable scorecard")
    p.add_argument("--table", nargs="+", metavar="EVAL_JSON", help="print one markdown table of these eval.json files and exit")
    return p


def _json_safe(obj):
    """inf/nan are not JSON: write them as strings (never silently as numbers)."""
    if isinstance(obj, float) and (math.isinf(obj) or math.isnan(obj)):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _read_report(path: str, ev) -> dict:
    """An eval.json read back for --table; ValueError (one line, naming the file) if it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    except ValueError as e:  # also UnicodeDecodeError: a binary file
        raise ValueError(f"{path} is not JSON: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(report, dict) or not isinstance(report.get("metrics"), dict):
        raise ValueError(f"{path} is not an eval.json of camfast-eval (no 'metrics' table)")
    # _json_safe wrote inf / nan as strings: read them back as numbers
    report["metrics"] = {k: float(v) if v in ("inf", "-inf", "nan") else v for k, v in report["metrics"].items()}
    try:
        ev.comparison_table([report])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{path} is not an eval.json of camfast-eval ({type(e).__name__}: {e})") from None
    return report


def _progress(enabled: bool):
    if not enabled:
        return lambda it, **kw: it
    try:
        from tqdm import tqdm
        return lambda it, **kw: tqdm(it, file=sys.stderr, **kw)
    except ImportError:
        def lines(it, desc="", **kw):
            it = list(it)
            for i, v in enumerate(it):
                print(f"{desc}: batch {i + 1}/{len(it)}", file=sys.stderr)
                yield v
        return lines


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..evaluation import evaluate as ev

    if args.table:
        try:
            reports = [_read_report(path, ev) for path in args.table]
        except ValueError as e:
            print(f"camfast-eval: error: --table: {e}", file=sys.stderr)
            return EXIT_ERROR
        sys.stdout.write(ev.comparison_table(reports))
        return 0
    if not args.run:
        print("camfast-eval: error: --run is required (see --help)", file=sys.stderr)
        return EXIT_USAGE
    if args.limit is not None and args.limit < 1 or args.batch_size < 1:
        print("camfast-eval: error: --limit and --batch-size must be >= 1 (see --help)", file=sys.stderr)
        return EXIT_USAGE

    import torch

    from ..data import DataError
    from ..evaluation import classifier as clf_mod
    from ..evaluation import fid as fid_mod
    from ..training.samples import save_png

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if not os.path.exists(args.run):  # before anything slow
            raise ValueError(f"--run: no such folder: {args.run}")
        clf = clf_mod.load(args.classifier, args.trust_checkpoint) if args.classifier else None
        inception, why = (None, "no --inception-weights given")
        if args.inception_weights:
            inception, why = fid_mod.inception_features(args.inception_weights)
            if why:
                print(f"camfast-eval: notice: inception_fid will be null: {why}", file=sys.stderr)
        report, sheet = ev.evaluate(args.run, clf, data=args.data, split=args.split, limit=args.limit,
                                    batch_size=args.batch_size, cam_threshold=args.cam_threshold, g_mode=args.g_mode,
                                    weights=args.weights, trusted=args.trust_checkpoint,
                                    inception=inception, inception_reason=why, n_sample_faces=max(args.n_samples, 1),
                                    progress=_progress(not args.no_progress))
        out = args.out or (args.run if os.path.isdir(args.run) else os.path.dirname(os.path.abspath(args.run)))
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "eval.json"), "w") as f:
            json.dump(_json_safe(report), f, indent=2)
        with open(os.path.join(out, "eval.md"), "w") as f:
            f.write(ev.markdown(report))
        if args.n_samples > 0 and sheet is not None:
            save_png(ev.sample_sheet(sheet), os.path.join(out, "samples.png"))
    except (ValueError, OSError, DataError) as e:
        print(f"camfast-eval: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    m = report["metrics"]
    short = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} null" for k, v in m.items())
    print(f"camfast-eval: wrote {os.path.join(out, 'eval.json')}: {short}")
    if args.scorecard:
        print(scorecard(report))
    return 0


def scorecard(report: dict) -> str:
    """A few lines a person reads: did the edits take, did they stay local, does D point at them."""
    m, per = report["metrics"], report["per_attribute"]

    def f(v, fmt):
        return "n/a" if not isinstance(v, float) else format(v, fmt)
    accs = {a: v.get("edit_accuracy") for a, v in per.items() if isinstance(v.get("edit_accuracy"), float)}
    lines = [f"scorecard ({report['backbone']}, step {report['step']}, {report['n_images']} {report['split']} images, "
             f"G {report['settings']['g_mode']} mode, {report['settings'].get('g_weights', 'raw')} weights):",
             f"  edit accuracy          {f(m['edit_accuracy'], '.2f')}   (the fixed classifier agrees the edit took)",
             f"  change outside region  {f(m['outside_l1'], '.3f')}  (mean |real - edit| on [0, 1] where the edit "
             f"should not touch; inside: {f(m['inside_l1'], '.3f')})",
             f"  D's CAM IoU            {f(m['cam_iou'], '.3f')}  (pointing game {f(m['cam_pointing'], '.2f')})",
             f"  reconstruction PSNR    {f(m['recon_psnr'], '.1f')} dB"]
    if accs:
        lines.append("  per attribute: " + ", ".join(f"{a} {v:.2f}" for a, v in accs.items()))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
