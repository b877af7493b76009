"""Compile the DAGs to KFP IR YAML (what a cluster runs), and the watch DAG's recurring-run spec.

The recurring run's parameters come from the config the user gives (``distillops compile
--config ... --set ...``): a schedule built from the defaults would rerun and retrain with the
defaults whenever the champion used a custom config.
"""

from __future__ import annotations

from pathlib import Path

from kfp import compiler

from components.common.config import Config
from components.common.image import use_image
from pipelines.parameters import watch_parameters
from pipelines.platform import CLUSTER_DATA, CLUSTER_HOME


def compile_all(output_dir: str | Path, image: str | None = None) -> list[Path]:
    """distill_pipeline.yaml and drift_pipeline.yaml; every task in `image` when given (else the
    image the components were defined with, components.common.image.IMAGE)."""
    from pipelines.distill import distill_pipeline
    from pipelines.drift import drift_pipeline

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for func, name in ((distill_pipeline, "distill_pipeline.yaml"), (drift_pipeline, "drift_pipeline.yaml")):
        path = out / name
        compiler.Compiler().compile(func, str(path))
        if image:
            use_image(path, image)
        written.append(path)
    return written


def compile_watch(output_dir: str | Path, cfg: Config | None = None, data_path: str = CLUSTER_DATA,
                  image: str | None = None) -> list[Path]:
    """watch_pipeline.yaml and the recurring-run spec that runs it on a schedule with `cfg` (`data_path`
    defaults to a placeholder: edit it in the spec to the file's path on the home volume)."""
    from pipelines.schedule import recurring_run_spec, write_spec
    from pipelines.watch import watch_pipeline

    cfg = cfg or Config()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipeline = out / "watch_pipeline.yaml"
    compiler.Compiler().compile(watch_pipeline, str(pipeline))
    if image:
        use_image(pipeline, image)
    spec = write_spec(recurring_run_spec(watch_parameters(cfg, CLUSTER_HOME, data_path, cfg.teacher.ref)),
                      out / "watch_recurring_run.yaml")
    return [pipeline, spec]


def compile_redistill(output_dir: str | Path, image: str | None = None) -> Path:
    """The closed drift loop (drift -> redistil -> gate -> promote), for a recurring run on a cluster."""
    from pipelines.drift import drift_redistill_pipeline

    path = Path(output_dir) / "drift_redistill_pipeline.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(drift_redistill_pipeline, str(path))
    if image:
        use_image(path, image)
    return path
