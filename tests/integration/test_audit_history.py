"""The promotion history as an auditor reads it (RELIABILITY.md items 19, 21, 22), on the home's
embedded sqlite registry: a refusal leaves the aliases alone and is recorded with its reasons; a
rollback through the CLI re-points what consumers resolve and is an event in the log; every change
can be reconstructed (who, when, from -> to, data, code) from `audit show`, also for a version
deleted from the registry afterwards."""

from __future__ import annotations

import json

import mlflow
import pytest
from conftest import make_promotable

from components.common import registry
from components.common.config import Config
from components.common.home import Home
from components.promote import audit
from components.promote import runner as promote_step
from pipelines.cli import main

NAME = "distillops-student"


def _promote(home, student, gate, actor, monkeypatch):
    monkeypatch.setenv("DISTILLOPS_ACTOR", actor)
    return promote_step.run(str(home), str(student), str(gate), Config())


def _champion(client) -> str:
    return str(registry.get_version(client, registry.ModelRef.parse(f"models:/{NAME}@champion")).version)


def test_history_of_promotions_refusal_and_rollback_survives_a_deleted_version(home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DISTILLOPS_GIT_COMMIT", "c0ffee")
    h = Home.resolve(home)
    client = registry.connect(h)
    s1, g1 = make_promotable(tmp_path, 1)
    s2, g2 = make_promotable(tmp_path, 2, champion_version="1")
    assert _promote(home, s1, g1, "alice", monkeypatch)["version"] == "1"
    assert _promote(home, s2, g2, "alice", monkeypatch)["version"] == "2"

    # 19: a student the gate refused moves nothing, registers nothing, and the refusal says why.
    s3, g3 = make_promotable(tmp_path, 3, champion_version="2", passed=False)
    with pytest.raises(promote_step.PromotionRefused):
        _promote(home, s3, g3, "carol", monkeypatch)
    assert registry.get_aliases(client, NAME) == {"champion": "2", "previous": "1"}
    assert sorted(str(v.version) for v in client.search_model_versions(f"name = '{NAME}'")) == ["1", "2"]
    refusal = audit.show(h, NAME)[-1]
    assert (refusal["record"]["action"], refusal["outcome"]["status"]) == ("refuse", "recorded")
    assert set(json.loads(g3.read_text())["reasons"]) <= set(refusal["record"]["reasons"])  # every gate reason
    assert refusal["record"]["lineage"]["data_version"] == "data3"
    assert refusal["record"]["expected_champion"] == "2"

    # 21: a rollback through the CLI: consumers resolving @champion now get the previous version.
    monkeypatch.setenv("DISTILLOPS_ACTOR", "bob")
    assert main(["rollback", "--home", str(home), "--reason", "complaints from production"]) == 0
    assert _champion(client) == "1"
    assert registry.get_aliases(client, NAME) == {"champion": "1", "previous": "2"}

    # 22: delete version 2 from the registry (MLflow redacts it); its history stays readable.
    mlflow.MlflowClient().delete_model_version(NAME, "2")
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version(NAME, "2")
    capsys.readouterr()
    assert main(["audit", "show", "--home", str(home), "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    changes = [(e["record"]["actor"], e["record"]["action"], e["record"]["expected_champion"],
                e["record"]["version"], e["outcome"]["status"]) for e in entries]
    assert changes == [("alice", "promote", "none", "1", "applied"), ("alice", "promote", "1", "2", "applied"),
                       ("carol", "refuse", "2", None, "recorded"), ("bob", "rollback", "2", "1", "applied")]
    assert entries[3]["record"]["reasons"] == ["complaints from production"]
    for e in entries:
        assert e["record"]["at"].endswith("Z") and e["hash"]
    digests = {e["record"]["version"]: e["record"]["lineage"]["model_digest"] for e in entries[:2]}
    for e, seed in zip(entries[:2], (1, 2), strict=True):
        lineage = e["record"]["lineage"]
        assert lineage["data_version"] == f"data{seed}" and lineage["config_hash"] == f"cfg{seed}"
        assert lineage["git_commit"] == "c0ffee" and len(lineage["model_digest"]) == 64
        assert lineage["gate_report"].startswith("runs:/") and lineage["mlflow_run_id"]
    assert digests["1"] != digests["2"]
    # The deletion itself does not go unnoticed: the ledger still names 2 as previous.
    assert any("alias previous points to nothing" in p for p in audit.verify(client, h, NAME))
