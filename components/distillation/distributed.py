"""Data-parallel training under torchrun: process group, per-rank shards, rank-0-only side effects.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; with WORLD_SIZE > 1 the
train_student entry point joins a process group and :func:`core.train_loop` wraps the trainable
modules in DistributedDataParallel. Without torchrun (or with one process) nothing here changes
what a run does.

Equivalence with one process: every rank draws the same seeded permutation of the rows, pads it to
a multiple of the world size and takes every world_size-th row from its rank on; with a per-rank
micro-batch of batch_size / world_size, rank r's j-th micro-batch is exactly its share of the
single-process j-th batch, and DDP's averaged gradients are that batch's mean gradient (for losses
that are means over the batch rows, when every batch is full). Batch-relational losses (rkd_*, sp)
and dropout see only a rank's rows, so those runs are equivalent in expectation, not step by step.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist

BACKEND_ENV = "DISTILLOPS_DDP_BACKEND"


class DistributedConfigError(ValueError):
    pass


def requested_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when not launched by torchrun)."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(raw)
    except ValueError:
        raise DistributedConfigError(f"WORLD_SIZE={raw!r} is not an integer") from None


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def backend() -> str:
    chosen = os.environ.get(BACKEND_ENV, "").strip().lower()
    if not chosen:
        return "nccl" if torch.cuda.is_available() else "gloo"
    if chosen not in ("gloo", "nccl"):
        raise DistributedConfigError(f"{BACKEND_ENV}={chosen!r}: expected gloo or nccl")
    if chosen == "nccl" and not torch.cuda.is_available():
        raise DistributedConfigError(f"{BACKEND_ENV}=nccl needs CUDA, which this process does not have; use gloo")
    return chosen


def init_from_env() -> bool:
    """Join the torchrun process group when WORLD_SIZE > 1. Returns True when this call created it
    (the caller then owns :func:`shutdown`)."""
    if requested_world_size() <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    chosen = backend()
    if chosen == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=chosen)
    return True


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def share_cpu_threads() -> None:
    """Split the CPU cores among the processes of this node rather than oversubscribing them."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local)))


def barrier() -> None:
    if active():
        dist.barrier()


def per_rank_batch(batch_size: int, world: int) -> int:
    """The global batch stays batch_size, split evenly over the ranks."""
    if batch_size % world:
        raise DistributedConfigError(f"distill.batch_size {batch_size} is not divisible by the world size {world} "
                                     f"(WORLD_SIZE); the global batch must split evenly over the processes")
    return batch_size // world


def shard(order: Sequence[int], rank_: int, world: int) -> list[int]:
    """This rank's rows of an epoch's order: padded (by wrapping around) to a multiple of the world
    size so every rank runs the same number of steps, then strided by rank."""
    order = list(order)
    if not order:
        return []
    padded = order + [order[i % len(order)] for i in range(-len(order) % world)]
    return padded[rank_::world]


def all_mean(value: float, device: torch.device) -> float:
    """The mean of a float over all ranks (gloo has no AVG op, hence SUM / world)."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64 if device.type == "cpu" else torch.float32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / dist.get_world_size()


def from_main(value: float, device: torch.device) -> float:
    """Rank 0's float on every rank, so decisions taken from it (best epoch, early stop) agree."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64 if device.type == "cpu" else torch.float32, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())
