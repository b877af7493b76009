"""RELIABILITY item 28, client side, on the embedded sqlite registry: `registry.register` refuses a
source outside the artifact root before MLflow is called (the server side is in
tests/integration/test_registry_auth.py)."""

import pytest

from components.common import registry
from components.common.home import Home


@pytest.mark.parametrize("source", ["file:///etc", "/etc/passwd", "s3://elsewhere/model", "models:/other/1",
                                    "runs:/0123/model"])
def test_register_refuses_a_source_outside_the_artifact_root(home, source):
    client = registry.connect(Home.resolve(home))
    with pytest.raises(registry.RegistryError, match="must lie under the artifact root"):
        registry.register(client, source, "distillops-student", {})
    assert client.search_model_versions("name = 'distillops-student'") == []


def test_a_traversal_inside_the_root_is_refused(home, monkeypatch):
    h = Home.resolve(home)
    client = registry.connect(h)
    inside = h.mlflow_artifacts.as_uri() + "/1/../../../../etc"
    with pytest.raises(registry.RegistryError, match="contains '..'"):
        registry.register(client, inside, "distillops-student", {})
    monkeypatch.setenv(registry.ARTIFACT_ROOT_ENV, "mlflow-artifacts:/")
    with pytest.raises(registry.RegistryError, match="'mlflow-artifacts:/'"):
        registry.register(client, h.mlflow_artifacts.as_uri() + "/1/model", "distillops-student", {})


def test_check_source_accepts_what_lies_under_the_root(tmp_path):
    root = (tmp_path / "mlartifacts").as_uri()
    assert registry.check_source(root + "/models/m-1/artifacts", root)
    assert registry.check_source("mlflow-artifacts:/1/models/m-1/artifacts", "mlflow-artifacts:/")
    with pytest.raises(registry.RegistryError):
        registry.check_source("mlflow-artifacts:/1/x", "mlflow-artifacts:/2")
