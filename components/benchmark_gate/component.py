"""KFP interface of benchmark_gate."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def benchmark_gate(home: str, dataset: Input[Dataset], teacher_outputs: Input[Artifact], student: Input[Model],
                   teacher_ref: str, teacher_version: str, config_json: str, gate_report: Output[Artifact],
                   gate_markdown: Output[Markdown], gate_metrics: Output[Metrics], gate_html: Output[HTML],
                   gate_confusion: Output[ClassificationMetrics],
                   gate_disagreement: Output[ClassificationMetrics], trigger: str = "") -> bool:
    """Student vs teacher vs champion on the test split; returns whether the student passed.

    `trigger`: the drift loop's trigger lineage (prepare_redistill's JSON); when set, the student is
    also gated on the triggering production batch (check trigger_disagreement). Empty: a run
    started by hand, no such check.

    Every reason is in `gate_report` (JSON); `gate_markdown` and `gate_html` (the self-contained
    report with plots) are KFP visualization artifacts, shown in the run's UI, as are `gate_metrics`
    (every model's figures, the compression and speed-ups, every check's value), `gate_confusion`
    (the student's predictions against the gold labels) and `gate_disagreement` (against the
    teacher's predictions).

    config_json with task generation: the generative gate (held-out prompts; runner.run_generation);
    `gate_metrics` then holds lm_core.flat_metrics of its report and the two confusion-matrix
    artifacts are left empty (a generative student has no labels).
    """
    import json
    import math
    import re

    from components.benchmark_gate.runner import run
    from components.common.config import config_from_json

    report = run(home=home, snapshot_path=dataset.path, teacher_outputs_path=teacher_outputs.path,
                 student_path=student.path, teacher_ref=teacher_ref, cfg=config_from_json(config_json),
                 report_json=gate_report.path, report_md=gate_markdown.path, report_html=gate_html.path,
                 teacher_version=teacher_version, trigger=trigger)
    gate_report.metadata.update({"passed": report["passed"], "reasons": report["reasons"],
                                 "step_report": report["step_report"]})
    if report["context"].get("task") == "generation":  # the generative gate: no labels, no confusion matrices
        from components.benchmark_gate.lm_core import flat_metrics

        for key, value in flat_metrics(report).items():
            gate_metrics.log_metric(key, value)
        for artifact in (gate_metrics, gate_confusion, gate_disagreement):
            with open(artifact.path, "w") as f:
                json.dump(artifact.metadata, f)
        return bool(report["passed"])
    for name, card in report["models"].items():
        for key in ("accuracy", "macro_f1", "agreement", "kl_to_teacher", "throughput_rows_per_s", "latency_p50_ms",
                    "latency_p90_ms", "latency_p99_ms", "parameters", "size_bytes"):
            if key in card and math.isfinite(float(card[key])):  # nan: no gold test rows to measure on
                gate_metrics.log_metric(f"{name}_{key}", float(card[key]))
    for key, value in report["compression"].items():
        if value is not None:
            gate_metrics.log_metric(f"student_{key}", float(value))
    for check in report["checks"]:
        if math.isfinite(check["value"]):
            gate_metrics.log_metric("check_" + re.sub(r"[^A-Za-z0-9_]+", "_", check["name"]).strip("_"),
                                    float(check["value"]))
    labels = report["confusion_matrix"]["labels"]
    gate_confusion.log_confusion_matrix(labels, report["confusion_matrix"]["student"])
    gate_disagreement.log_confusion_matrix(labels, report["confusion_matrix"]["student_vs_teacher"])
    # kfp.local keeps these artifacts' numbers only in metadata; a file at each URI lets its cache
    # reuse this step (a missing output file is a cache miss).
    for artifact in (gate_metrics, gate_confusion, gate_disagreement):
        with open(artifact.path, "w") as f:
            json.dump(artifact.metadata, f)
    return bool(report["passed"])
