"""The learning curve (``curve.csv``): edit accuracy and reconstruction PSNR against the step.

Every ``eval_every`` iterations the G used for samples (the weight average when ``g_ema`` is
on) edits the first ``eval_images`` faces of the validation split, each attribute flipped in
turn exactly as camfast-eval does it, and the fixed attribute classifier of
camfast-train-classifier (``eval_classifier``) decides whether each edit took. Without a
classifier only the reconstruction PSNR is logged. The validation split, never the test
split, so a budget can be chosen from these curves and reported on test.
"""
from __future__ import annotations

import os
from typing import Optional

import torch

from .. import data as data_mod
from ..evaluation import classifier as clf_mod
from ..evaluation import metrics as M
from ..evaluation.translate import GMode, translate_all
from .logging import MetricsCSV

FILE = "curve.csv"


class LearningCurve:
    def __init__(self, cfg: dict, root: str, attrs: list, run_dir: str, resume_step: Optional[int], device):
        self.cfg, self.attrs, self.device = cfg, list(attrs), device
        try:
            ds = data_mod.open_dataset(root, cfg["backbone"], self.attrs, cfg["image_size"], cfg["crop"], "val")
        except data_mod.DataError as e:
            raise ValueError(f"eval_every: the learning curve needs a validation split: {e}") from None
        items = [ds[i] for i in range(min(cfg["eval_images"], len(ds)))]
        self.x = torch.stack([x for x, _ in items]).to(device)
        self.a = torch.stack([a for _, a in items]).to(device)
        self.clf = None
        if cfg["eval_classifier"]:
            # Building the classifier draws initial weights: keep the run's random streams
            # untouched, so a run with a curve (or a resumed one) trains exactly as one without.
            with torch.random.fork_rng(devices=[]):
                clf, meta = clf_mod.load(cfg["eval_classifier"])
            if list(meta["attrs"]) != self.attrs:
                raise ValueError(f"eval_classifier: trained on attributes {meta['attrs']}, the run uses {self.attrs}")
            if meta["image_size"] != cfg["image_size"]:
                raise ValueError(f"eval_classifier: trained at {meta['image_size']} px, the run is at {cfg['image_size']} px")
            self.clf = clf.to(device).eval()
        columns = ["step", "time_s", "edit_accuracy", "recon_psnr"] + [f"acc_{a}" for a in self.attrs]
        self.csv = MetricsCSV(os.path.join(run_dir, FILE), resume_step=resume_step, columns=columns)

    @torch.no_grad()
    def measure(self, G, cond, step: int, time_s: float) -> dict:
        with GMode(G, self.cfg["test_g_mode"]) as g:
            rec, fakes, targets = translate_all(g, cond, self.x, self.a, self.attrs, self.cfg["test_int"])
        x01 = (self.x + 1) / 2
        row = {"step": step, "time_s": round(time_s, 1),
               "recon_psnr": float(M.psnr(x01, (rec.clamp(-1, 1) + 1) / 2, max_db=M.PSNR_CAP).mean())}
        if self.clf is not None:
            accs = [float(M.edit_accuracy(self.clf(f.clamp(-1, 1)), b, k).mean())
                    for k, (f, b) in enumerate(zip(fakes, targets))]
            row["edit_accuracy"] = sum(accs) / len(accs)
            row.update({f"acc_{a}": v for a, v in zip(self.attrs, accs)})
        self.csv.write(row)
        return row
