"""Side effects of version_data: write the snapshot, version it with DVC (add + push)."""

from __future__ import annotations

import logging
from pathlib import Path

from components.common import dvc_store
from components.common.config import Config
from components.common.dataset import snapshot_from_config, write_snapshot
from components.common.home import Home
from components.common.io import atomic_copy
from components.common.steplog import record_step
from components.version_data.core import input_summary, split_counts

log = logging.getLogger(__name__)


def run(home: str, data_path: str, cfg: Config, snapshot_out: str) -> dict:
    """Validate `data_path`, write its snapshot to `snapshot_out`, DVC-version it. Returns its summary."""
    h = Home.resolve(home).ensure()
    cfg = cfg.data
    with record_step(h, "version_data") as counters:
        snapshot, report = snapshot_from_config(data_path, cfg)
        staging = h.root / "staging" / f"{Path(snapshot_out).name}.{id(snapshot)}.jsonl"
        write_snapshot(snapshot, staging)
        try:
            data_version = dvc_store.add_and_push(h.data_repo, h.dvc_remote, staging)
            atomic_copy(staging, snapshot_out)
        finally:
            staging.unlink(missing_ok=True)
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
