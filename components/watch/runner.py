"""Side effects of watch: resolve today's data and teacher versions, read the champion's lineage."""

from __future__ import annotations

import tempfile
from pathlib import Path

from components.common import registry
from components.common.config import Config, config_hash
from components.common.dataset import snapshot_from_config, write_snapshot
from components.common.hashing import md5_file
from components.common.home import Home
from components.common.teachers import resolve_teacher
from components.watch.core import WatchDecision, decide


def current_data_version(data_path: str, cfg: Config) -> str:
    """The data_version version_data would record for `data_path` now (DVC's md5 of the snapshot),
    computed without touching the DVC repository."""
    snapshot, _ = snapshot_from_config(data_path, cfg.data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snapshot.jsonl"
        write_snapshot(snapshot, path)
        return md5_file(path)


def champion_lineage(home: Home, student_name: str) -> dict[str, str] | None:
    client = registry.connect(home)
    mv = registry.get_version(client, registry.ModelRef(student_name, alias="champion"))
    return None if mv is None else dict(mv.tags)


def check(home: Home, cfg: Config, data_path: str, teacher_ref: str) -> WatchDecision:
    """Whether the DAG must run again for `data_path` and `teacher_ref`, and why."""
    teacher = resolve_teacher(teacher_ref, home)  # the watch run's first use: pinned for the DAG it starts
    current = {"data_version": current_data_version(data_path, cfg), "teacher_version": teacher.version,
               "config_hash": config_hash(cfg)}
    decision = decide(current, champion_lineage(home, cfg.student.registered_name))
    decision.current["teacher_ref"] = teacher.pinned_ref
    return decision
