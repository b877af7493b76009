"""The run summary, built from the outputs the DAG's tasks returned (each carries its step's report).

A task served from the KFP cache returns the outputs of the run that computed them, report
included, so a report that started before this run began is a cached step: it is listed as cached,
and its teacher passes are not counted again.
"""

from __future__ import annotations

import json
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


def summarize(task_outputs: dict[str, Any], started: float, pipeline_started: float, config_hash: str,
              home_root: Path, reports_dir: Path) -> dict[str, Any]:
    gate = json.loads(Path(task_outputs["gate_report"].path).read_text())
    promotion = json.loads(task_outputs["promotion"]) if task_outputs.get("promotion") else {}
    reports = step_reports(task_outputs)
    executed = [r for r in reports if r["started"] >= pipeline_started]
    data_version = gate["context"]["data_version"]
    data = getattr(task_outputs.get("dataset"), "metadata", {}) or {}
    action = promotion.get("action", "none")
    if action == "refused":
        action = "skipped (gate failed)"
    return {
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
        "executed_steps": [r["step"] for r in executed],
        "cached_steps": [r["step"] for r in reports if r["started"] < pipeline_started],
        "seconds_per_step": {r["step"]: r["seconds"] for r in executed},
        "seconds_total": round(time.time() - started, 1),
        "seconds_pipeline": round(time.time() - pipeline_started, 1),
        "reports": {"gate_markdown": str(reports_dir / f"{_gate_stem(data_version, config_hash)}.md"),
                    "gate_html": str(reports_dir / f"{_gate_stem(data_version, config_hash)}.html")},
        "home": str(home_root),
    }
