"""The redistill backlog: the production texts of drifted batches whose redistillation a trigger asked
for but the policy skipped (cooldown, budget). monitor_drift adds a skipped batch's texts; the next
prepare_redistill from the same champion data has the teacher label them beside its own batch (and,
with drift.redistill_pool, they join the pool of a refused attempt like that batch's rows).

Without it, the traffic seen while waiting is dropped, and the redistillation that follows learns
the new distribution from one batch; with it, from every batch the shift has produced since the
champion was trained. One file per champion data version: a promotion moves the champion to data
that holds the backlog's rows, and the next shift starts a new file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from components.common.dataset import normalize_text
from components.common.io import atomic_write_bytes, read_string_rows


def backlog_path(home_root: str | Path, reference_data_version: str) -> Path:
    """Where the backlog of the champion trained on `reference_data_version` lives."""
    if not reference_data_version:
        raise ValueError("redistill backlog: the champion's reference_data_version is empty")
    key = hashlib.sha256(reference_data_version.encode()).hexdigest()[:32]
    return Path(home_root) / "redistill" / "backlog" / f"{key}.jsonl"


def read_backlog(path: str | Path) -> list[str]:
    """The backlog's texts, oldest first ([] when there is none)."""
    return [text for (text,) in read_string_rows(path, ("text",), "redistill backlog",
                                                 "delete the file to drop the backlog")]


def add_to_backlog(path: str | Path, texts: list[str], max_rows: int, current: list[str] | None = None) -> int:
    """Append `texts` (deduplicated by normalised text, a repeat moves to the end), keep the newest
    `max_rows`; written atomically. Returns the rows the backlog holds. `current`: the backlog as the
    caller just read it (under the same lock), else it is read here."""
    if max_rows < 0:
        raise ValueError(f"drift.redistill_max_rows must be >= 0, got {max_rows}")
    rows = newest_unique([*(read_backlog(path) if current is None else current), *texts], max_rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in rows).encode())
    return len(rows)


def newest_unique(texts: list[str], max_rows: int) -> list[str]:
    """`texts` without repeats (by normalised text; the last occurrence kept, in its place), the newest
    `max_rows` of them, oldest first."""
    last = {normalize_text(t): i for i, t in enumerate(texts)}
    unique = [t for i, t in enumerate(texts) if last[normalize_text(t)] == i]
    return unique[len(unique) - max_rows:] if max_rows else []
