"""Prompt datasets for ``task: generation``: prompts with optional reference responses.

Read from JSONL / CSV / Parquet like labelled data (the same located errors: file, row, column),
split by the same hash of each prompt's normalised text (``data.split_salt`` and fractions), so a
prompt's split never changes when rows are appended and near-duplicate prompts never straddle
train and test. Prompts whose normalised text repeats are kept once (the first; the report counts
the rest). A response column that is absent from the file means no references; a row may leave it
empty or null; anything but text there is an error naming the row. With ``require_responses`` (the
pairs a teacher is fine-tuned on) a row without a response is an error naming the file and rows.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from components.common.dataset import (  # the snapshot type and its files are dataset's (version_data's)
    SPLITS,
    DatasetError,
    PromptSnapshot,
    _check_characters,
    assign_split,
    cap_texts,
    normalize_text,
    overlap_report,
    read_prompt_snapshot,
    read_table,
    write_prompt_snapshot,
)


def _response(row: dict[str, Any], column: str, path: Path) -> str | None:
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not isinstance(value, str):
        raise DatasetError(f"{path} {row['__row__']}: column {column!r} must be text, got "
                           f"{type(value).__name__} {value!r}")
    if not value.strip():
        return None
    _check_characters(value, f"{path} {row['__row__']}: column {column!r}")
    return value


def _check_responses(rows: list[dict[str, Any]], responses: list[str | None], column: str, path: Path) -> None:
    missing = [r["__row__"] for r, resp in zip(rows, responses, strict=True) if resp is None]
    if not missing:
        return
    if all(column not in r for r in rows):
        raise DatasetError(f"{path}: no column {column!r}; every row needs a response to fine-tune on "
                           f"(generation.response_column)")
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    raise DatasetError(f"{path}: {len(missing)} of {len(rows)} rows have no response in column {column!r} ({shown}); "
                       f"every row needs one to fine-tune on (drop those rows or fill them in)")


def build_prompt_snapshot(path: str | Path, data: Any, prompt_column: str = "prompt",
                          response_column: str = "response",
                          require_responses: bool = False) -> tuple[PromptSnapshot, dict[str, Any]]:
    """(snapshot, report) of a prompt file with the split settings and text policies of `data`
    (a DataConfig: split_salt, validation_fraction, test_fraction, max_text_chars, long_texts).
    `require_responses`: a row without a response is an error (naming the file and its rows)."""
    path = Path(path)
    rows = read_table(path, columns=(prompt_column,))
    responses = [_response(r, response_column, path) for r in rows]
    if require_responses:
        _check_responses(rows, responses, response_column, path)
    truncated = cap_texts(rows, prompt_column, data.max_text_chars, data.long_texts, path)
    for row, resp in zip(rows, responses, strict=True):
        row[response_column] = resp
    kept = [r for r in rows if r[response_column] is not None]
    truncated += cap_texts(kept, response_column, data.max_text_chars, data.long_texts, path)
    seen: set[str] = set()
    unique = []
    for row in rows:
        key = normalize_text(row[prompt_column])
        if key not in seen:
            seen.add(key)
            unique.append(row)
    prompts = [r[prompt_column] for r in unique]
    splits = [assign_split(p, data.split_salt, data.validation_fraction, data.test_fraction) for p in prompts]
    if "train" not in splits or "test" not in splits:
        raise DatasetError(f"{path}: {len(unique)} distinct prompts are too few to split into train and test "
                           f"(got {splits.count('train')} train, {splits.count('test')} test)")
    snapshot = PromptSnapshot(prompts, [r[response_column] for r in unique], splits)
    report = {"task": "generation", "rows": len(rows), "prompts": len(unique),
              "duplicate_prompts_dropped": len(rows) - len(unique),
              "responses": sum(r is not None for r in snapshot.responses), "truncated_texts": truncated,
              "max_text_chars": data.max_text_chars, "long_texts": data.long_texts,
              "splits": {s: splits.count(s) for s in SPLITS}, "overlap": overlap_report(prompts, splits)}
    return snapshot, report


__all__ = ["PromptSnapshot", "build_prompt_snapshot", "read_prompt_snapshot", "write_prompt_snapshot"]
