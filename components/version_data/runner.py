"""Side effects of version_data: write the snapshot, version it with DVC (add + push)."""

from __future__ import annotations

import logging
from pathlib import Path

from components.common import dvc_store
from components.common.config import Config
from components.common.dataset import build_snapshot, write_snapshot
from components.common.home import Home
from components.common.io import atomic_copy
from components.common.steplog import record_step
from components.version_data.core import split_counts

log = logging.getLogger(__name__)


def run(home: str, data_path: str, cfg: Config, snapshot_out: str) -> dict:
    """Validate `data_path`, write its snapshot to `snapshot_out`, DVC-version it. Returns its summary."""
    h = Home.resolve(home).ensure()
    cfg = cfg.data
    with record_step(h, "version_data") as counters:
        snapshot = build_snapshot(data_path, cfg.text_column, cfg.label_column, cfg.labels,
                                  cfg.validation_fraction, cfg.test_fraction, cfg.split_salt)
        staging = h.root / "staging" / f"{Path(snapshot_out).name}.{id(snapshot)}.jsonl"
        write_snapshot(snapshot, staging)
        try:
            data_version = dvc_store.add_and_push(h.data_repo, h.dvc_remote, staging)
            atomic_copy(staging, snapshot_out)
        finally:
            staging.unlink(missing_ok=True)
        counts = split_counts(snapshot)
        counters.update(data_version=data_version, rows=len(snapshot), **counts)
    log.info("data_version %s: %d rows (%s), labels %s", data_version, len(snapshot), counts, snapshot.label_names)
    return {"data_version": data_version, "rows": len(snapshot), "splits": counts,
            "labels": snapshot.label_names, "source": str(data_path), "step_report": counters}
