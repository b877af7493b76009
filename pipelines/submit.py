"""Submit the compiled DAGs to a Kubeflow Pipelines cluster with `kfp.Client`: one distillation
run (`distillops submit`) and the recurring drift monitor (`distillops schedule`).

Every call to the cluster goes through `_cluster_call`, which turns a refused connection, a
timeout, 401/403 and other API errors into a `ClusterError` that names the host and says what to
check. Parameters are built here (content versions included, as for kfp.local runs) with the
home directory at the path where every task mounts the home PVC.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelines.parameters import distill_parameters, drift_parameters
from pipelines.platform import CLUSTER_HOME

log = logging.getLogger(__name__)

TOKEN_ENV = "DISTILLOPS_KFP_TOKEN"
DRIFT_SCHEDULE_NAME = "distillops-drift-monitor"


class ClusterError(RuntimeError):
    """The KFP API could not be reached, refused us, or rejected a request."""


class ParameterError(ValueError):
    """A pipeline parameter that the pipeline does not have, or one that could not be resolved."""


@contextmanager
def _cluster_call(host: str, what: str) -> Iterator[None]:
    import kfp_server_api
    import urllib3

    try:
        yield
    except kfp_server_api.ApiException as exc:
        if exc.status in (401, 403):
            raise ClusterError(
                f"{host}: {what} was refused ({exc.status} {exc.reason}): not authorized. Pass a token with "
                f"--token or ${TOKEN_ENV} (e.g. a service-account token), or reach the API through an "
                "authenticated port-forward") from None
        if exc.status == 0:
            raise ClusterError(f"{host}: {what} failed: {exc.reason}") from None
        raise ClusterError(f"{host}: {what} failed ({exc.status} {exc.reason}): "
                           f"{(exc.body or '').strip()[:500]}") from None
    except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, OSError) as exc:
        raise ClusterError(
            f"{host}: the Kubeflow Pipelines API is unreachable while trying to {what} ({type(exc).__name__}: "
            f"{exc}). Check the host URL, or forward the API: kubectl port-forward -n kubeflow "
            "svc/ml-pipeline-ui 8080:80, then --host http://localhost:8080") from None


def _preflight(host: str, token: str | None, timeout_s: float) -> None:
    """One GET of the health endpoint: fail at once, clearly, on a wrong host or a refused token
    (kfp.Client itself retries its health check for ~25 s before raising)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{host.rstrip('/')}/apis/v2beta1/healthz")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            return
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise ClusterError(
                f"{host}: the health check was refused ({exc.code} {exc.reason}): not authorized. Pass a token with "
                f"--token or ${TOKEN_ENV} (e.g. a service-account token), or reach the API through an "
                "authenticated port-forward") from None
        raise ClusterError(f"{host}: the health check failed ({exc.code} {exc.reason}): is this the KFP API "
                           "(ml-pipeline-ui or ml-pipeline service)?") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ClusterError(
            f"{host}: the Kubeflow Pipelines API is unreachable ({reason}). Check the host URL, or forward the "
            "API: kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80, then --host "
            "http://localhost:8080") from None


def connect(host: str | None, namespace: str | None = None, token: str | None = None, timeout_s: float = 10.0):
    """A kfp.Client for `host`, after a health check that fails fast with a clear ClusterError."""
    import kfp

    if not host:
        raise ClusterError("no KFP host: pass --host (e.g. http://localhost:8080) or set KF_PIPELINES_ENDPOINT")
    if not host.startswith(("http://", "https://")):
        raise ClusterError(f"--host {host!r}: expected an http:// or https:// URL")
    token = token or os.environ.get(TOKEN_ENV) or None
    _preflight(host, token, timeout_s)
    with _cluster_call(host, "connect"):
        return kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=token)


def _compiled(pipeline_func, directory: str, image: str | None = None) -> str:
    from kfp import compiler

    from components.common.image import use_image

    path = str(Path(directory) / f"{pipeline_func.name}.yaml")
    compiler.Compiler().compile(pipeline_func, path)
    if image:
        use_image(path, image)
    return path


# Every DAG parameter has a default, for runs started from the KFP UI (pipelines/parameters.py); a
# submission still passes each one (its config's slices, the content versions), except these, which
# only the drift loop sets.
MAY_OMIT = frozenset({"trigger"})


def check_parameters(pipeline_func, arguments: dict[str, Any]) -> dict[str, Any]:
    """Every parameter the pipeline declares (but MAY_OMIT), none it does not; raise ParameterError naming them."""
    inputs = pipeline_func.component_spec.inputs or {}
    declared = set(inputs)
    required = declared - MAY_OMIT
    unknown = sorted(set(arguments) - declared)
    missing = sorted(required - set(arguments))
    if unknown or missing:
        raise ParameterError(f"pipeline {pipeline_func.name}: unknown parameter(s) {', '.join(unknown) or '-'}; "
                             f"missing parameter(s) {', '.join(missing) or '-'}; "
                             f"it takes: {', '.join(sorted(declared))}")
    return arguments


def parse_params(pairs: list[str]) -> dict[str, str]:
    """KEY=VALUE pairs from the command line."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ParameterError(f"--param {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out


def distill_arguments(cfg, data_path: str, data_fingerprint: str, teacher_ref: str, teacher_version: str,
                      home: str = CLUSTER_HOME) -> dict[str, str]:
    """The distillation DAG's parameters (default home: the cluster's PVC mount path). Pass the
    teacher pinned where it can be resolved here; the steps check `teacher_version` either way."""
    return distill_parameters(cfg, home, data_path, data_fingerprint, teacher_ref, teacher_version)


def drift_arguments(cfg, production_path: str, model_ref: str | None = None) -> dict[str, str]:
    """The drift DAG's parameters for a recurring run: the same path is read on every run (the
    producer replaces the batch there), and monitor_drift never caches, so the fingerprint is fixed."""
    return drift_parameters(cfg, CLUSTER_HOME, production_path, "recurring", model_ref)


def submit_distill(client, host: str, experiment: str, arguments: dict[str, Any],
                   run_name: str | None = None, namespace: str | None = None,
                   image: str | None = None) -> dict[str, str]:
    """Start one run of the distillation DAG (its tasks in `image`, default the compiled-in one);
    return its id and where to see it."""
    from pipelines.distill import distill_pipeline

    check_parameters(distill_pipeline, arguments)
    with tempfile.TemporaryDirectory() as tmp, _cluster_call(host, "create the run"):
        result = client.create_run_from_pipeline_package(
            _compiled(distill_pipeline, tmp, image), arguments=arguments, run_name=run_name,
            experiment_name=experiment, namespace=namespace)
    return {"run_id": result.run_id, "url": f"{host.rstrip('/')}/#/runs/details/{result.run_id}"}


def schedule_drift(client, host: str, experiment: str, arguments: dict[str, Any], cron: str,
                   name: str = DRIFT_SCHEDULE_NAME, namespace: str | None = None,
                   image: str | None = None) -> dict[str, Any]:
    """Create the recurring drift-monitor run unless one with `name` exists (safe to rerun)."""
    from pipelines.drift import drift_pipeline

    check_parameters(drift_pipeline, arguments)
    with _cluster_call(host, "find or create the experiment"):
        exp = client.create_experiment(name=experiment, namespace=namespace)
    with _cluster_call(host, "list recurring runs"):
        listed = client.list_recurring_runs(experiment_id=exp.experiment_id, namespace=namespace, page_size=100)
    for existing in listed.recurring_runs or []:
        if existing.display_name == name:
            log.info("recurring run %s exists (%s): leaving it as it is", name, existing.recurring_run_id)
            return {"recurring_run_id": existing.recurring_run_id, "created": False}
    with tempfile.TemporaryDirectory() as tmp, _cluster_call(host, "create the recurring run"):
        created = client.create_recurring_run(
            experiment_id=exp.experiment_id, job_name=name, description="distillops drift monitor",
            cron_expression=cron, max_concurrency=1, no_catchup=True, params=arguments,
            pipeline_package_path=_compiled(drift_pipeline, tmp, image), enabled=True)
    return {"recurring_run_id": created.recurring_run_id, "created": True}
