"""Helpers to log a step's params, metrics and tags to an MLflow run (through registry.connect)."""

from __future__ import annotations

from typing import Any


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = str(v)[:500]
    return out


def metric_logger(run_id: str):
    """A callback(metrics, step) that logs numeric metrics to the run."""
    import mlflow

    client = mlflow.MlflowClient()

    def log(metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            if k != "epoch":
                client.log_metric(run_id, k, float(v), step=step)

    return log
