"""camfast-train: train StarGAN, AttGAN or STGAN with the CAM-consistency loss.

    camfast-train --preset quick                      # minutes on a CPU, built-in data
    camfast-train --preset stargan --data ~/celeba    # the original recipe on CelebA
    camfast-train --resume runs/stargan-20260101-120000
    torchrun --nproc_per_node 4 -m camfast.train --preset attgan --data ~/celeba

See docs/training.md for every option.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Optional

from .cli import EXIT_ERROR, EXIT_USAGE, OneLineParser as _Parser
from .training import config as config_mod

EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}

# direct flag -> config key
FLAGS = {
    "backbone": "backbone", "steps": "steps", "batch_size": "batch_size", "image_size": "image_size",
    "data": "data", "data_cache": "data_cache", "out": "out", "seed": "seed", "device": "device", "amp": "amp",
    "lambda_cam_g": "lambda_cam_g", "lambda_cam_d": "lambda_cam_d",
}


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="camfast-train", description=__doc__,
                epilog="Later sources win: backbone defaults < --preset < --config < flags < --set. "
                       "--list-options prints every option with its default.",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", help="a preset of camfast/configs/ (stargan, attgan, stgan, quick) or a path to a .yaml")
    p.add_argument("--config", help="a YAML file of options")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one option (repeatable), e.g. --set lambda_rec=5 --set model.conv_dim=32")
    p.add_argument("--resume", metavar="DIR|FILE", help="continue a run from its folder or a checkpoint file")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an --out folder that holds a run (its checkpoints, metrics, samples and logs are deleted)")
    p.add_argument("--list-options", action="store_true", help="print every option, its default and meaning, and exit")
    g = p.add_argument_group("common options (shorthands for --set)")
    g.add_argument("--backbone", help="stargan, attgan or stgan")
    g.add_argument("--steps", type=int, help="training iterations")
    g.add_argument("--batch-size", type=int, help="images per iteration (per process)")
    g.add_argument("--image-size", type=int, help="64, 128 or 256")
    g.add_argument("--data", help="CelebA folder (default: the built-in synthetic set)")
    g.add_argument("--data-cache", help="cache folder of the synthetic set (default $CAMFAST_CACHE or ~/.cache/camfast)")
    g.add_argument("--out", help="run folder (default runs/<backbone>-<timestamp>)")
    g.add_argument("--seed", type=int)
    g.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    g.add_argument("--amp", choices=["none", "bf16"], help="bf16 autocast (GPUs)")
    g.add_argument("--lambda-cam-g", type=float, help="CAM-consistency weight in G's loss (0: off)")
    g.add_argument("--lambda-cam-d", type=float, help="CAM-consistency weight in D's loss (0: off)")
    return p


def list_options() -> str:
    lines = []
    for key, (types, choices, text) in config_mod.OPTIONS.items():
        default = config_mod.DEFAULTS[key]
        per = {b: d[key] for b, d in config_mod.BACKBONE_DEFAULTS.items() if key in d and d[key] != default}
        extra = "".join(f", {b}: {v}" for b, v in per.items())
        ch = f" [{', '.join(map(str, choices))}]" if choices else ""
        lines.append(f"{key:20s} {default!r}{extra}{ch}\n{'':20s} {text}")
    return "\n".join(lines)


def _one_line(e: BaseException) -> str:
    """An exception as one line; errors re-raised from DataLoader workers carry a traceback."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    msg = lines[-1] if lines else type(e).__name__
    for prefix in ("camfast.data.celeba.DataError: ", "DataError: "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return msg


def clear_run(run_dir: str) -> None:
    """Delete what camfast-train wrote in ``run_dir`` (and nothing else)."""
    import glob
    import shutil
    for path in glob.glob(os.path.join(run_dir, "checkpoint*.pt")) + [os.path.join(run_dir, f) for f in ("metrics.csv", "config.yaml")]:
        if os.path.isfile(path):
            os.remove(path)
    for sub in ("samples", "tb"):
        shutil.rmtree(os.path.join(run_dir, sub), ignore_errors=True)


def _resolve(args) -> tuple[dict, str, Optional[dict]]:
    """``(config, run folder, checkpoint or None)`` from the command line."""
    from .training import checkpoint as ckpt_mod

    flags = {key: getattr(args, name) for name, key in FLAGS.items()}
    if args.resume:
        if args.preset or args.config:
            raise config_mod.ConfigError("--resume takes the run's config from its checkpoint; drop --preset/--config "
                                         "(--steps and --set for logging options still apply)")
        path = ckpt_mod.find(args.resume)
        ckpt = ckpt_mod.load(path)
        cfg = dict(ckpt["config"])
        over = config_mod.merge({}, {k: v for k, v in flags.items() if v is not None}, "flags")
        over = config_mod.merge(over, config_mod.parse_set(args.sets), "--set")
        for key, value in over.items():
            if key not in config_mod.RESUMABLE and value != cfg.get(key):
                raise config_mod.ConfigError(f"{key}: cannot change it when resuming (checkpoint has {cfg.get(key)!r}); "
                                             f"only {sorted(config_mod.RESUMABLE)} can")
        cfg = config_mod.check(config_mod.merge(cfg, over, "resume"))
        run_dir = cfg["out"] if "out" in over else os.path.dirname(os.path.abspath(path))
        cfg["out"] = run_dir
        if ckpt["step"] >= cfg["steps"]:
            raise config_mod.ConfigError(f"the run in {run_dir} already finished {ckpt['step']} of {cfg['steps']} steps; "
                                         "raise --steps to train longer")
        return cfg, run_dir, ckpt

    files = []
    if args.preset:
        files.append(("--preset", config_mod.preset_path(args.preset)))
    if args.config:
        files.append(("--config", args.config))
    cfg = config_mod.resolve(files=files, flags=flags, sets=args.sets)
    run_dir = cfg["out"] or os.path.join("runs", f"{cfg['backbone']}-{time.strftime('%Y%m%d-%H%M%S')}")
    if os.path.isfile(os.path.join(run_dir, ckpt_mod.LAST)):
        if not args.overwrite:
            raise config_mod.ConfigError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, "
                                         "start it again with --overwrite, or choose another --out")
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone deletes
            clear_run(run_dir)
    cfg["out"] = run_dir
    return cfg, run_dir, None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_options:
        print(list_options())
        return 0
    prog = "camfast-train"

    from .data import DataError
    from .training import distributed
    from .training.trainer import Trainer

    info = None
    try:
        try:
            cfg, run_dir, ckpt = _resolve(args)
            info, device = distributed.setup(cfg["device"])
            cfg["device"] = str(device) if not info.enabled else cfg["device"]
            trainer = Trainer(cfg, run_dir, info, device, resume=ckpt)
        except (config_mod.ConfigError, DataError, ValueError) as e:
            print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
            return EXIT_USAGE if isinstance(e, config_mod.ConfigError) else EXIT_ERROR
        try:
            status = trainer.fit()
        except DataError as e:
            print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
            return EXIT_ERROR
        except RuntimeError as e:
            if "DataError" in str(e) or "cannot read image" in str(e):
                print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
                return EXIT_ERROR
            raise
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_SIGNAL[signal.SIGINT]
    finally:
        if info is not None:
            distributed.cleanup(info)

    if not info.main:
        return 0 if status == "done" else EXIT_SIGNAL.get(trainer.stop_signal, 130)
    if status == "interrupted":
        print(f"{prog}: stopped at step {trainer.step}; checkpoint saved in {run_dir} "
              f"(continue with: camfast-train --resume {run_dir})", file=sys.stderr)
        return EXIT_SIGNAL.get(trainer.stop_signal, 130)
    print(f"{prog}: done: {trainer.step} steps in {trainer.elapsed:.0f} s; samples in {os.path.join(run_dir, 'samples')}, "
          f"checkpoint {os.path.join(run_dir, 'checkpoint.pt')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
