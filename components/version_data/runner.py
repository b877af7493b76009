"""Side effects of version_data: write the snapshot, version it with DVC (add + push).

task: classification reads a labelled text file; task: generation a prompt file (generation.prompt_column,
optional generation.response_column) into a prompt snapshot (common/dataset.py), split and versioned alike."""

from __future__ import annotations

import logging
from pathlib import Path

from components.common import dvc_store
from components.common.config import Config
from components.common.dataset import (
    build_prompt_snapshot,
    snapshot_from_config,
    write_prompt_snapshot,
    write_snapshot,
)
from components.common.home import Home
from components.common.io import atomic_copy
from components.common.steplog import record_step
from components.version_data.core import input_summary, split_counts

log = logging.getLogger(__name__)


def _version(h: Home, snapshot, write, snapshot_out: str) -> str:
    """Write `snapshot` (with `write`) to a staging file, DVC add + push it, then copy it to `snapshot_out`."""
    staging = h.root / "staging" / f"{Path(snapshot_out).name}.{id(snapshot)}.jsonl"
    write(snapshot, staging)
    try:
        data_version = dvc_store.add_and_push(h.data_repo, h.dvc_remote, staging)
        atomic_copy(staging, snapshot_out)
    finally:
        staging.unlink(missing_ok=True)
    return data_version


def run_generation(home: str, data_path: str, cfg: Config, snapshot_out: str) -> dict:
    """task: generation: validate the prompt file `data_path`, write its prompt snapshot to `snapshot_out`,
    DVC-version it. Returns its summary (data_version, rows, splits, references, input report)."""
    h = Home.resolve(home).ensure()
    with record_step(h, "version_data") as counters:
        snapshot, report = build_prompt_snapshot(data_path, cfg.generation, cfg.data)
        data_version = _version(h, snapshot, write_prompt_snapshot, snapshot_out)
        counts = {s: snapshot.splits.count(s) for s in ("train", "validation", "test")}
        counters.update(task="generation", data_version=data_version, rows=len(snapshot), **counts,
                        references=report["references"], truncated_rows=report["truncated_rows"],
                        overlap_across_splits=report["overlap"]["normalised_across_splits"])
    log.info("data_version %s: %d prompts (%s), %d with a reference response", data_version, len(snapshot), counts,
             report["references"])
    return {"task": "generation", "data_version": data_version, "rows": len(snapshot), "splits": counts,
            "references": report["references"], "source": str(data_path), "input": report, "step_report": counters}


def run(home: str, data_path: str, cfg: Config, snapshot_out: str) -> dict:
    """Validate `data_path`, write its snapshot to `snapshot_out`, DVC-version it. Returns its summary."""
    if cfg.task == "generation":
        return run_generation(home, data_path, cfg, snapshot_out)
    h = Home.resolve(home).ensure()
    cfg = cfg.data
    with record_step(h, "version_data") as counters:
        snapshot, report = snapshot_from_config(data_path, cfg)
        data_version = _version(h, snapshot, write_snapshot, snapshot_out)
        counts = split_counts(snapshot)
        counters.update(data_version=data_version, rows=len(snapshot), **counts,
                        truncated_rows=report["truncated_rows"],
                        conflicting_rows_dropped=report["conflicting_labels"]["rows_dropped"],
                        overlap_across_splits=report["overlap"]["normalised_across_splits"],
                        teacher_labelled_rows=report["label_sources"].get("teacher", 0))
    log.info("data_version %s: %d rows (%s), labels %s; %s", data_version, len(snapshot), counts,
             snapshot.label_names, input_summary(report))
    return {"data_version": data_version, "rows": len(snapshot), "splits": counts,
            "labels": snapshot.label_names, "source": str(data_path), "input": report, "step_report": counters}
