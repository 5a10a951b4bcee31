"""camfast-train-classifier: the fixed attribute classifier that camfast-eval scores edits with.

    camfast-train-classifier --out runs/classifier.pt                     # the built-in synthetic set
    camfast-train-classifier --synthetic-images 2000 --image-size 64 --out runs/exp/classifier.pt
    camfast-train-classifier --data ~/celeba --attrs Bald,Male --image-size 128 --out clf.pt

Trained once on the train split (validation accuracy reported per attribute), then held fixed:
every run is judged by the same model. See docs/evaluation.md.
"""
from __future__ import annotations

import argparse
import sys

from . import EXIT_ERROR, OneLineParser as _Parser


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="camfast-train-classifier", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="where to write the classifier (.pt)")
    p.add_argument("--data", help="CelebA-layout folder (default: the built-in synthetic set)")
    p.add_argument("--data-cache", help="cache folder of the synthetic set")
    p.add_argument("--synthetic-images", type=int, default=2000, help="synthetic set size (default 2000, as --preset quick)")
    p.add_argument("--synthetic-seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=64, help="image side the classifier sees (default 64)")
    p.add_argument("--attrs", help="comma-separated attribute names (default: all of the synthetic set / "
                                   "StarGAN's five on CelebA)")
    p.add_argument("--crop", default="auto", help="stargan, attgan, none, auto (none on synthetic, stargan on CelebA)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=32, help="first conv width (then 2x, 4x, 4x)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--max-images", type=int, help="use at most this many training images (tests)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from .. import data as data_mod
    from ..evaluation import classifier

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        root = data_mod.resolve_root(args.data, synthetic_images=args.synthetic_images, image_size=args.image_size,
                                     synthetic_seed=args.synthetic_seed, cache=args.data_cache)
        attrs = args.attrs.split(",") if args.attrs else None
        train_ds = data_mod.open_dataset(root, "stargan", attrs, args.image_size, args.crop, "train")
        val_ds = data_mod.open_dataset(root, "stargan", train_ds.attrs, args.image_size, args.crop, "val")
        print(f"camfast-train-classifier: {len(train_ds)} train / {len(val_ds)} val images of {root}, "
              f"attributes {train_ds.attrs}", file=sys.stderr)
        train_t, val_t = classifier.preload(train_ds, args.max_images), classifier.preload(val_ds)
        model, acc = classifier.train(train_t, val_t, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                      width=args.width, seed=args.seed,
                                      log=lambda s: print(f"camfast-train-classifier: {s}", file=sys.stderr))
        per_attr = {a: round(float(v), 4) for a, v in zip(train_ds.attrs, acc)}
        classifier.save(model, args.out, train_ds.attrs, args.image_size, root, per_attr)
    except (ValueError, OSError, data_mod.DataError) as e:
        print(f"camfast-train-classifier: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(f"camfast-train-classifier: wrote {args.out}; val accuracy per attribute {per_attr}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
