"""The one module that talks to MLflow: tracking runs, the model registry, aliases, downloads.

Models are logged with the transformers flavor (safetensors + config + tokenizer, no pickle), so
anyone can load a registered version with `transformers` alone::

    path = mlflow.artifacts.download_artifacts("models:/distillops-student@champion")
    AutoModelForSequenceClassification.from_pretrained(f"{path}/model")
    AutoTokenizer.from_pretrained(f"{path}/components/tokenizer")

The same client code talks to the embedded sqlite store and to an ``mlflow server``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.common.home import Home

EXPERIMENT = "distillops"
# Requirements recorded with each logged model; the flavor's inference would add torchvision.
MODEL_REQUIREMENTS = ["torch==2.13.0", "transformers==5.24.*", "safetensors"]
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")

log = logging.getLogger(__name__)


class RegistryError(RuntimeError):
    """A registry reference that cannot be resolved, or a registry change that was refused."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        m = _MODELS_URI.match(uri)
        if not m:
            raise RegistryError(f"{uri!r} is not a registry reference; expected models:/<name>@<alias> "
                                f"or models:/<name>/<version>")
        return cls(m["name"], m["alias"], m["version"])


def is_registry_uri(ref: str) -> bool:
    return ref.startswith("models:/")


def connect(home: Home):
    """Point MLflow at the home's tracking store; make sure the experiment exists. Returns a client."""
    import mlflow

    home.ensure()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(home.tracking_uri)
    client = mlflow.MlflowClient()
    if client.get_experiment_by_name(EXPERIMENT) is None:
        try:
            # A file URI under the home: sqlite's default (./mlruns beside the cwd) would scatter state.
            # A tracking server stores artifacts itself (proxied to its object store): a local path
            # here would send every pod's artifacts to its own disk.
            served = home.tracking_uri.startswith(("http://", "https://"))
            client.create_experiment(EXPERIMENT, artifact_location=None if served else home.mlflow_artifacts.as_uri())
        except Exception:  # created by a concurrent step in between
            if client.get_experiment_by_name(EXPERIMENT) is None:
                raise
    mlflow.set_experiment(EXPERIMENT)
    return client


def get_version(client, ref: ModelRef):
    """The ModelVersion a reference points to, or None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        if ref.alias:
            return client.get_model_version_by_alias(ref.name, ref.alias)
        return client.get_model_version(ref.name, ref.version)
    except MlflowException:
        return None


def download_model(client, home: Home, ref: ModelRef) -> tuple[Path, Any]:
    """Download a registered model into one flat directory (weights, config, tokenizer).

    Cached per name and version under ``<home>/models``; returns (directory, ModelVersion).
    """
    import mlflow

    mv = get_version(client, ref)
    if mv is None:
        raise RegistryError(f"models:/{ref.name}{'@' + ref.alias if ref.alias else '/' + str(ref.version)} "
                            f"is not in the registry at {home.tracking_uri}")
    dest = home.root / "models" / f"{mv.name}-v{mv.version}"
    if (dest / "config.json").is_file():
        return dest, mv
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    src = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{mv.name}/{mv.version}"))
    staging.mkdir(parents=True)
    for sub in ("model", "components/tokenizer"):
        for f in (src / sub).glob("*"):
            if f.is_file():
                shutil.copy2(f, staging / f.name)
    staging.replace(dest)
    return dest, mv


def log_model(model_dir: str | Path, run_id: str | None = None) -> str:
    """Log a saved classifier (transformers flavor) into a run; returns the logged model's URI."""
    import mlflow
    import mlflow.transformers

    from components.common.modeling import load_classifier

    model, tokenizer = load_classifier(model_dir)
    with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
        info = mlflow.transformers.log_model(
            {"model": model, "tokenizer": tokenizer}, name="model", task="text-classification",
            pip_requirements=MODEL_REQUIREMENTS,
        )
    return info.model_uri


def register(client, model_uri: str, name: str, tags: dict[str, str]):
    """Create a registry version with its lineage tags; the tags are set before it is returned."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, description="Registered by distillops")
        except MlflowException:  # created concurrently
            pass
    mv = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    return mv


def set_alias(client, name: str, alias: str, version: str) -> None:
    client.set_registered_model_alias(name, alias, str(version))


def find_versions(client, name: str, tag: str, value: str) -> list:
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []
    return sorted((v for v in versions if v.tags.get(tag) == value), key=lambda v: int(v.version))
