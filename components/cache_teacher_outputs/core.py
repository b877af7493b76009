"""Pure logic of cache_teacher_outputs: which rows the teacher must compute, which cached rows the
fidelity check recomputes, and how stored and fresh outputs are compared."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def plan_rows(texts: Sequence[str], keys: Sequence[bytes], cached: dict[bytes, np.ndarray]) -> list[int]:
    """Indices of the rows the teacher must compute: first occurrence of each uncached key."""
    seen: set[bytes] = set()
    todo = []
    for i, k in enumerate(keys):
        if k not in cached and k not in seen:
            seen.add(k)
            todo.append(i)
    return todo


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
