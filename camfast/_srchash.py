"""Hash of the extension's C++/CUDA sources, shared by setup.py (compiled in) and the
import-time staleness check. Standard library only: setup.py executes this file directly."""
import glob
import hashlib
import os


def source_hash(root: str, with_cuda: bool) -> str:
    dirs = ("csrc", "csrc/cpu") + (("csrc/cuda",) if with_cuda else ())
    files = [p for d in dirs for pat in ("*.cpp", "*.h", "*.cu", "*.cuh") for p in glob.glob(os.path.join(root, d, pat))]
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(os.path.relpath(path, root).replace(os.sep, "/").encode())
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]
