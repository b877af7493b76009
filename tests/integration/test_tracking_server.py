"""A real `mlflow server` process started with the arguments of infra/k8s's MLflow Deployment
(PostgreSQL and S3 swapped for sqlite and a local directory): its --allowed-hosts admits the
Host headers that the pipeline tasks send and refuses others, and the project's registry module
leaves artifact storage to the server (proxied), so no pod writes artifacts to its own disk."""

import base64
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from components.common import registry
from components.common.home import Home
from pipelines import platform

ROOT = Path(__file__).resolve().parents[2]


def _manifest_args() -> list[str]:
    docs = yaml.safe_load_all((ROOT / "infra/k8s/base/mlflow.yaml").read_text())
    deployment = next(d for d in docs if d and d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["mlflow", "server"]
    return container["args"]


ADMIN = ("admin", "admin-" + secrets.token_hex(12))


def _manifest_env(root: Path) -> dict[str, str]:
    """The server container's literal env, plus what its secret gives (the basic-auth app's admin
    password and CSRF key, and its basic_auth.ini, here with a sqlite user database)."""
    docs = yaml.safe_load_all((ROOT / "infra/k8s/base/mlflow.yaml").read_text())
    deployment = next(d for d in docs if d and d["kind"] == "Deployment")
    env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
           if "value" in e}
    config = root / "basic_auth.ini"
    config.write_text("[mlflow]\ndefault_permission = READ\n"
                      f"database_uri = sqlite:///{root / 'auth.db'}\nadmin_username = {ADMIN[0]}\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    return {**env, "MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    args = []
    for arg in _manifest_args():
        key, _, value = arg.partition("=")
        if key == "--backend-store-uri":
            value = f"sqlite:///{root / 'mlflow.db'}"
        elif key == "--artifacts-destination":
            value = str(root / "artifacts")
        elif key == "--host":
            value = "127.0.0.1"
        elif key == "--port":
            value = str(port)
        elif key == "--workers":
            value = "1"
        elif key == "--allowed-hosts":
            value += f",127.0.0.1:{port}"  # this test's own client
        args.append(f"{key}={value}" if value else key)
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **_manifest_env(root)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300  # the basic-auth app starts slower
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited: {proc.stderr.read()[-2000:]}")
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        pytest.fail("mlflow server did not answer /health within 300 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _status_with_host(url: str, host: str) -> int:
    auth = base64.b64encode(":".join(ADMIN).encode()).decode()
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/search?max_results=1",
                                     headers={"Host": host, "Authorization": f"Basic {auth}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_allowed_hosts_admit_the_service_names_and_refuse_others(server):
    tracking_host = yaml.safe_load((ROOT / "infra/k8s/base/config.yaml").read_text().split("---")[0])
    service = tracking_host["data"]["MLFLOW_TRACKING_URI"].removeprefix("http://")
    for host in (service, "distillops-mlflow.kubeflow.svc.cluster.local:5000", "localhost:5000"):
        assert _status_with_host(server, host) == 200, host
    assert _status_with_host(server, "attacker.example:5000") in (400, 403)


def test_registry_leaves_artifacts_to_the_server(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    client = registry.connect(Home.resolve(tmp_path / "home"))
    experiment = client.get_experiment_by_name(registry.EXPERIMENT)
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), experiment.artifact_location
    assert platform.CLUSTER_HOME not in experiment.artifact_location
