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
