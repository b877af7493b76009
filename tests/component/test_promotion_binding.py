"""A gate report promotes only the student it measured (issue 13, defect 1; RELIABILITY.md item 20).

The gate binds its verdict to the student's model digest (weights, config, tokenizer) and lineage
(data version, teacher version, config hash), and signs it when a key is configured; promote
recomputes the digest of what it registers and refuses anything else, leaving nothing behind.
Runs against the home's sqlite MLflow registry, with tiny fake students.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from fakes import make_tiny_teacher

from components.common import registry, signing
from components.common.config import Config
from components.common.hashing import model_digest, sha256_file
from components.common.home import Home
from components.common.lineage import bound_context
from components.promote import audit
from components.promote import runner as promote_step
from pipelines.cli import main

NAME = "distillops-student"
KEY = "k" * 32


def _student(home: Path, root: Path, seed: int) -> Path:
    """A tiny student (weights distinct per seed) with lineage that points at a real MLflow run."""
    client = registry.connect(Home.resolve(home))
    student = make_tiny_teacher(root / f"student-{seed}", layers=1, hidden=16, seed=seed)
    run = client.create_run(client.get_experiment_by_name(registry.EXPERIMENT).experiment_id,
                            run_name=f"train_student fake {seed}")
    client.set_terminated(run.info.run_id)
    (student / "distillops.json").write_text(json.dumps({
        "data_version": "data1", "teacher_version": "teacher/v1+sha256:abc", "teacher_ref": "models:/t@champion",
        "config_hash": "cfg1", "mlflow_run_id": run.info.run_id}))
    return student


def _report(path: Path, context: dict, passed: bool = True, key: str | None = None) -> Path:
    report = {"passed": passed, "reasons": [] if passed else ["student accuracy too low"],
              "checks": [{"name": "accuracy_retention", "passed": passed, "value": 0.99, "threshold": 0.97}],
              "models": {"student": {"accuracy": 0.9}},
              "context": {"champion_version": "none", "report_location": "runs:/x/gate/report.html",
                          "teacher_cache_key": "sha256:feed", **context}}
    if key is not None:
        report = signing.sign_report(report, key.encode())
    path.write_text(json.dumps(report, indent=2))
    return path


def _gated(student: Path, path: Path, key: str | None = None, **context) -> Path:
    """The report the gate writes for `student` (bound; signed with `key`)."""
    return _report(path, {**bound_context(student), **context}, key=key)


def _nothing_registered() -> None:
    client = mlflow.MlflowClient()
    assert client.search_model_versions(f"name = '{NAME}'") == []
    assert registry.get_aliases(client, NAME) == {}
    assert registry.read_ledger(client, NAME) == []


def _promote(home, student, gate) -> dict:
    return promote_step.run(str(home), str(student), str(gate), Config())


def test_a_hand_written_gate_report_promotes_nothing(home, tmp_path, capsys):
    student = _student(home, tmp_path, 1)
    forged = _report(tmp_path / "forged.json", {"data_version": "data1", "teacher_version": "teacher/v1+sha256:abc",
                                                "config_hash": "cfg1"})
    code = main(["promote", "--home", str(home), "--student", str(student), "--gate-report", str(forged)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert "model_digest" in err and model_digest(student) in err and "none" in err
    _nothing_registered()
    assert audit.show(Home.resolve(home), NAME) == []
    assert not list(home.glob("**/*.partial"))  # no half-written copy of the student is left


def test_a_real_report_paired_with_another_student_is_refused(home, tmp_path):
    measured, other = _student(home, tmp_path, 1), _student(home, tmp_path, 2)
    gate = _gated(measured, tmp_path / "gate.json")
    with pytest.raises(promote_step.GateReportRejected) as refused:
        _promote(home, other, gate)
    assert model_digest(measured) in str(refused.value) and model_digest(other) in str(refused.value)
    _nothing_registered()


@pytest.mark.parametrize("field", ["data_version", "teacher_version", "config_hash"])
def test_a_report_for_other_lineage_is_refused(home, tmp_path, field):
    student = _student(home, tmp_path, 1)
    gate = _gated(student, tmp_path / "gate.json", **{field: "something-else"})
    with pytest.raises(promote_step.GateReportRejected, match=rf"{field}: the gate report says 'something-else'"):
        _promote(home, student, gate)
    _nothing_registered()


def test_record_refusal_refuses_a_report_of_another_student(home, tmp_path):
    measured, other = _student(home, tmp_path, 1), _student(home, tmp_path, 2)
    gate = _report(tmp_path / "gate.json", bound_context(measured), passed=False)
    with pytest.raises(promote_step.GateReportRejected, match="model_digest"):
        promote_step.record_gate_refusal(str(home), str(other), str(gate), Config())
    _nothing_registered()
    # The student the gate measured: the refusal is recorded.
    result = promote_step.record_gate_refusal(str(home), str(measured), str(gate), Config())
    assert result["action"] == "refused"
    assert audit.show(Home.resolve(home), NAME)[-1]["record"]["lineage"]["model_digest"] == model_digest(measured)


def test_with_a_key_only_a_signed_report_promotes(home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(signing.KEY_ENV, KEY)
    student = _student(home, tmp_path, 1)
    unsigned = _gated(student, tmp_path / "unsigned.json")
    with pytest.raises(promote_step.GateReportRejected, match="not signed"):
        _promote(home, student, unsigned)
    wrong = _gated(student, tmp_path / "wrong.json", key="w" * 32)
    with pytest.raises(promote_step.GateReportRejected, match="signature does not match"):
        _promote(home, student, wrong)
    # A signed report whose verdict was edited afterwards.
    edited = json.loads(_gated(student, tmp_path / "edited.json", key=KEY).read_text())
    edited["context"]["champion_version"] = "7"
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    code = main(["promote", "--home", str(home), "--student", str(student), "--gate-report",
                 str(tmp_path / "edited.json")])
    err = capsys.readouterr().err
    assert code == 2 and "signature does not match" in err and "Traceback" not in err
    _nothing_registered()

    signed = _gated(student, tmp_path / "gate.json", key=KEY)
    gate = json.loads(signed.read_text())
    result = _promote(home, student, signed)
    assert (result["action"], result["version"]) == ("register", "1")
    client = mlflow.MlflowClient()
    assert registry.get_aliases(client, NAME) == {"champion": "1"}
    assert client.get_model_version(NAME, "1").tags["model_digest"] == model_digest(student)
    entry = audit.show(Home.resolve(home), NAME)[-1]
    assert entry["record"]["lineage"]["model_digest"] == model_digest(student)
    # the gate's numbers are part of the history itself (item 22), not only of the version's tags
    metrics = json.loads(entry["record"]["lineage"]["gate_metrics"])
    assert metrics["student_accuracy"] == round(gate["models"]["student"]["accuracy"], 4)
    assert {c["name"] for c in gate["checks"]} <= set(metrics)


def _artifact_weights(home: Path, student: Path) -> Path:
    """The registered copy of `student`'s weights in the home's MLflow artifact store."""
    want = sha256_file(student / "model.safetensors")
    found = [p for p in Home.resolve(home).mlflow_artifacts.rglob("model.safetensors") if sha256_file(p) == want]
    assert found, "the registered weights are not under the home's artifact store"
    return found[0]


def test_a_registered_version_whose_artifact_changed_is_not_made_champion(home, tmp_path):
    """RELIABILITY.md item 20: an artifact that is missing or has a sha mismatch is refused before
    the alias moves."""
    first, second = _student(home, tmp_path, 1), _student(home, tmp_path, 2)
    assert _promote(home, first, _gated(first, tmp_path / "g1.json"))["version"] == "1"
    assert _promote(home, second, _gated(second, tmp_path / "g2.json", champion_version="1"))["version"] == "2"
    client = mlflow.MlflowClient()
    entries = len(registry.read_ledger(client, NAME))
    weights = _artifact_weights(home, first)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    again = _gated(first, tmp_path / "g3.json", champion_version="2")
    with pytest.raises(promote_step.PromotionRefused, match="version 1.*does not match"):
        _promote(home, first, again)
    weights.unlink()
    with pytest.raises(promote_step.PromotionRefused, match="version 1"):
        _promote(home, first, again)
    assert registry.get_aliases(client, NAME) == {"champion": "2", "previous": "1"}
    assert len(registry.read_ledger(client, NAME)) == entries
