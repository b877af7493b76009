"""Pure logic of version_data beyond what common/dataset.py shares (reading, validating and
splitting rows is there, because watch and the teacher step build the same snapshot)."""

from __future__ import annotations

from components.common.dataset import Snapshot


def split_counts(snapshot: Snapshot) -> dict[str, int]:
    return {s: snapshot.splits.count(s) for s in ("train", "validation", "test")}
