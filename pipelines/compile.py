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
    from pipelines.drift import drift_redistill_pipeline

    for func, name in ((distill_pipeline, "distill_pipeline.yaml"), (drift_pipeline, "drift_pipeline.yaml"),
                       (drift_redistill_pipeline, "drift_redistill_pipeline.yaml")):
        path = out / name
        compiler.Compiler().compile(func, str(path))
        written.append(path)
    return written
