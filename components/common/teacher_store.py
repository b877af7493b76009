"""Content-addressed store of teacher outputs, on a local directory or any fsspec URL (``s3://...``).

A row's key is sha256(teacher_version, tokenizer identity, max length, output kind, text): the
same text under the same teacher is never sent to the teacher twice, appended rows are the only
ones computed, and a new teacher version misses everything. Keys never depend on row positions.

Layout under the store's root::

    shards/<sha256>.safetensors   tensors "keys" [n, 32] uint8 plus the values (dense: "values" [n, d]
                                  float32; top-k: "topk_logprobs" fp16, "topk_indices" int32, "residual";
                                  generation: "lengths" [n] int32 and, per generated token, "tokens"
                                  uint16, "topk_logprobs" fp16 [., k], "topk_ids" uint16, "tail" fp32)
    manifest/<sha256>.json        the manifest: one record per shard with its sha256, size, row count,
                                  format and row keys (hex)
    refs/<name>.json              which keys a snapshot uses (``record_ref``); ``gc`` keeps only these
    quarantine/                   shards that failed verification, kept for inspection

Why one manifest record per shard instead of one manifest file: two writers never rewrite the same
object, so concurrent writers lose nothing without a lock (object stores have no atomic
read-modify-write). Every file is written to a temp name and renamed (on an object store a PUT is
atomic by itself). A shard is listed only after its bytes are in place, so readers never see half
a shard; a shard whose bytes no longer match its record (flipped byte, truncation) or that is gone
is reported in ``last_problems``, quarantined and its rows treated as missing, so they are recomputed.

With a signing key (``signing_key``; the steps pass ``DISTILLOPS_SIGNING_KEY``), every manifest
record written is signed (HMAC-SHA256 over its shard's sha256, size, row count, format and row
keys, which hash the teacher version), and a record read without a valid signature is handled like
a corrupted shard: reported, logged, quarantined, its rows recomputed (and signed). The sha256
catches accidents; the signature catches a shard and record rewritten together by someone who can
write the store but does not hold the key. docs/teacher-cache.md has the threat model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from safetensors.numpy import load, save

from components.common import signing
from components.common.generation import Generation
from components.common.home import Home
from components.common.io import atomic_write_bytes
from components.common.topk import TopK

log = logging.getLogger(__name__)

KEY_BYTES = 32
DENSE, TOPK, GENERATION = "dense", "topk", "generation"


class CacheIntegrityError(RuntimeError):
    """The store holds something that cannot be trusted and cannot be recovered automatically."""


def row_key(teacher_version: str, tokenizer_id: str, max_length: int, kind: str, text: str) -> bytes:
    h = hashlib.sha256()
    for part in (teacher_version, tokenizer_id, str(max_length), kind, text):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.digest()


def plan_rows(texts: Sequence[str], keys: Sequence[bytes], cached: Mapping[bytes, object]) -> list[int]:
    """Indices of the rows the teacher must compute: first occurrence of each key not in `cached`
    (what a lookup returned). Every reader of the store plans with this, so a row is computed once."""
    seen: set[bytes] = set()
    todo = []
    for i, k in enumerate(keys):
        if k not in cached and k not in seen:
            seen.add(k)
            todo.append(i)
    return todo


@dataclass(frozen=True)
class ShardRecord:
    sha256: str
    size: int
    rows: int
    format: str
    keys: tuple[str, ...]  # hex
    signature: str | None = None  # HMAC of signed_bytes() with the deployment's key; None: unsigned

    def signed_bytes(self) -> bytes:
        """What the signature covers: everything that says which bytes hold which rows."""
        return _RECORD_PURPOSE + signing.canonical({"sha256": self.sha256, "size": self.size, "rows": self.rows,
                                                    "format": self.format, "keys": list(self.keys)})

    def signed(self, key: bytes | None) -> ShardRecord:
        return self if key is None else replace(self, signature=signing.sign(self.signed_bytes(), key))

    def signature_problem(self, key: bytes | None) -> str | None:
        if key is None:
            return None
        if self.signature is None:
            return "its manifest record has no signature, and a signing key is configured"
        if not signing.verify(self.signed_bytes(), self.signature, key):
            return ("its manifest record's signature does not match under the configured key (rewritten without "
                    "the key, or signed with another key)")
        return None

    def to_json(self) -> str:
        d = {"sha256": self.sha256, "size": self.size, "rows": self.rows, "format": self.format,
             "keys": list(self.keys), "written": time.time()}
        if self.signature is not None:
            d["signature"] = self.signature
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ShardRecord:
        d = json.loads(text)
        return cls(d["sha256"], int(d["size"]), int(d["rows"]), d["format"], tuple(d["keys"]), d.get("signature"))


# Domain separation: a record's signature can never be taken for a gate report's (same key).
_RECORD_PURPOSE = b"distillops teacher-cache record\n"


@dataclass(frozen=True)
class Problem:
    """One integrity failure found while reading: what, where, and what the store did about it."""

    shard: str
    reason: str

    def __str__(self) -> str:
        return f"shard {self.shard}: {self.reason}; quarantined, its rows will be recomputed"


@dataclass
class GcResult:
    shards_before: int = 0
    shards_after: int = 0
    rows_removed: int = 0
    rows_kept: int = 0
    bytes_freed: int = 0
    orphans_removed: int = 0
    problems: list[str] = field(default_factory=list)


def open_store(home: Home, cache_url: str = "") -> TeacherOutputStore:
    """The configured store of a home: cache.url (any fsspec URL), else the home's
    teacher-cache directory; records signed and checked with the signing key when one is configured
    (DISTILLOPS_SIGNING_KEY). Every step that reads or writes teacher outputs opens it here."""
    return TeacherOutputStore(cache_url or home.teacher_cache, signing_key=signing.key_from_env())


def _fs(root: str | os.PathLike):
    """(filesystem, path) of a local directory or an fsspec URL."""
    import fsspec

    text = os.fspath(root)
    if "://" not in text:
        text = str(Path(text).expanduser().resolve())
    return fsspec.core.url_to_fs(text)


def _encode_keys(keys: Sequence[bytes]) -> np.ndarray:
    bad = [i for i, k in enumerate(keys) if len(k) != KEY_BYTES]
    if bad:
        raise ValueError(f"key {bad[0]} is {len(keys[bad[0]])} bytes; row keys are {KEY_BYTES}-byte sha256 digests")
    return np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)


_TENSORS = {DENSE: {"values": np.float32},
            TOPK: {"topk_logprobs": np.float16, "topk_indices": np.int32, "topk_residual": np.float32}}
# Generations are ragged: "lengths" has one entry per row, the others one per generated token (rows
# concatenated in key order), top-k tensors [tokens, k].
_GENERATION_TENSORS = {"tokens": np.uint16, "topk_logprobs": np.float16, "topk_ids": np.uint16, "tail": np.float32}


def _generation_layout_problem(tensors: dict[str, np.ndarray], rec: ShardRecord) -> str:
    lengths = tensors.get("lengths")
    if lengths is None or lengths.dtype != np.int32 or lengths.shape != (rec.rows,) or (lengths < 0).any():
        return f"tensor 'lengths' is {'missing' if lengths is None else f'{lengths.dtype} {list(lengths.shape)}'}, " \
               f"expected {rec.rows} non-negative int32"
    total = int(lengths.sum())
    for name, dtype in _GENERATION_TENSORS.items():
        t = tensors.get(name)
        if t is None or t.dtype != dtype or len(t) != total:
            found = "missing" if t is None else f"{t.dtype} {list(t.shape)}"
            return f"tensor {name!r} is {found}, expected {np.dtype(dtype).name} with {total} token rows"
    if tensors["topk_ids"].shape != tensors["topk_logprobs"].shape or tensors["topk_logprobs"].ndim != 2:
        return f"top-k tensors disagree: {list(tensors['topk_logprobs'].shape)} vs {list(tensors['topk_ids'].shape)}"
    if not np.isfinite(tensors["tail"]).all():
        return "tensor 'tail' has NaN or Inf"
    return ""


def _layout_problem(tensors: dict[str, np.ndarray], rec: ShardRecord) -> str:
    """Why a shard's tensors do not match its record (row keys in order, tensors, rows, dtypes,
    finite dense values), or "" when they do."""
    keys = tensors.get("keys")
    if keys is None or keys.dtype != np.uint8 or keys.shape != (rec.rows, KEY_BYTES):
        found = "no keys tensor" if keys is None else f"keys {keys.dtype} {list(keys.shape)}"
        return f"{found}, manifest says {rec.rows} rows of {KEY_BYTES}-byte keys"
    if tuple(k.tobytes().hex() for k in keys) != rec.keys:
        return "row keys differ from the manifest's (replaced or reordered)"
    if rec.format == GENERATION:
        return _generation_layout_problem(tensors, rec)
    expected = _TENSORS.get(rec.format)
    if expected is None:
        return f"unknown format {rec.format!r}"
    for name, dtype in expected.items():
        t = tensors.get(name)
        if t is None or t.dtype != dtype or len(t) != rec.rows:
            found = "missing" if t is None else f"{t.dtype} {list(t.shape)}"
            return f"tensor {name!r} is {found}, expected {np.dtype(dtype).name} with {rec.rows} rows"
        if rec.format == DENSE and not np.isfinite(t).all():  # put_many stores finite rows only
            bad = int((~np.isfinite(t.reshape(len(t), -1))).any(axis=1).sum())
            return f"tensor {name!r} has {bad} rows with NaN or Inf"
    return ""


class TeacherOutputStore:
    """Teacher outputs by row key. `root` is a local directory or an fsspec URL (``s3://bucket/prefix``);
    `storage_options` go to fsspec (e.g. ``{"endpoint_url": ...}`` for an S3-compatible server);
    `signing_key`: sign records written and refuse records read without its signature (None: neither)."""

    def __init__(self, root: str | os.PathLike, storage_options: dict | None = None,
                 signing_key: bytes | None = None):
        self.url = os.fspath(root)
        self.signing_key = signing_key
        if storage_options:
            import fsspec

            self.fs = fsspec.filesystem(self.url.split("://", 1)[0], **storage_options)
            self.base = self.fs._strip_protocol(self.url).rstrip("/")
        else:
            self.fs, self.base = _fs(root)
            self.base = self.base.rstrip("/")
        self.last_problems: list[Problem] = []

    # paths
    def _p(self, *parts: str) -> str:
        return "/".join((self.base, *parts))

    @property
    def root(self) -> str:
        return self.url

    # low-level atomic IO
    def _write_atomic(self, path: str, data: bytes) -> None:
        from fsspec.implementations.local import LocalFileSystem

        if isinstance(self.fs, LocalFileSystem):
            atomic_write_bytes(path, data, fsync=True)
        else:  # an object store PUT is atomic: readers see the old object or the whole new one
            self.fs.pipe_file(path, data)

    def _list(self, sub: str, suffix: str) -> list[str]:
        try:
            names = self.fs.ls(self._p(sub), detail=False)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if n.endswith(suffix) and not n.rsplit("/", 1)[-1].startswith("."))

    # the manifest
    def records(self) -> dict[str, ShardRecord]:
        """Every shard record in the manifest, by shard sha256."""
        paths = self._list("manifest", ".json")
        if not paths:
            return {}
        # cat of a list reads objects concurrently on object stores.
        blobs = self.fs.cat(paths, on_error="return")
        out = {}
        for blob in blobs.values():
            if isinstance(blob, Exception):
                continue  # removed by a concurrent gc between ls and cat
            rec = ShardRecord.from_json(blob.decode())
            out[rec.sha256] = rec
        return out

    def _shard_path(self, sha: str) -> str:
        return self._p("shards", f"{sha}.safetensors")

    def _quarantine(self, sha: str, reason: str) -> None:
        problem = Problem(sha, reason)
        log.warning("teacher cache at %s: %s", self.url, problem)
        self.last_problems.append(problem)
        src = self._shard_path(sha)
        try:
            if self.fs.exists(src):
                self.fs.makedirs(self._p("quarantine"), exist_ok=True)
                self.fs.mv(src, self._p("quarantine", f"{sha}.safetensors"))
        except FileNotFoundError:
            pass
        try:
            self.fs.rm(self._p("manifest", f"{sha}.json"))
        except FileNotFoundError:
            pass

    def _read_shard(self, rec: ShardRecord) -> dict[str, np.ndarray] | None:
        """The shard's tensors after verifying its record's signature (with a key) and its bytes
        against the record, or None (quarantined)."""
        unsigned = rec.signature_problem(self.signing_key)
        if unsigned:
            self._quarantine(rec.sha256, unsigned)
            return None
        try:
            # Size first: a shard grown by appended bytes is refused without being read into memory.
            size = self.fs.size(self._shard_path(rec.sha256))
            data = self.fs.cat_file(self._shard_path(rec.sha256)) if size == rec.size else b""
        except FileNotFoundError:
            self._quarantine(rec.sha256, "listed in the manifest but missing")
            return None
        if size != rec.size:
            self._quarantine(rec.sha256, f"truncated or resized: {size} bytes, manifest says {rec.size}")
            return None
        if len(data) != rec.size:
            self._quarantine(rec.sha256, f"truncated or resized: {len(data)} bytes, manifest says {rec.size}")
            return None
        digest = hashlib.sha256(data).hexdigest()
        if digest != rec.sha256:
            self._quarantine(rec.sha256, f"corrupted: sha256 {digest[:16]}..., manifest says {rec.sha256[:16]}...")
            return None
        try:  # bytes that match their record can still be malformed (a record rewritten along with them)
            tensors = load(data)
        except Exception as exc:  # safetensors' own error: HeaderTooLarge, MetadataIncompleteBuffer, ...
            self._quarantine(rec.sha256, f"not a readable safetensors file ({exc})")
            return None
        problem = _layout_problem(tensors, rec)
        if problem:
            self._quarantine(rec.sha256, problem)
            return None
        return tensors

    # reads
    def _get(self, keys: Sequence[bytes], fmt: str) -> dict[bytes, np.ndarray | TopK | Generation]:
        self.last_problems = []
        wanted = {k.hex() for k in keys}
        out: dict[bytes, np.ndarray | TopK | Generation] = {}
        for rec in self.records().values():
            if rec.format != fmt or wanted.isdisjoint(rec.keys):
                continue
            tensors = self._read_shard(rec)
            if tensors is None:
                continue
            offsets = np.concatenate([[0], np.cumsum(tensors["lengths"])]) if fmt == GENERATION else None
            for i, key in enumerate(tensors["keys"]):
                kb = key.tobytes()
                if kb.hex() not in wanted or kb in out:
                    continue
                if fmt == GENERATION:
                    a, b = int(offsets[i]), int(offsets[i + 1])
                    out[kb] = Generation(*(tensors[name][a:b] for name in _GENERATION_TENSORS))
                elif fmt == DENSE:
                    out[kb] = tensors["values"][i]
                else:
                    out[kb] = TopK(tensors["topk_logprobs"][i:i + 1], tensors["topk_indices"][i:i + 1],
                                   tensors["topk_residual"][i:i + 1])
        return out

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The stored dense values of those `keys` present (and verified) in the store.

        Integrity failures met on the way are in `last_problems` (and logged); their rows are absent.
        """
        return self._get(keys, DENSE)  # type: ignore[return-value]

    def get_topk_many(self, keys: Sequence[bytes]) -> dict[bytes, TopK]:
        """Like get_many for rows stored with put_topk_many; each value is a one-row TopK."""
        return self._get(keys, TOPK)  # type: ignore[return-value]

    def get_generations(self, keys: Sequence[bytes]) -> dict[bytes, Generation]:
        """Like get_many for rows stored with put_generations."""
        return self._get(keys, GENERATION)  # type: ignore[return-value]

    # writes
    def _put(self, keys: Sequence[bytes], tensors: dict[str, np.ndarray], fmt: str) -> str:
        payload = save({"keys": _encode_keys(keys), **tensors}, metadata={"format": fmt})
        sha = hashlib.sha256(payload).hexdigest()
        # Shard first, manifest record second: a record never points at bytes that are not there yet.
        self._write_atomic(self._shard_path(sha), payload)
        rec = ShardRecord(sha, len(payload), len(keys), fmt, tuple(k.hex() for k in keys)).signed(self.signing_key)
        self._write_atomic(self._p("manifest", f"{sha}.json"), rec.to_json().encode())
        return self._shard_path(sha)

    def put_many(self, keys: Sequence[bytes], values: np.ndarray) -> str | None:
        """Store dense rows [n, d] as one new shard; returns the shard's path (None when no rows)."""
        if len(keys) == 0:
            return None
        values = np.asarray(values)
        if values.ndim != 2 or len(keys) != len(values):
            raise ValueError(f"{len(keys)} keys for values of shape {values.shape}; expected [{len(keys)}, d]")
        if not np.isfinite(values).all():
            bad = int(np.argwhere(~np.isfinite(values).all(axis=1))[0, 0])
            raise ValueError(f"value row {bad} (key {keys[bad].hex()[:16]}...) is not finite; nothing was stored")
        return self._put(keys, {"values": np.ascontiguousarray(values, dtype=np.float32)}, DENSE)

    def put_topk_many(self, keys: Sequence[bytes], topk: TopK) -> str | None:
        """Store top-k compressed rows as one new shard."""
        if len(keys) == 0:
            return None
        if len(keys) != len(topk.logprobs):
            raise ValueError(f"{len(keys)} keys for {len(topk.logprobs)} top-k rows")
        return self._put(keys, {"topk_logprobs": np.ascontiguousarray(topk.logprobs, dtype=np.float16),
                                "topk_indices": np.ascontiguousarray(topk.indices, dtype=np.int32),
                                "topk_residual": np.ascontiguousarray(topk.residual, dtype=np.float32)}, TOPK)

    def put_generations(self, keys: Sequence[bytes], rows: Sequence[Generation]) -> str | None:
        """Store generations (ragged: each row its own length) as one new shard."""
        if len(keys) == 0:
            return None
        if len(keys) != len(rows):
            raise ValueError(f"{len(keys)} keys for {len(rows)} generations")
        ks = {r.k for r in rows if len(r.tokens)}
        if len(ks) > 1:
            raise ValueError(f"generations of one shard must share k; found {sorted(ks)}")
        k = ks.pop() if ks else 1
        bad = [i for i, r in enumerate(rows) if not np.isfinite(r.tail).all()]
        if bad:
            raise ValueError(f"generation {bad[0]} (key {keys[bad[0]].hex()[:16]}...) has a non-finite tail; "
                             f"nothing was stored")
        tensors = {"lengths": np.array([len(r.tokens) for r in rows], dtype=np.int32)}
        for name, dtype in _GENERATION_TENSORS.items():
            parts = [np.asarray(getattr(r, name), dtype=dtype) for r in rows]
            if name.startswith("topk"):
                parts = [p.reshape(-1, k) for p in parts]
            tensors[name] = np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros(0, dtype))
        return self._put(keys, tensors, GENERATION)

    # references and garbage collection
    def record_ref(self, name: str, keys: Iterable[bytes]) -> None:
        """Record that snapshot `name` uses `keys` (gc keeps every row some ref names)."""
        safe = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)
        body = json.dumps({"name": name, "keys": sorted({k.hex() for k in keys}), "written": time.time()})
        self._write_atomic(self._p("refs", f"{safe}.json"), body.encode())

    def refs(self) -> dict[str, set[str]]:
        paths = self._list("refs", ".json")
        blobs = self.fs.cat(paths, on_error="return") if paths else {}
        out = {}
        for blob in blobs.values():
            if not isinstance(blob, Exception):
                d = json.loads(blob.decode())
                out[d["name"]] = set(d["keys"])
        return out

    def drop_ref(self, name: str) -> None:
        safe = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)
        self.fs.rm(self._p("refs", f"{safe}.json"))

    def gc(self, keep: set[str] | None = None, dry_run: bool = False, orphan_grace_s: float = 3600.0) -> GcResult:
        """Remove rows no ref names (or not in `keep`, hex keys, when given).

        A shard with some live rows is rewritten with those rows only (new shard first, old one
        removed after), so a crash midway leaves duplicates, never losses. Shard files without a
        manifest record older than `orphan_grace_s` (a writer that died between the two writes)
        are removed too; younger ones may belong to a writer still running.
        """
        if keep is None:
            refs = self.refs()
            if not refs and self.records():
                # No snapshot has recorded what it uses: "nothing is referenced" is far likelier to
                # mean "written by code that records no refs" than "all garbage". Refuse.
                raise CacheIntegrityError(f"teacher cache {self.url}: no snapshot references (refs/) recorded; "
                                          "refusing to delete every entry. Run the pipeline once to record them.")
            live = set().union(*refs.values()) if refs else set()
        else:
            live = keep
        result = GcResult()
        records = self.records()
        result.shards_before = len(records)
        for rec in records.values():
            dead = [k for k in rec.keys if k not in live]
            if not dead:
                result.rows_kept += rec.rows
                continue
            result.rows_removed += len(dead)
            result.rows_kept += rec.rows - len(dead)
            if dry_run:
                result.bytes_freed += rec.size if len(dead) == rec.rows else 0
                continue
            if len(dead) < rec.rows:
                tensors = self._read_shard(rec)
                if tensors is None:
                    result.problems.append(str(self.last_problems[-1]))
                    continue
                mask = np.array([k.tobytes().hex() in live for k in tensors["keys"]])
                kept_keys = [k.tobytes() for k in tensors["keys"][mask]]
                kept = {n: t[mask] for n, t in tensors.items() if n != "keys"}
                self._put(kept_keys, kept, rec.format)
            self.fs.rm(self._p("manifest", f"{rec.sha256}.json"))
            try:
                self.fs.rm(self._shard_path(rec.sha256))
            except FileNotFoundError:
                pass
            result.bytes_freed += rec.size
        listed = set(self.records())
        now = time.time()
        for path in self._list("shards", ".safetensors"):
            sha = path.rsplit("/", 1)[-1].split(".", 1)[0]
            if sha in listed:
                continue
            info = self.fs.info(path)
            mtime = info.get("mtime") or info.get("LastModified") or info.get("created")
            mtime = mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime or 0)
            if now - mtime >= orphan_grace_s:
                if not dry_run:
                    self.fs.rm(path)
                result.orphans_removed += 1
                result.bytes_freed += int(info.get("size", 0))
        result.shards_after = len(self.records()) if not dry_run else result.shards_before
        return result

    def stats(self) -> dict:
        """Entries, bytes and shards as the manifest lists them (without reading shard bytes)."""
        records = self.records()
        by_format: dict[str, int] = {}
        keys: set[str] = set()
        for rec in records.values():
            by_format[rec.format] = by_format.get(rec.format, 0) + rec.rows
            keys.update(rec.keys)
        quarantined = len(self._list("quarantine", ".safetensors"))
        return {"store": self.url, "shards": len(records), "entries": len(keys),
                "rows_stored": sum(r.rows for r in records.values()),
                "bytes": sum(r.size for r in records.values()), "entries_by_format": by_format,
                "refs": len(self._list("refs", ".json")), "quarantined_shards": quarantined}

    def verify(self) -> list[Problem]:
        """Read and check every shard; quarantine the bad ones. Returns what was found."""
        self.last_problems = []
        for rec in self.records().values():
            self._read_shard(rec)
        return list(self.last_problems)
