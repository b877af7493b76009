"""Compile the DAGs to KFP IR YAML (what a cluster runs)."""

from __future__ import annotations

from pathlib import Path

from kfp import compiler


def compile_all(output_dir: str | Path) -> list[Path]:
    from pipelines.distill import distill_pipeline
    from pipelines.drift import drift_pipeline

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for func, name in ((distill_pipeline, "distill_pipeline.yaml"), (drift_pipeline, "drift_pipeline.yaml")):
        path = out / name
        compiler.Compiler().compile(func, str(path))
        written.append(path)
    return written


# Placeholders of the recurring run's parameters: edit them to the cluster's volume paths.
CLUSTER_HOME = "/mnt/distillops/home"
CLUSTER_DATA = "/mnt/distillops/data/train.jsonl"


def compile_watch(output_dir: str | Path) -> list[Path]:
    """watch_pipeline.yaml and the recurring-run spec that runs it on a schedule."""
    from components.common.config import Config
    from pipelines.local import watch_arguments
    from pipelines.schedule import recurring_run_spec, write_spec
    from pipelines.watch import watch_pipeline

    cfg = Config()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipeline = out / "watch_pipeline.yaml"
    compiler.Compiler().compile(watch_pipeline, str(pipeline))
    spec = write_spec(recurring_run_spec(watch_arguments(CLUSTER_HOME, cfg, CLUSTER_DATA, cfg.teacher.ref)),
                      out / "watch_recurring_run.yaml")
    return [pipeline, spec]


def compile_redistill(output_dir: str | Path) -> Path:
    """The closed drift loop (drift -> redistil -> gate -> promote), for a recurring run on a cluster."""
    from pipelines.drift import drift_redistill_pipeline

    path = Path(output_dir) / "drift_redistill_pipeline.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(drift_redistill_pipeline, str(path))
    return path
