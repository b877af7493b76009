"""The run summary, built from the outputs the DAG's tasks returned (each carries its step's report).

A task served from the KFP cache returns the outputs of the run that computed them, report
included, so a report that started before this run began is a cached step: it is listed as cached,
and its teacher passes are not counted again.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

STEP_ORDER = ("version_data", "cache_teacher_outputs", "train_student", "benchmark_gate", "promote",
              "record_refusal")


def step_reports(task_outputs: dict[str, Any]) -> list[dict[str, Any]]:
    """Every step report found in a finished distillation DAG's outputs, in DAG order."""
    reports = []
    for name in ("dataset", "teacher_outputs", "student", "gate_report"):
        artifact = task_outputs.get(name)
        report = getattr(artifact, "metadata", {}).get("step_report") if artifact is not None else None
        if report:
            reports.append(report)
    promotion = task_outputs.get("promotion")
    if promotion:
        report = json.loads(promotion).get("step_report")
        if report:
            reports.append(report)
    return sorted(reports, key=lambda r: STEP_ORDER.index(r["step"]) if r["step"] in STEP_ORDER else 99)


def reports_in_run(run_dir: Path) -> list[dict[str, Any]]:
    """The step reports of every task a kfp.local run executed (nested DAGs included), read from the
    executor outputs it wrote under the pipeline root; a task served from the cache wrote none there."""
    reports = []
    for path in sorted(Path(run_dir).rglob("executor_output.json")):
        out = json.loads(path.read_text())
        for group in out.get("artifacts", {}).values():
            for artifact in group.get("artifacts", []):
                if artifact.get("metadata", {}).get("step_report"):
                    reports.append(artifact["metadata"]["step_report"])
        for value in out.get("parameterValues", {}).values():
            if isinstance(value, str) and value.startswith("{") and "step" in value:
                parsed = json.loads(value)
                report = parsed.get("step_report", parsed)
                if isinstance(report, dict) and "step" in report and "started" in report:
                    reports.append(report)
    unique = {(r["step"], r["started"]): r for r in reports}
    return sorted(unique.values(), key=lambda r: r["started"])


def _gate_stem(data_version: str, config_hash: str) -> str:
    return f"gate-{data_version[:8]}-{config_hash[:8]}"  # as benchmark_gate names its reports
def write_dvc_outputs(summary: dict[str, Any], metrics_out: str | None, plots_out: str | None) -> list[Path]:
    """Write the run's metrics (one JSON object) and plots (``<dir>/label_f1.json``,
    ``<dir>/training.json``) for DVC, each atomically: a file DVC reads is whole or absent."""
    from components.common.io import atomic_write_text

    written = []
    if metrics_out:
        written.append(atomic_write_text(metrics_out, json.dumps(summary["metrics"], indent=2, sort_keys=True) + "\n"))
    if plots_out:
        for name, rows in summary["plots"].items():
            written.append(atomic_write_text(Path(plots_out) / f"{name}.json", json.dumps(rows, indent=2) + "\n"))
    return written


def _ratio(a: float, b: float) -> float:
    return round(a / b, 6) if b else 0.0


def dvc_metrics(gate: dict[str, Any], promotion_action: str) -> dict[str, Any]:
    """The gate's headline numbers as one flat JSON object of numbers: what `dvc metrics show`,
    `dvc metrics diff` and `dvc exp show` tabulate (a DVC metric must be a number; the verdict is 1/0)."""
    student, teacher = gate["models"]["student"], gate["models"]["teacher"]
    checks = {c["name"]: c["value"] for c in gate["checks"]}
    metrics = {
        "passed": int(bool(gate["passed"])),
        # 1 when this student is the registry's champion after the run (registered, an existing version
        # made champion, or already champion)
        "champion": int(promotion_action in ("register", "alias_existing", "noop")),
        "accuracy_retention": checks["accuracy_retention"],
        "accuracy": round(student["accuracy"], 6),
        "macro_f1": round(student["macro_f1"], 6),
        "f1_retention": _ratio(student["macro_f1"], teacher["macro_f1"]),
        "agreement": round(student["agreement"], 6),
        "speedup": checks["speedup"],
        "parameter_fraction": _ratio(student["parameters"], teacher["parameters"]),
        "parameters": int(student["parameters"]),
        "latency_p50_ms": round(student["latency_p50_ms"], 3),
        "teacher_accuracy": round(teacher["accuracy"], 6),
        "teacher_macro_f1": round(teacher["macro_f1"], 6),
    }
    if "kl_to_teacher" in student:
        metrics["kl_to_teacher"] = round(student["kl_to_teacher"], 6)
    if "student_speedup_over_int8_teacher" in checks:
        metrics["speedup_over_int8_teacher"] = checks["student_speedup_over_int8_teacher"]
    return metrics


def dvc_metrics_lm(gate: dict[str, Any], promotion_action: str) -> dict[str, Any]:
    """dvc_metrics for the generative gate's report (task generation): the student's fidelity to the
    teacher, its speed-up and size, as numbers; a figure the gate did not measure is left out."""
    student = gate["models"]["student"]
    compression = gate.get("compression", {})
    figures = {**{k: student.get(k) for k in ("rouge_l", "exact_match", "token_agreement", "token_kl",
                                              "teacher_nll", "reference_rouge_l", "tokens_per_s_batch1")},
               **{k: compression.get(k) for k in ("speedup_batch1", "speedup_batch8", "parameter_ratio")},
               "parameters": student.get("parameters")}
    return {"passed": int(bool(gate["passed"])),
            "champion": int(promotion_action in ("register", "alias_existing", "noop")),
            **{k: round(float(v), 6) for k, v in figures.items()
               if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}}


def dvc_plots(gate: dict[str, Any], history: list[dict[str, float]],
              generative: bool = False) -> dict[str, list[dict[str, Any]]]:
    """The run's curves as DVC plot data (lists of records): the student's F1, recall and support per
    label on the test split (from the gate report) and the training loss and validation accuracy per
    epoch (from the student's lineage). A generative student (`generative`) has no labels: its
    training curve carries the validation NLL of the teacher's generations instead of an accuracy."""
    if generative:
        return {"training": [{"epoch": int(h["epoch"]), "train_loss": round(h["train_loss"], 6),
                              **({"validation_teacher_nll": round(-h["validation_score"], 6)}
                                 if math.isfinite(h.get("validation_score", math.nan)) else {})}
                             for h in history]}
    labels = gate["models"]["student"].get("labels", {})
    return {
        "label_f1": [{"label": name, "f1": round(s["f1"], 6), "recall": round(s["recall"], 6),
                      "support": int(s["support"])} for name, s in labels.items()],
        "training": [{"epoch": int(h["epoch"]), "train_loss": round(h["train_loss"], 6),
                      **({"validation_accuracy": round(h["validation_score"], 6)}
                         if math.isfinite(h.get("validation_score", math.nan)) else {})}
                     for h in history],
    }


def summarize(task_outputs: dict[str, Any], started: float, pipeline_started: float, config_hash: str,
              home_root: Path, reports_dir: Path) -> dict[str, Any]:
    gate = json.loads(Path(task_outputs["gate_report"].path).read_text())
    promotion = json.loads(task_outputs["promotion"]) if task_outputs.get("promotion") else {}
    reports = step_reports(task_outputs)
    executed = [r for r in reports if r["started"] >= pipeline_started]
    data_version = gate["context"]["data_version"]
    data = getattr(task_outputs.get("dataset"), "metadata", {}) or {}
    action = promotion.get("action", "none")
    generative = gate["context"].get("task") == "generation"
    if action == "refused":
        action = "skipped (gate failed)"
    return {
        "task": "generation" if generative else "classification",
        "data_version": data_version,
        "teacher_version": gate["context"]["teacher_version"],
        # What version_data's input policies did (texts cut, conflicting labels) and the duplicates
        # across / within splits; absent for a snapshot versioned before these were reported.
        "data": {k: data[k] for k in ("rows", "splits", "input") if k in data},
        "config_hash": config_hash,
        "gate": {"passed": gate["passed"], "reasons": gate["reasons"],
                 "checks": {c["name"]: c["value"] for c in gate["checks"]}},
        "promotion": {"action": action, "version": promotion.get("version")},
        # counts that crossed KFP's metadata arrive as floats
        "teacher_forward_passes": int(sum(r.get("teacher_forward_passes", 0) for r in executed)),
        "teacher_timing_passes": int(sum(r.get("teacher_timing_passes", 0) for r in executed)),
        # The fanned-out teacher step: each worker's rows, teacher calls and rows/s, and the workers' total
        "teacher_workers": teacher_workers(executed),
        "executed_steps": [r["step"] for r in executed],
        "cached_steps": [r["step"] for r in reports if r["started"] < pipeline_started],
        "seconds_per_step": {r["step"]: r["seconds"] for r in executed},
        "seconds_total": round(time.time() - started, 1),
        "seconds_pipeline": round(time.time() - pipeline_started, 1),
        "reports": {"gate_markdown": str(reports_dir / f"{_gate_stem(data_version, config_hash)}.md"),
                    "gate_html": str(reports_dir / f"{_gate_stem(data_version, config_hash)}.html")},
        "home": str(home_root),
        "metrics": (dvc_metrics_lm if generative else dvc_metrics)(gate, promotion.get("action", "none")),
        "plots": dvc_plots(gate, _history(task_outputs.get("student")), generative),
    }


def teacher_workers(executed: list[dict[str, Any]]) -> dict[str, Any]:
    """Teacher calls per worker and in total, from the merge's report (cache_teacher_outputs) of this run;
    empty when the step was served from KFP's cache or ran before the fan-out."""
    merge = next((r for r in executed if r["step"] == "cache_teacher_outputs" and "workers" in r), None)
    if merge is None:
        return {}
    workers = [{"shard": int(w.get("shard") or 0), "rows": int(w.get("rows") or 0),
                "teacher_forward_passes": int(w.get("teacher_forward_passes") or 0),
                "seconds": w.get("seconds"), "rows_per_s": w.get("rows_per_s")} for w in merge["workers"]]
    return {"workers": workers, "teacher_forward_passes": sum(w["teacher_forward_passes"] for w in workers)}


def _history(student: Any) -> list[dict[str, float]]:
    """Per-epoch training metrics from the student's lineage (absent for a student trained before
    lineage carried them)."""
    from components.common.lineage import read_lineage

    if student is None or not getattr(student, "path", None):
        return []
    return list(read_lineage(student.path).get("history", []))
