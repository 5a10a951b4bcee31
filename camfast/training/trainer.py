"""The training loop: one D update per iteration, one G update every ``n_critic``-th.

Read top to bottom as StarGAN's solver: ``d_step`` and ``g_step`` hold the objective,
``fit`` the schedule, checkpoints, logs and samples. The pieces live next door:
conditions.py (what G is conditioned on), losses.py, cam.py (CAM consistency),
schedule.py, checkpoint.py, logging.py, samples.py, distributed.py.
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from typing import Optional

import torch
from torch.utils.data import DataLoader

from .. import data as data_mod
from .. import models
from . import checkpoint as ckpt_mod
from . import distributed, losses, samples, schedule
from .cam import CamConsistency
from .conditions import Conditions, sample_targets
from .config import check_backend, to_yaml
from .curve import LearningCurve
from .ema import EMA
from .logging import MetricsCSV, Progress, TensorBoard, notice


def _close_loader(it) -> None:
    """Shut a DataLoader iterator's workers down now.

    Left to interpreter exit (an error's traceback keeps the iterator alive), multiprocessing
    would SIGTERM them, which they ignore (data.worker_init), and wait for them forever. A
    worker that does not stop when told is killed.
    """
    shutdown = getattr(it, "_shutdown_workers", None)
    if shutdown is None:  # no worker processes
        return
    shutdown()
    for w in getattr(it, "_workers", []):
        if w.is_alive():
            w.kill()
            w.join(1.0)


class NonFiniteError(RuntimeError):
    """The losses stayed non-finite for ``nonfinite_patience`` logged steps (or the weights went non-finite)."""


class Trainer:
    def __init__(self, cfg: dict, run_dir: str, dist: distributed.Dist, device: torch.device,
                 resume: Optional[dict] = None):
        self.cfg, self.run_dir, self.dist, self.device = cfg, run_dir, dist, device
        self.main = dist.main
        self.stop_signal: Optional[int] = None
        if cfg["threads"]:
            torch.set_num_threads(cfg["threads"])
        check_backend(cfg, device)  # before anything slow: a wrong backend would fail at step 1

        # ---- data (local rank 0 generates the synthetic set; the others wait for it)
        root_kwargs = dict(synthetic_images=cfg["synthetic_images"], image_size=cfg["synthetic_size"] or cfg["image_size"],
                           synthetic_seed=cfg["synthetic_seed"], cache=cfg["data_cache"])
        if dist.local_rank == 0:
            root = data_mod.resolve_root(cfg["data"], progress=cfg["progress"] and self.main, **root_kwargs)
        distributed.barrier(dist)
        if dist.local_rank != 0:
            root = data_mod.resolve_root(cfg["data"], progress=False, **root_kwargs)
        self.dataset = data_mod.open_dataset(root, cfg["backbone"], cfg["attrs"], cfg["image_size"], cfg["crop"], cfg["split"])
        self.attrs = self.dataset.attrs
        cfg["attrs"] = list(self.attrs)  # resolved: config.yaml and checkpoints name them
        self.sampler = data_mod.ResumableBatchSampler(len(self.dataset), cfg["batch_size"], seed=cfg["seed"],
                                                      rank=dist.rank, world=dist.world)
        self.sample_batch = self._sample_batch(root)

        self._build_objective()

        # ---- state: fresh, or exactly where the checkpoint left off
        self.step, self.elapsed, self.last = 0, 0.0, {}
        # Each rank draws its own targets / flips / penalty points: a stream per rank.
        ckpt_mod.seed_all(cfg["seed"] + 1000003 * (dist.rank + 1))
        if resume is not None:
            self._load(resume)
        self.sampler.start_at(self.step)
        # A generator of its own: creating the loader's iterator draws a seed for its workers,
        # and taking it from the global stream would shift every later draw on resume.
        # Workers ignore SIGINT/SIGTERM (data_mod.worker_init): the main process owns shutdown.
        self.loader = DataLoader(self.dataset, batch_sampler=self.sampler, num_workers=cfg["num_workers"],
                                 pin_memory=device.type == "cuda", persistent_workers=False,
                                 worker_init_fn=data_mod.worker_init,
                                 generator=torch.Generator().manual_seed(cfg["seed"]))
        # The step of the checkpoint on disk (None: none yet), for the messages after an error.
        self.saved_step: Optional[int] = self.step if resume is not None else None
        self.start_step = self.step
        self.error_note: Optional[str] = None  # why an error saved no newer step
        self.save_error: Optional[str] = None  # a save after an error that failed
        self._between_steps = True  # False while an iteration is changing the models
        self._sigchld = None

        # ---- outputs (rank 0 only)
        if self.main:
            os.makedirs(run_dir, exist_ok=True)
            # The curve first: it checks its classifier, and a refusal should leave no files.
            self.curve = (LearningCurve(cfg, root, self.attrs, run_dir, self.step if resume else None, device)
                          if cfg["eval_every"] else None)
            ckpt_mod.atomic_write_text(ckpt_mod.CONFIG_HEADER + "\n" + to_yaml(cfg), os.path.join(run_dir, ckpt_mod.CONFIG))
            self.csv = MetricsCSV(os.path.join(run_dir, ckpt_mod.METRICS), resume_step=self.step if resume else None)
            self.tb = TensorBoard(os.path.join(run_dir, "tb"), cfg["tensorboard"], purge_step=self.step if resume else None)

    @classmethod
    def without_data(cls, cfg: dict, device: torch.device, attrs: Optional[list] = None) -> "Trainer":
        """A Trainer with its objective (models, optimisers, CAM term) but no data set, run
        folder or processes: ``iteration`` runs camfast-train's own step on batches the caller
        gives (benchmarks/bench_train_step.py). ``attrs``: default the backbone's originals'."""
        self = cls.__new__(cls)
        self.cfg, self.device, self.dist, self.main = dict(cfg), device, distributed.Dist(), True
        self.attrs = list(attrs or cfg["attrs"] or models.ATTRIBUTES[cfg["backbone"]])
        self.cfg["attrs"] = self.attrs
        check_backend(self.cfg, device)
        self._build_objective()
        self.step, self.last = 0, {}
        return self

    def _build_objective(self) -> None:
        """Models, optimisers, weight average, CAM term and conditions: everything ``d_step``
        and ``g_step`` use. The same initial weights on every rank (DDP also broadcasts rank 0's)."""
        cfg, device, dist = self.cfg, self.device, self.dist
        ckpt_mod.seed_all(cfg["seed"])
        try:
            G, D = models.build(cfg["backbone"], image_size=cfg["image_size"], attrs=self.attrs, **cfg["model"])
        except ValueError as e:
            raise ValueError(f"model: {e}") from None
        self.G_inner, self.D_inner = G.to(device), D.to(device)
        self.cam = CamConsistency(cfg, D)
        cfg["cam_layer"] = self.cam.layer
        self.cond = Conditions(cfg["backbone"], cfg["thres_int"], cfg["b_distribution"])
        self.G = distributed.wrap(self.G_inner, dist, device)
        self.D = distributed.wrap(self.D_inner, dist, device)
        betas = (cfg["beta1"], cfg["beta2"])
        # The weight average is what samples and evaluation use (when on); it starts as G.
        self.ema = EMA(self.G_inner, cfg["g_ema"]) if cfg["g_ema"] > 0 else None
        self.g_opt = torch.optim.Adam(self.G_inner.parameters(), cfg["g_lr"], betas=betas)
        self.d_opt = torch.optim.Adam(self.D_inner.parameters(), cfg["d_lr"], betas=betas)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.amp = cfg["amp"] == "bf16"

    @property
    def G_test(self):
        """The G that samples and evaluation use: the weight average when ``g_ema`` is on."""
        return self.ema.model if self.ema is not None else self.G_inner

    # ------------------------------------------------------------------ pieces

    def _sample_batch(self, root: str):
        """A fixed batch for the sample grids: the first faces of the validation split."""
        n = self.cfg["n_samples"]
        ds = self.dataset
        if self.cfg["split"] == "train":
            try:
                ds = data_mod.open_dataset(root, self.cfg["backbone"], self.attrs, self.cfg["image_size"], self.cfg["crop"], "val")
            except data_mod.DataError:
                ds = self.dataset
        items = [ds[i] for i in range(min(n, len(ds)))]
        return torch.stack([x for x, _ in items]), torch.stack([a for _, a in items])

    def autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _batches(self):
        it = iter(self.loader)
        if self.cfg["num_workers"] > 0 and self._sigchld is None:
            # PyTorch's SIGCHLD handler raises "DataLoader worker ... killed" wherever the
            # main process happens to be, mid-update included, where no step can be saved.
            # Without it a dead worker is reported by the next fetch (within 5 s), between
            # steps, where the last completed step is saved (fit).
            try:
                old = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                self._sigchld = old if old is not None else signal.SIG_DFL
            except (ValueError, AttributeError):  # not the main thread / no SIGCHLD
                pass
        try:
            for x, a in it:
                x, a = x.to(self.device, non_blocking=True), a.to(self.device, non_blocking=True)
                if self.cfg["flip"]:
                    # Flips are drawn here, in the main process, so the checkpointed RNG state
                    # covers them (a worker's RNG would not be).
                    f = (torch.rand(x.size(0)) < 0.5).to(self.device)
                    x = torch.where(f.view(-1, 1, 1, 1), x.flip(-1), x)
                yield x, a
        finally:
            _close_loader(it)

    # ------------------------------------------------------------------ the objective

    def d_step(self, x, a, b, c_edit) -> dict:
        cfg = self.cfg
        with torch.no_grad(), self.autocast():
            fake = self.G_inner(x, c_edit).float()
        cam_on = cfg["lambda_cam_d"] > 0
        m = {}
        with self.cam.capture(enabled=cam_on):
            with self.autocast():
                adv_real, cls_real = self.D(x)
                adv_fake, cls_fake = self.D(fake)
            d_adv = losses.d_adversarial(adv_real, adv_fake)
            d_cls = losses.classification(cls_real, a, cfg["cls_reduction"])
            loss = d_adv + cfg["lambda_cls_d"] * d_cls
            if cam_on:
                # D's side: D learns through its own Grad-CAM (feats and grads), a
                # second-order path, to put its mask where G changed the image.
                d_cam, mask = self.cam.d_loss(x, fake, a, b, cls_real, cls_fake, return_mask=True)
                loss = loss + cfg["lambda_cam_d"] * d_cam
                m["d_cam"], m["d_mask"] = d_cam.detach(), mask.mean()
        if cfg["lambda_gp"] > 0:
            with self.autocast():
                gp = losses.gradient_penalty(self.D, x, fake)
            loss = loss + cfg["lambda_gp"] * gp
            m["d_gp"] = gp.detach()
        self.d_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.d_opt.step()
        m.update(d_loss=loss.detach(), d_adv=d_adv.detach(), d_cls=d_cls.detach())
        return m

    def g_step(self, x, a, b, c_edit) -> dict:
        cfg = self.cfg
        # D is not trained here: freeze it (saves its weight gradients) and call the module
        # itself, not its DDP wrapper, so DDP's reducer only ever sees D's own step.
        D = self.D_inner
        D.requires_grad_(False)
        lam_cam = cfg["lambda_cam_g"] * schedule.cam_g_factor(cfg, self.step)
        cam_on = lam_cam > 0
        m = {}
        try:
            with self.cam.capture(enabled=cam_on):
                with self.autocast():
                    fake = self.G(x, c_edit)
                    rec = self.cond.reconstruct(self.G, x, fake, a)
                    adv_fake, cls_fake = D(fake)
                    if cam_on and self.cam.use_real:
                        # D is frozen, so the input must require grad for D's activations to have one.
                        _, cls_real = D(x.detach().requires_grad_(True))
                g_adv = losses.g_adversarial(adv_fake)
                g_cls = losses.classification(cls_fake, b, cfg["cls_reduction"])
                g_rec = losses.l1(rec, x)
                loss = g_adv + cfg["lambda_cls_g"] * g_cls + cfg["lambda_rec"] * g_rec
                if cam_on:
                    # G takes D's mask as given (docs/method.md) unless cam_g_through_mask.
                    real = cls_real if self.cam.use_real else None
                    g_cam, mask = self.cam(x, fake.float(), a, b, real, cls_fake,
                                           detach_mask=not cfg["cam_g_through_mask"], return_mask=True)
                    loss = loss + lam_cam * g_cam
                    m["g_cam"], m["g_mask"] = g_cam.detach(), mask.mean()
            self.g_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.g_opt.step()
            if self.ema is not None:
                self.ema.update(self.G_inner)
        finally:
            D.requires_grad_(True)
        m.update(g_loss=loss.detach(), g_adv=g_adv.detach(), g_cls=g_cls.detach(), g_rec=g_rec.detach())
        return m

    # ------------------------------------------------------------------ the loop

    def iteration(self, x: torch.Tensor, a: torch.Tensor) -> float:
        """One iteration on the batch ``(x, a)``: targets drawn, a D update, a G update every
        ``n_critic``-th; returns the learning-rate factor it used."""
        cfg = self.cfg
        b = sample_targets(a)
        c_edit = self.cond.edit(a, b)
        f = schedule.lr_factor(cfg, self.step)
        schedule.set_lr(self.g_opt, cfg["g_lr"] * f)
        schedule.set_lr(self.d_opt, cfg["d_lr"] * f)
        self.last.update(self.d_step(x, a, b, c_edit))
        if (self.step + 1) % cfg["n_critic"] == 0:
            self.last.update(self.g_step(x, a, b, c_edit))
        self.step += 1
        return f

    def fit(self) -> str:
        """Train to ``cfg["steps"]``; returns "done" or "interrupted" (a checkpoint is saved either way)."""
        cfg = self.cfg
        steps = cfg["steps"]
        progress = Progress(steps, self.step, cfg["progress"] and self.main)
        if self.main:
            progress.write(f"training {cfg['backbone']} on {len(self.dataset)} images ({', '.join(self.attrs)}); "
                           f"run folder {self.run_dir}; device {self.device}"
                           + (f" x {self.dist.world} processes" if self.dist.enabled else ""))
        old_handlers = self._install_signal_handlers()
        status = "done"
        t0, t_log, s_log = time.time() - self.elapsed, time.time(), self.step
        batches = self._batches()
        patience, bad_rows = cfg["nonfinite_patience"], 0
        try:
            while self.step < steps:
                self._between_steps = True
                x, a = next(batches)
                self._between_steps = False
                f = self.iteration(x, a)
                self.elapsed = time.time() - t0
                self._between_steps = True

                row = None
                if self.main and (self.step % max(cfg["log_every"], 1) == 0 or self.step == steps):
                    now = time.time()
                    row = {k: float(v) for k, v in self.last.items()}
                    row.update(step=self.step, time_s=round(self.elapsed, 3), lr_g=cfg["g_lr"] * f, lr_d=cfg["d_lr"] * f,
                               it_per_s=(self.step - s_log) / max(now - t_log, 1e-9))
                    t_log, s_log = now, self.step
                    if cfg["log_every"]:
                        self.csv.write(row)
                        self.tb.scalars(row, self.step)
                    if not all(torch.isfinite(torch.tensor(v)) for k, v in row.items() if isinstance(v, float)):
                        progress.write(f"warning: non-finite loss at step {self.step}: {row}")
                progress.update(self.step, row)
                if self.step % max(cfg["log_every"], 1) == 0 or self.step == steps:
                    bad_rows = bad_rows + 1 if self._losses_nonfinite() else 0
                    if patience and bad_rows >= patience:
                        raise NonFiniteError(f"the losses were non-finite at {bad_rows} consecutive logged steps "
                                             f"(up to step {self.step})")

                stop = distributed.any_flag(self.dist, self.stop_signal is not None, self.device)
                if self.main and self.curve is not None and (self._due(cfg["eval_every"]) or self.step == steps):
                    point = self.curve.measure(self.G_test, self.cond, self.step, self.elapsed)
                    progress.write(f"curve: step {point['step']}, " + ", ".join(
                        f"{k} {point[k]:.3g}" for k in ("edit_accuracy", "recon_psnr") if k in point))
                if self._due(cfg["sample_every"]) or self.step == steps:
                    self.write_samples()
                if stop or self._due(cfg["save_every"]) or self.step == steps:
                    self.save()
                if stop:
                    status = "interrupted"
                    break
            if not self._weights_finite():
                raise NonFiniteError(f"the run ended at step {self.step} with non-finite weights")
        except BaseException as e:
            self._save_after_error(e)
            raise
        finally:
            batches.close()  # shuts the workers down now, also after an error
            if self._sigchld is not None:
                signal.signal(signal.SIGCHLD, self._sigchld)
                self._sigchld = None
            self._restore_signal_handlers(old_handlers)
            progress.close()
            if self.main:
                self.tb.close()
        return status

    def _losses_nonfinite(self) -> bool:
        """Any of this rank's latest losses non-finite, on any rank (all ranks call this together)."""
        bad = any(not math.isfinite(float(v)) for v in self.last.values())
        return distributed.any_flag(self.dist, bad, self.device)

    def _weights_finite(self) -> bool:
        """G's and D's parameters and buffers all finite (one device sync)."""
        tensors = [t for m in (self.G_inner, self.D_inner) for t in (*m.parameters(), *m.buffers())
                   if t.is_floating_point()]
        if not tensors:
            return True
        return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())

    def _save_after_error(self, e: BaseException) -> None:
        """Save the last completed step before an error ends the run, where that is possible.

        Not after a second Ctrl-C (it aborts at once) or a failed checkpoint write (not retried);
        not mid-iteration (the models are between two steps: the state is no step at all);
        not under torchrun unless every rank stops together (a save needs every rank).
        """
        if isinstance(e, (KeyboardInterrupt, ckpt_mod.CheckpointWriteError)):
            return
        if not self._between_steps:
            self.error_note = "the error came in the middle of an update, so no newer step was saved"
            return
        if self.dist.enabled and not isinstance(e, NonFiniteError):
            self.error_note = "an error on one process saves no newer step"
            return
        if self.step in (self.start_step, self.saved_step):
            return
        if isinstance(e, NonFiniteError) and not self._weights_finite():
            return  # save() would refuse: the checkpoint on disk is the last with finite weights
        try:
            self.save()
        except ckpt_mod.CheckpointWriteError as e2:
            self.save_error = str(e2)

    def checkpoint_note(self) -> str:
        """Where the run can be continued from, for the last line of an error."""
        if self.save_error:  # it names the file and what became of the previous checkpoint
            return self.save_error
        where = self.run_dir
        if self.saved_step is None:
            note = f"no checkpoint was written in {where}"
        else:
            note = (f"{os.path.join(where, ckpt_mod.LAST)} holds step {self.saved_step} "
                    f"(continue with: camfast-train --resume {where})")
        return f"{self.error_note}; {note}" if self.error_note else note

    def _due(self, every: int) -> bool:
        return bool(every) and self.step % every == 0

    def _install_signal_handlers(self):
        """Ctrl-C / SIGTERM finish the current iteration, save, and stop; a second one aborts."""
        def handler(signum, frame):
            if self.stop_signal is not None:
                raise KeyboardInterrupt
            self.stop_signal = signum
        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread (e.g. inside a test runner thread)
                pass
        return old

    def _restore_signal_handlers(self, old) -> None:
        for sig, h in old.items():
            signal.signal(sig, h)

    # ------------------------------------------------------------------ outputs

    def write_samples(self) -> None:
        if not self.main:
            return
        x, a = (t.to(self.device) for t in self.sample_batch)
        grid = samples.make_grid(self.G_test, self.D, self.cond, self.cam, x, a, self.attrs, self.cfg["test_int"],
                                 self.cfg["test_g_mode"])
        samples.save_png(grid, os.path.join(self.run_dir, "samples", f"step-{self.step:07d}.png"))
        self.tb.image("samples", grid, self.step)

    def state_dict(self, rng_states: list) -> dict:
        return {
            "format": ckpt_mod.FORMAT, "step": self.step, "elapsed": self.elapsed, "config": self.cfg,
            "attrs": list(self.attrs), "world": self.dist.world,
            "G": self.G_inner.state_dict(), "D": self.D_inner.state_dict(),
            "G_ema": self.ema.state_dict() if self.ema is not None else None,
            "g_opt": self.g_opt.state_dict(), "d_opt": self.d_opt.state_dict(),
            "rng": rng_states, "data": self.sampler.position(self.step),
            "last_metrics": {k: float(v) for k, v in self.last.items()},  # G's row continues after resume
        }

    def save(self) -> bool:
        """Every rank contributes its RNG state; rank 0 writes ``checkpoint.pt`` (and the kept
        copy, a link to it). Non-finite weights are not saved: the last checkpoint with finite
        weights stays. Returns whether a checkpoint was written; CheckpointWriteError if the
        write failed (the previous checkpoint is then intact)."""
        if not self._weights_finite():  # the same on every rank: DDP keeps the weights equal
            if self.main:
                notice(f"step {self.step}: G or D holds non-finite weights; not saved "
                       + (f"({ckpt_mod.LAST} keeps step {self.saved_step})" if self.saved_step is not None else ""))
            return False
        rngs = distributed.gather_objects(self.dist, ckpt_mod.rng_state())
        distributed.check_in_sync(self.dist, {"G": self.G_inner, "D": self.D_inner}, self.device)
        if self.main:
            state = self.state_dict(rngs)
            path = os.path.join(self.run_dir, ckpt_mod.LAST)
            try:
                ckpt_mod.atomic_save(state, path)
            except OSError as e:
                prev = (f"the previous checkpoint (step {self.saved_step}) is intact" if self.saved_step is not None
                        else "no checkpoint has been written")
                raise ckpt_mod.CheckpointWriteError(f"cannot write {path}: {e.strerror or e}; {prev}") from None
            self.saved_step = self.step
            if self._due(self.cfg["keep_every"]):
                kept = os.path.join(self.run_dir, ckpt_mod.kept_name(self.step))
                try:
                    ckpt_mod.keep(path, kept)
                except OSError as e:
                    raise ckpt_mod.CheckpointWriteError(
                        f"cannot write {kept}: {e.strerror or e}; {path} (step {self.step}) was written") from None
        distributed.barrier(self.dist)
        return True

    def _load_module(self, what: str, module: torch.nn.Module, sd) -> None:
        """``module.load_state_dict(sd)``, or ValueError in one line naming what does not fit."""
        own = module.state_dict()
        if not isinstance(sd, dict):
            raise ValueError(f"--resume: the checkpoint's {what} is not a state dict")
        missing = [k for k in own if k not in sd]
        unexpected = [k for k in sd if k not in own]
        shapes = [k for k in own if k in sd and (not torch.is_tensor(sd[k]) or sd[k].shape != own[k].shape)]
        if missing or unexpected or shapes:
            parts = [f"{label} {keys[:2]}{' ...' if len(keys) > 2 else ''}" for label, keys in
                     (("missing", missing), ("unexpected", unexpected), ("other shapes for", shapes)) if keys]
            raise ValueError(f"--resume: the checkpoint's {what} does not fit the {self.cfg['backbone']} model its "
                             f"config describes ({'; '.join(parts)}): weights of another model, or an edited file")
        module.load_state_dict(sd)

    def _load(self, ckpt: dict) -> None:
        self._load_module("G", self.G_inner, ckpt["G"])
        self._load_module("D", self.D_inner, ckpt["D"])
        if self.ema is not None:
            if ckpt.get("G_ema") is None:
                raise ValueError("--resume: the checkpoint has no weight average of G (g_ema was off); keep g_ema: 0")
            if not isinstance(ckpt["G_ema"], dict) or "model" not in ckpt["G_ema"]:
                raise ValueError("--resume: the checkpoint's G_ema is malformed")
            self._load_module("G_ema", self.ema.model, ckpt["G_ema"]["model"])
            self.ema.load_state_dict(ckpt["G_ema"])
        for what, opt in (("g_opt", self.g_opt), ("d_opt", self.d_opt)):
            try:
                opt.load_state_dict(ckpt[what])
            except (ValueError, KeyError, TypeError, RuntimeError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ValueError(f"--resume: the checkpoint's {what} does not fit the model: {first}") from None
        self.step, self.elapsed = int(ckpt["step"]), float(ckpt.get("elapsed", 0.0))
        self.last = {k: torch.tensor(v) for k, v in ckpt.get("last_metrics", {}).items()}
        rngs = ckpt["rng"]
        if len(rngs) == self.dist.world:
            try:
                ckpt_mod.set_rng_state(rngs[self.dist.rank])
            except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
                raise ValueError(f"--resume: the checkpoint's random state is malformed: {e}") from None
        elif self.main:
            notice(f"the checkpoint was written by {len(rngs)} process(es), this run has {self.dist.world}: "
                   "random streams are re-seeded, so the run will not match an uninterrupted one exactly")
