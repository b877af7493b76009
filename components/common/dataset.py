"""Datasets: reading JSONL/CSV/Parquet with validation, the deterministic hash split, and the
canonical snapshot every step reads (one JSONL file of {"text", "label", "split"}, and
"label_source" when some labels came from the teacher).

Label provenance: a data file may carry a ``label_source`` column, "gold" (a human / ground-truth
label) or "teacher" (the teacher's prediction, as prepare_redistill labels production inputs). The
gate measures accuracy against gold rows only and scores teacher-labelled rows by agreement with
the teacher. No column means every label is gold; a snapshot whose labels are all gold is written
without the field, so its data version is the one it had before provenance existed.

`version_data` builds the snapshot (and DVC versions it); watch and the teacher step build the same
one to compare or fine-tune; every other step only reads it through here. Every error names the
file, the row and the value.

Decode policy (text files): strict UTF-8, an error naming the line otherwise; a leading BOM is
dropped; CRLF and LF read the same (so the snapshot, and its data version, do not depend on the
line endings of the source). Texts with a NUL or a lone surrogate (JSON ``"\\ud800"``) are refused
by name: neither survives a tokenizer or a UTF-8 hash. Texts longer than ``max_text_chars`` are cut
(or refused) before any tokenizer sees them. The split hashes the *normalised* text, so
near-duplicates (case, spacing, trailing punctuation, NFKC forms) never straddle train and test.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.common.io import atomic_writer

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
MAX_TEXT_CHARS = 20_000  # data.max_text_chars's default
LONG_TEXT_POLICIES = ("truncate", "error")
CONFLICT_POLICIES = ("error", "drop", "majority")
LABEL_SOURCE_COLUMN = "label_source"
GOLD, TEACHER = "gold", "teacher"
LABEL_SOURCES = (GOLD, TEACHER)


class DatasetError(ValueError):
    """Input data that cannot be used; the message names the file, row and value."""


@dataclass(frozen=True)
class Snapshot:
    texts: list[str]
    labels: list[str]
    splits: list[str]
    # Each label's provenance ("gold" / "teacher"); None: every label is gold.
    label_sources: list[str] | None = None

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

    def label_source(self, i: int) -> str:
        return GOLD if self.label_sources is None else self.label_sources[i]

    def weighted(self, indices: list[int], teacher_repeat: int) -> list[int]:
        """`indices` with each teacher-labelled row repeated `teacher_repeat` times (the training
        order is shuffled by the trainer, so where the copies sit does not matter)."""
        if teacher_repeat < 1:
            raise ValueError(f"teacher_repeat must be >= 1, got {teacher_repeat}")
        return [i for i in indices for _ in range(teacher_repeat if self.label_source(i) == TEACHER else 1)]

    def is_gold(self, indices: list[int]) -> list[bool]:
        """Whether each of the rows `indices` carries a gold label (not the teacher's)."""
        return [self.label_source(i) == GOLD for i in indices]


def write_snapshot(snapshot: Snapshot, path: str | Path) -> None:
    """Write atomically: a reader never sees half a snapshot."""
    sources = snapshot.label_sources or [GOLD] * len(snapshot)
    provenance = any(source != GOLD for source in sources)  # all gold: the pre-provenance format
    with atomic_writer(path) as f:
        for t, y, s, src in zip(snapshot.texts, snapshot.labels, snapshot.splits, sources, strict=True):
            row = {"text": t, "label": y, "split": s, **({LABEL_SOURCE_COLUMN: src} if provenance else {})}
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def read_snapshot(path: str | Path) -> Snapshot:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: dataset snapshot not found")
    texts, labels, splits, sources = [], [], [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            try:
                row = json.loads(line)
                texts.append(row["text"])
                labels.append(row["label"])
                splits.append(row["split"])
                sources.append(row.get(LABEL_SOURCE_COLUMN, GOLD))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                raise DatasetError(f"{path} line {n}: not a snapshot row ({exc})") from exc
            if sources[-1] not in LABEL_SOURCES:
                raise DatasetError(f"{path} line {n}: {LABEL_SOURCE_COLUMN} {sources[-1]!r}; expected one of "
                                   f"{', '.join(LABEL_SOURCES)}")
    if not texts:
        raise DatasetError(f"{path}: dataset snapshot is empty")
    return Snapshot(texts, labels, splits, sources if any(s != GOLD for s in sources) else None)


def read_texts(path: str | Path, text_column: str = "text", max_text_chars: int = MAX_TEXT_CHARS,
               long_texts: str = "truncate") -> list[str]:
    """Unlabelled inputs (production batches): JSONL/CSV/Parquet, one text column, each text capped."""
    rows = read_table(path, columns=(text_column,))
    cut = cap_texts(rows, text_column, max_text_chars, long_texts, path)
    if cut:
        log.warning("%s: %d text(s) longer than %d characters truncated (data.max_text_chars)",
                    path, cut, max_text_chars)
    return [r[text_column] for r in rows]


def check_labels(data_labels: list[str], teacher_labels: list[str], where: str) -> None:
    """Every label of the data must be one the teacher predicts."""
    unknown = sorted(set(data_labels) - set(teacher_labels))
    if unknown:
        raise DatasetError(f"{where}: label(s) {unknown} are not among the teacher's labels {teacher_labels}; "
                           f"fine-tune a teacher on this label set (distillops teacher --data ...)")


FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def _decode_lines(path: Path) -> list[str]:
    """Lines of a text file under the decode policy: strict UTF-8 (the error names the line), a
    leading BOM dropped, CRLF read as LF."""
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    lines = raw.split(b"\n")
    out = []
    for n, line in enumerate(lines, start=1):
        try:
            out.append(line.removesuffix(b"\r").decode("utf-8"))
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
            _check_characters(value, f"{path} {row['__row__']}: column {col!r}")
    return rows


def _check_characters(value: str, where: str) -> None:
    """Refuse a NUL (C strings and many tokenizers stop there) and a lone surrogate (JSON allows
    ``"\\ud800"``, but it has no UTF-8 form, so hashing or writing the row would crash)."""
    nul = value.find("\x00")
    if nul >= 0:
        raise DatasetError(f"{where} contains a NUL character at position {nul}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DatasetError(f"{where} contains a lone surrogate {value[exc.start]!r} at position {exc.start} "
                           f"(not valid Unicode text; fix the \\u escape)") from None


def cap_texts(rows: list[dict[str, Any]], column: str, max_chars: int, policy: str, path: str | Path) -> int:
    """Cut ``rows[i][column]`` to ``max_chars`` characters in place; return how many were cut.

    With ``policy="error"`` a longer text is an error naming the row instead.
    """
    if policy not in LONG_TEXT_POLICIES:
        raise ValueError(f"long_texts: expected one of {LONG_TEXT_POLICIES}, got {policy!r}")
    cut = 0
    for row in rows:
        text = row[column]
        if len(text) > max_chars:
            if policy == "error":
                raise DatasetError(f"{path} {row['__row__']}: column {column!r} has {len(text)} characters, more "
                                   f"than data.max_text_chars={max_chars} (data.long_texts=error)")
            row[column] = text[:max_chars]
            cut += 1
    return cut


def _strip_trailing_punctuation(text: str) -> str:
    end = len(text)
    while end and (unicodedata.category(text[end - 1]).startswith("P") or text[end - 1].isspace()):
        end -= 1
    return text[:end]


def normalize_text(text: str) -> str:
    """The key near-duplicates share: NFKC, casefolded, whitespace collapsed, trailing punctuation
    stripped. A text of punctuation only keeps it (never an empty key)."""
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return _strip_trailing_punctuation(folded) or folded


def assign_split(text: str, salt: str, validation_fraction: float, test_fraction: float) -> str:
    """Deterministic split of one row from a hash of its normalised text: stable under appends and
    reorders, and the same for near-duplicates (so they cannot straddle train and test)."""
    digest = hashlib.sha256(f"{salt}\0{normalize_text(text)}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + validation_fraction:
        return "validation"
    return "train"


def overlap_report(texts: list[str], splits: list[str]) -> dict[str, int]:
    """Duplicates across and within splits, exact and after normalize_text.

    ``*_across_splits``: texts (distinct keys) found in more than one split, i.e. train/eval
    leakage (0 for a snapshot split here); ``*_duplicates_within_splits``: rows repeating an
    earlier row's text in the same split.
    """
    out = {}
    for kind, key in (("exact", lambda t: t), ("normalised", normalize_text)):
        seen: dict[str, set[str]] = defaultdict(set)
        repeats = 0
        for text, split in zip(texts, splits, strict=True):
            k = key(text)
            repeats += split in seen[k]
            seen[k].add(split)
        out[f"{kind}_across_splits"] = sum(len(s) > 1 for s in seen.values())
        out[f"{kind}_duplicates_within_splits"] = repeats
    return {k: out[k] for k in ("exact_across_splits", "normalised_across_splits",
                                "exact_duplicates_within_splits", "normalised_duplicates_within_splits")}


def _conflict_examples(rows: list[dict[str, Any]], conflicts: list[list[int]], text_column: str,
                       label_column: str, shown: int = 10) -> str:
    """The first `shown` conflicting texts with their row numbers and labels, for an error message."""
    text = "; ".join(f"{rows[idx[0]][text_column][:60]!r}: "
                     + ", ".join(f"{rows[i]['__row__']} {rows[i][label_column]!r}" for i in idx)
                     for idx in conflicts[:shown])
    return text + (f"; and {len(conflicts) - shown} more" if len(conflicts) > shown else "")


def _resolve_conflicts(rows: list[dict[str, Any]], text_column: str, label_column: str, policy: str,
                       path: str | Path, max_fraction: float = 1.0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows whose normalised texts are equal but whose labels differ, handled by ``policy``. drop and
    majority resolve label noise; more conflicting rows than ``max_fraction`` of all rows is not
    noise (a shifted label column, a bad join) and is an error naming them, whatever the policy."""
    if policy not in CONFLICT_POLICIES:
        raise ValueError(f"conflicting_labels: expected one of {CONFLICT_POLICIES}, got {policy!r}")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[normalize_text(row[text_column])].append(i)
    conflicts = [idx for idx in groups.values() if len({rows[i][label_column] for i in idx}) > 1]
    report = {"policy": policy, "texts": len(conflicts), "rows_dropped": 0}
    if not conflicts:
        return rows, report
    conflicting_rows = sum(len(idx) for idx in conflicts)
    if policy != "error" and conflicting_rows > max_fraction * len(rows):
        raise DatasetError(f"{path}: {conflicting_rows} of {len(rows)} rows ({conflicting_rows / len(rows):.1%}) "
                           f"carry conflicting labels, more than data.max_conflicting_fraction={max_fraction:g}: "
                           f"that many looks like a broken label column or join, not label noise: "
                           f"{_conflict_examples(rows, conflicts, text_column, label_column)}. "
                           f"Fix the labels, or raise data.max_conflicting_fraction")
    if policy == "error":
        raise DatasetError(f"{path}: {len(conflicts)} text(s) carry conflicting labels (compared after "
                           f"normalising case, spacing and trailing punctuation): "
                           f"{_conflict_examples(rows, conflicts, text_column, label_column)}. Fix the labels, "
                           f"or set data.conflicting_labels to drop or majority")
    dropped: set[int] = set()
    for idx in conflicts:
        counts = Counter(rows[i][label_column] for i in idx).most_common()
        tie = len(counts) > 1 and counts[0][1] == counts[1][1]
        keep = None if policy == "drop" or tie else counts[0][0]
        dropped.update(i for i in idx if rows[i][label_column] != keep)
    report["rows_dropped"] = len(dropped)
    kept = [row for i, row in enumerate(rows) if i not in dropped]
    if not kept:
        raise DatasetError(f"{path}: no rows left after data.conflicting_labels={policy} dropped "
                           f"{len(dropped)} conflicting row(s)")
    log.warning("%s: %d text(s) with conflicting labels; data.conflicting_labels=%s dropped %d row(s)",
                path, len(conflicts), policy, len(dropped))
    return kept, report


def build_snapshot(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    allowed_labels: tuple[str, ...] = (),
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    salt: str = "distillops-v1",
    **policies: Any,
) -> Snapshot:
    """Read and validate a labelled dataset; return its canonical, split snapshot.

    ``policies``: ``max_text_chars``, ``long_texts``, ``conflicting_labels`` (build_snapshot_with_report).
    """
    return build_snapshot_with_report(path, text_column, label_column, allowed_labels, validation_fraction,
                                      test_fraction, salt, **policies)[0]


def snapshot_from_config(path: str | Path, data: Any) -> tuple[Snapshot, dict[str, Any]]:
    """build_snapshot_with_report with the settings of a DataConfig (config.data)."""
    return build_snapshot_with_report(
        path, data.text_column, data.label_column, data.labels, data.validation_fraction, data.test_fraction,
        data.split_salt, max_text_chars=data.max_text_chars, long_texts=data.long_texts,
        conflicting_labels=data.conflicting_labels, max_conflicting_fraction=data.max_conflicting_fraction)


def build_snapshot_with_report(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    allowed_labels: tuple[str, ...] = (),
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    salt: str = "distillops-v1",
    *,
    max_text_chars: int = MAX_TEXT_CHARS,
    long_texts: str = "truncate",
    conflicting_labels: str = "error",
    max_conflicting_fraction: float = 1.0,
) -> tuple[Snapshot, dict[str, Any]]:
    """(snapshot, report): the report says what the input policies did (texts cut, conflicting
    labels resolved) and the duplicates across and within splits (overlap_report)."""
    rows = read_table(path, columns=(text_column, label_column))
    if allowed_labels:
        allowed = set(allowed_labels)
        for row in rows:
            if row[label_column] not in allowed:
                raise DatasetError(
                    f"{path} {row['__row__']}: unknown label {row[label_column]!r}; "
                    f"expected one of {', '.join(allowed_labels)}"
                )
    longest = max(len(r[text_column]) for r in rows)
    truncated = cap_texts(rows, text_column, max_text_chars, long_texts, path)
    has_sources = _check_label_sources(rows, path)
    rows, conflicts = _resolve_conflicts(rows, text_column, label_column, conflicting_labels, path,
                                          max_conflicting_fraction)
    texts = [r[text_column] for r in rows]
    labels = [r[label_column] for r in rows]
    sources = [r[LABEL_SOURCE_COLUMN] for r in rows] if has_sources else None
    splits = [assign_split(t, salt, validation_fraction, test_fraction) for t in texts]
    if "train" not in splits or "test" not in splits:
        raise DatasetError(
            f"{path}: {len(rows)} rows are too few to split into train and test "
            f"(got {splits.count('train')} train, {splits.count('test')} test)"
        )
    if len(set(labels)) < 2:
        raise DatasetError(f"{path}: a classifier needs at least 2 labels, found only {sorted(set(labels))}")
    report = {"max_text_chars": max_text_chars, "long_texts": long_texts, "truncated_rows": truncated,
              "longest_text_chars": longest, "conflicting_labels": conflicts,
              "overlap": overlap_report(texts, splits),
              "label_sources": dict(Counter(sources or [GOLD] * len(texts)))}
    if sources is not None and all(s == GOLD for s in sources):
        sources = None
    return Snapshot(texts, labels, splits, sources), report


def _check_label_sources(rows: list[dict[str, Any]], path: str | Path) -> bool:
    """Whether the rows carry label provenance; if any row has the column, every row must say
    "gold" or "teacher" (a row without it would be guessed gold, and scored as ground truth)."""
    if not any(LABEL_SOURCE_COLUMN in row for row in rows):
        return False
    for row in rows:
        value = row.get(LABEL_SOURCE_COLUMN)
        if value not in LABEL_SOURCES:
            shown = "missing" if LABEL_SOURCE_COLUMN not in row else repr(value)
            raise DatasetError(f"{path} {row['__row__']}: column {LABEL_SOURCE_COLUMN!r} is {shown}; expected one "
                               f"of {', '.join(LABEL_SOURCES)} (the label's provenance: a ground-truth label or "
                               f"the teacher's prediction)")
    return True


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


# ---------------------------------------------------------------------------------------------
# task: generation: prompt files (a prompt column, an optional reference-response column)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptSnapshot:
    """The canonical snapshot of a prompt file: one JSONL row {"prompt", "split"} per prompt, plus
    "response" where the row carries a reference response (None otherwise)."""

    prompts: list[str]
    responses: list[str | None]
    splits: list[str]

    def __len__(self) -> int:
        return len(self.prompts)

    def indices(self, name: str) -> list[int]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return [i for i, s in enumerate(self.splits) if s == name]

    def split(self, name: str) -> tuple[list[str], list[str | None]]:
        """(prompts, responses) of one split, in snapshot order."""
        idx = self.indices(name)
        return [self.prompts[i] for i in idx], [self.responses[i] for i in idx]

    @property
    def references(self) -> int:
        return sum(r is not None for r in self.responses)


def write_prompt_snapshot(snapshot: PromptSnapshot, path: str | Path) -> None:
    """Write atomically, one canonical JSON line per prompt (sorted keys, UTF-8)."""
    with atomic_writer(path) as f:
        for p, r, s in zip(snapshot.prompts, snapshot.responses, snapshot.splits, strict=True):
            row = {"prompt": p, "split": s, **({"response": r} if r is not None else {})}
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def read_prompt_snapshot(path: str | Path) -> PromptSnapshot:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: prompt snapshot not found")
    prompts, responses, splits = [], [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            try:
                row = json.loads(line)
                prompts.append(row["prompt"])
                splits.append(row["split"])
                responses.append(row.get("response"))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                hint = " (a classification snapshot? this step runs task: generation)" if "text" in line else ""
                raise DatasetError(f"{path} line {n}: not a prompt snapshot row ({exc}){hint}") from exc
    if not prompts:
        raise DatasetError(f"{path}: prompt snapshot is empty")
    return PromptSnapshot(prompts, responses, splits)


def _response_of(row: dict[str, Any], column: str, path: str | Path) -> str | None:
    """A row's reference response: None when the column is absent, null, NaN or blank (CSV cannot
    say null); text otherwise, checked like a prompt."""
    value = row.get(column)
    if value is None or _is_nan(value):
        return None
    if not isinstance(value, str):
        raise DatasetError(f"{path} {row['__row__']}: column {column!r} must be text (a reference response) "
                           f"or empty, got {type(value).__name__} {value!r}")
    if not value.strip():
        return None
    _check_characters(value, f"{path} {row['__row__']}: column {column!r}")
    return value


def _check_responses(rows: list[dict[str, Any]], responses: list[str | None], column: str,
                     path: str | Path) -> None:
    """Every row has a response (the pairs a teacher is fine-tuned on), or one error naming the file,
    the column and the rows without one."""
    missing = [row["__row__"] for row, resp in zip(rows, responses, strict=True) if resp is None]
    if not missing:
        return
    if all(column not in row for row in rows):
        raise DatasetError(f"{path}: no column {column!r}; every row needs a response to fine-tune on "
                           f"(generation.response_column)")
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    raise DatasetError(f"{path}: {len(missing)} of {len(rows)} rows have no response in column {column!r} ({shown}); "
                       f"every row needs one to fine-tune on (drop those rows or fill them in)")


def build_prompt_snapshot(path: str | Path, generation: Any, data: Any, *,
                          require_responses: bool = False) -> tuple[PromptSnapshot, dict[str, Any]]:
    """Read and validate a prompt file (JSONL/CSV/Parquet) with the settings of a GenerationConfig
    (prompt_column, response_column) and a DataConfig (split fractions and salt, max_text_chars,
    long_texts); return its hash-split snapshot and a report like build_snapshot_with_report's.

    Every prompt must be non-empty text (errors name the file, row, column and value); a reference
    response is optional per row, unless `require_responses` (prompt/response pairs a teacher is
    fine-tuned on): then a row without one is an error naming the file, the column and the rows.
    Prompts and responses longer than data.max_text_chars are cut (or, with data.long_texts=error,
    refused). The split hashes the normalised prompt, so near-duplicate prompts share a split; a
    repeated prompt keeps every row (its responses may differ), and the report's overlap counts them."""
    prompt_col, response_col = generation.prompt_column, generation.response_column
    rows = read_table(path, columns=(prompt_col,))
    responses = [_response_of(row, response_col, path) for row in rows]
    if require_responses:
        _check_responses(rows, responses, response_col, path)
    longest = max(len(r[prompt_col]) for r in rows)
    truncated = cap_texts(rows, prompt_col, data.max_text_chars, data.long_texts, path)
    with_response = [dict(row, **{response_col: resp}) for row, resp in zip(rows, responses, strict=True)
                     if resp is not None]
    truncated_responses = cap_texts(with_response, response_col, data.max_text_chars, data.long_texts, path)
    cut = iter(r[response_col] for r in with_response)
    responses = [next(cut) if resp is not None else None for resp in responses]
    prompts = [r[prompt_col] for r in rows]
    splits = [assign_split(p, data.split_salt, data.validation_fraction, data.test_fraction) for p in prompts]
    if "train" not in splits or "test" not in splits:
        raise DatasetError(f"{path}: {len(rows)} prompts are too few to split into train and test "
                           f"(got {splits.count('train')} train, {splits.count('test')} test)")
    report = {"max_text_chars": data.max_text_chars, "long_texts": data.long_texts, "truncated_rows": truncated,
              "truncated_responses": truncated_responses, "longest_text_chars": longest,
              "references": sum(r is not None for r in responses), "overlap": overlap_report(prompts, splits)}
    return PromptSnapshot(prompts, responses, splits), report
