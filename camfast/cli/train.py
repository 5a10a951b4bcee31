"""camfast-train: train StarGAN, AttGAN or STGAN with the CAM-consistency loss.

    camfast-train --preset quick                      # minutes on a CPU, built-in data
    camfast-train --preset stargan --data ~/celeba    # the original recipe on CelebA
    camfast-train --resume runs/stargan-20260101-120000
    torchrun --nproc_per_node 4 -m camfast.cli.train --preset attgan --data ~/celeba

See docs/training.md for every option.
"""
from __future__ import annotations

import argparse
import itertools
import os
import signal
import sys
import time
from typing import Optional

from . import EXIT_ERROR, EXIT_USAGE, OneLineParser as _Parser
from ..training import config as config_mod

EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


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
                   help="start afresh (or continue a --resume) in an --out folder that holds a run: the files "
                        "camfast-train wrote there (checkpoints, metrics, curve, config, samples, logs) are deleted, "
                        "nothing else")
    p.add_argument("--discard-newer", action="store_true",
                   help="with --resume of an older checkpoint of a folder whose run went further: discard the newer "
                        "state (checkpoint.pt, later kept checkpoints and sample grids, metrics.csv/curve.csv rows "
                        "after that step) and continue from the older one")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="load a --resume checkpoint that holds Python objects beyond tensors and plain data; this "
                        "unpickles it fully, which can run code: only for files you trust")
    p.add_argument("--list-options", action="store_true", help="print every option, its default and meaning, and exit")
    g = p.add_argument_group("common options (shorthands for --set)")
    for key in config_mod.FLAGS:  # the options declared with flag=True, e.g. batch_size -> --batch-size
        o = config_mod.OPTIONS[key]  # choices are checked with the config's, for one message
        shown = "{" + ",".join(map(str, o.choices)) + "}" if o.choices else None
        g.add_argument("--" + key.replace("_", "-"), dest=key, type=o.types[0], metavar=shown,
                       help=o.help.replace("%", "%%"))
    return p


def list_options() -> str:
    lines = []
    for key, o in config_mod.OPTIONS.items():
        extra = "".join(f", {b}: {v}" for b, v in config_mod.backbone_defaults(key).items())
        ch = f" [{', '.join(map(str, o.choices))}]" if o.choices else ""
        lines.append(f"{key:20s} {o.default!r}{extra}{ch}\n{'':20s} {o.help}")
    return "\n".join(lines)


def _one_line(e: BaseException) -> str:
    """An exception as one line; errors re-raised from DataLoader workers carry a traceback."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    msg = lines[-1] if lines else type(e).__name__
    for prefix in ("camfast.data.celeba.DataError: ", "DataError: "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    return msg


def _rank0() -> bool:
    return os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 alone owns the run folder


def _default_run_dir(backbone: str) -> tuple[str, bool]:
    """``(runs/<backbone>-<timestamp>[-N], created)``: made with an exclusive mkdir, so two runs
    started in the same second get two folders."""
    base = os.path.join("runs", f"{backbone}-{time.strftime('%Y%m%d-%H%M%S')}")
    if not _rank0():
        return base, False  # the other ranks write nothing
    try:
        os.makedirs("runs", exist_ok=True)
        for n in itertools.count(1):
            path = base if n == 1 else f"{base}-{n}"
            try:
                os.mkdir(path)
                return path, True
            except FileExistsError:
                continue
    except OSError as e:
        from ..training.checkpoint import RunFolderError
        raise RunFolderError(f"cannot create a run folder under {os.path.abspath('runs')}: {e.strerror or e}; "
                             "choose one with --out") from None
    raise AssertionError("unreachable")


def _resolve(args) -> tuple[dict, str, Optional[dict], Optional[str], bool]:
    """``(config, run folder, checkpoint or None, its path, run folder just created)`` from the command line."""
    from ..training import checkpoint as ckpt_mod

    flags = {key: getattr(args, key) for key in config_mod.FLAGS}
    if not args.resume and (args.discard_newer or args.trust_checkpoint):
        raise config_mod.ConfigError(f"{'--discard-newer' if args.discard_newer else '--trust-checkpoint'} "
                                     "only applies with --resume")
    if args.resume:
        if args.preset or args.config:
            raise config_mod.ConfigError("--resume takes the run's config from its checkpoint; drop --preset/--config "
                                         "(--steps and --set for logging options still apply)")
        path = ckpt_mod.find(args.resume)
        ckpt = ckpt_mod.load(path, trusted=args.trust_checkpoint)
        ckpt_mod.check_resumable(ckpt, path)
        cfg = dict(ckpt["config"])
        for key in config_mod.RESUMABLE:  # options added since the checkpoint was written
            cfg.setdefault(key, config_mod.DEFAULTS[key])
        over = config_mod.merge({}, {k: v for k, v in flags.items() if v is not None}, "flags")
        over = config_mod.merge(over, config_mod.parse_set(args.sets), "--set")
        for key, value in over.items():
            old = cfg.get(key)
            if key == "model" and isinstance(old, dict) and isinstance(value, dict):
                value = {**old, **value}  # --set model.x=... names one entry; the rest stays
            if key not in config_mod.RESUMABLE and value != old:
                raise config_mod.ConfigError(f"{key}: cannot change it when resuming (checkpoint has {old!r}); "
                                             f"only {sorted(config_mod.RESUMABLE)} can")
        cfg = config_mod.check(config_mod.merge(cfg, over, "resume"))
        run_dir = cfg["out"] if "out" in over else os.path.dirname(os.path.abspath(path))
        cfg["out"] = run_dir
        if ckpt["step"] >= cfg["steps"]:
            raise config_mod.ConfigError(f"the run in {run_dir} already finished {ckpt['step']} of {cfg['steps']} steps; "
                                         "raise --steps to train longer")
        return cfg, run_dir, ckpt, path, False

    files = []
    if args.preset:
        files.append(("--preset", config_mod.preset_path(args.preset)))
    if args.config:
        files.append(("--config", args.config))
    cfg = config_mod.resolve(files=files, flags=flags, sets=args.sets)
    created = False
    if cfg["out"]:
        run_dir = cfg["out"]
    else:
        run_dir, created = _default_run_dir(cfg["backbone"])
    cfg["out"] = run_dir
    return cfg, run_dir, None, None, created


def _same_path(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _claim(args, run_dir: str, ckpt: Optional[dict], path: Optional[str], created: bool):
    """Lock the run folder for this run and check that it may be used as asked (rank 0).

    Returns the held :class:`RunLock`. Under the lock no other camfast-train writes in the
    folder, so what is found there is what a previous run left.
    """
    from ..training import checkpoint as ckpt_mod
    from ..training.logging import notice

    lock = ckpt_mod.RunLock(run_dir, created=created).acquire()
    try:
        if ckpt is not None and _same_path(os.path.dirname(os.path.abspath(path)), run_dir):
            _claim_resume_in_place(args, run_dir, ckpt, path)
        else:
            files = ckpt_mod.run_files(run_dir)
            has_ckpt = any(f == ckpt_mod.LAST or ckpt_mod.KEPT_RE.fullmatch(f) for f in files)
            if files and not args.overwrite:
                if ckpt is not None:
                    raise config_mod.ConfigError(
                        f"--out {run_dir} already holds another run; continue the run of {path} in its own folder "
                        f"(drop --out), choose an empty --out, or add --overwrite to delete {run_dir}'s run first")
                if has_ckpt:
                    raise config_mod.ConfigError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, "
                                                 "start it again with --overwrite, or choose another --out")
                raise config_mod.ConfigError(
                    f"{run_dir} holds the files of a run that saved no checkpoint ({', '.join(files[:3])}"
                    f"{', ...' if len(files) > 3 else ''}); start afresh there with --overwrite or choose another --out")
            if files:
                ckpt_mod.clear_run(run_dir)
            elif ckpt_mod.foreign_config(run_dir):
                raise config_mod.ConfigError(
                    f"{os.path.join(run_dir, ckpt_mod.CONFIG)} was not written by camfast-train and the run would "
                    "replace it; move it away or choose another --out")
        stale = ckpt_mod.clean_temporaries(run_dir)
        if stale:
            notice(f"removed {len(stale)} half-written checkpoint file(s) of a killed run from {run_dir}")
    except BaseException:
        lock.release(tidy=True)
        raise
    return lock


def _claim_resume_in_place(args, run_dir: str, ckpt: dict, path: str) -> None:
    """``--resume`` writing where the checkpoint lies: refuse to silently drop a newer state."""
    from ..training import checkpoint as ckpt_mod
    from ..training.logging import drop_rows_after, notice

    if args.overwrite:
        raise config_mod.ConfigError(f"--overwrite would delete the run in {run_dir} that --resume continues; drop it")
    step = int(ckpt["step"])
    last = os.path.join(run_dir, ckpt_mod.LAST)
    last_step = None
    if os.path.isfile(last) and not _same_path(path, last):
        last_step = ckpt_mod.peek_step(last)
        if last_step is None:
            last_step = -1  # unreadable: it is replaced only on request too
    newer_kept = [s for s in ckpt_mod.kept_steps(run_dir) if s > step]
    if (last_step is not None and (last_step > step or last_step < 0)) or newer_kept:
        newer = ckpt_mod.newer_files(run_dir, step)
        if not args.discard_newer:
            now = f"step {last_step}" if last_step is not None and last_step >= 0 else "unreadable"
            what = [f"replace {ckpt_mod.LAST} ({now})"] if last_step is not None else []
            n_kept = len(newer_kept)
            n_samples = len(newer) - n_kept
            if n_kept or n_samples:
                what.append(f"delete {n_kept} later kept checkpoint(s) and {n_samples} sample grid(s)")
            what.append(f"drop the metrics.csv/curve.csv rows after step {step}")
            raise config_mod.ConfigError(
                f"{run_dir} holds a newer state than {os.path.basename(path)} (step {step}); resuming from it would "
                f"{', '.join(what)}; add --discard-newer to do that, or continue in a new folder with --out")
        ckpt_mod.keep(path, last)  # checkpoint.pt is now the step being resumed
        for rel in newer:
            try:
                os.remove(os.path.join(run_dir, rel))
            except OSError:
                pass
        for name in (ckpt_mod.METRICS, ckpt_mod.CURVE):  # also when the curve is off now
            drop_rows_after(os.path.join(run_dir, name), step)
        notice(f"--discard-newer: {run_dir} continues from step {step}; discarded the state after it "
               f"({len(newer)} file(s) and the logged rows after step {step})")
    elif _same_path(path, last):
        kept = ckpt_mod.repair_kept(run_dir, step, int(ckpt["config"].get("keep_every") or 0))
        if kept:
            notice(f"made the kept copy {kept} that a kill during the last save left out")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_options:
        print(list_options())
        return 0
    prog = "camfast-train"

    from ..data import DataError
    from ..training import checkpoint as ckpt_mod
    from ..training import distributed
    from ..training.trainer import Trainer

    info, lock, path = None, None, None
    try:
        try:
            cfg, run_dir, ckpt, path, created = _resolve(args)
            if _rank0():
                lock = _claim(args, run_dir, ckpt, path, created)
            info, device = distributed.setup(cfg["device"])
            cfg["device"] = str(device) if not info.enabled else cfg["device"]
            trainer = Trainer(cfg, run_dir, info, device, resume=ckpt)
        except (config_mod.ConfigError, DataError, ValueError, OSError) as e:
            if lock is not None:
                lock.release(tidy=True)
                lock = None
            msg = _one_line(e)
            if path and msg.startswith("--resume: ") and path not in msg:
                msg = f"--resume {path}: {msg[len('--resume: '):]}"
            print(f"{prog}: error: {msg}", file=sys.stderr)
            return EXIT_USAGE if isinstance(e, config_mod.ConfigError) else EXIT_ERROR
        try:
            status = trainer.fit()
        except Exception as e:  # noqa: BLE001 - reported in one line where it is understood
            return _report(prog, trainer, e)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_SIGNAL[signal.SIGINT]
    finally:
        if info is not None:
            distributed.cleanup(info)
        if lock is not None:
            lock.release()

    if not info.main:
        return 0 if status == "done" else EXIT_SIGNAL.get(trainer.stop_signal, 130)
    if status == "interrupted":
        print(f"{prog}: stopped at step {trainer.step}; checkpoint saved in {run_dir} "
              f"(continue with: camfast-train --resume {run_dir})", file=sys.stderr)
        return EXIT_SIGNAL.get(trainer.stop_signal, 130)
    print(f"{prog}: done: {trainer.step} steps in {trainer.elapsed:.0f} s; samples in {os.path.join(run_dir, 'samples')}, "
          f"checkpoint {os.path.join(run_dir, ckpt_mod.LAST)}", file=sys.stderr)
    return 0


def _report(prog: str, trainer, e: Exception) -> int:
    """The exit code of a run that ``e`` ended, after one line saying what and where the run stands.

    Errors of the data, the disk, a worker, a checkpoint write and non-finite losses are
    reported in one line; anything else keeps its traceback (a bug), after that line.
    """
    from ..data import DataError
    from ..training import checkpoint as ckpt_mod
    from ..training.trainer import NonFiniteError

    text = str(e)
    worker_died = isinstance(e, RuntimeError) and "DataLoader worker" in text and "DataError" not in text
    if worker_died and trainer.stop_signal is not None:
        # The worker went down with the signal that stopped the run (sent before it could
        # ignore it): the main process saved the step as for any stop.
        if trainer.main:
            print(f"{prog}: stopped at step {trainer.step}; {trainer.checkpoint_note()}", file=sys.stderr)
        return EXIT_SIGNAL.get(trainer.stop_signal, 130)
    known = (isinstance(e, (DataError, OSError, ckpt_mod.CheckpointWriteError, NonFiniteError)) or worker_died
             or (isinstance(e, RuntimeError) and ("DataError" in text or "cannot read image" in text)))
    if not known:
        print(f"{prog}: the run failed at step {trainer.step}; {trainer.checkpoint_note()}", file=sys.stderr)
        raise e
    msg = _one_line(e)
    if worker_died:
        msg = f"a DataLoader worker died ({msg})"
    if isinstance(e, ckpt_mod.CheckpointWriteError):
        line = msg  # it says which file and what became of the previous checkpoint
    else:
        line = f"{msg}; {trainer.checkpoint_note()}"
    print(f"{prog}: error: {line}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
