"""Training options: defaults per backbone, YAML files, ``--set key=value`` overrides, checks.

A config is a flat dict (like StarGAN's argparse namespace) plus one nested dict, ``model``,
passed to :func:`camfast.models.build`. ``resolve`` layers, lowest first:

    DEFAULTS < BACKBONE_DEFAULTS[backbone] < preset file < --config file < flags < --set

Each option is declared once, as a row of ``OPTIONS``; the defaults, the per-backbone
defaults, what a resume may change, camfast-train's flags, ``--list-options`` and the table of
docs/training.md are derived from it. Every key is checked here (type, choices, minimum), so
a typo fails before anything is built.
"""
from __future__ import annotations

import difflib
import math
import os
from typing import Any, Iterable, NamedTuple, Optional

import yaml

from ..api import BACKENDS
from ..models import BACKBONES

# The smallest normal float32: the CAM loss is computed in float32 (see cam_eps in check()).
LOSS_TINY = 1.1754943508222875e-38

PRESET_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


class ConfigError(ValueError):
    """A bad option name or value; the message names the option."""


class Option(NamedTuple):
    """One trainer option: everything camfast-train, ``--list-options`` and docs/training.md
    say about it is derived from this row. Rows give ``help`` last, by name."""
    default: Any
    types: tuple                      # ``None`` among them: the option may be null
    choices: Optional[tuple]
    help: str
    backbones: dict = {}              # backbone -> its own default, where it differs
    minimum: Optional[float] = None   # the smallest value allowed (null stays allowed where the types say so)
    flag: bool = False                # also a direct flag of camfast-train (--batch-size, ...)
    resumable: bool = False           # may change when a run is resumed (it does not change what is computed)


def _attgan(value) -> dict:
    """A default of AttGAN's recipe, which STGAN keeps (the objective and the schedule)."""
    return {"attgan": value, "stgan": value}


# The originals' objectives and schedules are the per-backbone defaults (docs/training.md gives
# the sources). AttGAN's 1,137,500 steps are 200 epochs of 182,000 images at batch 32, with the
# rate / 10 after 100 epochs. lambda_cam_g follows lambda_rec: the CAM term is an L1 on the
# image, like the reconstruction, and docs/method.md (Weights) asks for the two to start at the
# same order. Neither AttGAN's nor STGAN's data pipeline flips; both test with running statistics.
OPTIONS: dict[str, Option] = {
    # run
    "backbone": Option("stargan", (str,), BACKBONES, flag=True, help="which GAN to train"),
    "seed": Option(0, (int,), None, minimum=0, flag=True, help="seed of every random stream (model initialisation, data order, targets, flips, penalty points)"),
    "device": Option("auto", (str,), None, flag=True, resumable=True, help="auto (cuda if available), cpu, cuda or cuda:N"),
    "threads": Option(None, (int, None), None, minimum=1, resumable=True, help="CPU threads of torch (null: torch's default); 1 is fastest for small models on a busy CPU"),
    "amp": Option("none", (str,), ("none", "bf16"), flag=True, help="bf16 autocast of the forward passes (meant for GPUs)"),
    "out": Option(None, (str, None), None, flag=True, resumable=True, help="run folder (default runs/<backbone>-<timestamp>)"),
    # data
    "data": Option(None, (str, None), None, flag=True, resumable=True, help="CelebA root (img_align_celeba/, list_attr_celeba.txt, ...); null: the built-in synthetic set"),
    "data_cache": Option(None, (str, None), None, flag=True, resumable=True, help="where the synthetic set is cached (default $CAMFAST_CACHE or ~/.cache/camfast)"),
    "attrs": Option(None, (list, None), None, help="attribute names; null: the backbone's list (CelebA) or all synthetic attributes"),
    "image_size": Option(128, (int,), (64, 128, 256), flag=True, help="training resolution"),
    "crop": Option("auto", (str,), ("auto", "stargan", "attgan", "none"), help="face crop; auto: the backbone's on CelebA, none on the synthetic set"),
    "split": Option("train", (str,), ("train", "val", "test", "all"), help="list_eval_partition.txt split to train on"),
    "num_workers": Option(2, (int,), None, minimum=0, resumable=True, help="DataLoader worker processes"),
    "flip": Option(True, (bool,), None, backbones=_attgan(False), help="random horizontal flips (StarGAN's code flips; AttGAN's and STGAN's do not)"),
    "synthetic_images": Option(4000, (int,), None, minimum=1, help="size of the synthetic set"),
    "synthetic_seed": Option(0, (int,), None, minimum=0, help="seed of the synthetic set"),
    "synthetic_size": Option(None, (int, None), None, help="side of the synthetic images (null: image_size)"),
    # schedule
    "steps": Option(200000, (int,), None, backbones=_attgan(1137500), minimum=1, flag=True, resumable=True, help="training iterations; D is updated every iteration, G every n_critic-th"),
    "batch_size": Option(16, (int,), None, backbones=_attgan(32), minimum=1, flag=True, help="images per iteration per process"),
    "n_critic": Option(5, (int,), None, minimum=1, help="D updates per G update"),
    "g_lr": Option(1e-4, (float,), None, backbones=_attgan(2e-4), minimum=0, help="G's Adam learning rate"),
    "d_lr": Option(1e-4, (float,), None, backbones=_attgan(2e-4), minimum=0, help="D's Adam learning rate"),
    "beta1": Option(0.5, (float,), None, help="Adam beta1"),
    "beta2": Option(0.999, (float,), None, help="Adam beta2"),
    "lr_decay": Option("linear", (str,), ("none", "linear", "step"), backbones=_attgan("step"), help="linear: to 0 from lr_decay_start; step: times lr_decay_factor from lr_decay_start"),
    "lr_decay_start": Option(None, (int, None), None, help="iteration the decay starts (null: steps // 2)"),
    "lr_decay_factor": Option(0.1, (float,), None, help="multiplier of the step decay"),
    # objective
    "lambda_gp": Option(10.0, (float,), None, minimum=0, help="WGAN-GP gradient penalty weight"),
    "lambda_cls_g": Option(1.0, (float,), None, backbones=_attgan(10.0), minimum=0, help="G's attribute classification weight"),
    "lambda_cls_d": Option(1.0, (float,), None, minimum=0, help="D's attribute classification weight"),
    "lambda_rec": Option(10.0, (float,), None, backbones=_attgan(100.0), minimum=0, help="reconstruction weight"),
    "cls_reduction": Option("sum", (str,), ("sum", "mean"), backbones=_attgan("mean"), help="BCE over attributes: sum (StarGAN: sum / batch) or mean (AttGAN)"),
    "thres_int": Option(0.5, (float,), None, minimum=0, help="AttGAN/STGAN: attribute a in {0,1} is fed as (2a - 1) * thres_int"),
    "b_distribution": Option("none", (str,), ("none", "uniform", "truncated_normal"), help="AttGAN/STGAN: random intensity of the target attributes"),
    "test_int": Option(1.0, (float,), None, help="AttGAN/STGAN: test-time intensity of the flipped attribute (sample grids, curve, camfast-eval)"),
    "test_g_mode": Option("train", (str,), ("train", "eval"), backbones=_attgan("eval"), resumable=True, help="G's normalisation at test time: eval = running statistics (AttGAN/STGAN's test code), train = the batch's own (StarGAN's)"),
    # CAM consistency
    "lambda_cam_g": Option(10.0, (float,), None, backbones=_attgan(100.0), minimum=0, flag=True, help="weight of the CAM-consistency term in G's loss (0: off)"),
    "lambda_cam_d": Option(1.0, (float,), None, minimum=0, flag=True, help="weight of the CAM-consistency term in D's loss (0: off)"),
    "cam_g_start": Option(0, (int,), None, minimum=0, help="iteration from which G's CAM term is on (0: from the start)"),
    "cam_g_ramp": Option(0, (int,), None, minimum=0, help="iterations over which G's CAM weight ramps from 0 to lambda_cam_g after cam_g_start (0: at once)"),
    "cam_layer": Option(None, (str, None), None, help="D's layer for Grad-CAM (null: D.default_cam_layer)"),
    "cam_normalize": Option("minmax", (str,), ("minmax", "max"), help="CAM normalisation"),
    "cam_sources": Option("both", (str,), ("both", "real", "fake"), help="CAM of the real image (removed attributes), the translated one (added), or both"),
    "cam_score": Option("changed", (str,), ("changed", "flipped", "all"), help="which logits form the Grad-CAM score (CAM consistency in docs/training.md)"),
    "cam_eps": Option(1e-6, (float,), None, help="eps of the CAM normalisation (at least 1.2e-38, the smallest normal float32)"),
    "cam_g_through_mask": Option(False, (bool,), None, help="let G's gradient also flow through D's mask"),
    "cam_backend": Option("auto", (str,), BACKENDS, help="camfast.cam_consistency_loss backend (auto: the fastest for the device, see camfast.backends())"),
    # output
    "log_every": Option(10, (int,), None, minimum=0, resumable=True, help="iterations between metrics.csv rows"),
    "sample_every": Option(1000, (int,), None, minimum=0, resumable=True, help="iterations between sample grids (0: only at the end)"),
    "n_samples": Option(8, (int,), None, minimum=1, help="faces in a sample grid"),
    "save_every": Option(1000, (int,), None, minimum=0, resumable=True, help="iterations between checkpoints (0: only at the end and when stopped)"),
    "keep_every": Option(0, (int,), None, minimum=0, resumable=True, help="also keep checkpoint-<step>.pt every this many iterations (0: no)"),
    "g_ema": Option(0.0, (float,), None, help="decay of a moving average of G's weights used for samples and evaluation (0: off; e.g. 0.999)"),
    "eval_every": Option(0, (int,), None, minimum=0, resumable=True, help="iterations between learning-curve points in curve.csv (0: off)"),
    "eval_images": Option(64, (int,), None, minimum=1, resumable=True, help="validation faces the learning curve edits"),
    "eval_classifier": Option(None, (str, None), None, resumable=True, help="camfast-train-classifier file that scores the curve's edits (null: recon PSNR only)"),
    "nonfinite_patience": Option(3, (int,), None, minimum=0, resumable=True, help="stop with an error after this many consecutive logged steps with a non-finite loss (0: only warn)"),
    "tensorboard": Option(True, (bool,), None, resumable=True, help="write TensorBoard logs when tensorboard is installed"),
    "progress": Option(True, (bool,), None, resumable=True, help="progress bar (tqdm) or periodic lines"),
    # model
    "model": Option({}, (dict,), None, help="options of camfast.models.build (conv_dim, ...; see docs/backbones.md)"),
}

DEFAULTS: dict[str, Any] = {key: o.default for key, o in OPTIONS.items()}
BACKBONE_DEFAULTS: dict[str, dict[str, Any]] = {
    b: {key: o.backbones[b] for key, o in OPTIONS.items() if b in o.backbones} for b in BACKBONES}
RESUMABLE = {key for key, o in OPTIONS.items() if o.resumable}
FLAGS = [key for key, o in OPTIONS.items() if o.flag]


def backbone_defaults(key: str) -> dict:
    """``{backbone: default}`` where a backbone's default of ``key`` differs from the common one."""
    o = OPTIONS[key]
    return {b: v for b, v in o.backbones.items() if v != o.default}


def options_markdown() -> str:
    """The table of docs/training.md's "All options" (tests/test_train.py checks that the page holds it)."""
    def show(v):  # numbers as they read, the rest as YAML code
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return f"{v:g}" if isinstance(v, float) else str(v)
        return f"`{yaml.safe_dump(v, default_flow_style=True).splitlines()[0]}`"

    rows = ["| option | default | meaning |", "|---|---|---|"]
    for key, o in OPTIONS.items():
        per = {}
        for b, v in backbone_defaults(key).items():
            per.setdefault(show(v), []).append(b)
        default = show(o.default) + "".join(f"; {', '.join(bs)}: {v}" for v, bs in per.items())
        choices = f" ({', '.join(f'`{c}`' for c in o.choices)})" if o.choices else ""
        flag = f" (`--{key.replace('_', '-')}`)" if o.flag else ""
        text = o.help.replace("<", "\\<")  # runs/<backbone> is not an HTML tag
        rows.append(f"| `{key}`{flag} | {default} | {text}{choices} |")
    return "\n".join(rows) + "\n"


def defaults(backbone: str) -> dict:
    if backbone not in BACKBONE_DEFAULTS:
        raise ConfigError(f"backbone: unknown backbone {backbone!r}; expected one of {list(BACKBONES)}")
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULTS.items()}
    cfg.update(BACKBONE_DEFAULTS[backbone])
    cfg["backbone"] = backbone
    return cfg


# ---------------------------------------------------------------- reading

def load_yaml(path: str) -> dict:
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (UnicodeDecodeError, yaml.reader.ReaderError):
        raise ConfigError(f"{path}: not a YAML text file (it holds bytes that are not text; a binary file?)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of options, got {type(data).__name__}")
    return data


def preset_path(name: str) -> str:
    """``camfast/configs/<name>.yaml`` (a path to a .yaml file is also accepted)."""
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        return name
    path = os.path.join(PRESET_DIR, f"{name}.yaml")
    if not os.path.isfile(path):
        have = sorted(f[:-5] for f in os.listdir(PRESET_DIR) if f.endswith(".yaml")) if os.path.isdir(PRESET_DIR) else []
        raise ConfigError(f"--preset: no preset {name!r}; available: {have}")
    return path


def parse_set(items: Iterable[str]) -> dict:
    """``["lambda_cam_g=1", "model.conv_dim=16"]`` -> ``{"lambda_cam_g": 1, "model": {"conv_dim": 16}}``.

    Values are read as YAML (``true``, ``[a, b]``, ``null``); numbers like ``1e-4`` too.
    """
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set: expected key=value, got {item!r}")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):
            value = _number(value)
        if key.startswith("model."):
            out.setdefault("model", {})[key[len("model."):]] = value
        else:
            out[key] = value
    return out


def _number(s: str):
    """YAML 1.1 reads ``1e-4`` as a string; accept it as a number."""
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


# ---------------------------------------------------------------- merging and checking

def merge(base: dict, over: dict, source: str) -> dict:
    """``base`` updated by ``over`` (``model`` is merged key by key); unknown keys fail."""
    out = dict(base)
    for key, value in over.items():
        if key not in OPTIONS:
            close = difflib.get_close_matches(key, OPTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{source}: unknown option {key!r}{hint}")
        if key == "model" and isinstance(value, dict):
            out["model"] = {**out.get("model", {}), **value}
        else:
            out[key] = value
    return out


def check(cfg: dict) -> dict:
    """Coerce and check every value; returns a new dict. Raises ConfigError naming the key."""
    out = {}
    for key, o in OPTIONS.items():
        if key not in cfg:
            raise ConfigError(f"missing option {key!r}")
        v = cfg[key]
        if v is None and None in o.types:
            out[key] = None
            continue
        if float in o.types and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if isinstance(v, str) and (float in o.types or int in o.types):
            v = _number(v)
            if float in o.types and isinstance(v, int):
                v = float(v)
        if key == "attrs" and isinstance(v, str):
            v = [a.strip() for a in v.split(",") if a.strip()]
        ok = any(t is not None and isinstance(v, t) for t in o.types) and not (isinstance(v, bool) and bool not in o.types)
        if not ok:
            names = " or ".join("null" if t is None else t.__name__ for t in o.types)
            raise ConfigError(f"{key}: expected {names}, got {v!r}")
        if o.choices is not None and v not in o.choices:
            raise ConfigError(f"{key}: expected one of {list(o.choices)}, got {v!r}")
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{key}: expected a finite number, got {v}")
        if o.minimum is not None and v < o.minimum:
            kind = "an int" if int in o.types else "a number"
            raise ConfigError(f"{key}: expected {kind} >= {o.minimum}{' or null' if None in o.types else ''}, got {v}")
        out[key] = v
    if not 0.0 <= out["g_ema"] < 1.0:
        raise ConfigError(f"g_ema: expected a decay in [0, 1) (0: off), got {out['g_ema']}")
    if out["lr_decay_start"] is not None and out["lr_decay_start"] < 0:
        raise ConfigError(f"lr_decay_start: expected an iteration >= 0 or null, got {out['lr_decay_start']}")
    if not 0.0 <= out["lr_decay_factor"] <= 1.0:
        raise ConfigError(f"lr_decay_factor: expected a multiplier in [0, 1], got {out['lr_decay_factor']}")
    for key in ("beta1", "beta2"):
        if not 0.0 <= out[key] < 1.0:
            raise ConfigError(f"{key}: expected a number in [0, 1), got {out[key]}")
    if not out["cam_eps"] > 0:
        raise ConfigError(f"cam_eps: expected a number > 0, got {out['cam_eps']}")
    if out["cam_eps"] < LOSS_TINY:
        # The loss is computed in float32 (cam.py casts every input, also under bf16
        # autocast): a smaller eps rounds to 0 (or to a denormal, flushed to 0 on GPUs)
        # and the normalisation divides by zero.
        raise ConfigError(f"cam_eps: {out['cam_eps']:g} is below the smallest normal float32 ({LOSS_TINY:.3g}), "
                          "the dtype the loss is computed in, so it would act as 0 and the loss would be NaN; "
                          "use e.g. 1e-6")
    if out["attrs"] is not None and (not out["attrs"] or not all(isinstance(a, str) for a in out["attrs"])):
        raise ConfigError(f"attrs: expected a non-empty list of attribute names, got {out['attrs']!r}")
    for key in ("image_size", "attrs", "n_attrs"):
        if key in out["model"]:
            raise ConfigError(f"model.{key}: set {'attrs' if key != 'image_size' else 'image_size'} at the top level, not under model")
    return out


def check_backend(cfg: dict, device) -> None:
    """ConfigError now, instead of a traceback at the first step, if ``cam_backend`` cannot
    run on ``device`` (the sample grids use it even when both CAM weights are 0)."""
    import torch

    from ..api import _resolve_backend
    try:
        _resolve_backend(cfg["cam_backend"], torch.device(device), torch.float32)
    except (RuntimeError, ValueError, TypeError) as e:
        raise ConfigError(f"cam_backend: {cfg['cam_backend']!r} cannot run on {device}: {e}") from None


def resolve(backbone: Optional[str] = None, files: Iterable[tuple[str, str]] = (), flags: Optional[dict] = None,
            sets: Iterable[str] = ()) -> dict:
    """The checked config from (source name, path) YAML files, direct flags and ``--set`` items.

    The backbone is taken from the highest layer that names one, then its defaults are laid
    under everything else.
    """
    layers = [(src, load_yaml(path)) for src, path in files]
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    sets = parse_set(sets)
    layers += [("flags", flags), ("--set", sets)]
    name = backbone
    for _, layer in layers:
        if "backbone" in layer:
            name = layer["backbone"]
    name = name or DEFAULTS["backbone"]
    if not isinstance(name, str) or name not in BACKBONES:
        raise ConfigError(f"backbone: unknown backbone {name!r}; expected one of {list(BACKBONES)}")
    cfg = defaults(name)
    for src, layer in layers:
        cfg = merge(cfg, layer, src)
    return check(cfg)


def to_yaml(cfg: dict) -> str:
    """The config as YAML, keys in OPTIONS order (the order of the docs)."""
    ordered = {k: cfg[k] for k in OPTIONS if k in cfg}
    ordered.update({k: v for k, v in cfg.items() if k not in ordered})
    return yaml.safe_dump(ordered, sort_keys=False, default_flow_style=None)
