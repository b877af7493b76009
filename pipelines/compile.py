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


def compile_redistill(output_dir: str | Path) -> Path:
    """The closed drift loop (drift -> redistil -> gate -> promote), for a recurring run on a cluster."""
    from pipelines.drift import drift_redistill_pipeline

    path = Path(output_dir) / "drift_redistill_pipeline.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(drift_redistill_pipeline, str(path))
    return path
