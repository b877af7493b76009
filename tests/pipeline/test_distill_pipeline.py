"""The real pipeline, compiled and run end to end with kfp.local, against a real sqlite MLflow
registry, a DVC local remote and real Evidently reports; tiny models made in the test."""

import json
from pathlib import Path

import mlflow
import pytest
import yaml
from fakes import make_rows, write_jsonl

from components.common import signing
from components.common.config import config_from_dict
from components.common.home import Home
from pipelines.cli import main
from pipelines.compile import compile_all
from pipelines.local import run_distill, run_monitor

pytestmark = pytest.mark.slow

OVERRIDES = {
    # The default shape: budget, without the speed budget (tiny models' speed-ups are noise): the
    # most capable candidate within 0.9 of the teacher's parameters.
    "student": {"max_parameter_fraction": 0.9, "min_speedup": 0.0},
    "distill": {"epochs": 2, "max_length": 32},
    # a rate and length at which the tiny random BERT beats the majority label (else it is not registered)
    "teacher": {"epochs": 6, "max_length": 32, "train_batch_size": 8, "learning_rates": [3e-3],
                "early_stopping_patience": 0},
    # Tiny models run in microseconds: their speed-up is noise, so this test does not gate on it.
    "gate": {"min_speedup": 0.0, "min_accuracy_retention": 0.5, "latency_samples": 4, "throughput_batches": 1},
}
# The runs sign: the gate signs its report, promote accepts it only signed (docs/promotion.md).
SIGNING_KEY = "pipeline-test-signing-key-0123456789"


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_teacher):
    root = tmp_path_factory.mktemp("pipeline")
    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.setenv(signing.KEY_ENV, SIGNING_KEY)
    home = Home.resolve(root / "home")
    rows = make_rows(150)
    data = write_jsonl(rows, root / "data.jsonl")
    config = root / "params.yaml"
    config.write_text(yaml.safe_dump(OVERRIDES))
    # The teacher command: fine-tune the tiny base and register it as models:/distillops-teacher@champion.
    assert main(["teacher", "--home", str(home.root), "--data", str(data), "--base", str(tiny_teacher),
                 "--config", str(config)]) == 0
    cfg = config_from_dict(OVERRIDES)
    first = run_distill(home, cfg, str(data))
    second = run_distill(home, cfg, str(data))
    yield {"home": home, "cfg": cfg, "data": data, "rows": rows, "root": root, "first": first, "second": second}
    mp.undo()


def test_compiled_ir_has_every_step_and_the_condition(tmp_path):
    distill, drift = compile_all(tmp_path)
    # Two YAML documents: the pipeline spec, then the Kubernetes platform spec (pipelines/platform.py).
    spec = next(yaml.safe_load_all(distill.read_text()))
    tasks = spec["root"]["dag"]["tasks"]
    # the teacher fan-out (plan, for-loop-1 of workers, the merge) comes first, so the gate's branches are group 2
    assert {"version-data", "plan-teacher-shards", "for-loop-1", "cache-teacher-outputs", "train-student",
            "benchmark-gate", "condition-branches-2"} <= set(tasks)
    # dsl.If(passed): promote; dsl.Else: record_refusal; the DAG's `promotion` output is whichever ran (dsl.OneOf)
    branches = spec["components"]["comp-condition-branches-2"]["dag"]["tasks"]
    assert [spec["components"][f"comp-{b}"]["dag"]["tasks"].keys() for b in sorted(branches)] == [
        {"promote": None}.keys(), {"record-refusal": None}.keys()]
    assert "promotion" in spec["root"]["dag"]["outputs"]["parameters"]
    for executor in spec["deploymentSpec"]["executors"].values():
        assert executor["container"]["image"].startswith("ghcr.io/distillops/")
    assert "monitor-drift" in next(yaml.safe_load_all(drift.read_text()))["root"]["dag"]["tasks"]


def test_first_run_promotes_with_lineage(world):
    first = world["first"]
    assert first["gate"]["passed"], first["gate"]["reasons"]
    assert first["promotion"] == {"action": "register", "version": "1"}
    assert first["teacher_forward_passes"] == 150
    assert first["executed_steps"] == ["version_data", "cache_teacher_outputs", "train_student", "benchmark_gate",
                                       "promote"]
    mlflow.set_tracking_uri(world["home"].tracking_uri)
    mv = mlflow.MlflowClient().get_model_version_by_alias("distillops-student", "champion")
    assert str(mv.version) == "1"
    assert mv.tags["data_version"] == first["data_version"]
    assert mv.tags["teacher_version"] == first["teacher_version"]
    assert mv.tags["teacher_version"].startswith("distillops-teacher/v1+sha256:")
    assert mv.tags["config_hash"] == first["config_hash"]
    assert mv.tags["git_commit"] and mv.tags["model_digest"] and mv.tags["mlflow_run_id"]
    assert json.loads(mv.tags["gate_reasons"]) == []


def test_gate_report_says_every_check(world):
    md = Path(world["first"]["reports"]["gate_markdown"])
    text = md.read_text()
    assert "Benchmark gate: PASSED" in text
    for check in ("retention", "speed-up", "agreement"):
        assert check in text
    report = json.loads(md.with_suffix(".json").read_text())
    assert {c["name"] for c in report["checks"]} == {"accuracy_retention", "speedup", "agreement",
                                                     "student_speedup_over_int8_teacher"}
    assert set(report["models"]) == {"student", "teacher", "teacher_int8"}  # gate.quantized_teacher: on by default
    # shape: budget chose the student and says why: all 3 candidate layers fit 0.9 of the parameters
    assert report["context"]["student_shape"].startswith("layers [0, 2, 3], feed-forward 64, vocabulary ")
    assert "most capable candidate within 0.9" in report["context"]["student_shape"]
    # Bound to the student it measured (the registered version's digest) and signed with the key.
    mlflow.set_tracking_uri(world["home"].tracking_uri)
    mv = mlflow.MlflowClient().get_model_version("distillops-student", "1")
    assert report["context"]["model_digest"] == mv.tags["model_digest"]
    assert report["context"]["data_version"] == mv.tags["data_version"]
    assert report["signature"].startswith("hmac-sha256:")
    assert signing.verify_report(report, SIGNING_KEY.encode()) == []
    # Latency spread, compression and the student-vs-teacher disagreement matrix (issue 17)
    student = report["models"]["student"]
    assert student["latency_p50_ms"] <= student["latency_p90_ms"] <= student["latency_p99_ms"]
    assert 0 < report["compression"]["parameter_ratio"] <= 0.9
    vs_teacher = report["confusion_matrix"]["student_vs_teacher"]
    assert sum(map(sum, vs_teacher)) == report["context"]["test_rows"]
    # ... also as KFP artifacts: ClassificationMetrics with a file at the URI (kfp.local's cache needs it)
    root = world["home"].pipeline_root
    for name, matrix in (("gate_confusion", report["confusion_matrix"]["student"]), ("gate_disagreement", vs_teacher)):
        files = sorted(root.glob(f"*/benchmark-gate/{name}"), key=lambda f: f.stat().st_mtime)
        assert files, name
        logged = json.loads(files[0].read_text())["confusionMatrix"]
        assert [r["row"] for r in logged["rows"]] == matrix, name
    page = Path(report["context"]["report_location"]).name == "report.html"
    html_pages = list(world["home"].reports.glob("gate-*.html"))
    assert page and html_pages and all('<span class="verdict pass">PASS</span>' in p.read_text() for p in html_pages)


def test_second_run_with_nothing_changed_recomputes_nothing(world):
    second = world["second"]
    assert second["teacher_forward_passes"] == 0
    assert second["teacher_timing_passes"] == 0
    assert second["executed_steps"] == ["promote"]  # promote never caches; it found nothing to do
    # read from the tasks' outputs: the cached steps return the reports of the run that computed them
    assert second["cached_steps"] == ["version_data", "cache_teacher_outputs", "train_student", "benchmark_gate"]
    assert second["promotion"] == {"action": "noop", "version": "1"}
    assert second["data_version"] == world["first"]["data_version"]
    versions = mlflow.MlflowClient().search_model_versions("name = 'distillops-student'")
    assert len(versions) == 1


def test_cache_stats_count_the_fully_cached_rerun_as_hits(world, capsys):
    """The rerun's teacher step came from KFP's cache, so it never ran: the log records the reuse,
    and `cache stats` says every row of it came without the teacher (it used to say 0.0)."""
    assert main(["cache", "stats", "--home", str(world["home"].root)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["runs"], stats["runs_served_by_kfp_cache"]) == (2, 1)
    assert stats["last_run"]["served_by"] == "kfp cache" and stats["last_run"]["hit_rate"] == 1.0
    assert stats["last_run"]["teacher_forward_passes"] == 0 and stats["hit_rate"] >= 0.5


def test_appended_rows_reach_the_teacher_alone_and_a_strict_gate_refuses(world):
    data = write_jsonl(world["rows"] + make_rows(12, seed=99), world["root"] / "data2.jsonl")
    strict = config_from_dict({**OVERRIDES, "gate": {**OVERRIDES["gate"], "min_accuracy_retention": 2.0}})
    third = run_distill(world["home"], strict, str(data))
    assert third["data_version"] != world["first"]["data_version"]
    assert third["teacher_forward_passes"] == 12
    assert "train_student" in third["executed_steps"]
    assert not third["gate"]["passed"]
    assert any("retention" in r and "required >= 2" in r for r in third["gate"]["reasons"])
    assert "promote" not in third["executed_steps"]
    # The refusal is recorded by the dsl.Else branch (record_refusal), not from inside the gate.
    assert third["executed_steps"][-1] == "record_refusal"
    assert third["promotion"]["action"] == "skipped (gate failed)"
    from components.promote import audit

    last = audit.show(world["home"], "distillops-student")[-1]["record"]
    assert last["action"] == "refuse" and any("retention" in r for r in last["reasons"])
    assert last["lineage"]["data_version"] == third["data_version"]
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("distillops-student", "champion").version) == "1"
    report = json.loads(Path(third["reports"]["gate_markdown"]).with_suffix(".json").read_text())
    assert "champion" in report["models"]  # compared against the serving champion too


def test_drift_monitor_reports_and_detects_a_shift(world):
    same = write_jsonl(make_rows(150, seed=3), world["root"] / "prod_same.jsonl")
    verdict = run_monitor(world["home"], world["cfg"], str(same))
    assert verdict["drifted"] is False, verdict["reasons"]
    assert Path(verdict["report_html"]).read_text().lstrip().lower().startswith("<")
    shifted_rows = [{"text": f"ORDER {i * 7919} REF {i * 104729} CODE {i % 97} " * 6} for i in range(150)]
    shifted = write_jsonl(shifted_rows, world["root"] / "prod_shift.jsonl")
    verdict = run_monitor(world["home"], world["cfg"], str(shifted))
    assert verdict["drifted"] is True
    assert verdict["reasons"] and verdict["model"] == "distillops-student/v1"
    assert json.loads(Path(verdict["verdict_json"]).read_text())["drifted"] is True
    # Every signal on the page, and every run in the local Evidently workspace (drift over time)
    page = Path(verdict["report_html"]).read_text()
    assert 'id="distillops-signals"' in page and '<span class="verdict drift">DRIFT</span>' in page
    assert "teacher-student disagreement" in page and "embeddings (domain classifier)" in page
    ws = verdict["evidently_workspace"]
    assert ws["path"] == str(world["home"].evidently) and ws["project"] == "distillops-student"
    from evidently.ui.workspace import Workspace

    assert len(Workspace(ws["path"]).list_runs(ws["project_id"])) == 4  # 2 runs x (descriptors, embeddings)
