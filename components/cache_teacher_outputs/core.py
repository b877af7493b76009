"""Content-addressed store of teacher outputs.

A row's key is sha256(teacher_version, tokenizer identity, max length, output kind, text): the
same text under the same teacher is never sent to the teacher twice, appended rows are the only
ones computed, and a new teacher version misses everything. Keys never depend on row positions.

On disk (one directory per store)::

    shards/<sha256 of the file>.safetensors   tensors "keys" [n, 32] uint8 and "values" [n, d] float32

A shard is named by the digest of its own bytes and written to a temp file then renamed, so a
reader never sees half a shard and a damaged shard is detected (its name no longer matches), reported
and ignored (its rows are recomputed).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from components.common.hashing import sha256_file

log = logging.getLogger(__name__)


def row_key(teacher_version: str, tokenizer_id: str, max_length: int, kind: str, text: str) -> bytes:
    h = hashlib.sha256()
    for part in (teacher_version, tokenizer_id, str(max_length), kind, text):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.digest()


class TeacherOutputStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.shards = self.root / "shards"

    def _load_all(self) -> dict[bytes, np.ndarray]:
        entries: dict[bytes, np.ndarray] = {}
        if not self.shards.is_dir():
            return entries
        for shard in sorted(self.shards.glob("*.safetensors")):
            if sha256_file(shard) != shard.stem:
                log.warning("teacher cache shard %s is corrupted (digest mismatch); ignoring it, its rows "
                            "will be recomputed", shard)
                continue
            tensors = load_file(shard)
            for key, value in zip(tensors["keys"], tensors["values"], strict=True):
                entries[key.tobytes()] = value
        return entries

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The stored values of those `keys` present in the store."""
        wanted = set(keys)
        return {k: v for k, v in self._load_all().items() if k in wanted}

    def put_many(self, keys: Sequence[bytes], values: np.ndarray) -> Path | None:
        """Store rows as one new shard (atomic: temp file + rename)."""
        if len(keys) == 0:
            return None
        if len(keys) != len(values):
            raise ValueError(f"{len(keys)} keys for {len(values)} value rows")
        self.shards.mkdir(parents=True, exist_ok=True)
        key_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
        fd, tmp = tempfile.mkstemp(dir=self.shards, prefix=".shard-", suffix=".tmp")
        os.close(fd)
        try:
            save_file({"keys": key_arr, "values": np.ascontiguousarray(values, dtype=np.float32)}, tmp)
            final = self.shards / f"{sha256_file(tmp)}.safetensors"
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return final


def plan_rows(texts: Sequence[str], keys: Sequence[bytes], cached: dict[bytes, np.ndarray]) -> list[int]:
    """Indices of the rows the teacher must compute: first occurrence of each uncached key."""
    seen: set[bytes] = set()
    todo = []
    for i, k in enumerate(keys):
        if k not in cached and k not in seen:
            seen.add(k)
            todo.append(i)
    return todo
