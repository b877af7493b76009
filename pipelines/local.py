"""Run the DAGs locally with kfp.local (SubprocessRunner, local cache on): the very pipeline that
goes to a cluster, run in this Python environment with all state under one home directory.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from components.common import registry
from components.common.config import Config, config_hash, step_config_json
from components.common.dataset import DatasetError
from components.common.hashing import sha256_file
from components.common.home import Home
from components.common.steplog import steps_since
from components.common.teacher import resolve_teacher

log = logging.getLogger(__name__)


def init_kfp_local(home: Home) -> None:
    import warnings

    from kfp import local

    # Resources and retries (pipelines/platform.py) are for clusters; kfp.local warns on every task.
    warnings.filterwarnings("ignore", message=r".*have no effect in the current local runner")

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(home.pipeline_root),
               enable_caching=True, cache_root=str(home.root / "kfp-cache"))


def ensure_teacher(home: Home, cfg: Config, teacher_ref: str, data_path: str) -> None:
    """On the embedded defaults with no teacher registered yet, fine-tune and register one first."""
    if teacher_ref != Config().teacher.ref or not registry.is_registry_uri(teacher_ref):
        return
    client = registry.connect(home)
    if registry.get_version(client, registry.ModelRef.parse(teacher_ref)) is None:
        from components.teacher.runner import prepare_teacher

        log.info("no teacher at %s yet: fine-tuning the default base model on %s first", teacher_ref, data_path)
        prepare_teacher(home, data_path, cfg)


def pipeline_arguments(home: Home, cfg: Config, data_path: str, teacher_ref: str) -> dict[str, str]:
    """Every pipeline parameter, with the content versions resolved before the run starts."""
    path = Path(data_path).expanduser().resolve()
    if not path.is_file():
        raise DatasetError(f"{path}: data file not found")
    from pipelines.submit import distill_arguments

    teacher = resolve_teacher(teacher_ref, home)
    return distill_arguments(cfg, str(path), sha256_file(path), teacher_ref, teacher.version, home=str(home.root))


def watch_arguments(home: str, cfg: Config, data_path: str, teacher_ref: str) -> dict[str, str]:
    """Parameters of the watch DAG (the distillation DAG's, less the versions check_for_changes resolves)."""
    from components.common.config import config_to_json

    return {"home": home, "data_path": data_path, "teacher_ref": teacher_ref, "config_json": config_to_json(cfg),
            "data_config": step_config_json(cfg, "version_data"),
            "teacher_config": step_config_json(cfg, "cache_teacher_outputs"),
            "train_config": step_config_json(cfg, "train_student"),
            "gate_config": step_config_json(cfg, "benchmark_gate"),
            "promote_config": step_config_json(cfg, "promote"), "config_hash": config_hash(cfg)}


def run_distill(home: Home, cfg: Config, data_path: str, teacher_ref: str | None = None) -> dict[str, Any]:
    """Run the distillation DAG; return a one-object summary of what happened."""
    from pipelines.distill import distill_pipeline

    home.ensure()
    teacher_ref = teacher_ref or cfg.teacher.ref
    started = time.time()
    ensure_teacher(home, cfg, teacher_ref, data_path)
    args = pipeline_arguments(home, cfg, data_path, teacher_ref)
    init_kfp_local(home)
    pipeline_started = time.time()
    task = distill_pipeline(**args)
    gate = json.loads(Path(task.outputs["gate_report"].path).read_text())
    return summarize(home, started, pipeline_started, args, gate)


def summarize(home: Home, started: float, pipeline_started: float, args: dict[str, str],
              gate: dict[str, Any]) -> dict[str, Any]:
    steps = steps_since(home, started)
    by_step = {s["step"]: s for s in steps}
    data_version = gate["context"]["data_version"]
    promotion = by_step.get("promote", {})
    return {
        "data_version": data_version,
        "teacher_version": gate["context"]["teacher_version"],
        "config_hash": args["config_hash"],
        "gate": {"passed": gate["passed"], "reasons": gate["reasons"],
                 "checks": {c["name"]: c["value"] for c in gate["checks"]}},
        "promotion": {"action": promotion.get("action", "skipped (gate failed)" if not gate["passed"] else "none"),
                      "version": promotion.get("version")},
        "teacher_forward_passes": sum(s.get("teacher_forward_passes", 0) for s in steps),
        "teacher_timing_passes": sum(s.get("teacher_timing_passes", 0) for s in steps),
        "executed_steps": [s["step"] for s in steps],
        "seconds_per_step": {s["step"]: s["seconds"] for s in steps},
        "seconds_total": round(time.time() - started, 1),
        "seconds_pipeline": round(time.time() - pipeline_started, 1),
        "reports": {"gate_markdown": str(home.reports / f"gate-{data_version[:8]}-{args['config_hash'][:8]}.md")},
        "home": str(home.root),
    }


def run_monitor(home: Home, cfg: Config, production_path: str, text_column: str | None = None,
                model_ref: str | None = None) -> dict[str, Any]:
    """Run the drift-monitor DAG on a production batch; return the verdict."""
    from pipelines.drift import drift_pipeline

    path = Path(production_path).expanduser().resolve()
    if not path.is_file():
        raise DatasetError(f"{path}: production file not found")
    home.ensure()
    init_kfp_local(home)
    task = drift_pipeline(home=str(home.root), production_path=str(path), production_fingerprint=sha256_file(path),
                          text_column=text_column or cfg.data.text_column,
                          model_ref=model_ref or f"models:/{cfg.student.registered_name}@champion",
                          drift_config=step_config_json(cfg, "monitor_drift"))
    return json.loads(Path(task.outputs["verdict"].path).read_text())


def run_drift_loop(home: Home, cfg: Config, production_path: str, text_column: str | None = None,
                   model_ref: str | None = None, teacher_ref: str | None = None) -> dict[str, Any]:
    """Run the closed loop (drift -> redistil -> gate -> promote) on a production batch.

    Returns the drift verdict, and, when it drifted, what the nested distillation DAG did.
    """
    from pipelines.drift import drift_redistill_pipeline

    path = Path(production_path).expanduser().resolve()
    if not path.is_file():
        raise DatasetError(f"{path}: production file not found")
    home.ensure()
    teacher_ref = teacher_ref or cfg.teacher.ref
    teacher = resolve_teacher(teacher_ref, home)
    started = time.time()
    init_kfp_local(home)
    task = drift_redistill_pipeline(
        home=str(home.root), production_path=str(path), production_fingerprint=sha256_file(path),
        text_column=text_column or cfg.data.text_column,
        model_ref=model_ref or f"models:/{cfg.student.registered_name}@champion",
        drift_config=step_config_json(cfg, "monitor_drift"), redistill_config=step_config_json(cfg, "prepare_redistill"),
        teacher_ref=teacher_ref, teacher_version=teacher.version,
        data_config=step_config_json(cfg, "version_data"), teacher_config=step_config_json(cfg, "cache_teacher_outputs"),
        train_config=step_config_json(cfg, "train_student"), gate_config=step_config_json(cfg, "benchmark_gate"),
        promote_config=step_config_json(cfg, "promote"), config_hash=config_hash(cfg))
    verdict = json.loads(Path(task.outputs["verdict"].path).read_text())
    steps = steps_since(home, started)
    by_step = {s["step"]: s for s in steps}
    return {"drifted": verdict["drifted"], "reasons": verdict["reasons"], "signals": verdict.get("signals", []),
            "verdict_json": verdict["verdict_json"], "drift_run_id": verdict.get("mlflow_run_id"),
            "executed_steps": [s["step"] for s in steps],
            "new_data_version": by_step.get("version_data", {}).get("data_version"),
            "rows_added": by_step.get("prepare_redistill", {}).get("rows_added"),
            "gate_passed": by_step.get("benchmark_gate", {}).get("passed"),
            "promotion": {"action": by_step.get("promote", {}).get("action"),
                          "version": by_step.get("promote", {}).get("version")},
            "seconds_total": round(time.time() - started, 1)}
