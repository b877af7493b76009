"""The drift history: one JSON line per drift-monitor run in ``<home>/drift/history.jsonl``.

Each entry says when, which model, every signal's score, what was seen (``drifted``), what was done
(``action``, ``redistill``) and why; the drift policy reads it back (cooldown, budget, persistence)
and the drift report draws it over time. When the loop that a redistilling run started finishes,
a ``result`` line names the resulting version (``record_result``); ``read`` folds it into its run.

Writers hold ``<home>/drift/history.lock`` (``io.file_lock``) across read, decide and append, so two
concurrent monitor runs cannot both spend the last redistillation of a budget; each line is one
short append, so a reader never sees half an entry.

Usage::

    with locked(home):
        past = for_model(read(home), "distillops-student")
        ...decide...
        append(home, entry)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from components.common.home import Home
from components.common.io import file_lock


class HistoryError(ValueError):
    """A drift history line that is not a JSON object (hand-edited or damaged)."""


@contextmanager
def locked(home: Home) -> Iterator[None]:
    with file_lock(home.drift_history.with_name("history.lock")):
        yield


def _clean(value: Any) -> Any:
    # JSON has no NaN: an undefined score is written as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def append(home: Home, entry: dict[str, Any]) -> None:
    """One line, written with a single O_APPEND write (whole or not at all for a short line)."""
    path = home.drift_history
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(_clean(entry), sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def record_result(home: Home, drift_run_id: str, result: dict[str, Any]) -> None:
    """What the redistillation that the run ``drift_run_id`` started ended in (version, gate)."""
    with locked(home):
        append(home, {"kind": "result", "drift_run_id": drift_run_id, **result})


def read(home: Home) -> list[dict[str, Any]]:
    """Every monitor run, oldest first, each with the ``result`` recorded for it (if any)."""
    path = home.drift_history
    if not path.is_file():
        return []
    runs: list[dict[str, Any]] = []
    results: dict[str, dict[str, Any]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError as exc:
                raise HistoryError(f"{path} line {n}: not JSON ({exc})") from None
            if not isinstance(entry, dict):
                raise HistoryError(f"{path} line {n}: expected a JSON object, got {type(entry).__name__}")
            if entry.get("kind") == "result":
                results[str(entry.get("drift_run_id"))] = entry
            else:
                if "timestamp" not in entry:
                    raise HistoryError(f"{path} line {n}: a monitor run without 'timestamp'")
                runs.append(entry)
    for run in runs:
        if run.get("mlflow_run_id") in results:
            found = results[run["mlflow_run_id"]]
            run["result"] = {k: v for k, v in found.items() if k not in ("kind", "drift_run_id")}
    return runs


def for_model(entries: list[dict[str, Any]], model_name: str) -> list[dict[str, Any]]:
    """The runs that monitored ``model_name`` (any of its versions): cooldown and budget are per model."""
    return [e for e in entries if e.get("model_name") == model_name]
