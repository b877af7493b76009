"""Pure logic of version_data: read JSONL/CSV/Parquet, validate rows, split deterministically.

The split is decided by a hash of (salt, text), so a row keeps its split when rows are appended
or reordered, and duplicate texts never straddle train and test.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any

from components.common.dataset import DatasetError, Snapshot

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def _decode_lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    out = []
    for n, line in enumerate(lines, start=1):
        try:
            out.append(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            bad = line[max(0, exc.start - 10): exc.end + 10]
            raise DatasetError(f"{path} line {n}: text is not valid UTF-8 (bytes {bad!r})") from None
    return out


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(_decode_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} line {n}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path} line {n}: expected a JSON object, got {type(row).__name__}")
        row["__row__"] = f"line {n}"
        rows.append(row)
    return rows


def _read_csv(path: Path) -> list[dict[str, Any]]:
    text = "\n".join(_decode_lines(path))
    reader = csv.DictReader(io.StringIO(text))
    rows = []
    for n, row in enumerate(reader, start=2):  # line 1 is the header
        row["__row__"] = f"line {n}"
        rows.append(row)
    return rows


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DatasetError(f"{path}: not a readable Parquet file ({exc})") from None
    rows = table.to_pylist()
    for n, row in enumerate(rows):
        row["__row__"] = f"row {n}"
    return rows


def read_table(path: str | Path, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of a JSONL/CSV/Parquet file, each with `columns` (validated) and ``__row__`` (where)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: data file not found")
    if path.is_dir():
        raise DatasetError(f"{path}: expected a data file, got a directory")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DatasetError(f"{path}: unknown format {path.suffix!r}; expected one of {', '.join(sorted(FORMATS))}")
    rows = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet}[fmt](path)
    if not rows:
        raise DatasetError(f"{path}: no rows")
    present = set(rows[0]) - {"__row__"}
    for col in columns:
        if col not in present:
            raise DatasetError(
                f"{path}: column {col!r} not found; columns present: {', '.join(sorted(present)) or 'none'}"
            )
    for row in rows:
        for col in columns:
            value = row.get(col)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                raise DatasetError(f"{path} {row['__row__']}: column {col!r} is missing or null")
            if not isinstance(value, str):
                raise DatasetError(
                    f"{path} {row['__row__']}: column {col!r} must be text, got {type(value).__name__} {value!r}"
                )
            if not value.strip():
                raise DatasetError(f"{path} {row['__row__']}: column {col!r} is empty")
    return rows


def assign_split(text: str, salt: str, validation_fraction: float, test_fraction: float) -> str:
    """Deterministic split of one row from a hash of its text: stable under appends and reorders."""
    digest = hashlib.sha256(f"{salt}\0{text}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + validation_fraction:
        return "validation"
    return "train"


def build_snapshot(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    allowed_labels: tuple[str, ...] = (),
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    salt: str = "distillops-v1",
) -> Snapshot:
    """Read and validate a labelled dataset; return its canonical, split snapshot."""
    rows = read_table(path, columns=(text_column, label_column))
    if allowed_labels:
        allowed = set(allowed_labels)
        for row in rows:
            if row[label_column] not in allowed:
                raise DatasetError(
                    f"{path} {row['__row__']}: unknown label {row[label_column]!r}; "
                    f"expected one of {', '.join(allowed_labels)}"
                )
    texts = [r[text_column] for r in rows]
    labels = [r[label_column] for r in rows]
    splits = [assign_split(t, salt, validation_fraction, test_fraction) for t in texts]
    if "train" not in splits or "test" not in splits:
        raise DatasetError(
            f"{path}: {len(rows)} rows are too few to split into train and test "
            f"(got {splits.count('train')} train, {splits.count('test')} test)"
        )
    if len(set(labels)) < 2:
        raise DatasetError(f"{path}: a classifier needs at least 2 labels, found only {sorted(set(labels))}")
    return Snapshot(texts, labels, splits)


def split_counts(snapshot: Snapshot) -> dict[str, int]:
    return {s: snapshot.splits.count(s) for s in ("train", "validation", "test")}
