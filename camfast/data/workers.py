"""DataLoader worker set-up."""
from __future__ import annotations

import signal


def worker_init(worker_id: int) -> None:
    """Make a DataLoader worker ignore SIGINT and SIGTERM: the main process owns shutdown.

    ``docker stop``, Slurm and Kubernetes send SIGTERM to the whole process group, and a
    terminal's Ctrl-C sends SIGINT to it. A worker that died of it would end the trainer with
    "DataLoader worker ... is killed by signal" before it could save; ignoring it, the
    worker keeps serving batches while the main process finishes its step, saves and stops,
    and the DataLoader shuts the workers down. (A worker whose parent is gone exits by
    itself: DataLoader workers watch their parent.)
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
