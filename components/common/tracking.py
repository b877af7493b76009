"""The one module that writes MLflow runs (params, metrics, tags, text artifacts).

The registry (versions, aliases, the ledger) is ``registry.py``; both reach the same tracking
store through ``registry.connect``. A step opens its run with :func:`start_run`, or writes into an
existing one (the gate into the training run) with :func:`attach`::

    with tracking.start_run(home, "train_student abc", tags={...}, params={...}) as run:
        run.log_metrics({"train_seconds": 12.0})
    tracking.attach(home, run_id).log_text(markdown, "gate/report.md")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.common.home import Home
from components.common.paths import safe_relpath


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = str(v)[:500]
    return out


@dataclass(frozen=True)
class Run:
    """Writes to one MLflow run by id (no active-run state needed)."""

    client: Any
    run_id: str

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        for k, v in metrics.items():
            if k != "epoch":
                self.client.log_metric(self.run_id, k, float(v), step=step or 0)

    def log_params(self, params: dict[str, Any]) -> None:
        for k, v in flatten(params).items():
            self.client.log_param(self.run_id, k, v)

    def set_tags(self, tags: dict[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, safe_relpath(artifact_file))

    def log_dict(self, obj: dict, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, obj, safe_relpath(artifact_file))

    def metric_logger(self) -> Callable[[dict[str, float], int], None]:
        """A callback(metrics, step) for the trainer's per-step metrics."""
        return lambda metrics, step: self.log_metrics(metrics, step)

    @property
    def location(self) -> str:
        return f"runs:/{self.run_id}"


@contextmanager
def start_run(home: Home, name: str, tags: dict[str, Any] | None = None,
              params: dict[str, Any] | None = None) -> Iterator[Run]:
    """A new run in the distillops experiment, ended (FINISHED, or FAILED on an error) after the block."""
    import mlflow

    from components.common.registry import connect

    client = connect(home)
    with mlflow.start_run(run_name=name, nested=mlflow.active_run() is not None) as active:
        run = Run(client, active.info.run_id)
        if tags:
            run.set_tags(tags)
        if params:
            run.log_params(params)
        yield run


def attach(home: Home, run_id: str) -> Run:
    """Write into an existing run (e.g. the gate's report into the training run)."""
    from components.common.registry import connect

    return Run(connect(home), run_id)


def log_model(home: Home, model_dir: str | Path, run_id: str | None = None) -> str:
    """Log a saved classifier (transformers flavor) into a run; returns the logged model's URI."""
    import mlflow
    import mlflow.transformers

    from components.common.modeling import load_classifier
    from components.common.registry import MODEL_REQUIREMENTS, connect

    connect(home)
    model, tokenizer = load_classifier(model_dir)
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        info = mlflow.transformers.log_model(
            {"model": model, "tokenizer": tokenizer}, name="model", task="text-classification",
            pip_requirements=MODEL_REQUIREMENTS,
        )
    return info.model_uri


def log_lm_model(home: Home, model_dir: str | Path, run_id: str | None = None) -> str:
    """Log a saved causal LM (transformers flavor, task text-generation, so ``mlflow models serve``
    answers generation requests) into a run; returns the logged model's URI."""
    import mlflow
    import mlflow.transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from components.common.registry import MODEL_REQUIREMENTS, connect

    connect(home)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True, trust_remote_code=False)
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        info = mlflow.transformers.log_model(
            {"model": model, "tokenizer": tokenizer}, name="model", task="text-generation",
            pip_requirements=MODEL_REQUIREMENTS,
        )
    return info.model_uri
