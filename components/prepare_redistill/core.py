"""Pure logic of prepare_redistill: merge the champion's data with teacher-labelled production inputs.

Rows already in the data keep their labels and those labels' provenance (``label_source``: "gold"
for a human label, "teacher" for a row an earlier redistillation added); a production text seen for
the first time is added with the teacher's predicted label, marked "teacher" (so the gate scores it
by agreement with the teacher, never as ground truth) (its soft targets come from the teacher-output cache,
as for every row, when the distillation DAG runs cache_teacher_outputs on the new version).
"""

from __future__ import annotations

from dataclasses import dataclass

from components.common.backlog import newest_unique
from components.common.dataset import GOLD, LABEL_SOURCE_COLUMN, LABEL_SOURCES, TEACHER, normalize_text


@dataclass(frozen=True)
class MergedData:
    rows: list[dict[str, str]]
    kept: int  # reference rows
    added: int  # production rows new to the data, labelled by the teacher
    already_present: int  # production rows whose text was already in the data (label kept)


def merge_rows(reference: list[tuple[str, str]], production: list[tuple[str, str]], max_added: int,
               text_column: str = "text", label_column: str = "label",
               reference_sources: list[str] | None = None) -> MergedData:
    """Reference (text, label) rows, then new production (text, teacher label) rows, deduplicated by
    text, in input order, at most `max_added` of them (deterministic: no sampling here).

    A production text counts as present when its normalised text (dataset.normalize_text) is:
    the teacher's label must not contradict a human label, or an earlier production row's, on a
    near-duplicate (version_data refuses conflicting labels).

    Every row carries ``label_source``: the reference rows' `reference_sources` (None: all gold),
    "teacher" for the production rows."""
    if max_added < 0:
        raise ValueError(f"drift.redistill_max_rows must be >= 0, got {max_added}")
    sources = [GOLD] * len(reference) if reference_sources is None else list(reference_sources)
    if len(sources) != len(reference):
        raise ValueError(f"reference_sources: {len(sources)} provenances for {len(reference)} reference rows")
    bad = sorted({s for s in sources if s not in LABEL_SOURCES})
    if bad:
        raise ValueError(f"reference_sources: unknown label source(s) {bad}; expected one of {LABEL_SOURCES}")
    seen: set[str] = set()
    keys: set[str] = set()
    rows = []
    for (text, label), source in zip(reference, sources, strict=True):
        if text not in seen:
            seen.add(text)
            keys.add(normalize_text(text))
            rows.append({text_column: text, label_column: label, LABEL_SOURCE_COLUMN: source})
    added = present = 0
    for text, label in production:
        key = normalize_text(text)
        if key in keys:
            present += 1
            continue
        if added >= max_added:
            break
        keys.add(key)
        rows.append({text_column: text, label_column: label, LABEL_SOURCE_COLUMN: TEACHER})
        added += 1
    return MergedData(rows, len(rows) - added, added, present)


def merge_prompts(reference: list[tuple[str, str | None]], production: list[str], max_added: int,
                  prompt_column: str = "prompt", response_column: str = "response") -> MergedData:
    """task generation: the reference (prompt, response or None) rows, then the production prompts new
    to them (by normalised text, as merge_rows), at most `max_added`, without a response: the
    distillation DAG's cache step has the teacher answer them (a prompt already cached costs nothing)."""
    if max_added < 0:
        raise ValueError(f"drift.redistill_max_rows must be >= 0, got {max_added}")
    keys: set[str] = set()
    rows: list[dict] = []
    for prompt, response in reference:
        if normalize_text(prompt) not in keys:
            keys.add(normalize_text(prompt))
            rows.append({prompt_column: prompt, response_column: response})
    kept, present = len(rows), 0
    for prompt in production:
        key = normalize_text(prompt)
        if key in keys:
            present += 1
        elif len(rows) - kept < max_added:
            keys.add(key)
            rows.append({prompt_column: prompt, response_column: None})
    return MergedData(rows, kept, len(rows) - kept, present)


def rows_to_label(production: list[str], backlog: list[str], max_rows: int) -> tuple[list[str], list[str]]:
    """The texts the teacher labels for a redistillation: this batch's (deduplicated, the first
    `max_rows`), after the backlog's texts it does not repeat (the newest that still fit in
    `max_rows`). Returns (the backlog texts used, every text to label, oldest first)."""
    if max_rows < 0:
        raise ValueError(f"drift.redistill_max_rows must be >= 0, got {max_rows}")
    batch = list(dict.fromkeys(production))[:max_rows]
    here = {normalize_text(t) for t in batch}
    waiting = newest_unique([t for t in backlog if normalize_text(t) not in here], max_rows - len(batch))
    return waiting, waiting + batch


def pool_rows(pooled: list[tuple[str, str]], new: list[tuple[str, str]], max_rows: int) -> list[tuple[str, str]]:
    """The production rows a redistillation trains on: those pooled by earlier redistillations from
    the same champion data (refused ones: a promoted redistillation moves the champion to a data
    version that already holds its rows) followed by this batch's, deduplicated by normalised text
    (this batch's label wins), the newest `max_rows` of them.

    Without the pool, a refused redistillation's traffic is forgotten and the next one learns from
    one batch again; with it, each attempt sees all the recent traffic the champion has not learned."""
    if max_rows < 0:
        raise ValueError(f"drift.redistill_max_rows must be >= 0, got {max_rows}")
    fresh = {normalize_text(text) for text, _ in new}
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for text, label in [*((t, y) for t, y in pooled if normalize_text(t) not in fresh), *new]:
        key = normalize_text(text)
        if key not in seen:
            seen.add(key)
            out.append((text, label))
    return out[len(out) - max_rows:] if max_rows else []
