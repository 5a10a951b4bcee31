"""Checkpoints, the random state that makes a resume exact, and the run folder on disk.

Writing. A checkpoint is written to a temporary file in the same folder, flushed to disk,
then renamed over the old one with ``os.replace`` (atomic on POSIX and Windows), so a crash
or a kill during the write leaves the previous checkpoint whole. A kept copy
(``checkpoint-NNNNNNN.pt``) is made after ``checkpoint.pt`` is in place, as a hard link to it
(a copy where links are not supported): one write, and ``checkpoint.pt`` always holds the
newest step. A kill between the two leaves the kept copy to be made from ``checkpoint.pt``
when the run is resumed (:func:`repair_kept`). Temporary files left by a killed process are
removed when the next run starts in the folder (:func:`clean_temporaries`).

Files are created with mode ``0o666`` less the umask, like every other file of the run
(config.yaml, metrics.csv, samples): whoever may read a run's samples may read its weights,
and a private run is a matter of the umask or the folder's permissions. (``mkstemp``'s 0600
would only have hidden the weights next to readable samples and metrics.)

Reading. Everything camfast writes holds only tensors and plain data (dicts, lists, tuples,
str, int, float, bool, None), so :func:`load` reads with ``torch.load(weights_only=True)``,
which never runs code from the file. Format 1 (before the random state was stored as plain
data) held numpy's state as an ndarray: numpy's array reconstruction alone is allowed for it.
A file that needs anything else is refused, unless the caller says it is trusted.

The run folder. :class:`RunLock` (an exclusive ``flock`` on ``.camfast-train.lock``, held for
the life of a run and released by the kernel however the process ends) keeps two runs out of
one folder. :func:`run_files` lists, by exact name, the files camfast-train writes there:
what ``--overwrite`` deletes and what makes a folder "hold a run".
"""
from __future__ import annotations

import contextlib
import errno
import os
import pickle
import random
import re
import secrets
import shutil
from typing import Optional

import numpy as np
import torch

LAST = "checkpoint.pt"
# 2: the random state is stored as tensors and plain data (format 1 held numpy's as an ndarray).
FORMAT = 2
READABLE_FORMATS = (1, 2)
# What a resume needs beyond what load() checks (evaluation needs only the model weights).
RESUME_KEYS = ("G", "D", "g_opt", "d_opt", "rng")

CONFIG = "config.yaml"
METRICS = "metrics.csv"
CURVE = "curve.csv"  # written by the learning curve (curve.py: FILE)
SAMPLES, TB = "samples", "tb"
LOCK = ".camfast-train.lock"
# The first line of every config.yaml camfast-train writes: a config.yaml without it, in a
# folder with no run, was written by someone else and is never replaced.
CONFIG_HEADER = "# camfast-train: the resolved config of the run in this folder (--config reads it back)"

KEPT_RE = re.compile(r"checkpoint-(\d{7})\.pt")
TMP_RE = re.compile(r"\.checkpoint(?:-\d{7})?\.pt\..+\.tmp")
SAMPLE_RE = re.compile(r"step-(\d{7})\.png")
TB_PREFIX = "events.out.tfevents."


class CheckpointWriteError(RuntimeError):
    """Writing a checkpoint failed; the message names the file and the state of the previous one."""


class RunFolderError(ValueError):
    """The run folder cannot be used as asked (in use, holds another run, not writable)."""


def kept_name(step: int) -> str:
    return f"checkpoint-{int(step):07d}.pt"


# ---------------------------------------------------------------- writing

class _Recorder:
    """A file wrapper that remembers the OSError a write hit: torch.save reports a failed
    write as an opaque RuntimeError ("unexpected pos ..."), the OSError says "No space left"."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, b):
        try:
            return self.f.write(b)
        except OSError as e:
            self.error = e
            raise

    def flush(self):
        return self.f.flush()


def _tmp_path(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _create(path: str) -> int:
    # 0o666 less the umask: the mode of every other file of the run (see the module docstring).
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)


def fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (best effort: not every system can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _replacing(path: str):
    """A temporary path beside ``path``, renamed over ``path`` if the block completes, removed if not."""
    tmp = _tmp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_save(obj, path: str) -> None:
    """``torch.save(obj)`` to ``path`` so that ``path`` is always either the old file or the new one.

    Raises OSError (the one the write hit, e.g. ENOSPC) if the file cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with _replacing(path) as tmp, os.fdopen(_create(tmp), "wb") as f:
        rec = _Recorder(f)
        try:
            torch.save(obj, rec)
        except Exception:
            if rec.error is not None:
                raise rec.error from None
            raise
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(folder)


def atomic_write_text(text: str, path: str) -> None:
    """A small text file written the same way (config.yaml, rewritten metrics)."""
    with _replacing(path) as tmp, os.fdopen(_create(tmp), "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def keep(src: str, dst: str) -> None:
    """Place ``dst`` as a hard link to ``src`` (a copy where links are not supported), atomically."""
    with _replacing(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            with open(src, "rb") as fin, os.fdopen(_create(tmp), "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
                fout.flush()
                os.fsync(fout.fileno())
    fsync_dir(os.path.dirname(os.path.abspath(dst)))


# ---------------------------------------------------------------- reading

def find(path: str) -> str:
    """``path`` if it is a file, else ``path/checkpoint.pt``; ValueError if there is none."""
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        candidate = os.path.join(path, LAST)
        if os.path.isfile(candidate):
            return candidate
        raise ValueError(f"--resume: no {LAST} in {path}")
    raise ValueError(f"--resume: no such file or folder: {path}")


def _legacy_globals() -> list:
    """What format 1 needs beyond plain data: numpy's array reconstruction (its RNG state)."""
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def unsafe_globals(path: str) -> list:
    """The Python objects (``module.name``) a file needs beyond what weights_only allows."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - not a zip checkpoint: nothing to name
        return []
    allowed = {f"{g.__module__}.{g.__name__}" for g in _legacy_globals()} | {"numpy.core.multiarray._reconstruct"}
    return [n for n in names if n not in allowed]


def torch_load(path: str, trusted: bool = False, what: str = "--resume", trust_flag: str = "--trust-checkpoint"):
    """``torch.load`` of a camfast file: weights_only unless ``trusted``; ValueError in one line."""
    try:
        if trusted:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_legacy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line error
        needs = unsafe_globals(path) if isinstance(e, pickle.UnpicklingError) else []
        if needs:
            shown = ", ".join(needs[:3]) + (f" (and {len(needs) - 3} more)" if len(needs) > 3 else "")
            raise ValueError(f"{what}: refusing to load {path}: it holds Python objects ({shown}), not only tensors "
                             "and plain data, and unpickling them could run code; if you trust the file's source, "
                             f"add {trust_flag}") from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{what}: cannot read {path}: {first}") from None


def load(path: str, trusted: bool = False) -> dict:
    """A checkpoint, read with ``weights_only=True`` (see the module docstring); ValueError in one line."""
    ckpt = torch_load(path, trusted)
    if not isinstance(ckpt, dict) or ckpt.get("format") not in READABLE_FORMATS:
        raise ValueError(f"--resume: {path} is not a camfast-train checkpoint (format {FORMAT})")
    for key, kind in (("step", int), ("config", dict), ("G", dict), ("D", dict)):
        if not isinstance(ckpt.get(key), kind) or isinstance(ckpt.get(key), bool):
            raise ValueError(f"--resume: {path} is not a complete camfast-train checkpoint: "
                             f"{'no' if key not in ckpt else 'a malformed'} {key!r}")
    return ckpt


def check_resumable(ckpt: dict, path: str) -> None:
    """ValueError naming the first thing a resume needs that ``ckpt`` lacks."""
    for key in RESUME_KEYS:
        if key not in ckpt:
            raise ValueError(f"--resume: {path} lacks {key!r}, which a resume needs (was it stripped for evaluation?)")
    if not isinstance(ckpt["rng"], list) or not ckpt["rng"]:
        raise ValueError(f"--resume: {path}: malformed random state 'rng'")


def peek_step(path: str) -> Optional[int]:
    """The step of the checkpoint at ``path`` (None if unreadable), memory-mapped: cheap for large files."""
    try:
        with torch.serialization.safe_globals(_legacy_globals()):
            ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(ck["step"])
    except Exception:  # noqa: BLE001
        return None


# ---------------------------------------------------------------- random state

def rng_state() -> dict:
    """Python's, numpy's, torch's (and CUDA's) random state, as tensors and plain data."""
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),  # (version, tuple of ints, float or None)
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    if isinstance(n, dict):
        np.random.set_state({"bit_generator": n["bit_generator"],
                             "state": {"key": np.asarray(n["key"].numpy() if torch.is_tensor(n["key"]) else n["key"],
                                                         dtype=np.uint32), "pos": int(n["pos"])},
                             "has_gauss": int(n["has_gauss"]), "gauss": float(n["gauss"])})
    else:  # format 1: numpy's legacy tuple
        np.random.set_state(n)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- the run folder

def _listdir(folder: str) -> list:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _config_is_ours(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.readline().rstrip(b"\r\n") == CONFIG_HEADER.encode()
    except OSError:
        return False


def run_files(folder: str) -> list:
    """The files camfast-train wrote in ``folder`` (relative paths), matched by exact name:
    checkpoint.pt, checkpoint-NNNNNNN.pt, their temporaries, metrics.csv, curve.csv,
    samples/step-NNNNNNN.png, tb/events.out.tfevents.* and config.yaml (if it carries
    camfast's header line, or the folder holds any of the others: an older run)."""
    names = _listdir(folder)
    found = [n for n in names if n in (LAST, METRICS, CURVE) or KEPT_RE.fullmatch(n) or TMP_RE.fullmatch(n)]
    found += [f"{SAMPLES}/{n}" for n in _listdir(os.path.join(folder, SAMPLES)) if SAMPLE_RE.fullmatch(n)]
    found += [f"{TB}/{n}" for n in _listdir(os.path.join(folder, TB)) if n.startswith(TB_PREFIX)]
    if CONFIG in names and (found or _config_is_ours(os.path.join(folder, CONFIG))):
        found.append(CONFIG)
    return sorted(found)


def foreign_config(folder: str) -> bool:
    """True if ``folder`` has a config.yaml that camfast-train did not write and no run."""
    path = os.path.join(folder, CONFIG)
    return os.path.isfile(path) and CONFIG not in run_files(folder)


def clear_run(folder: str) -> list:
    """Delete the files of :func:`run_files` (nothing else); ``samples/`` and ``tb/`` go if left empty."""
    removed = []
    for rel in run_files(folder):
        try:
            os.remove(os.path.join(folder, rel))
            removed.append(rel)
        except FileNotFoundError:
            pass
    for sub in (SAMPLES, TB):
        try:
            os.rmdir(os.path.join(folder, sub))
        except OSError:  # absent, or holds someone else's files
            pass
    return removed


def clean_temporaries(folder: str) -> list:
    """Remove the half-written checkpoint temporaries of killed processes (call holding the lock)."""
    removed = []
    for n in _listdir(folder):
        if TMP_RE.fullmatch(n):
            try:
                os.remove(os.path.join(folder, n))
                removed.append(n)
            except OSError:
                pass
    return removed


def kept_steps(folder: str) -> list:
    return sorted(int(m.group(1)) for m in (KEPT_RE.fullmatch(n) for n in _listdir(folder)) if m)


def newer_files(folder: str, step: int) -> list:
    """Kept checkpoints and sample grids of ``folder`` after ``step`` (relative paths)."""
    out = [kept_name(s) for s in kept_steps(folder) if s > step]
    for n in sorted(_listdir(os.path.join(folder, SAMPLES))):
        m = SAMPLE_RE.fullmatch(n)
        if m and int(m.group(1)) > step:
            out.append(f"{SAMPLES}/{n}")
    return out


def repair_kept(folder: str, step: int, keep_every: int) -> Optional[str]:
    """Make the kept copy of ``folder/checkpoint.pt`` (at ``step``) that a kill between the two
    writes left out; returns its name if it was missing."""
    if not keep_every or step % keep_every:
        return None
    dst = os.path.join(folder, kept_name(step))
    if os.path.isfile(dst):
        return None
    keep(os.path.join(folder, LAST), dst)
    return kept_name(step)


class RunLock:
    """An exclusive lock on a run folder for the life of a run.

    ``flock`` on ``folder/.camfast-train.lock``: the kernel releases it however the process
    ends (a crash or kill -9 leaves no stale lock, only the file, which is never deleted: a
    deleted lock file could let two processes lock two different files). The holder's pid is
    written into the file for the message of the one that is refused.
    """

    def __init__(self, folder: str, created: bool = False):
        self.folder, self.fd, self.created = folder, None, created  # created: by this run (removed if left empty)

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking
            return self
        folder = self.folder
        try:
            if not os.path.isdir(folder):
                os.makedirs(folder)
                self.created = True
            fd = os.open(os.path.join(folder, LOCK), os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise RunFolderError(f"--out {folder}: cannot create the run folder: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)  # a file system without locks: run unlocked rather than not at all
                return self
            try:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            except OSError:
                pid = "?"
            os.close(fd)
            raise RunFolderError(f"{folder} is in use by another camfast-train (pid {pid}); wait for it to end "
                                 "or choose another --out") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            os.close(fd)
            raise RunFolderError(f"--out {folder}: cannot write in the run folder: {e.strerror or e}") from None
        self.fd = fd
        return self

    def release(self, tidy: bool = False) -> None:
        """Unlock. ``tidy``: also remove the folder if this lock created it and nothing else was written."""
        if self.fd is None:
            return
        if tidy and self.created and _listdir(self.folder) == [LOCK]:
            try:
                os.remove(os.path.join(self.folder, LOCK))
                os.rmdir(self.folder)
            except OSError:
                pass
        os.close(self.fd)  # closing the last descriptor releases the flock
        self.fd = None
