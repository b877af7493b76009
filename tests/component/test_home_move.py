"""A home can be moved (issue 17): `mv home home2`, then everything works from home2.

A champion is promoted in a real sqlite MLflow registry under the home, with a data version in the
home's DVC repository and remote; the home is renamed; from the new place the champion loads (with
transformers), promote verifies and registers against it, the audit log's hash chain and the
registry's mirror still verify, and the data version still pulls. Tiny models made in the test.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from pathlib import Path

import mlflow
from fakes import make_tiny_teacher

from components.common import dvc_store, registry
from components.common.config import Config
from components.common.hashing import md5_file, model_digest
from components.common.home import Home
from components.common.lineage import bound_context
from components.common.relocation import URI_COLUMNS
from components.promote import audit
from components.promote import runner as promote_step
from pipelines.cli import main

NAME = "distillops-student"


def _student(home: Path, root: Path, seed: int) -> tuple[Path, Path]:
    """A tiny student with lineage pointing at a real MLflow run, and the gate report bound to it."""
    client = registry.connect(Home.resolve(home))
    student = make_tiny_teacher(root / f"student-{seed}", layers=1, hidden=16, seed=seed)
    run = client.create_run(client.get_experiment_by_name(registry.EXPERIMENT).experiment_id, run_name=f"s{seed}")
    client.log_text(run.info.run_id, "trained", "notes/train.txt")  # a run artifact under the home
    client.set_terminated(run.info.run_id)
    (student / "distillops.json").write_text(json.dumps({
        "data_version": "data1", "teacher_version": "teacher/v1+sha256:abc", "teacher_ref": "models:/t@champion",
        "config_hash": "cfg1", "mlflow_run_id": run.info.run_id}))
    champion = registry.get_aliases(client, NAME).get("champion", "none")
    report = {"passed": True, "reasons": [],
              "checks": [{"name": "accuracy_retention", "passed": True, "value": 0.99, "threshold": 0.97}],
              "models": {"student": {"accuracy": 0.9}},
              "context": {"champion_version": champion, "report_location": "runs:/x/gate/report.html",
                          "teacher_cache_key": "sha256:feed", **bound_context(student)}}
    gate = root / f"gate-{seed}.json"
    gate.write_text(json.dumps(report))
    return student, gate


def _uris(db: Path) -> list[str]:
    with sqlite3.connect(db) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return [v for t, c in URI_COLUMNS if t in tables for (v,) in con.execute(f"SELECT {c} FROM {t}") if v]


def test_a_moved_home_serves_its_champion_promotes_and_verifies(tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DISTILLOPS_DVC_REMOTE", raising=False)
    old = tmp_path / "home"
    h = Home.resolve(old)
    first, gate1 = _student(old, tmp_path, 1)
    assert promote_step.run(str(old), str(first), str(gate1), Config())["action"] == "register"
    snap = tmp_path / "snap.jsonl"
    snap.write_text('{"label": "x", "split": "train", "text": "hello"}\n')
    version = dvc_store.add_and_push(h.data_repo, h.dvc_remote, snap)
    log_before = audit.audit_path(h, NAME).read_bytes()
    assert any(u.startswith(old.as_uri() + "/") for u in _uris(old / "mlflow.db"))

    new = tmp_path / "home2"
    old.rename(new)
    # as a new process sees it (mlflow.set_tracking_uri exported the old home's store to the environment)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    h2 = Home.resolve(new)
    with caplog.at_level(logging.WARNING, logger="components.common.relocation"):
        client = registry.connect(h2)
    moved = [r.getMessage() for r in caplog.records if "home moved" in r.getMessage()]
    assert len(moved) == 1 and str(new) in moved[0], moved
    uris = _uris(new / "mlflow.db")
    assert uris and not [u for u in uris if str(old) + "/" in u or u.endswith(str(old))]
    assert all(u.startswith(new.as_uri() + "/") for u in uris if u.startswith("file://"))
    caplog.clear()
    registry.connect(h2)  # the second open finds nothing to do
    assert not [r for r in caplog.records if "home moved" in r.getMessage()]

    # The champion loads from the new place, as a user would load it (transformers alone).
    path = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion"))
    assert path.is_relative_to(new) or str(old) not in str(path)
    from transformers import AutoModelForSequenceClassification

    AutoModelForSequenceClassification.from_pretrained(path / "model")
    local, mv = registry.download_model(client, h2, registry.ModelRef.parse(f"models:/{NAME}@champion"))
    assert str(mv.version) == "1" and local.is_relative_to(new) and (local / "config.json").is_file()
    assert mv.tags["model_digest"] == model_digest(first)
    promote_step._check_registered(h2, NAME, "1", first)  # promote's own check of a registered artifact
    run_id = json.loads((first / "distillops.json").read_text())["mlflow_run_id"]
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes/train.txt") == "trained"

    # Promote at the new place: the same student again (found by digest, verified), then a new one.
    assert promote_step.run(str(new), str(first), str(gate1), Config())["action"] == "noop"
    second, gate2 = _student(new, tmp_path, 2)
    result = promote_step.run(str(new), str(second), str(gate2), Config())
    assert (result["action"], result["version"]) == ("register", "2")
    assert registry.get_aliases(client, NAME) == {"champion": "2", "previous": "1"}
    assert client.get_model_version(NAME, "2").source.startswith(new.as_uri())

    # The audit history: the entries written before the move are unchanged and the chain verifies.
    assert audit.audit_path(h2, NAME).read_bytes().startswith(log_before)
    assert audit.verify(client, h2, NAME) == []
    capsys.readouterr()
    assert main(["audit", "verify", "--home", str(new)]) == 0, capsys.readouterr().err

    # The data version pulls from the moved remote.
    shutil.rmtree(h2.data_repo / ".dvc" / "cache")
    (h2.data_repo / "versions" / version / "dataset.jsonl").unlink()
    out = dvc_store.materialize(h2.data_repo, h2.dvc_remote, version, tmp_path / "back.jsonl")
    assert md5_file(out) == version
