"""The gate's trade-off plot shows the champions so far (issue 17): earlier champions, read from the
promotion ledger (applied entries only), are measured again on this run's test split and reported
beside the student; the page lists them."""

from __future__ import annotations

import json

from fakes import make_rows, make_tiny_teacher, write_jsonl

from components.benchmark_gate import runner as gate_step
from components.benchmark_gate.core import past_champion_versions
from components.cache_teacher_outputs import runner as cache_step
from components.common import registry
from components.common.config import Config, config_from_dict, config_hash
from components.common.home import Home
from components.common.lineage import bound_context
from components.promote import runner as promote_step
from components.train_student import runner as train_step
from components.version_data import runner as version_step

GATE = {"min_speedup": 0.0, "min_accuracy_retention": 0.0, "max_champion_regression": 1.0, "latency_samples": 2,
        "throughput_batches": 1, "robustness_perturbations": [], "quantized_teacher": False}


def _champion(home, tmp_path, seed: int, expected: str) -> str:
    """Promote a tiny student (weights distinct per seed) through the real promote step."""
    client = registry.connect(Home.resolve(home))
    student = make_tiny_teacher(tmp_path / f"earlier-{seed}", layers=1, hidden=16, seed=seed)
    run = client.create_run(client.get_experiment_by_name(registry.EXPERIMENT).experiment_id, run_name="fake")
    client.set_terminated(run.info.run_id)
    (student / "distillops.json").write_text(json.dumps({
        "data_version": "d", "teacher_version": "t/v1+sha256:abc", "teacher_ref": "models:/t@champion",
        "config_hash": "c", "mlflow_run_id": run.info.run_id}))
    gate = tmp_path / f"gate-{seed}.json"
    gate.write_text(json.dumps({
        "passed": True, "reasons": [], "models": {"student": {"accuracy": 0.9}},
        "checks": [{"name": "accuracy_retention", "passed": True, "value": 0.99, "threshold": 0.97}],
        "context": {"champion_version": expected, "report_location": "runs:/x/gate/report.html",
                    "teacher_cache_key": "sha256:feed", **bound_context(student)}}))
    return promote_step.run(str(home), str(student), str(gate), Config())["version"]


def test_past_champion_versions_counts_applied_entries_only():
    def entry(seq, action, version, status):
        return (seq, {"action": action, "version": version}, {"outcome": json.dumps({"status": status})})

    ledger = [entry(1, "promote", "1", "applied"), entry(2, "promote", "2", "rejected"),
              entry(3, "refuse", None, "applied"), entry(4, "promote", "3", "applied"),
              entry(5, "rollback", "1", "applied"), entry(6, "promote", "4", "applied"),
              (7, {"action": "promote", "version": "5"}, {})]  # not yet synced: no outcome
    assert past_champion_versions(ledger, "4", 2) == ["3", "1"]
    assert past_champion_versions(ledger, "4", 5) == ["3", "1"]
    assert past_champion_versions(ledger, "4", 0) == []
    assert past_champion_versions([], None, 2) == []


def test_the_gate_measures_earlier_champions_and_draws_them(home, tmp_path, tiny_teacher):
    cfg = config_from_dict({"student": {"shape": "manual", "layers": [0, 1]}, "distill": {"epochs": 1},
                            "gate": {**GATE, "past_champions": 2}})
    snap = tmp_path / "s.jsonl"
    v = version_step.run(str(home), str(write_jsonl(make_rows(60), tmp_path / "d.jsonl")), cfg, str(snap))
    outputs = tmp_path / "t.safetensors"
    cache_step.run(str(home), str(snap), str(tiny_teacher), cfg, str(outputs))
    student = tmp_path / "student"
    train_step.run(str(home), str(snap), str(outputs), str(tiny_teacher), cfg, v["data_version"], str(student),
                   config_hash(cfg))
    assert [_champion(home, tmp_path, s, e) for s, e in ((1, "none"), (2, "1"), (3, "2"))] == ["1", "2", "3"]

    gate_step.run(str(home), str(snap), str(outputs), str(student), str(tiny_teacher), cfg,
                  str(tmp_path / "g.json"), str(tmp_path / "g.md"), str(tmp_path / "g.html"))
    report = json.loads((tmp_path / "g.json").read_text())
    assert report["context"]["champion_version"] == "3"
    past = report["past_champions"]
    assert [p["version"] for p in past] == ["1", "2"]
    for p in past:
        assert 0.0 <= p["accuracy"] <= 1.0 and p["latency_p50_ms"] > 0 and p["parameters"] > 0 and p["size_bytes"] > 0
    page = (tmp_path / "g.html").read_text()
    assert "Earlier champions, measured again on this run" in page and "<td>champion v1</td>" in page

    cfg_off = config_from_dict({**json.loads(json.dumps({"student": {"shape": "manual", "layers": [0, 1]}})),
                                "distill": {"epochs": 1}, "gate": {**GATE, "past_champions": 0}})
    gate_step.run(str(home), str(snap), str(outputs), str(student), str(tiny_teacher), cfg_off,
                  str(tmp_path / "o.json"), str(tmp_path / "o.md"), str(tmp_path / "o.html"))
    assert json.loads((tmp_path / "o.json").read_text())["past_champions"] == []
