"""Where all state of one distillops installation lives: one home directory.

``--home`` or ``DISTILLOPS_HOME`` (default ``./.distillops``) holds the MLflow sqlite registry and
its artifacts, the DVC data repository and its remote, the teacher-output cache, the kfp.local
pipeline root and the reports. In production the same roles are played by a tracking server, an
S3 remote and object storage; ``MLFLOW_TRACKING_URI`` and ``DISTILLOPS_DVC_REMOTE`` point there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike | None = None) -> Home:
        raw = home or os.environ.get("DISTILLOPS_HOME") or ".distillops"
        return cls(Path(raw).expanduser().resolve())

    @property
    def tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or self.own_tracking_uri

    @property
    def own_tracking_uri(self) -> str:
        """The embedded registry: a sqlite store in the home (see relocation.py for a moved home)."""
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def data_repo(self) -> Path:
        return self.root / "data-repo"

    @property
    def dvc_remote(self) -> str:
        return os.environ.get("DISTILLOPS_DVC_REMOTE") or str(self.root / "dvc-remote")

    @property
    def teacher_cache(self) -> Path:
        return self.root / "teacher-cache"

    @property
    def teacher_plans(self) -> Path:
        """The fanned-out teacher step's shards: each shard's texts, one file named by its content."""
        return self.root / "teacher-plans"

    @property
    def pipeline_root(self) -> Path:
        return self.root / "pipeline-root"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def evidently(self) -> Path:
        """The local Evidently workspace: every drift run as a snapshot (``evidently ui --workspace``)."""
        return self.root / "evidently"

    @property
    def drift_history(self) -> Path:
        """One JSON line per drift-monitor run: signals, verdict, action (``monitor_drift/history.py``)."""
        return self.root / "drift" / "history.jsonl"

    @property
    def step_log(self) -> Path:
        """One JSON line per executed step: what the CLI's run summary is built from."""
        return self.root / "logs" / "steps.jsonl"

    def ensure(self) -> Home:
        for d in (self.root, self.mlflow_artifacts, self.teacher_cache, self.pipeline_root, self.reports,
                  self.step_log.parent):
            d.mkdir(parents=True, exist_ok=True)
        return self
