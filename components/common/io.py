"""Atomic file IO and inter-process locks: the one place that writes a file by temp-name-and-rename.

A reader never sees half a file: every write goes to a hidden temp file in the same directory,
is flushed (and fsync'ed when asked), then renamed over the target, which POSIX makes atomic. A
failed write removes its temp file, so nothing half-written is left behind. A directory is
published the same way (:func:`atomic_dir`): built under a staging name, renamed when complete.

Usage::

    atomic_write_text(path, text)
    with atomic_dir(dest) as staging: ...   # fill `staging`; it becomes `dest` on success
    with file_lock(lock_path): ...          # serialise processes sharing a directory
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temp path beside `path` for any writer that takes a file name (torch, safetensors, DVC);
    renamed to `path` when the block completes, removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator:
    """An open file whose content replaces `path` only when the block completes without error."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
        yield f


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = False) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, fsync: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_copy(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy a file so that `dest` appears whole or not at all."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)


@contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """A staging directory that becomes `dest` when the block completes (an existing `dest` is
    replaced); on failure the staging directory is removed and `dest` is untouched."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.partial")
    staging.mkdir()
    try:
        yield staging
        if dest.exists():
            old = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.old")
            dest.rename(old)
            staging.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive advisory lock (flock) on `path`, created if needed, held for the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_string_rows(path: str | os.PathLike, keys: tuple[str, ...], what: str, remedy: str) -> list[tuple[str, ...]]:
    """The rows of a JSONL file the system keeps (one JSON object per line), as tuples of the string
    fields `keys`; [] when the file does not exist. A bad line is a ValueError naming the file, the
    line, what the file is (`what`) and what to do about it (`remedy`)."""
    import json

    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                values = tuple(row[k] for k in keys)
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path} line {n}: a {what} row must be a JSON object with string "
                                 f"{' and '.join(repr(k) for k in keys)} ({e}); {remedy}") from e
            bad = [k for k, v in zip(keys, values, strict=True) if not isinstance(v, str)]
            if bad:
                raise ValueError(f"{path} line {n}: {' and '.join(repr(k) for k in bad)} must be a string; {remedy}")
            rows.append(values)
    return rows
