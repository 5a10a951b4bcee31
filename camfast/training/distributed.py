"""torchrun / DistributedDataParallel glue; a single process needs none of it.

Under ``torchrun`` (RANK, WORLD_SIZE, LOCAL_RANK set) ``setup`` joins the process group
(NCCL on GPUs, gloo on CPUs) and picks this process's device. Only rank 0 writes files.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device_pref: str) -> tuple[Dist, torch.device]:
    """Join the process group if launched by torchrun; return (info, device of this process)."""
    if not launched():
        return Dist(), pick_device(device_pref)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = pick_device(device_pref, local)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30), **kwargs)
    return Dist(rank, local, world), device


def pick_device(pref: str, local_rank: int = 0) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(pref)
    except RuntimeError:
        raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {pref!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {pref!r} requested but no CUDA device is visible")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"device: expected auto, cpu, cuda or cuda:N, got {pref!r}")
    return device


def wrap(module: torch.nn.Module, info: Dist, device: torch.device):
    """DDP around ``module`` when distributed, else the module itself.

    ``find_unused_parameters=False`` and no static graph: every parameter gets a gradient in
    every backward, and the D step's backward runs once through a graph that contains the
    double-backward terms (gradient penalty, CAM), whose AccumulateGrad nodes fire once per
    parameter as DDP expects. Grad-CAM and the penalty differentiate with respect to
    activations and inputs only (``torch.autograd.grad`` with inputs that are not
    parameters), which does not touch DDP's reducer.
    """
    if not info.enabled:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=False)


def barrier(info: Dist) -> None:
    if info.enabled:
        dist.barrier()


def any_flag(info: Dist, flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any (e.g. a stop request seen by one rank)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def gather_objects(info: Dist, obj):
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (used for per-rank RNG states)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def check_in_sync(info: Dist, modules: dict, device: torch.device) -> None:
    """Raise if the parameters differ between ranks (DDP should keep them bitwise equal)."""
    if not info.enabled:
        return
    sums = torch.stack([p.detach().double().sum() for m in modules.values() for p in m.parameters()]).to(device)
    lo, hi = sums.clone(), sums.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.equal(lo, hi):
        raise RuntimeError(f"rank {info.rank}: parameters differ between ranks (max spread {(hi - lo).abs().max().item():.3g})")


def cleanup(info: Dist) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
