"""A real `mlflow server` process on loopback (sqlite backend), started and killed by the tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with a sqlite store; stop() kills it like a crash (SIGKILL)."""

    def __init__(self, root: Path, port: int | None = None, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None):
        self.root, self.port = root, port or free_port()
        self.extra_args, self.env = extra_args, env  # e.g. ("--app-name", "basic-auth") and its settings
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
               "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", "2", "--allowed-hosts", f"127.0.0.1:{self.port},localhost:{self.port}",
               *self.extra_args]
        log = open(self.root / f"server-{int(time.time() * 1000)}.log", "w")
        # A session of its own: the kill reaches the server's worker processes too.
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=None if self.env is None else {**os.environ, **self.env})
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server did not become healthy in {timeout}s; see {log.name}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def mlflow_server(home, tmp_path, monkeypatch):
    """Depends on `home`, which clears MLFLOW_TRACKING_URI: this fixture must set it after."""
    server = MlflowServer(tmp_path / "server").start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    # A dead server must fail fast, not after MLflow's default minutes of retries.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    yield server
    server.stop()


def make_promotable(root: Path, seed: int, champion_version: str = "none", passed: bool = True) -> tuple[Path, Path]:
    """A tiny student (distinct weights per seed) with its lineage file and a gate report bound to it."""
    import mlflow
    from fakes import make_tiny_teacher

    student = make_tiny_teacher(root / f"student-{seed}", layers=1, hidden=16, seed=seed)
    client = mlflow.MlflowClient()
    from components.common.registry import EXPERIMENT

    exp = client.get_experiment_by_name(EXPERIMENT)
    run = client.create_run(exp.experiment_id, run_name=f"train_student fake {seed}")
    client.set_terminated(run.info.run_id)
    (student / "distillops.json").write_text(json.dumps({
        "data_version": f"data{seed}", "teacher_version": "teacher/v1+sha256:abc", "teacher_ref": "models:/t@champion",
        "config_hash": f"cfg{seed}", "mlflow_run_id": run.info.run_id}))
    from components.common.lineage import bound_context

    gate = root / f"gate-{seed}.json"
    gate.write_text(json.dumps({
        "passed": passed, "reasons": [] if passed else ["student accuracy too low"],
        "checks": [{"name": "accuracy_retention", "passed": passed, "value": 0.99, "threshold": 0.97}],
        "models": {"student": {"accuracy": 0.9}},
        "context": {"champion_version": champion_version, "report_location": f"runs:/{run.info.run_id}/gate",
                    "teacher_cache_key": "sha256:feed", **bound_context(student)}}))
    return student, gate
