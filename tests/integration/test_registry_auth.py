"""The registry behind MLflow's basic-auth app, as infra/k8s/base/mlflow.yaml runs it: a real
`mlflow server --app-name basic-auth` on loopback with an admin password from a config file (not the
old default), default permission READ, and the source-validation regex of the manifests.

RELIABILITY items 23 (401 without credentials, 403 for a read-only user moving an alias or creating a
version, the default admin password rejected) and 28 (a version whose source lies outside the artifact
root is refused by our client before MLflow is called, and by the server)."""

from __future__ import annotations

import base64
import json
import secrets
import urllib.error
import urllib.request
from unittest import mock

import pytest
from conftest import MlflowServer, make_promotable
from mlflow.exceptions import MlflowException

from components.common import registry
from components.common.config import Config
from components.common.home import Home
from components.promote import runner as promote_step

NAME = "distillops-student"
ADMIN_PASSWORD = "admin-" + secrets.token_hex(12)
PIPELINE = ("distillops-pipeline", "pipeline-" + secrets.token_hex(12))
READER = ("reader", "reader-" + secrets.token_hex(12))


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("auth-server")
    config = root / "basic_auth.ini"
    config.write_text("[mlflow]\ndefault_permission = READ\n"
                      f"database_uri = sqlite:///{root / 'auth.db'}\n"
                      f"admin_username = admin\nadmin_password = {ADMIN_PASSWORD}\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    server = MlflowServer(root, extra_args=("--app-name", "basic-auth"), env={
        "MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        "MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX": registry.SERVER_SOURCE_REGEX,
        "MLFLOW_BASIC_AUTH_FAIL_CLOSED": "true"}).start(timeout=300)  # the basic-auth app starts slower
    for user, password in (PIPELINE, READER):
        status, body = _call(server.uri, "POST", "/api/2.0/mlflow/users/create",
                             {"username": user, "password": password}, ("admin", ADMIN_PASSWORD))
        assert status == 200, body
    yield server
    server.stop()


def _call(uri, method, path, payload=None, auth=None):
    request = urllib.request.Request(uri + path, method=method,
                                     data=None if payload is None else json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def as_user(auth_server, home, monkeypatch):
    """Point MLflow at the server as one user (the pipeline pods get these from a secret)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth_server.uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

    def use(user: tuple[str, str]):
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", user[1])
        return registry.connect(Home.resolve(home))

    return use


def test_no_credentials_401_and_the_default_admin_password_is_rejected(auth_server):
    search = "/api/2.0/mlflow/registered-models/search"
    assert _call(auth_server.uri, "GET", search)[0] == 401
    assert _call(auth_server.uri, "GET", search, auth=("admin", "password1234"))[0] == 401
    assert _call(auth_server.uri, "GET", search, auth=("admin", "wrong"))[0] == 401
    assert _call(auth_server.uri, "GET", search, auth=("admin", ADMIN_PASSWORD))[0] == 200
    assert _call(auth_server.uri, "GET", search, auth=READER)[0] == 200  # default permission READ
    # A route no validator covers is denied to a non-admin (fail-closed), not served.
    assert _call(auth_server.uri, "POST", "/api/2.0/mlflow/no-such-route", {}, auth=READER)[0] == 403


def test_the_pipeline_promotes_a_reader_cannot_move_an_alias(auth_server, as_user, home, tmp_path):
    client = as_user(PIPELINE)
    student, gate = make_promotable(tmp_path, 1)
    result = promote_step.run(str(home), str(student), str(gate), Config())
    assert (result["version"], result["outcome"]["status"]) == ("1", "applied")
    assert registry.get_aliases(client, NAME)["champion"] == "1"
    # The version's source is the logged model's location under the server's artifact root.
    assert client.get_model_version(NAME, "1").source.startswith("mlflow-artifacts:/")

    reader = as_user(READER)
    assert registry.get_aliases(reader, NAME)["champion"] == "1"  # consumers read
    with pytest.raises(MlflowException) as denied:
        reader.set_registered_model_alias(NAME, "champion", "1")
    assert denied.value.get_http_status_code() == 403
    with pytest.raises(MlflowException) as denied:
        reader.create_model_version(NAME, client.get_model_version(NAME, "1").source)
    assert denied.value.get_http_status_code() == 403
    with pytest.raises(MlflowException) as denied:
        reader.delete_registered_model_alias(NAME, "champion")
    assert denied.value.get_http_status_code() == 403
    assert registry.get_aliases(as_user(PIPELINE), NAME)["champion"] == "1"


@pytest.mark.parametrize("source", ["file:///etc", "/etc", "mlflow-artifacts:/../../etc", "s3://elsewhere/x"])
def test_a_source_outside_the_artifact_root_is_refused_by_client_and_server(as_user, source):
    client = as_user(PIPELINE)
    registry._ensure_registered_model(client, "outsider", "test")
    with mock.patch.object(client, "create_model_version", side_effect=AssertionError("MLflow was called")), \
            pytest.raises(registry.RegistryError, match="refusing to register a model version from"):
        registry.register(client, source, "outsider", {})
    # The same source sent past our client: the server's regex refuses it.
    with pytest.raises(MlflowException, match="Invalid model version source"):
        client.create_model_version("outsider", source)
    assert client.search_model_versions("name = 'outsider'") == []
