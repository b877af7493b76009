"""The run summary reads the tasks' outputs: step reports in artifact metadata and in JSON results."""

import json

from pipelines.summary import reports_in_run


def test_reports_are_read_from_the_executor_outputs_of_a_run(tmp_path):
    def task(name, out):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "executor_output.json").write_text(json.dumps(out))

    task("monitor-drift", {"artifacts": {"drift_verdict": {"artifacts": [
        {"name": "v", "uri": "u", "metadata": {"drifted": True, "step_report": {"step": "monitor_drift", "started": 1.0}}}]}},
        "parameterValues": {"Output": True}})
    task("condition-1/prepare-redistill", {"parameterValues": {
        "trigger": json.dumps({"kind": "drift", "rows_added": 3}),
        "report": json.dumps({"step": "prepare_redistill", "started": 2.0, "rows_added": 3})}})
    task("condition-1/promote", {"parameterValues": {"Output": json.dumps(
        {"action": "register", "version": "2", "step_report": {"step": "promote", "started": 3.0}})}})
    reports = reports_in_run(tmp_path)
    assert [r["step"] for r in reports] == ["monitor_drift", "prepare_redistill", "promote"]
    assert reports[1]["rows_added"] == 3


def _gate(passed=True):
    labels = {"billing": {"support": 10, "recall": 0.9, "f1": 0.947368}, "shipping": {"support": 8, "recall": 1.0, "f1": 1.0}}
    return {"passed": passed, "reasons": [] if passed else ["speed-up FAILED"],
            "checks": [{"name": "accuracy_retention", "value": 0.98}, {"name": "speedup", "value": 3.5},
                       {"name": "agreement", "value": 0.95},
                       {"name": "student_speedup_over_int8_teacher", "value": 2.1}],
            "models": {"student": {"accuracy": 0.9, "macro_f1": 0.88, "agreement": 0.95, "parameters": 250,
                                   "latency_p50_ms": 1.23456, "kl_to_teacher": 0.05, "labels": labels},
                       "teacher": {"accuracy": 0.918367, "macro_f1": 0.9, "parameters": 1000, "latency_p50_ms": 5.0}}}


def test_dvc_metrics_are_flat_numbers_with_the_verdict_as_one_or_zero():
    from pipelines.summary import dvc_metrics

    m = dvc_metrics(_gate(), "register")
    assert m["passed"] == 1 and m["champion"] == 1
    assert m["accuracy_retention"] == 0.98 and m["speedup"] == 3.5 and m["agreement"] == 0.95
    assert m["parameter_fraction"] == 0.25 and m["f1_retention"] == round(0.88 / 0.9, 6)
    assert m["speedup_over_int8_teacher"] == 2.1 and m["kl_to_teacher"] == 0.05
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in m.values())
    failed = dvc_metrics(_gate(passed=False), "refused")
    assert failed["passed"] == 0 and failed["champion"] == 0


def test_dvc_plots_and_their_files_are_written_whole(tmp_path):
    from pipelines.summary import dvc_metrics, dvc_plots, write_dvc_outputs

    history = [{"epoch": 1.0, "train_loss": 0.7, "validation_score": 0.8},
               {"epoch": 2.0, "train_loss": 0.5, "validation_score": float("nan")}]
    plots = dvc_plots(_gate(), history)
    assert plots["label_f1"][0] == {"label": "billing", "f1": 0.947368, "recall": 0.9, "support": 10}
    # a non-finite validation score is left out (JSON has no NaN; DVC would refuse the file)
    assert plots["training"] == [{"epoch": 1, "train_loss": 0.7, "validation_accuracy": 0.8},
                                 {"epoch": 2, "train_loss": 0.5}]
    summary = {"metrics": dvc_metrics(_gate(), "noop"), "plots": plots}
    written = write_dvc_outputs(summary, str(tmp_path / "metrics" / "gate.json"), str(tmp_path / "plots"))
    assert sorted(p.name for p in written) == ["gate.json", "label_f1.json", "training.json"]
    assert json.loads((tmp_path / "metrics" / "gate.json").read_text())["champion"] == 1
    assert json.loads((tmp_path / "plots" / "training.json").read_text())[1] == {"epoch": 2, "train_loss": 0.5}
    assert not list(tmp_path.rglob("*.tmp"))


def test_teacher_calls_per_worker_and_in_total_come_from_the_merge_report():
    from pipelines.summary import teacher_workers

    merge = {"step": "cache_teacher_outputs", "started": 2.0, "teacher_forward_passes": 30.0,
             "workers": [{"shard": 1.0, "shards": 2.0, "rows": 15.0, "teacher_forward_passes": 5.0, "seconds": 1.0,
                          "rows_per_s": 5.0},
                         {"shard": 0.0, "shards": 2.0, "rows": 15.0, "teacher_forward_passes": 15.0, "seconds": 3.0,
                          "rows_per_s": 5.0}]}
    got = teacher_workers([{"step": "version_data", "started": 1.0}, merge])
    assert got["teacher_forward_passes"] == 20  # the workers' own calls (KFP's floats made ints)
    assert [(w["shard"], w["teacher_forward_passes"]) for w in got["workers"]] == [(1, 5), (0, 15)]
    assert teacher_workers([{"step": "cache_teacher_outputs", "started": 2.0}]) == {}  # cached / before the fan-out
