"""Copy the evaluation sample sheets of the experiment into docs/img/, commit-sized.

    python experiments/make_figures.py runs/exp docs/img

Each sheet (camfast-eval's samples.png) is cut to its first ``--faces`` faces (3 rows each)
and palette-quantised (PNG, 48 colours): the sheets are for looking, not for measuring.
Also writes a small summary of the logged mask means (metrics.csv d_mask / g_mask).
"""
import argparse
import csv
import os

from PIL import Image

HEADER = 35  # px of column titles on a 64 px sheet (training.samples._header: 3 lines + 2)
ROW = 66     # 64 px + 2 px padding


def main():
    p = argparse.ArgumentParser()
    p.add_argument("exp")
    p.add_argument("out")
    p.add_argument("--faces", type=int, default=1)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for b in ("stargan", "attgan", "stgan"):
        for v in ("base", "cam"):
            src = os.path.join(args.exp, f"{b}-{v}", "samples.png")
            if not os.path.isfile(src):
                continue
            im = Image.open(src).convert("RGB")
            h = min(im.height, HEADER + 2 + args.faces * 3 * ROW)
            im = im.crop((0, 0, im.width, h)).quantize(48)
            dst = os.path.join(args.out, f"eval-{b}-{v}.png")
            im.save(dst, optimize=True)
            total += os.path.getsize(dst)
    print(f"figures: {total / 1024:.0f} KB in {args.out}")
    for b in ("stargan", "attgan", "stgan"):
        for v in ("base", "cam"):
            path = os.path.join(args.exp, f"{b}-{v}", "metrics.csv")
            if not os.path.isfile(path):
                continue
            rows = list(csv.DictReader(open(path)))
            last = rows[-10:]  # the last 100 iterations at log_every 10

            def mean(key):
                vals = [float(r[key]) for r in last if r.get(key) not in (None, "")]
                return f"{sum(vals) / len(vals):.3f}" if vals else "-"
            print(f"{b}-{v}: last 100 it: d_mask {mean('d_mask')} g_mask {mean('g_mask')} "
                  f"g_rec {mean('g_rec')} g_cam {mean('g_cam')} d_cls {mean('d_cls')} g_cls {mean('g_cls')}")


if __name__ == "__main__":
    main()
