"""The canonical dataset snapshot every step reads: one JSONL file of {"text", "label", "split"}.

`version_data` writes it (and DVC versions it); the other steps only read it through here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for t, y, s in zip(snapshot.texts, snapshot.labels, snapshot.splits, strict=True):
            f.write(json.dumps({"text": t, "label": y, "split": s}, ensure_ascii=False, sort_keys=True) + "\n")
    tmp.replace(path)


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
    from components.version_data.core import read_table  # one reader for every tabular input

    rows = read_table(path, columns=(text_column,))
    return [r[text_column] for r in rows]
