"""Run the DAGs locally with kfp.local (SubprocessRunner, local cache on): the very pipeline that
goes to a cluster, run in this Python environment with all state under one home directory.

The teacher is resolved once, here, before the run starts, and handed to the DAG pinned
(reference + teacher_version): every step loads exactly that teacher or fails. With task generation
it is generation.teacher_ref (a causal LM) and the data a prompt file; the DAG is the same.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from components.common import registry
from components.common.config import Config
from components.common.dataset import (
    DatasetError,
    build_prompt_snapshot,
    read_texts,
    snapshot_from_config,
    validate_texts,
)
from components.common.hashing import sha256_file
from components.common.home import Home
from components.common.steplog import record_reused
from components.common.teachers import resolve_teacher
from pipelines.console import progress, step_line
from pipelines.parameters import (
    distill_parameters,
    drift_parameters,
    production_column,
    redistill_parameters,
    task_teacher_ref,
)
from pipelines.summary import reports_in_run, step_reports, summarize


def init_kfp_local(home: Home) -> None:
    import warnings

    from kfp import local

    # Resources and retries (pipelines/platform.py) are for clusters; kfp.local warns on every task.
    warnings.filterwarnings("ignore", message=r".*have no effect in the current local runner")
    # The SubprocessRunner runs every task in this very environment, on purpose; kfp.local warns on
    # each task that the image it names (ours, for clusters) is not a python image.
    warnings.filterwarnings("ignore", message=r".*non-Python base image")

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(home.pipeline_root),
               enable_caching=True, cache_root=str(home.root / "kfp-cache"))


def ensure_teacher(home: Home, cfg: Config, teacher_ref: str, data_path: str) -> None:
    """On the embedded defaults with no teacher registered yet, fine-tune and register one first
    (task generation: register the shipped causal-LM teacher, as `distillops teacher --task generation`)."""
    if teacher_ref != task_teacher_ref(Config(task=cfg.task)) or not registry.is_registry_uri(teacher_ref):
        return
    if registry.get_version(registry.connect(home), registry.ModelRef.parse(teacher_ref)) is not None:
        return
    if cfg.task == "generation":
        from components.teacher.runner import prepare_lm_teacher

        progress.info("  %-26s registering the default causal-LM teacher first (none at %s yet)", "teacher",
                      teacher_ref)
        started = time.time()
        prepare_lm_teacher(home, cfg)
        progress.info(step_line("teacher", "done", time.time() - started))
    else:
        from components.teacher.runner import prepare_teacher

        progress.info("  %-26s fine-tuning the default base model on %s first (no teacher at %s yet)",
                      "teacher", data_path, teacher_ref)
        started = time.time()
        prepare_teacher(home, data_path, cfg)
        progress.info(step_line("teacher", "done", time.time() - started))


def _existing(path: str, what: str) -> Path:
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise DatasetError(f"{resolved}: {what} file not found")
    return resolved


def _checked_data(data_path: str, cfg: Config) -> Path:
    """The data file, read and validated as version_data will: bad input stops here with the
    message naming file and row (exit 2), not as a failed task inside the DAG."""
    path = _existing(data_path, "data")
    if cfg.task == "generation":
        build_prompt_snapshot(path, cfg.generation, cfg.data)
    else:
        snapshot_from_config(path, cfg.data)
    return path


def _checked_production(production_path: str, cfg: Config, text_column: str | None) -> Path:
    """The production batch, read and validated as monitor_drift will, before the drift DAG starts."""
    path = _existing(production_path, "production")
    d = cfg.data
    validate_texts(read_texts(path, text_column or production_column(cfg), d.max_text_chars, d.long_texts),
                   "production")
    return path


def _check_champion_task(home: Home, cfg: Config) -> None:
    """A registered model holds one task's students: a champion of student.registered_name registered by
    the other task (its ``task`` tag; none: classification, registered before tasks) stops the run here,
    before any step, rather than at the gate after training."""
    from components.common.config import ConfigError

    name = cfg.student.registered_name
    champion = registry.get_version(registry.connect(home), registry.ModelRef(name, alias="champion"))
    task = (champion.tags or {}).get("task", "classification") if champion is not None else cfg.task
    if task != cfg.task:
        raise ConfigError(f"student.registered_name: models:/{name}@champion (version {champion.version}) is a {task} "
                          f"student; a registered model holds one task's students, so a {cfg.task} run needs another "
                          f"name (e.g. --set student.registered_name={name}-{cfg.task})")


def run_distill(home: Home, cfg: Config, data_path: str, teacher_ref: str | None = None) -> dict[str, Any]:
    """Run the distillation DAG; return a one-object summary of what happened. The teacher: `teacher_ref`,
    else the task's configured one (teacher.ref, or generation.teacher_ref for task generation)."""
    from pipelines.distill import distill_pipeline

    home.ensure()
    teacher_ref = teacher_ref or task_teacher_ref(cfg)
    started = time.time()
    path = _checked_data(data_path, cfg)
    _check_champion_task(home, cfg)
    ensure_teacher(home, cfg, teacher_ref, str(path))
    teacher = resolve_teacher(teacher_ref, home)  # the run's first use: every step gets it pinned
    args = distill_parameters(cfg, str(home.root), str(path), sha256_file(path), teacher.pinned_ref, teacher.version)
    init_kfp_local(home)
    pipeline_started = time.time()
    task = distill_pipeline(**args)
    summary = summarize(task.outputs, started, pipeline_started, args["config_hash"], home.root, home.reports)
    for report in step_reports(task.outputs):
        if report["started"] < pipeline_started:  # served from KFP's cache: log the reuse (cache stats)
            record_reused(home, report, pipeline_started)
    return summary


def run_monitor(home: Home, cfg: Config, production_path: str, text_column: str | None = None,
                model_ref: str | None = None) -> dict[str, Any]:
    """Run the drift-monitor DAG on a production batch; return the verdict."""
    from pipelines.drift import drift_pipeline

    path = _checked_production(production_path, cfg, text_column)
    home.ensure()
    init_kfp_local(home)
    task = drift_pipeline(**drift_parameters(cfg, str(home.root), str(path), sha256_file(path), model_ref,
                                             text_column))
    return json.loads(Path(task.outputs["verdict"].path).read_text())


def _run_dir(home: Home, pipeline_name: str, started: float) -> Path:
    """The newest kfp.local run directory of `pipeline_name` created since `started`."""
    runs = [d for d in home.pipeline_root.glob(f"{pipeline_name}-2*") if d.is_dir() and d.stat().st_mtime >= started - 1]
    if not runs:
        raise RuntimeError(f"no run of {pipeline_name} under {home.pipeline_root} since the loop started")
    return max(runs, key=lambda d: d.stat().st_mtime)


def run_drift_loop(home: Home, cfg: Config, production_path: str, text_column: str | None = None,
                   model_ref: str | None = None, teacher_ref: str | None = None) -> dict[str, Any]:
    """Run the closed loop (drift -> redistil -> gate -> promote) on a production batch.

    Returns the drift verdict (what was seen: ``drifted``; what the policy did: ``action``), and,
    when it redistilled, what the nested distillation DAG did (also recorded in the drift history).
    """
    from pipelines.drift import drift_redistill_pipeline

    path = _checked_production(production_path, cfg, text_column)
    home.ensure()
    teacher = resolve_teacher(teacher_ref or task_teacher_ref(cfg), home)
    started = time.time()
    init_kfp_local(home)
    task = drift_redistill_pipeline(**redistill_parameters(cfg, str(home.root), str(path), sha256_file(path),
                                                           teacher, model_ref, text_column))
    verdict = json.loads(Path(task.outputs["verdict"].path).read_text())
    # The nested distillation DAG runs inside dsl.If(redistill), whose outputs cannot leave the branch
    # without a dsl.OneOf partner on an Else branch: its tasks' reports are read from the executor
    # outputs this run wrote under the pipeline root.
    steps = reports_in_run(_run_dir(home, "distillops-drift-redistill", started))
    by_step = {s["step"]: s for s in steps}
    promotion = {"action": by_step.get("promote", {}).get("action"),
                 "version": by_step.get("promote", {}).get("version")}
    if verdict.get("redistill") and verdict.get("mlflow_run_id"):
        from components.monitor_drift import history

        # The drift history names what the redistillation that this run started ended in.
        history.record_result(home, verdict["mlflow_run_id"], {
            "version": promotion["version"], "promotion": promotion["action"],
            "gate_passed": by_step.get("benchmark_gate", {}).get("passed"),
            "data_version": by_step.get("version_data", {}).get("data_version")})
    return {"drifted": verdict["drifted"], "action": verdict.get("action", "redistill" if verdict["drifted"] else "none"),
            "redistill": verdict.get("redistill", verdict["drifted"]), "action_reasons": verdict.get("action_reasons", []),
            "reasons": verdict["reasons"], "signals": verdict.get("signals", []),
            "disagreement": verdict.get("disagreement"), "moving_reference": verdict.get("moving_reference"),
            "verdict_json": verdict["verdict_json"], "drift_run_id": verdict.get("mlflow_run_id"),
            "executed_steps": [s["step"] for s in steps],
            # prompts or texts sent to the teacher across the loop: monitor_drift's disagreement samples the
            # teacher store lacked, then the redistillation's (labels, cache misses); KFP floats
            "teacher_forward_passes": int(sum(s.get("teacher_forward_passes", 0) for s in steps)),
            "new_data_version": by_step.get("version_data", {}).get("data_version"),
            "rows_added": by_step.get("prepare_redistill", {}).get("rows_added"),
            "rows_backlog": by_step.get("prepare_redistill", {}).get("rows_backlog"),
            "backlog_rows": verdict.get("backlog_rows"),
            "gate_passed": by_step.get("benchmark_gate", {}).get("passed"),
            "promotion": promotion,
            "seconds_total": round(time.time() - started, 1)}
