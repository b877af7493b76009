"""The recurring run of the watch DAG on a Kubeflow Pipelines cluster.

``distillops compile`` writes ``watch_pipeline.yaml`` and ``watch_recurring_run.yaml`` (this spec);
``submit_recurring_run`` creates the recurring run with ``kfp.Client`` from them::

    import kfp
    from pipelines.schedule import submit_recurring_run
    submit_recurring_run(kfp.Client(host=...), "build/watch_recurring_run.yaml", "build/watch_pipeline.yaml")

KFP cron expressions have six fields, seconds first. ``max_concurrency: 1`` and ``no_catchup``
keep one watch at a time and skip the runs missed while the cluster was down: a missed check is
superseded by the next one, which sees the same or newer versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEFAULT_CRON = "0 0 */6 * * *"  # every six hours, on the hour


def recurring_run_spec(arguments: dict[str, str], cron: str = DEFAULT_CRON,
                       experiment: str = "distillops") -> dict[str, Any]:
    """The recurring-run definition: schedule, concurrency and the watch pipeline's parameters."""
    fields = cron.split()
    if len(fields) != 6:
        raise ValueError(f"cron {cron!r}: KFP expects 6 fields (seconds minutes hours day month weekday)")
    return {"job_name": "distillops-watch", "experiment": experiment, "pipeline_package": "watch_pipeline.yaml",
            "cron_expression": cron, "max_concurrency": 1, "no_catchup": True, "enable_caching": True,
            "parameters": dict(arguments)}


def write_spec(spec: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text("# Recurring run of the distillops watch DAG; create it with pipelines.schedule."
                    "submit_recurring_run\n" + yaml.safe_dump(spec, sort_keys=False))
    return path


def submit_recurring_run(client, spec_path: str | Path, pipeline_package: str | Path):
    """Create the recurring run described by the spec on a cluster (`client` is a kfp.Client)."""
    spec = yaml.safe_load(Path(spec_path).read_text())
    experiment = client.create_experiment(spec["experiment"])
    return client.create_recurring_run(
        experiment_id=experiment.experiment_id, job_name=spec["job_name"],
        cron_expression=spec["cron_expression"], max_concurrency=spec["max_concurrency"],
        no_catchup=spec["no_catchup"], pipeline_package_path=str(pipeline_package), params=spec["parameters"],
        enable_caching=spec["enable_caching"])
