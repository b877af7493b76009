"""The loop closes, end to end with kfp.local: a shifted production batch -> drift -> a new data
version with the production inputs labelled by the teacher -> the distillation DAG (nested in the
drift DAG) -> gate -> promotion, with lineage from the drift report to the new champion; then the
same batch again under the drift policy's defaults: the champion learned it, so it does not redistil."""

import json

import mlflow
import pytest
import yaml
from fakes import make_rows, write_jsonl

from components.common.backlog import backlog_path, read_backlog
from components.common.config import config_from_dict
from components.common.home import Home
from components.monitor_drift import history
from components.promote import audit
from pipelines.cli import main
from pipelines.local import run_distill, run_drift_loop

pytestmark = pytest.mark.slow

OVERRIDES = {
    "student": {"shape": "manual", "layers": [0, 2]},
    "distill": {"epochs": 2, "max_length": 32},
    # a rate and length at which the tiny random BERT beats the majority label (else it is not registered)
    "teacher": {"epochs": 6, "max_length": 32, "train_batch_size": 8, "learning_rates": [3e-3],
                "early_stopping_patience": 0},
    # Tiny random models: this test is about the loop's mechanics, not about quality or speed.
    "gate": {"min_speedup": 0.0, "min_accuracy_retention": 0.0, "max_champion_regression": 1.0,
             "max_champion_f1_regression": 1.0, "latency_samples": 2, "throughput_batches": 1},
    # Today's behaviour (every drifted batch redistils): this test is about the loop's mechanics; the
    # second batch below runs the drift policy's defaults.
    "drift": {"disagreement_sample": 60, "trigger_on": ["any"], "cooldown_minutes": 0, "cooldown_runs": 0,
              "max_redistills": 0, "redistill_min_rows": 0},
}


def shifted(n: int) -> list[dict]:
    # The same topics, written very differently: long, shouty, full of numbers.
    return [{"text": " ".join([r["text"].upper()] * 3) + f" 0{i} 1{i} 2{i}"} for i, r in
            enumerate(make_rows(n, seed=42))]


def test_a_shifted_batch_redistils_gates_and_promotes_with_lineage(tmp_path, tiny_teacher, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    home = Home.resolve(tmp_path / "home")
    data = write_jsonl(make_rows(120), tmp_path / "data.jsonl")
    config = tmp_path / "params.yaml"
    config.write_text(yaml.safe_dump(OVERRIDES))
    assert main(["teacher", "--home", str(home.root), "--data", str(data), "--base", str(tiny_teacher),
                 "--config", str(config)]) == 0
    cfg = config_from_dict(OVERRIDES)
    first = run_distill(home, cfg, str(data))
    assert first["promotion"]["version"] == "1"

    production = write_jsonl(shifted(80), tmp_path / "production.jsonl")
    loop = run_drift_loop(home, cfg, str(production))
    assert loop["drifted"], loop["reasons"]
    assert loop["executed_steps"] == ["monitor_drift", "prepare_redistill", "version_data", "cache_teacher_outputs",
                                      "train_student", "benchmark_gate", "promote"]
    assert loop["rows_added"] == 80
    assert loop["new_data_version"] and loop["new_data_version"] != first["data_version"]
    assert loop["gate_passed"] and loop["promotion"] == {"action": "register", "version": "2"}

    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("distillops-student", "champion")
    assert str(champion.version) == "2"
    assert str(client.get_model_version_by_alias("distillops-student", "previous").version) == "1"
    # Lineage: the new champion names the drift run and report that started it, and its data version.
    assert champion.tags["trigger_drift_run_id"] == loop["drift_run_id"]
    assert champion.tags["trigger_drift_report"] == f"runs:/{loop['drift_run_id']}/drift/report.html"
    assert champion.tags["data_version"] == loop["new_data_version"]
    assert champion.tags["pipeline_run_id"]
    drift_run = client.get_run(loop["drift_run_id"])
    assert drift_run.data.tags["drifted"] == "True"
    verdict = json.loads(open(loop["verdict_json"]).read())
    assert verdict["disagreement"]["n_production"] == 60 and verdict["embedding"]["method"]
    gate_pages = list(home.reports.glob("gate-*.html"))
    assert len(gate_pages) == 2 and all("data:image/png;base64," in p.read_text() for p in gate_pages)
    # Issue 18: the redistilled student's accuracy counts gold rows only, and it was gated on the
    # triggering batch; the first run (no trigger) has no such check.
    reports = [json.loads(p.read_text()) for p in home.reports.glob("gate-*.json")]
    triggered = [r for r in reports if "trigger_batch" in r]
    assert len(triggered) == 1 and len(reports) == 2
    redistilled, first = triggered[0], next(r for r in reports if "trigger_batch" not in r)
    checks = {c["name"]: c for c in redistilled["checks"]}
    assert checks["trigger_disagreement"]["passed"], checks["trigger_disagreement"]["message"]
    assert redistilled["trigger_batch"]["production"].endswith("production.jsonl")
    assert redistilled["trigger_batch"]["rows"] == 80 and redistilled["trigger_batch"]["champion_disagreement"] is not None
    assert redistilled["label_provenance"]["teacher_labelled_rows"] > 0 and checks["gold_test_rows"]["passed"]
    assert "trigger_disagreement" not in {c["name"] for c in first["checks"]}
    assert first["label_provenance"]["teacher_labelled_rows"] == 0
    entries = audit.show(home, "distillops-student")
    assert [e["record"]["action"] for e in entries] == ["promote", "promote"]
    assert entries[1]["record"]["lineage"]["trigger_drift_run_id"] == loop["drift_run_id"]
    assert json.loads(entries[1]["record"]["lineage"]["trigger"])["rows_added"] == 80
    assert audit.verify(client, home, "distillops-student") == []

    # The same batch again, with the policy's defaults: the new champion was redistilled on it, so the
    # moving reference (its production window) explains the input drift, and the run after a
    # redistillation is in cooldown anyway: drift may be seen, but nothing is redistilled.
    policy_cfg = tmp_path / "policy.yaml"
    policy_cfg.write_text(yaml.safe_dump({**OVERRIDES, "drift": {"disagreement_sample": 60}}))
    code = main(["monitor", "--home", str(home.root), "--production", str(production), "--config", str(policy_cfg),
                 "--redistill", "--json"])
    again = json.loads(open(sorted(home.reports.glob("drift-*.json"))[-1]).read())
    assert again["model"] == "distillops-student/v2" and not again["redistill"], again["action_reasons"]
    assert again["action"] in ("none", "skipped_cooldown") and code == (0 if again["action"] == "none" else 3)
    assert again["moving_reference"]["window_rows"] == 80, again["moving_reference"]
    # a batch a trigger asked to redistil during the cooldown waits in the backlog of the new champion's
    # data for its next redistillation; a batch nothing triggered on does not
    backlog = read_backlog(backlog_path(home.root, again["reference_data_version"]))
    if again["action"] == "skipped_cooldown":
        assert len(backlog) == again["backlog_rows"] == len({r["text"] for r in shifted(80)}) > 0
    else:
        assert backlog == [] and "backlog_rows" not in again
    assert again["moving_reference"]["input_drifted"] is False, again["moving_reference"]["reasons"]
    assert str(client.get_model_version_by_alias("distillops-student", "champion").version) == "2"
    runs = history.read(home)
    assert [(r["model_version"], r["action"], r["redistill"]) for r in runs] == [
        ("1", "redistill", True), ("2", again["action"], False)]
    assert runs[0]["result"]["version"] == "2" and runs[0]["scores"]["disagreement_production"] is not None
    page = open(again["report_html"]).read()
    assert "Drift over time (the last 2 runs of this model)" in page and page.count('class="redistill"') == 1
