"""Evaluate one camfast-train run on the test split: edits, preservation, localisation, recon, FID.

For every test image and every attribute k, the edit "flip k" is made exactly as in the
sample grids (conditions.flip + Conditions.test_edit, intensity ``test_int``), and:

- edit_accuracy: the fixed attribute classifier (classifier.py) decides attribute k of the
  edited image as the target says;
- outside_l1 / outside_psnr: |real - edited| over the pixels *outside* the ground-truth
  region of the edit (the union of the synthetic set's masks of every attribute that changes:
  a hair colour switched on also switches the others off, same hair region). inside_l1 is the
  same inside the region, to read preservation against how much the edit did;
- cam_iou / cam_pointing: D's mask for that edit (the one the CAM loss uses:
  training.samples.cam_mask) thresholded at ``cam_threshold`` against the region, and
  whether its maximum falls inside it;
- recon_psnr / recon_ssim: G with "no change" (Conditions.identity: the source attributes;
  STGAN's zero difference) against the input;
- classifier_fid: Frechet distance of the classifier's features, real test images vs all
  edited images; inception_fid only with user-supplied weights.

Images are compared on [0, 1]; PSNR is capped at metrics.PSNR_CAP per image. Every metric
is a mean over (image, attribute) pairs, also reported per attribute. A metric that cannot
be computed is None with its reason in ``null_reasons``.
"""
from __future__ import annotations

import math
import os
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .. import data as data_mod
from .. import models
from ..data import synthetic
from ..training import checkpoint as ckpt_mod
from ..training import config as config_mod
from ..training.cam import CamConsistency
from ..training.conditions import Conditions, flip
from ..training.samples import cam_mask
from . import metrics as M
from .translate import GMode, translate_all

PER_PAIR = ("edit_accuracy", "outside_l1", "outside_psnr", "inside_l1", "cam_iou", "cam_pointing")
PER_IMAGE = ("recon_psnr", "recon_ssim")
FIELDS = PER_PAIR + PER_IMAGE + ("classifier_fid", "inception_fid")


# ---------------------------------------------------------------- loading

def load_run(run: str, weights: str = "auto", trusted: bool = False) -> tuple[dict, torch.nn.Module, torch.nn.Module, int]:
    """``(config, G, D, step)`` of a run folder (or checkpoint file); ValueError in one line.

    ``weights``: ``ema`` (G's weight average, if the run kept one), ``raw`` (G as trained)
    or ``auto`` (the average when there is one, as the run's sample grids). The choice made
    is written to ``cfg["_g_weights"]``.
    """
    if weights not in ("auto", "ema", "raw"):
        raise ValueError(f"--weights: expected auto, ema or raw, got {weights!r}")
    if not os.path.exists(run):
        raise ValueError(f"--run: no such folder: {run}")
    if os.path.isdir(run) and not os.path.isfile(os.path.join(run, ckpt_mod.LAST)):
        raise ValueError(f"--run: no {ckpt_mod.LAST} in {run} (is it a camfast-train run folder?)")
    path = ckpt_mod.find(run)
    try:
        ck = ckpt_mod.load(path, trusted)
    except ValueError as e:
        raise ValueError(str(e).replace("--resume", "--run")) from None
    cfg = ck["config"]
    try:
        G, D = models.build(cfg["backbone"], image_size=cfg["image_size"], attrs=cfg["attrs"], **cfg["model"])
        ema = ck.get("G_ema")
        if weights == "ema" and ema is None:
            raise ValueError(f"--weights ema: {path} has no weight average of G (trained with g_ema: 0)")
        use_ema = ema is not None and weights != "raw"
        G.load_state_dict(ema["model"] if use_ema else ck["G"])
        D.load_state_dict(ck["D"])
        cfg["_g_weights"] = "ema" if use_ema else "raw"
    except (KeyError, RuntimeError, ValueError) as e:  # a checkpoint of another version / edited by hand
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"--run: {path}: cannot rebuild G and D from the checkpoint: {first}") from None
    return cfg, G, D, int(ck["step"])


def open_test_data(cfg: dict, data: Optional[str], split: str, progress: bool):
    """``(root, dataset)`` of the run's data (or ``data``), split ``split``, the run's attributes."""
    root = data_mod.resolve_root(data if data else cfg["data"], synthetic_images=cfg["synthetic_images"],
                                 image_size=cfg["synthetic_size"] or cfg["image_size"],
                                 synthetic_seed=cfg["synthetic_seed"], cache=cfg["data_cache"], progress=progress)
    ds = data_mod.open_dataset(root, cfg["backbone"], cfg["attrs"], cfg["image_size"], cfg["crop"], split)
    return root, ds


def masks_available(root: str, ds) -> Optional[str]:
    """None if every region mask of ``ds`` can be read, else the reason they cannot."""
    if not synthetic.is_synthetic(root):
        return "the data has no ground-truth region masks (only the built-in synthetic set has them)"
    folder = os.path.join(root, synthetic.MASK_DIR)
    stem = os.path.splitext(ds.files[0])[0]
    missing = [a for a in ds.attrs if not os.path.isfile(os.path.join(folder, f"{stem}_{a}.png"))]
    if missing:
        return f"no region masks for {missing} in {folder}"
    return None


def region_masks(root: str, files: list, attrs: list, size: int) -> torch.Tensor:
    """Bool ``[B, K, size, size]``: the ground-truth region of each attribute per image."""
    out = torch.stack([torch.stack([torch.from_numpy(synthetic.read_mask(root, f, a)) for a in attrs]) for f in files])
    if out.shape[-1] != size:  # a run at another size than its synthetic set: nearest keeps it binary
        out = F.interpolate(out.float(), size=(size, size), mode="nearest") > 0.5
    return out


# ---------------------------------------------------------------- the loop

def evaluate(run: str, classifier=None, data: Optional[str] = None, split: str = "test", limit: Optional[int] = None,
             batch_size: int = 50, cam_threshold: float = 0.5, g_mode: Optional[str] = None, weights: str = "auto",
             trusted: bool = False,
             inception: Optional[Callable] = None, inception_reason: Optional[str] = "no --inception-weights given",
             n_sample_faces: int = 4, progress: Callable = lambda it, **kw: it, log=print) -> tuple[dict, dict]:
    """Returns ``(report, sheet_inputs)``; ``report`` is what eval.json holds."""
    cfg, G, D, step = load_run(run, weights, trusted)
    if g_mode is None:  # the run's own test mode (runs older than the option: the backbone's)
        g_mode = cfg.get("test_g_mode") or config_mod.defaults(cfg["backbone"])["test_g_mode"]
    if g_mode not in ("train", "eval"):
        raise ValueError(f"--g-mode: expected train or eval, got {g_mode!r}")
    root, ds = open_test_data(cfg, data, split, progress=True)
    attrs = list(ds.attrs)
    n = len(ds) if limit is None else min(limit, len(ds))
    D.eval()
    cond = Conditions(cfg["backbone"], cfg["thres_int"], cfg["b_distribution"])
    camc = CamConsistency(cfg, D)
    reasons: dict = {}
    no_masks = masks_available(root, ds)
    if no_masks:
        for k in ("outside_l1", "outside_psnr", "inside_l1", "cam_iou", "cam_pointing"):
            reasons[k] = no_masks
    if classifier is None:
        reasons["edit_accuracy"] = reasons["classifier_fid"] = "no --classifier given"
    elif list(classifier[1]["attrs"]) != attrs:
        raise ValueError(f"--classifier: trained on attributes {classifier[1]['attrs']}, the run uses {attrs}")
    elif classifier[1]["image_size"] != cfg["image_size"]:
        raise ValueError(f"--classifier: trained at {classifier[1]['image_size']} px, the run is at {cfg['image_size']} px")
    clf = classifier[0] if classifier else None
    if inception is None:
        reasons["inception_fid"] = inception_reason or "no --inception-weights given"

    per = {k: [[] for _ in attrs] for k in PER_PAIR}
    rec_psnr, rec_ssim, clf_real_hits = [], [], []
    feats = {"clf_real": [], "clf_fake": [], "inc_real": [], "inc_fake": []}
    sheet = None
    starts = list(range(0, n, batch_size))
    for s in progress(starts, desc="camfast-eval", unit="batch"):
        idx = list(range(s, min(s + batch_size, n)))
        x = torch.stack([ds[i][0] for i in idx])
        a = torch.stack([ds[i][1] for i in idx])
        x01 = (x + 1) / 2
        regions = None if no_masks else region_masks(root, [ds.files[i] for i in idx], attrs, x.shape[-1])
        with GMode(G, g_mode) as g, torch.no_grad():
            rec, fakes, _ = translate_all(g, cond, x, a, attrs, cfg["test_int"])
        rec_psnr.append(M.psnr(x01, (rec.clamp(-1, 1) + 1) / 2, max_db=M.PSNR_CAP))
        rec_ssim.append(M.ssim(x01, (rec.clamp(-1, 1) + 1) / 2))
        if clf is not None:
            with torch.no_grad():
                feats["clf_real"].append(clf.features(x).double())
                clf_real_hits.append(((clf(x) > 0).float() == a).double())
        if inception is not None:
            feats["inc_real"].append(inception(x))
        cams = []
        for k in range(len(attrs)):
            b = flip(a, k, attrs)
            fake = fakes[k].clamp(-1, 1)
            f01 = (fake + 1) / 2
            if clf is not None:
                with torch.no_grad():
                    per["edit_accuracy"][k].append(M.edit_accuracy(clf(fake), b, k))
                    feats["clf_fake"].append(clf.features(fake).double())
            if inception is not None:
                feats["inc_fake"].append(inception(fake))
            cam = cam_mask(camc, x, fake, a, b).detach()
            cams.append(cam)
            if regions is not None:
                changed = (a != b).float()  # [B, K]: every attribute this edit changes
                region = (regions.float() * changed[:, :, None, None]).amax(1) > 0.5
                per["outside_l1"][k].append(M.outside_l1(x01, f01, region))
                per["outside_psnr"][k].append(M.outside_psnr(x01, f01, region, max_db=M.PSNR_CAP))
                per["inside_l1"][k].append(M.masked_l1(x01, f01, region))
                per["cam_iou"][k].append(M.cam_iou(cam, region, cam_threshold))
                per["cam_pointing"][k].append(M.pointing_game(cam, region))
        if sheet is None:
            m = min(n_sample_faces, len(idx))
            sheet = {"x": x[:m], "fakes": [f[:m].clamp(-1, 1) for f in fakes], "cams": [c[:m] for c in cams],
                     "regions": None if regions is None else regions[:m], "a": a[:m], "attrs": attrs}

    metrics: dict = {}
    per_attr: dict = {a_: {} for a_ in attrs}
    for key in PER_PAIR:
        if key in reasons:
            metrics[key] = None
            continue
        vals = [torch.cat(v) if v else torch.empty(0) for v in per[key]]
        metrics[key] = M.nanmean(torch.cat(vals))
        for a_, v in zip(attrs, vals):
            per_attr[a_][key] = M.nanmean(v)
    metrics["recon_psnr"] = M.nanmean(torch.cat(rec_psnr))
    metrics["recon_ssim"] = M.nanmean(torch.cat(rec_ssim))
    if n < 2:  # a covariance needs two samples
        for key in ("classifier_fid", "inception_fid"):
            reasons.setdefault(key, f"needs at least 2 images, got {n}")

    def fid(net, key, tag):
        if net is None or key in reasons:
            return None
        return M.fid_from_features(torch.cat(feats[f"{tag}_real"]), torch.cat(feats[f"{tag}_fake"]))

    metrics["classifier_fid"] = fid(clf, "classifier_fid", "clf")
    metrics["inception_fid"] = fid(inception, "inception_fid", "inc")
    report = {
        "run": os.path.abspath(run), "step": step, "backbone": cfg["backbone"],
        "lambda_cam_g": cfg["lambda_cam_g"], "lambda_cam_d": cfg["lambda_cam_d"],
        "data": root, "split": split, "n_images": n, "attrs": attrs,
        "metrics": {k: metrics[k] for k in FIELDS},
        "per_attribute": per_attr,
        "null_reasons": {k: v for k, v in reasons.items()},
        "classifier_real_accuracy": (None if clf is None else
                                     {a_: float(v) for a_, v in zip(attrs, torch.cat(clf_real_hits).mean(0))}),
        "settings": {"cam_threshold": cam_threshold, "psnr_cap_db": M.PSNR_CAP, "g_mode": g_mode,
                     "g_weights": cfg["_g_weights"],
                     "test_int": cfg["test_int"], "image_range": "[0, 1]", "cam_layer": camc.layer,
                     "classifier_fid_features": None if clf is None else clf.feature_dim,
                     "classifier_fid_samples": None if clf is None else
                     [int(sum(t.shape[0] for t in feats["clf_real"])), int(sum(t.shape[0] for t in feats["clf_fake"]))]},
    }
    return report, sheet


# ---------------------------------------------------------------- outputs

def _fmt(v, digits=3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"


COLUMNS = [("edit_accuracy", "edit acc", 3), ("outside_l1", "outside L1", 4), ("outside_psnr", "outside PSNR", 2),
           ("inside_l1", "inside L1", 4), ("cam_iou", "CAM IoU", 3), ("cam_pointing", "CAM pointing", 3),
           ("recon_psnr", "recon PSNR", 2), ("recon_ssim", "recon SSIM", 3), ("classifier_fid", "classifier-FID", 3),
           ("inception_fid", "Inception FID", 2)]


def comparison_table(reports: list) -> str:
    """A markdown table, one row per report (run)."""
    head = "| run | backbone | λ_cam G/D | step | " + " | ".join(c[1] for c in COLUMNS) + " |"
    sep = "|" + "---|" * (4 + len(COLUMNS))
    rows = [head, sep]
    for r in reports:
        m = r["metrics"]
        rows.append(f"| {os.path.basename(r['run'].rstrip('/'))} | {r['backbone']} | {r['lambda_cam_g']:g}/{r['lambda_cam_d']:g} "
                    f"| {r['step']} | " + " | ".join(_fmt(m[k], d) for k, _, d in COLUMNS) + " |")
    return "\n".join(rows) + "\n"


def markdown(report: dict) -> str:
    """eval.md: the run's row, the per-attribute breakdown and why anything is missing."""
    lines = [f"# camfast-eval: {report['run']}", "",
             f"{report['backbone']}, step {report['step']}, {report['n_images']} {report['split']} images of "
             f"{report['data']}; images on [0, 1], PSNR capped at {report['settings']['psnr_cap_db']:g} dB, "
             f"CAM threshold {report['settings']['cam_threshold']}, G in {report['settings']['g_mode']} mode"
             f" ({report['settings'].get('g_weights', 'raw')} weights), test intensity {report['settings']['test_int']:g}.", "",
             comparison_table([report]), "## Per attribute (edit = flip that attribute)", "",
             "| attribute | " + " | ".join(c[1] for c in COLUMNS[:6]) + " |", "|---|" + "---|" * 6]
    for a_, m in report["per_attribute"].items():
        lines.append(f"| {a_} | " + " | ".join(_fmt(m.get(k), d) for k, _, d in COLUMNS[:6]) + " |")
    if report["null_reasons"]:
        lines += ["", "## Not measured", ""] + [f"- `{k}`: {v}" for k, v in report["null_reasons"].items()]
    if report["classifier_real_accuracy"]:
        acc = ", ".join(f"{k} {v:.3f}" for k, v in report["classifier_real_accuracy"].items())
        lines += ["", f"Classifier accuracy on the real {report['split']} images: {acc}."]
    return "\n".join(lines) + "\n"


def sample_sheet(sheet: dict) -> np.ndarray:
    """uint8 sheet: per face three rows,
        input          | edit per attribute
        region (blue)  | |real - edit| outside the region (x4, white = large), region in blue
        (blank)        | D's CAM over the edit (red = 1)
    """
    from ..training.samples import PAD, _header, _overlay
    from ..data.transforms import to_uint8

    x, fakes, cams, regions, attrs = sheet["x"], sheet["fakes"], sheet["cams"], sheet["regions"], sheet["attrs"]
    n, _, h, w = x.shape
    blank = torch.ones_like(x[0])
    blue = torch.tensor([-1.0, -1.0, 1.0]).view(3, 1, 1)
    rows = []
    for i in range(n):
        top = [x[i]] + [f[i] for f in fakes]
        mid = [blank]
        if regions is not None:
            mid = [torch.where(regions[i].any(0), blue, blank)]
        for k, f in enumerate(fakes):
            d = ((f[i] - x[i]).abs().mean(0, keepdim=True) * 2).clamp(0, 1).expand(3, h, w) * 2 - 1  # x4 on [0, 1]
            if regions is not None:
                changed = (sheet["a"][i] != flip(sheet["a"][i:i + 1], k, attrs)[0]).float()
                reg = (regions[i].float() * changed[:, None, None]).amax(0) > 0.5
                d = torch.where(reg, blue * 0.6, d)
            mid.append(d)
        bottom = [blank] + [_overlay(f[i], c[i]) for f, c in zip(fakes, cams)]
        rows += [top, mid, bottom]
    head = _header(["input"] + list(attrs), w)
    cols = len(rows[0])
    canvas = np.full((head.shape[0] + len(rows) * (h + PAD) + PAD, cols * (w + PAD) + PAD, 3), 255, np.uint8)
    canvas[:head.shape[0], :head.shape[1]] = head[:, :canvas.shape[1]]
    for r, row in enumerate(rows):
        for j, img in enumerate(row):
            y0, x0 = head.shape[0] + PAD + r * (h + PAD), PAD + j * (w + PAD)
            canvas[y0:y0 + h, x0:x0 + w] = to_uint8(img)
    return canvas
