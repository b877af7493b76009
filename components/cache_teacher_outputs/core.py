"""Pure logic of cache_teacher_outputs: which rows the teacher must compute (``plan_rows``, from the
teacher store's module), which cached rows the fidelity check recomputes, and how stored and fresh
outputs are compared."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

# Shared with every reader of the store (monitor_drift's teacher answers too): re-exported here.
from components.common.teacher_store import plan_rows as plan_rows


def fidelity_sample(keys: Sequence[bytes], n: int, seed: str) -> list[int]:
    """A deterministic 'random' sample of up to n row indices with distinct keys, chosen by hashing
    each key with `seed` (the same rows for the same data and teacher; different teachers differ)."""
    first: dict[bytes, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    ranked = sorted(first.items(), key=lambda kv: hashlib.sha256(seed.encode() + kv[0]).digest())
    return sorted(i for _, i in ranked[:n])


def compare_outputs(stored: np.ndarray, fresh: np.ndarray, atol: float, rtol: float) -> list[tuple[int, float]]:
    """(position in the sample, max abs difference) of each row whose stored values differ from
    a fresh computation by more than atol + rtol * |fresh|."""
    if stored.shape != fresh.shape:
        return [(i, float("inf")) for i in range(len(fresh))]
    diff = np.abs(stored.astype(np.float64) - fresh.astype(np.float64))
    bad = (diff > atol + rtol * np.abs(fresh)).any(axis=1)
    return [(int(i), float(diff[i].max())) for i in np.flatnonzero(bad)]


def shard_rows(order: Sequence[int], batch_size: int, shards: int) -> list[list[int]]:
    """Split rows, given in the order the teacher batches them, into at most `shards` balanced runs of
    whole batches (shard sizes differ by at most one batch). A worker then forms exactly the batches
    one worker would have formed, so the outputs do not depend on the shard count (padding and batch
    shapes change a row's floats in the last bits). No rows: no shards."""
    if batch_size < 1 or shards < 1:
        raise ValueError(f"batch_size and shards must be >= 1, got {batch_size} and {shards}")
    batches = [list(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]
    n = min(shards, len(batches))
    return [[row for b in batches[i * len(batches) // n:(i + 1) * len(batches) // n] for row in b] for i in range(n)]


def flush_size(flush_rows: int, batch_size: int) -> int:
    """Rows per store write: `flush_rows` rounded up to whole batches (a write never splits a batch)."""
    return max(1, -(-flush_rows // batch_size)) * batch_size
