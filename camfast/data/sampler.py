"""A batch sampler that can stop and resume mid-epoch, on one process or many.

Each epoch is a permutation drawn from a generator seeded with ``seed + epoch``; rank r of
``world`` takes every world-th index of it, as ``torch.utils.data.DistributedSampler``
does. Unlike that sampler it can start at any batch (``start_at``): the trainer consumes
one batch per step, so a resumed run at step s starts at batch s without reading the
skipped images. (The position is not counted as batches are handed out: DataLoader workers
prefetch ahead of what was consumed.)
"""
from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ResumableBatchSampler(Sampler):
    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world: int = 1, shuffle: bool = True):
        per_rank = n // world
        if per_rank < batch_size:
            raise ValueError(
                f"batch_size: {batch_size} per process needs at least {batch_size * world} images, "
                f"the data set has {n}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world, self.shuffle = rank, world, shuffle
        self.batches_per_epoch = per_rank // batch_size  # drop the last partial batch
        self.start = 0  # global batch index the next iteration starts at

    def _epoch_indices(self, epoch: int) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        mine = order[self.rank: self.batches_per_epoch * self.batch_size * self.world: self.world]
        return mine

    def __iter__(self):
        """Batches from ``start`` on, forever (epochs roll over)."""
        epoch, position = divmod(self.start, self.batches_per_epoch)
        while True:
            idx = self._epoch_indices(epoch)
            for p in range(position, self.batches_per_epoch):
                yield idx[p * self.batch_size: (p + 1) * self.batch_size]
            epoch, position = epoch + 1, 0

    def __len__(self) -> int:
        return self.batches_per_epoch

    def start_at(self, batch: int) -> None:
        """Make the next ``iter()`` begin at global batch number ``batch`` (0-based)."""
        self.start = int(batch)

    def position(self, batch: int) -> dict:
        """``{"epoch", "batch"}`` of global batch number ``batch`` (for checkpoints and logs)."""
        epoch, b = divmod(int(batch), self.batches_per_epoch)
        return {"epoch": epoch, "batch": b}
