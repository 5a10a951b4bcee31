"""Where the numbers go: metrics.csv, TensorBoard (if installed), and a progress display."""
from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from typing import Optional

COLUMNS = ["step", "time_s", "it_per_s", "lr_g", "lr_d",
           "d_loss", "d_adv", "d_gp", "d_cls", "d_cam", "d_mask",
           "g_loss", "g_adv", "g_cls", "g_rec", "g_cam", "g_mask"]
SHOWN = ["d_loss", "g_loss", "g_rec", "d_mask"]  # in the progress bar


def notice(msg: str) -> None:
    print(f"camfast-train: {msg}", file=sys.stderr, flush=True)


class MetricsCSV:
    """``metrics.csv``: one row per logged step, fixed columns, blank where not computed.

    On resume the rows after the checkpoint's step (logged before a crash, not saved) are
    dropped, so the file reads as one uninterrupted run. The file is rewritten to a temporary
    and renamed into place, so a kill during the rewrite never loses the rows before it.
    """

    def __init__(self, path: str, resume_step: Optional[int] = None, columns: Optional[list] = None):
        from .checkpoint import atomic_write_text

        self.path, self.columns = path, list(columns or COLUMNS)
        keep = []
        if resume_step is not None and os.path.isfile(path):
            with open(path, newline="") as f:
                keep = [r for r in csv.DictReader(f) if r.get("step") and int(r["step"]) <= resume_step]
        buf = io.StringIO()
        w = csv.DictWriter(buf, self.columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(keep)
        atomic_write_text(buf.getvalue(), path)

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns, extrasaction="ignore").writerow({k: _fmt(row.get(k)) for k in self.columns})


def drop_rows_after(path: str, step: int) -> None:
    """Keep the header and the rows up to ``step`` of a csv with a ``step`` column (atomically)."""
    from .checkpoint import atomic_write_text

    if not os.path.isfile(path):
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        keep = [r for r in reader if (r.get("step") or "").isdigit() and int(r["step"]) <= step]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(keep)
    atomic_write_text(buf.getvalue(), path)


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


class TensorBoard:
    """A SummaryWriter if tensorboard is installed; otherwise one notice and nothing."""

    def __init__(self, log_dir: str, enabled: bool, purge_step: Optional[int] = None):
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            notice("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
            return
        self.writer = SummaryWriter(log_dir, purge_step=purge_step)

    def scalars(self, row: dict, step: int) -> None:
        if self.writer is None:
            return
        for k, v in row.items():
            if k not in ("step", "time_s") and isinstance(v, float) and math.isfinite(v):
                part = k.split("_", 1)
                tag = f"{part[0].upper()}/{part[1]}" if len(part) == 2 and part[0] in ("d", "g", "lr") else k
                self.writer.add_scalar(tag, v, step)

    def image(self, tag: str, hwc_uint8, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, hwc_uint8, step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Progress:
    """tqdm when available (and enabled), else a line every ``min_interval`` seconds."""

    def __init__(self, total: int, initial: int, enabled: bool, min_interval: float = 10.0):
        self.total, self.bar, self.enabled = total, None, enabled
        self.min_interval, self.last_print = min_interval, 0.0
        self.start_time, self.start_step = time.time(), initial
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            notice("tqdm is not installed: progress is printed as lines")
            return
        self.bar = tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True, file=sys.stderr,
                        desc="train", smoothing=0.1)

    def update(self, step: int, row: Optional[dict] = None) -> None:
        """``step`` iterations are done; ``row``: the latest metrics to show."""
        if not self.enabled:
            return
        shown = {k: row[k] for k in SHOWN if row and isinstance(row.get(k), float)}
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            if shown:
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()}, refresh=False)
            return
        now = time.time()
        if row is not None and (now - self.last_print >= self.min_interval or step == self.total):
            self.last_print = now
            rate = (step - self.start_step) / max(now - self.start_time, 1e-9)
            eta = (self.total - step) / rate if rate > 0 else float("inf")
            vals = " ".join(f"{k} {v:.3g}" for k, v in shown.items())
            print(f"step {step}/{self.total} | {rate:.2f} it/s | eta {eta:.0f}s | {vals}", file=sys.stderr, flush=True)

    def write(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
