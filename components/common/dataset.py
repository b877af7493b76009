"""Datasets: reading JSONL/CSV/Parquet with validation, the deterministic hash split, and the
canonical snapshot every step reads (one JSONL file of {"text", "label", "split"}).

`version_data` builds the snapshot (and DVC versions it); watch and the teacher step build the same
one to compare or fine-tune; every other step only reads it through here. Every error names the
file, the row and the value.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.common.io import atomic_writer

SPLITS = ("train", "validation", "test")


class DatasetError(ValueError):
    """Input data that cannot be used; the message names the file, row and value."""


@dataclass(frozen=True)
class Snapshot:
    texts: list[str]
    labels: list[str]
    splits: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def label_names(self) -> list[str]:
        return sorted(set(self.labels))

    def split(self, name: str) -> tuple[list[str], list[str]]:
        """(texts, labels) of one split, in snapshot order."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        rows = [(t, y) for t, y, s in zip(self.texts, self.labels, self.splits, strict=True) if s == name]
        return [t for t, _ in rows], [y for _, y in rows]

    def indices(self, name: str) -> list[int]:
        return [i for i, s in enumerate(self.splits) if s == name]


def write_snapshot(snapshot: Snapshot, path: str | Path) -> None:
    """Write atomically: a reader never sees half a snapshot."""
    with atomic_writer(path) as f:
        for t, y, s in zip(snapshot.texts, snapshot.labels, snapshot.splits, strict=True):
            f.write(json.dumps({"text": t, "label": y, "split": s}, ensure_ascii=False, sort_keys=True) + "\n")


def read_snapshot(path: str | Path) -> Snapshot:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: dataset snapshot not found")
    texts, labels, splits = [], [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            try:
                row = json.loads(line)
                texts.append(row["text"])
                labels.append(row["label"])
                splits.append(row["split"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DatasetError(f"{path} line {n}: not a snapshot row ({exc})") from exc
    if not texts:
        raise DatasetError(f"{path}: dataset snapshot is empty")
    return Snapshot(texts, labels, splits)


def read_texts(path: str | Path, text_column: str = "text") -> list[str]:
    """Unlabelled inputs (production batches): JSONL/CSV/Parquet, one text column."""
    rows = read_table(path, columns=(text_column,))
    return [r[text_column] for r in rows]


def check_labels(data_labels: list[str], teacher_labels: list[str], where: str) -> None:
    """Every label of the data must be one the teacher predicts."""
    unknown = sorted(set(data_labels) - set(teacher_labels))
    if unknown:
        raise DatasetError(f"{where}: label(s) {unknown} are not among the teacher's labels {teacher_labels}; "
                           f"fine-tune a teacher on this label set (distillops teacher --data ...)")


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


class TextBatchError(DatasetError):
    """A batch of texts that cannot be described honestly (empty, holes, non-strings, all blank)."""


def _is_nan(value: Any) -> bool:
    # A float NaN is what pandas puts in a text column for a missing value; name it explicitly.
    return isinstance(value, float) and math.isnan(value)


def validate_texts(texts: list, batch_name: str) -> list[str]:
    """Return ``texts`` as a list of str, or raise TextBatchError naming the batch, row and value.

    Fails closed: a batch that cannot be described honestly (empty, holes, non-strings, nothing but
    empty strings) is an error, never silently dropped rows, because a drift verdict on a
    half-read batch would be wrong in either direction.
    """
    if texts is None:
        raise TextBatchError(f"{batch_name} batch is None, expected a list of texts")
    if isinstance(texts, str | bytes):
        # A bare string is iterable, and would otherwise be described as one text per character.
        raise TextBatchError(
            f"{batch_name} batch is a single {type(texts).__name__}, expected a list of texts"
        )
    items = list(texts)
    if not items:
        raise TextBatchError(f"{batch_name} batch is empty: no texts to compare")
    for row, value in enumerate(items):
        if value is None:
            raise TextBatchError(f"{batch_name} batch row {row} is None, expected a string")
        if _is_nan(value):
            raise TextBatchError(f"{batch_name} batch row {row} is NaN ({value!r}), expected a string")
        if not isinstance(value, str):
            raise TextBatchError(
                f"{batch_name} batch row {row} is {type(value).__name__} {value!r}, expected a string"
            )
    if all(not text.strip() for text in items):
        raise TextBatchError(f"{batch_name} batch has {len(items)} texts, all empty or whitespace-only")
    return [str(text) for text in items]
