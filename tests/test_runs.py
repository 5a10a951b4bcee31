"""camfast-train's runs and run folders: stopping, errors, locking, resuming, overwriting,
option checks, one-line errors and what checkpoint files may hold (docs/training.md,
"Runs, interruption and resume").

Tiny models (conv_dim 8, 64 px, batch 2) on a 40-image synthetic set made once per module.
"""
import csv
import errno
import io
import itertools
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from camfast.data import ResumableBatchSampler
from camfast.cli.eval import main as eval_main
from camfast.evaluation import classifier as clf_mod
from camfast.cli.train import _default_run_dir, main
from camfast.training import checkpoint, config
from camfast.training.trainer import Trainer

import conftest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_IMAGES = conftest.TINY_IMAGES


@pytest.fixture(scope="module")
def cache(synthetic_cache):
    return synthetic_cache


def tiny_sets(backbone="stargan", **over):
    return conftest.tiny_sets(backbone, **over)


def args_for(out, cache, backbone="stargan", **over):
    return conftest.tiny_args(backbone, cache, out, **over)


def run(args, capsys=None):
    """``(exit code, stderr lines)`` of camfast-train in this process."""
    if capsys is not None:
        capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err.strip().splitlines() if capsys is not None else []
    return rc, err


def step_of(path):
    return torch.load(path, map_location="cpu", weights_only=True)["step"]


def metric_steps(folder, name="metrics.csv"):
    with open(os.path.join(folder, name)) as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get("step", "").isdigit()]


def error_line(err):
    lines = [ln for ln in err if ": error: " in ln]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------- 1: signals and workers

def test_sigterm_to_the_process_group_saves_and_exits_143(cache, tmp_path):
    """docker stop / Slurm / Kubernetes: SIGTERM to every process of the group, DataLoader
    workers included. The workers ignore it; the trainer saves the step and exits 143."""
    out = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "camfast.cli.train"] + args_for(out, cache, steps=500, num_workers=2)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and p.poll() is None:
            if os.path.isfile(os.path.join(out, "metrics.csv")) and len(metric_steps(out)) >= 2:
                break
            time.sleep(0.1)
        os.killpg(p.pid, signal.SIGTERM)
        err = p.communicate(timeout=240)[1]
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 143, err[-2000:]
    assert "killed by signal" not in err and "Traceback" not in err, err[-2000:]
    assert f"--resume {out}" in err
    step = step_of(os.path.join(out, "checkpoint.pt"))
    assert step >= 2 and metric_steps(out)[-1] == step


def _batch_indices(n_train, step, batch_size=2, seed=0):
    """The dataset indices of the batch trained at ``step`` (1-based) of a fresh run."""
    return next(itertools.islice(iter(ResumableBatchSampler(n_train, batch_size, seed=seed)), step - 1, None))


def test_a_dead_worker_still_saves_the_last_completed_step(cache, tmp_path, capsys, monkeypatch):
    """A worker killed outright (OOM killer, kill -9): the trainer notices at the next fetch,
    between steps, saves the last completed step and says so in one line."""
    from camfast.data import celeba
    doomed = set(_batch_indices(int(N_IMAGES * 0.8), 3))
    real = celeba.CelebA.__getitem__

    def getitem(self, index):
        if torch.utils.data.get_worker_info() is not None and index in doomed:  # only the training set has workers
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, index)
    monkeypatch.setattr(celeba.CelebA, "__getitem__", getitem)
    out = tmp_path / "run"
    rc, err = run(args_for(out, cache, steps=6, num_workers=1), capsys)
    assert rc == 1
    line = error_line(err)
    # the batch of step 2 may have died with the worker (it was still in the worker's queue)
    step = step_of(out / "checkpoint.pt")
    assert step in (1, 2) and metric_steps(out)[-1] == step
    assert "a DataLoader worker died" in line and f"holds step {step}" in line and f"--resume {out}" in line


# ---------------------------------------------------------------- 2, 3: whose folder is it

def test_resume_into_a_folder_holding_another_run_is_refused(cache, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(args_for(a, cache, steps=2))[0] == 0
    assert run(args_for(b, cache, steps=1, seed=5))[0] == 0
    before = (b / "checkpoint.pt").read_bytes(), (b / "metrics.csv").read_text()
    rc, err = run(["--resume", a, "--out", b, "--steps", 3], capsys)
    assert rc == 2 and len(err) == 1
    assert f"--out {b} already holds another run" in err[0] and "--overwrite" in err[0] and "drop --out" in err[0]
    assert ((b / "checkpoint.pt").read_bytes(), (b / "metrics.csv").read_text()) == before
    # the way out it names: --overwrite replaces b's run by a's continuation
    assert run(["--resume", a, "--out", b, "--steps", 3, "--overwrite"])[0] == 0
    assert step_of(b / "checkpoint.pt") == 3 and metric_steps(b) == [3]
    assert metric_steps(a) == [1, 2]


def test_a_run_folder_is_locked_for_the_life_of_a_run(cache, tmp_path, capsys):
    out = tmp_path / "run"
    lock = checkpoint.RunLock(str(out)).acquire()          # another run holds the folder
    try:
        rc, err = run(args_for(out, cache, steps=1), capsys)
    finally:
        lock.release()
    assert rc == 1 and len(err) == 1
    assert f"{out} is in use by another camfast-train (pid {os.getpid()})" in err[0]
    assert sorted(os.listdir(out)) == [checkpoint.LOCK]   # nothing written

    # a holder that crashed leaves the file but not the lock
    code = (f"import fcntl, os; fd = os.open({str(out / checkpoint.LOCK)!r}, os.O_RDWR); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.kill(os.getpid(), 9)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    assert run(args_for(out, cache, steps=1))[0] == 0

    # a run that saved no checkpoint still holds its folder (no window until the first save)
    (out / "checkpoint.pt").unlink()
    rc, err = run(args_for(out, cache, steps=1), capsys)
    assert rc == 2 and "holds the files of a run that saved no checkpoint" in err[0] and "--overwrite" in err[0]


def test_default_run_folders_are_unique(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda fmt: "20260101-120000")
    first, second = _default_run_dir("stargan"), _default_run_dir("stargan")
    assert first == (os.path.join("runs", "stargan-20260101-120000"), True)
    assert second == (os.path.join("runs", "stargan-20260101-120000-2"), True)
    assert os.path.isdir(first[0]) and os.path.isdir(second[0])


# ---------------------------------------------------------------- 4: resuming an older checkpoint

def test_resuming_an_older_kept_checkpoint_needs_discard_newer(cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(args_for(out, cache, steps=4, save_every=2, keep_every=2, sample_every=2))[0] == 0
    (out / "curve.csv").write_text("step,time_s,recon_psnr\n2,1.0,20\n4,2.0,21\n")   # as eval_every 2 writes it
    before = (out / "checkpoint.pt").read_bytes()
    rc, err = run(["--resume", out / "checkpoint-0000002.pt", "--steps", 5], capsys)
    assert rc == 2 and len(err) == 1
    assert "replace checkpoint.pt (step 4)" in err[0] and "--discard-newer" in err[0] and "after step 2" in err[0]
    assert (out / "checkpoint.pt").read_bytes() == before and metric_steps(out) == [1, 2, 3, 4]

    rc, err = run(["--resume", out / "checkpoint-0000002.pt", "--steps", 3, "--set", "save_every=0",
                   "--discard-newer"], capsys)
    assert rc == 0, err
    assert step_of(out / "checkpoint.pt") == 3 and metric_steps(out) == [1, 2, 3]
    assert metric_steps(out, "curve.csv") == [2]                     # the curve is off now: its rows stop at 2
    assert not (out / "checkpoint-0000004.pt").exists() and not (out / "samples" / "step-0000004.png").exists()


# ---------------------------------------------------------------- 5: errors mid-run save the last step

def _celeba_like(root, n=10):
    from PIL import Image
    (root / "img_align_celeba").mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    for i, name in enumerate(names):
        Image.new("RGB", (64, 64), (20 * i, 120, 200)).save(root / "img_align_celeba" / name)
    (root / "list_attr_celeba.txt").write_text(
        f"{n}\nBald Male\n" + "".join(f"{m} {1 if i % 2 else -1} {-1 if i % 3 else 1}\n" for i, m in enumerate(names)))
    (root / "list_eval_partition.txt").write_text("".join(f"{m} {0 if i < n - 2 else 1}\n" for i, m in enumerate(names)))
    return names


def test_a_data_error_mid_run_saves_the_last_completed_step(tmp_path, capsys):
    root = tmp_path / "celeba"
    names = _celeba_like(root)
    bad = names[_batch_indices(8, 3)[0]]                       # first read by the third step
    good = (root / "img_align_celeba" / bad).read_bytes()
    (root / "img_align_celeba" / bad).write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "run"
    args = args_for(out, "unused", steps=5, num_workers=1, attrs="Bald,Male", crop="none") + ["--data", root]
    rc, err = run(args, capsys)
    assert rc == 1
    line = error_line(err)
    assert line.startswith("camfast-train: error: cannot read image") and bad in line
    assert "holds step 2" in line and f"--resume {out}" in line
    assert step_of(out / "checkpoint.pt") == 2
    (root / "img_align_celeba" / bad).write_bytes(good)      # fixed: the run continues
    assert run(["--resume", out])[0] == 0 and step_of(out / "checkpoint.pt") == 5


def test_an_unexpected_error_mid_update_keeps_its_traceback_and_the_last_checkpoint(cache, tmp_path, capsys,
                                                                                    monkeypatch):
    real = Trainer.d_step

    def bug_at_step_3(self, *args):
        m = real(self, *args)                                    # D has been updated: no step to save
        if self.step == 2:
            raise RuntimeError("a bug")
        return m
    monkeypatch.setattr(Trainer, "d_step", bug_at_step_3)
    out = tmp_path / "run"
    capsys.readouterr()
    with pytest.raises(RuntimeError, match="a bug"):
        main([str(a) for a in args_for(out, cache, steps=5, save_every=1)])
    err = capsys.readouterr().err
    assert "the run failed at step 2; the error came in the middle of an update, so no newer step was saved; " \
           f"{out / 'checkpoint.pt'} holds step 2" in err
    assert step_of(out / "checkpoint.pt") == 2


# ---------------------------------------------------------------- 6: what kill -9 leaves

def test_kill_leftovers_are_cleaned_and_a_kept_copy_is_not_lost(cache, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"

    def killed_before_the_kept_copy(src, dst):
        raise KeyboardInterrupt                                  # as a kill between the two names
    monkeypatch.setattr(checkpoint, "keep", killed_before_the_kept_copy)
    rc, _ = run(args_for(out, cache, steps=2, keep_every=2))
    assert rc == 130 and step_of(out / "checkpoint.pt") == 2 and not (out / "checkpoint-0000002.pt").exists()
    monkeypatch.undo()
    (out / ".checkpoint.pt.4242-deadbeef.tmp").write_bytes(b"half a checkpoint")   # a kill -9 mid-write
    rc, err = run(["--resume", out, "--steps", 3], capsys)
    assert rc == 0, err
    assert step_of(out / "checkpoint-0000002.pt") == 2 and step_of(out / "checkpoint.pt") == 3
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]


# ---------------------------------------------------------------- 7: --overwrite

def test_overwrite_deletes_only_what_camfast_wrote(cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(args_for(out, cache, steps=2, sample_every=1, keep_every=1, eval_every=2, eval_images=2))[0] == 0
    assert (out / "curve.csv").exists()
    mine = [out / "checkpoint_best.pt", out / "samples" / "my_figure.png", out / "notes.txt"]
    for path in mine:
        path.write_bytes(b"mine")
    assert run(args_for(out, cache, steps=1) + ["--overwrite"])[0] == 0
    assert all(p.read_bytes() == b"mine" for p in mine)
    assert sorted(os.listdir(out / "samples")) == ["my_figure.png", "step-0000001.png"]
    assert not (out / "curve.csv").exists() and not (out / "checkpoint-0000002.pt").exists()
    assert metric_steps(out) == [1]

    # a hand-written config.yaml in a folder with no run is never replaced
    other = tmp_path / "mine"
    other.mkdir()
    (other / "config.yaml").write_text("lambda_rec: 5\n")
    for extra in ([], ["--overwrite"]):
        rc, err = run(args_for(other, cache, steps=1) + extra, capsys)
        assert rc == 2 and "config.yaml was not written by camfast-train" in err[0]
    assert (other / "config.yaml").read_text() == "lambda_rec: 5\n"
    assert run(["--config", other / "config.yaml"] + args_for(tmp_path / "elsewhere", cache, steps=1))[0] == 0


# ---------------------------------------------------------------- 8: options checked at the start

@pytest.mark.parametrize("item, message", [
    ("cam_eps=.inf", "cam_eps: expected a finite number"),
    ("cam_eps=1e-50", "below the smallest normal float32"),
    ("g_lr=.inf", "g_lr: expected a finite number"),
    ("lr_decay_factor=-1", "lr_decay_factor: expected a multiplier in [0, 1]"),
    ("lr_decay_start=-10", "lr_decay_start: expected an iteration >= 0"),
    ("beta2=1.5", "beta2: expected a number in [0, 1)"),
])
def test_bad_numbers_are_refused(item, message):
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        config.resolve(sets=[item])


def test_a_backend_that_cannot_run_is_refused_at_the_start(cache, tmp_path, capsys):
    out = tmp_path / "run"
    rc, err = run(args_for(out, cache, cam_backend="cuda") + ["--device", "cpu"], capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith("camfast-train: error: cam_backend: 'cuda' cannot run on cpu")
    assert not out.exists()                                      # failed before anything was written


def test_non_finite_losses_stop_the_run_keeping_the_last_finite_checkpoint(cache, tmp_path, capsys, monkeypatch):
    real = Trainer.d_step

    def blows_up_at_step_3(self, *args):
        m = real(self, *args)
        if self.step >= 2:                                       # the third iteration on
            with torch.no_grad():
                for p in self.D_inner.parameters():
                    p.fill_(float("nan"))
            m["d_loss"] = torch.tensor(float("nan"))
        return m
    monkeypatch.setattr(Trainer, "d_step", blows_up_at_step_3)
    out = tmp_path / "run"
    rc, err = run(args_for(out, cache, steps=8, save_every=1, nonfinite_patience=2), capsys)
    assert rc == 1
    line = error_line(err)
    assert "non-finite at 2 consecutive logged steps (up to step 4)" in line and "holds step 2" in line
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 2 and all(torch.isfinite(v).all() for v in ck["D"].values() if v.is_floating_point())


# ---------------------------------------------------------------- 9: one line, not a traceback

def test_unwritable_out_is_one_line(cache, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    rc, err = run(args_for(tmp_path / "file" / "run", cache), capsys)
    assert rc == 1 and len(err) == 1 and "cannot create the run folder" in err[0]


def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_previous_checkpoint(cache, tmp_path, capsys, monkeypatch):
    real, calls = torch.save, []

    def disk_full_on_the_second_save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(obj, f, *args, **kwargs)
    monkeypatch.setattr(checkpoint.torch, "save", disk_full_on_the_second_save)
    out = tmp_path / "run"
    rc, err = run(args_for(out, cache, steps=3, save_every=1), capsys)
    assert rc == 1
    line = error_line(err)
    assert f"cannot write {out / 'checkpoint.pt'}: No space left on device" in line
    assert "the previous checkpoint (step 1) is intact" in line
    monkeypatch.undo()
    assert step_of(out / "checkpoint.pt") == 1 and not [n for n in os.listdir(out) if n.endswith(".tmp")]


def test_bad_checkpoints_and_files_are_one_line(cache, tmp_path, capsys):
    a, b = tmp_path / "stargan", tmp_path / "attgan"
    assert run(args_for(a, cache, steps=1))[0] == 0
    assert run(args_for(b, cache, "attgan", steps=1))[0] == 0
    ck = torch.load(b / "checkpoint.pt", weights_only=True)
    ck["G"] = torch.load(a / "checkpoint.pt", weights_only=True)["G"]  # another backbone's weights
    torch.save(ck, b / "checkpoint.pt")
    rc, err = run(["--resume", b, "--steps", 2], capsys)
    assert rc == 1 and len(err) == 1 and "the checkpoint's G does not fit the attgan model" in err[0]
    assert str(b / "checkpoint.pt") in err[0]

    del ck["g_opt"]
    torch.save(ck, b / "checkpoint.pt")
    rc, err = run(["--resume", b, "--steps", 2], capsys)
    assert rc == 1 and len(err) == 1 and "lacks 'g_opt'" in err[0]

    binary = tmp_path / "weights.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary")
    rc, err = run(["--config", binary, "--out", tmp_path / "c"], capsys)
    assert rc == 2 and len(err) == 1 and str(binary) in err[0] and "not a YAML text file" in err[0]

    not_eval = tmp_path / "other.json"
    not_eval.write_text('{"loss": 1.0}')
    assert eval_main(["--table", str(not_eval)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(not_eval) in err[0] and "not an eval.json" in err[0]


def test_resume_with_an_unchanged_partial_model_option(cache, tmp_path):
    out = tmp_path / "run"
    assert run(args_for(out, cache, steps=1))[0] == 0
    assert run(["--resume", out, "--steps", 2, "--set", "model.conv_dim=8"])[0] == 0
    assert run(["--resume", out, "--steps", 3, "--set", "model.conv_dim=16"])[0] == 2


# ---------------------------------------------------------------- 14: what the files may hold

class _Touch:
    """A pickled object whose loading creates a file: what arbitrary code in a checkpoint could do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_files_hold_only_tensors_and_plain_data(cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(args_for(out, cache, steps=1, g_ema=0.9))[0] == 0
    ck = torch.load(out / "checkpoint.pt", weights_only=True)   # no allow-list needed
    assert ck["format"] == checkpoint.FORMAT and isinstance(ck["G_ema"]["updates"], int)
    assert torch.is_tensor(ck["rng"][0]["numpy"]["key"])
    # one mode for every file of the run: the umask's (see checkpoint.py)
    modes = {n: os.stat(out / n).st_mode & 0o777 for n in ("checkpoint.pt", "metrics.csv", "config.yaml")}
    assert len(set(modes.values())) == 1, modes

    clf = tmp_path / "clf.pt"
    clf_mod.save(clf_mod.AttributeClassifier(2, 4), str(clf), ["a", "b"], 64, "somewhere", {"a": np.float64(0.5)})
    assert torch.load(clf, weights_only=True)["attrs"] == ["a", "b"]
    assert clf_mod.load(str(clf))[1]["val_accuracy"] == {"a": 0.5}

    # a file that needs more than plain data is refused, and nothing in it runs
    marker = tmp_path / "ran"
    ck["note"] = _Touch(str(marker))
    torch.save(ck, out / "checkpoint.pt")
    rc, err = run(["--resume", out, "--steps", 2], capsys)
    assert rc == 1 and len(err) == 1 and "refusing to load" in err[0] and "--trust-checkpoint" in err[0]
    assert not marker.exists()
    bad_clf = tmp_path / "bad_clf.pt"
    torch.save({"format": clf_mod.FORMAT, "x": _Touch(str(marker))}, bad_clf)
    with pytest.raises(ValueError, match="refusing to load"):
        clf_mod.load(str(bad_clf))
    assert not marker.exists()
    # ... unless the user vouches for it
    assert run(["--resume", out, "--steps", 2, "--trust-checkpoint"])[0] == 0
    assert marker.exists()


def test_format_1_checkpoints_still_load(cache, tmp_path):
    """Checkpoints written before the random state was plain data held numpy's as an ndarray."""
    out = tmp_path / "run"
    assert run(args_for(out, cache, steps=1))[0] == 0
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    ck["format"] = 1
    ck["rng"][0]["numpy"] = np.random.get_state()
    buf = io.BytesIO()
    torch.save(ck, buf)
    (out / "checkpoint.pt").write_bytes(buf.getvalue())
    assert run(["--resume", out, "--steps", 2])[0] == 0
    assert step_of(out / "checkpoint.pt") == 2
