"""Each executed step times itself and appends one JSON line to ``<home>/logs/steps.jsonl``.

The same entry is the step's report, returned in its outputs: the run summary reads those (a step
served from the KFP cache returns its earlier report, whose ``started`` predates the run; a local
run logs that reuse too, ``record_reused``). The log keeps the history across runs (``distillops
cache stats`` reads its hit rate from it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from components.common.home import Home


@contextmanager
def record_step(home: Home, step: str) -> Iterator[dict[str, Any]]:
    """Time a step; counters put into the yielded dict are logged with it (only when it succeeds).

    When the block completes, the dict also holds ``step``, ``started`` and ``seconds``: it is the
    step's report, which the step returns in its outputs (the run summary is built from those).
    """
    counters: dict[str, Any] = {}
    started = time.time()
    t0 = time.perf_counter()
    yield counters
    entry = {"step": step, "started": started, "seconds": round(time.perf_counter() - t0, 3), **counters}
    counters.update(entry)
    _append(home, entry)


def record_reused(home: Home, report: dict[str, Any], run_started: float) -> None:
    """Log a step that KFP served from its cache in the run started at `run_started`: the report it
    reused (the run that computed it), marked ``reused_from`` with that report's start. The step did
    no work in this run; `cache stats` counts such a teacher step as every row served without the
    teacher (a fully cached rerun is a 100% hit, not a run the log never saw)."""
    _append(home, {**report, "started": run_started, "seconds": 0.0, "reused_from": report["started"]})


def _append(home: Home, entry: dict[str, Any]) -> None:
    home.step_log.parent.mkdir(parents=True, exist_ok=True)
    with open(home.step_log, "a") as f:  # one short O_APPEND write per line: safe for concurrent steps
        f.write(json.dumps(entry, sort_keys=True) + "\n")


def steps_since(home: Home, since: float) -> list[dict[str, Any]]:
    path = Path(home.step_log)
    if not path.is_file():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in entries if e["started"] >= since]
