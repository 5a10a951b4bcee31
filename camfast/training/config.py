"""Training options: defaults per backbone, YAML files, ``--set key=value`` overrides, checks.

A config is a flat dict (like StarGAN's argparse namespace) plus one nested dict, ``model``,
passed to :func:`camfast.models.build`. ``resolve`` layers, lowest first:

    DEFAULTS < BACKBONE_DEFAULTS[backbone] < preset file < --config file < flags < --set

Every key is checked here (type and choices), so a typo fails before anything is built.
"""
from __future__ import annotations

import difflib
import math
import os
from typing import Any, Iterable, Optional

import yaml

from ..models import BACKBONES

# The smallest normal float32: the CAM loss is computed in float32 (see cam_eps in check()).
LOSS_TINY = 1.1754943508222875e-38

PRESET_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


class ConfigError(ValueError):
    """A bad option name or value; the message names the option."""


# key: (types, choices or None, one-line help). ``None`` in types means "may be null".
OPTIONS: dict[str, tuple[tuple, Optional[tuple], str]] = {
    # run
    "backbone": ((str,), BACKBONES, "which GAN to train"),
    "seed": ((int,), None, "seed of every random stream (models, data order, targets)"),
    "device": ((str,), None, "auto (cuda if available), cpu, cuda or cuda:N"),
    "threads": ((int, None), None, "CPU threads of torch (null: torch's default); 1 is fastest for small models on a busy CPU"),
    "amp": ((str,), ("none", "bf16"), "bf16 autocast of the forward passes (meant for GPUs)"),
    "out": ((str, None), None, "run folder (default runs/<backbone>-<timestamp>)"),
    # data
    "data": ((str, None), None, "CelebA root (img_align_celeba/, list_attr_celeba.txt, ...); null: the built-in synthetic set"),
    "data_cache": ((str, None), None, "where the synthetic set is cached (default $CAMFAST_CACHE or ~/.cache/camfast)"),
    "attrs": ((list, None), None, "attribute names; null: the backbone's list (CelebA) or all synthetic attributes"),
    "image_size": ((int,), (64, 128, 256), "training resolution"),
    "crop": ((str,), ("auto", "stargan", "attgan", "none"), "face crop; auto: the backbone's on CelebA, none on the synthetic set"),
    "split": ((str,), ("train", "val", "test", "all"), "list_eval_partition.txt split to train on"),
    "num_workers": ((int,), None, "DataLoader worker processes"),
    "flip": ((bool,), None, "random horizontal flips (StarGAN's code flips; AttGAN's and STGAN's do not)"),
    "synthetic_images": ((int,), None, "size of the synthetic set"),
    "synthetic_seed": ((int,), None, "seed of the synthetic set"),
    "synthetic_size": ((int, None), None, "side of the synthetic images (null: image_size)"),
    # schedule
    "steps": ((int,), None, "training iterations; D is updated every iteration, G every n_critic-th"),
    "batch_size": ((int,), None, "images per iteration per process"),
    "n_critic": ((int,), None, "D updates per G update"),
    "g_lr": ((float,), None, "G's Adam learning rate"),
    "d_lr": ((float,), None, "D's Adam learning rate"),
    "beta1": ((float,), None, "Adam beta1"),
    "beta2": ((float,), None, "Adam beta2"),
    "lr_decay": ((str,), ("none", "linear", "step"), "linear: to 0 from lr_decay_start; step: times lr_decay_factor from lr_decay_start"),
    "lr_decay_start": ((int, None), None, "iteration the decay starts (null: steps // 2)"),
    "lr_decay_factor": ((float,), None, "multiplier of the step decay"),
    # objective
    "lambda_gp": ((float,), None, "WGAN-GP gradient penalty weight"),
    "lambda_cls_g": ((float,), None, "G's attribute classification weight"),
    "lambda_cls_d": ((float,), None, "D's attribute classification weight"),
    "lambda_rec": ((float,), None, "reconstruction weight"),
    "cls_reduction": ((str,), ("sum", "mean"), "BCE over attributes: sum (StarGAN: sum / batch) or mean (AttGAN)"),
    "thres_int": ((float,), None, "AttGAN/STGAN: attribute a in {0,1} is fed as (2a - 1) * thres_int"),
    "b_distribution": ((str,), ("none", "uniform", "truncated_normal"), "AttGAN/STGAN: random intensity of the target attributes"),
    "test_int": ((float,), None, "AttGAN/STGAN: test-time intensity of the flipped attribute (sample grids, curve, camfast-eval)"),
    "test_g_mode": ((str,), ("train", "eval"), "G's normalisation at test time: eval = running statistics (AttGAN/STGAN's test code), train = the batch's own (StarGAN's)"),
    # CAM consistency
    "lambda_cam_g": ((float,), None, "weight of the CAM-consistency term in G's loss (0: off)"),
    "lambda_cam_d": ((float,), None, "weight of the CAM-consistency term in D's loss (0: off)"),
    "cam_g_start": ((int,), None, "iteration from which G's CAM term is on (0: from the start)"),
    "cam_g_ramp": ((int,), None, "iterations over which G's CAM weight ramps from 0 to lambda_cam_g after cam_g_start (0: at once)"),
    "cam_layer": ((str, None), None, "D's layer for Grad-CAM (null: D.default_cam_layer)"),
    "cam_normalize": ((str,), ("minmax", "max"), "CAM normalisation"),
    "cam_sources": ((str,), ("both", "real", "fake"), "CAM of the real image (removed attributes), the translated one (added), or both"),
    "cam_score": ((str,), ("changed", "flipped", "all"), "which logits form the Grad-CAM score, see docs/training.md"),
    "cam_eps": ((float,), None, "eps of the CAM normalisation"),
    "cam_g_through_mask": ((bool,), None, "let G's gradient also flow through D's mask"),
    "cam_backend": ((str,), ("auto", "reference", "cpu", "cuda", "triton"), "camfast.cam_consistency_loss backend"),
    # output
    "log_every": ((int,), None, "iterations between metrics.csv rows"),
    "sample_every": ((int,), None, "iterations between sample grids (0: only at the end)"),
    "n_samples": ((int,), None, "faces in a sample grid"),
    "save_every": ((int,), None, "iterations between checkpoints (0: only at the end)"),
    "keep_every": ((int,), None, "also keep checkpoint-<step>.pt every this many iterations (0: no)"),
    "g_ema": ((float,), None, "decay of a moving average of G's weights used for samples and evaluation (0: off; e.g. 0.999)"),
    "eval_every": ((int,), None, "iterations between learning-curve points in curve.csv (0: off)"),
    "eval_images": ((int,), None, "validation faces the learning curve edits"),
    "eval_classifier": ((str, None), None, "camfast-train-classifier file that scores the curve's edits (null: recon PSNR only)"),
    "nonfinite_patience": ((int,), None, "stop with an error after this many consecutive logged steps with a non-finite loss (0: only warn)"),
    "tensorboard": ((bool,), None, "write TensorBoard logs when tensorboard is installed"),
    "progress": ((bool,), None, "progress bar (tqdm) or periodic lines"),
    # model
    "model": ((dict,), None, "options of camfast.models.build (conv_dim, ...; see docs/backbones.md)"),
}

DEFAULTS: dict[str, Any] = {
    "backbone": "stargan", "seed": 0, "device": "auto", "threads": None, "amp": "none", "out": None,
    "data": None, "data_cache": None, "attrs": None, "image_size": 128, "crop": "auto", "split": "train",
    "num_workers": 2, "flip": True, "synthetic_images": 4000, "synthetic_seed": 0, "synthetic_size": None,
    "steps": 200000, "batch_size": 16, "n_critic": 5, "g_lr": 1e-4, "d_lr": 1e-4, "beta1": 0.5, "beta2": 0.999,
    "lr_decay": "linear", "lr_decay_start": None, "lr_decay_factor": 0.1,
    "lambda_gp": 10.0, "lambda_cls_g": 1.0, "lambda_cls_d": 1.0, "lambda_rec": 10.0, "cls_reduction": "sum",
    "thres_int": 0.5, "b_distribution": "none", "test_int": 1.0, "test_g_mode": "train",
    "lambda_cam_g": 10.0, "lambda_cam_d": 1.0, "cam_g_start": 0, "cam_g_ramp": 0, "cam_layer": None, "cam_normalize": "minmax",
    "cam_sources": "both", "cam_score": "changed", "cam_eps": 1e-6, "cam_g_through_mask": False,
    "cam_backend": "auto",
    "log_every": 10, "sample_every": 1000, "n_samples": 8, "save_every": 1000, "keep_every": 0,
    "g_ema": 0.0, "eval_every": 0, "eval_images": 64, "eval_classifier": None,
    "nonfinite_patience": 3, "tensorboard": True, "progress": True,
    "model": {},
}

# The originals' objectives and schedules (see docs/training.md for the sources).
# lambda_cam_g follows lambda_rec: the CAM term is an L1 on the image, like the
# reconstruction, and docs/method.md (Weights) asks for the two to start at the same order.
BACKBONE_DEFAULTS: dict[str, dict[str, Any]] = {
    "stargan": {
        "image_size": 128, "batch_size": 16, "steps": 200000, "g_lr": 1e-4, "d_lr": 1e-4,
        "lr_decay": "linear", "lambda_cls_g": 1.0, "lambda_cls_d": 1.0, "lambda_rec": 10.0,
        "cls_reduction": "sum", "lambda_cam_g": 10.0, "lambda_cam_d": 1.0,
    },
    "attgan": {
        # 200 epochs of 182,000 images at batch 32 = 1,137,500 iterations; lr / 10 after 100 epochs.
        "image_size": 128, "batch_size": 32, "steps": 1137500, "g_lr": 2e-4, "d_lr": 2e-4,
        "lr_decay": "step", "lr_decay_factor": 0.1, "lambda_cls_g": 10.0, "lambda_cls_d": 1.0,
        "lambda_rec": 100.0, "cls_reduction": "mean", "lambda_cam_g": 100.0, "lambda_cam_d": 1.0,
        # Neither AttGAN's nor STGAN's data pipeline flips; both test with running statistics.
        "flip": False, "test_g_mode": "eval",
    },
}
BACKBONE_DEFAULTS["stgan"] = dict(BACKBONE_DEFAULTS["attgan"])

# Options that may change when a run is resumed (they do not change what is computed).
RESUMABLE = {"steps", "device", "threads", "num_workers", "log_every", "sample_every", "save_every",
             "keep_every", "tensorboard", "progress", "data", "data_cache", "out",
             "eval_every", "eval_images", "eval_classifier", "test_g_mode", "nonfinite_patience"}


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
    for key, (types, choices, _) in OPTIONS.items():
        if key not in cfg:
            raise ConfigError(f"missing option {key!r}")
        v = cfg[key]
        if v is None and None in types:
            out[key] = None
            continue
        if float in types and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if isinstance(v, str) and (float in types or int in types):
            v = _number(v)
            if float in types and isinstance(v, int):
                v = float(v)
        if key == "attrs" and isinstance(v, str):
            v = [a.strip() for a in v.split(",") if a.strip()]
        ok = any(t is not None and isinstance(v, t) for t in types) and not (isinstance(v, bool) and bool not in types)
        if not ok:
            names = " or ".join("null" if t is None else t.__name__ for t in types)
            raise ConfigError(f"{key}: expected {names}, got {v!r}")
        if choices is not None and v not in choices:
            raise ConfigError(f"{key}: expected one of {list(choices)}, got {v!r}")
        out[key] = v
    for key in ("steps", "batch_size", "n_critic", "n_samples", "synthetic_images"):
        if out[key] < 1:
            raise ConfigError(f"{key}: expected an int >= 1, got {out[key]}")
    if out["threads"] is not None and out["threads"] < 1:
        raise ConfigError(f"threads: expected an int >= 1 or null, got {out['threads']}")
    for key, (types, _, _) in OPTIONS.items():
        if float in types and isinstance(out[key], float) and not math.isfinite(out[key]):
            raise ConfigError(f"{key}: expected a finite number, got {out[key]}")
    for key in ("log_every", "sample_every", "save_every", "keep_every", "num_workers", "seed", "synthetic_seed",
                "eval_every", "cam_g_start", "cam_g_ramp", "nonfinite_patience"):
        if out[key] < 0:
            raise ConfigError(f"{key}: expected an int >= 0, got {out[key]}")
    for key in ("g_lr", "d_lr", "lambda_gp", "lambda_cls_g", "lambda_cls_d", "lambda_rec",
                "lambda_cam_g", "lambda_cam_d", "thres_int"):
        if not out[key] >= 0:
            raise ConfigError(f"{key}: expected a number >= 0, got {out[key]}")
    if out["eval_images"] < 1:
        raise ConfigError(f"eval_images: expected an int >= 1, got {out['eval_images']}")
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
