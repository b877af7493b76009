"""The compiled IR YAML (what a cluster runs): parsed strictly into KFP's PipelineSpec and
PlatformSpec protos (and each task's Kubernetes config into KubernetesExecutorConfig), and
compared with a snapshot with the volatile fields removed (SDK version, the embedded component
source). After an intended change to the DAG:

    DISTILLOPS_UPDATE_SNAPSHOTS=1 python -m pytest tests/pipeline/test_compiled_spec.py
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

from components.common import signing
from components.common.image import IMAGE
from pipelines import platform
from pipelines.compile import compile_all

SNAPSHOTS = Path(__file__).parent / "snapshots"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("ir")
    return {p.stem: list(yaml.safe_load_all(p.read_text())) for p in compile_all(out)}


def parse_strictly(docs):
    """Unknown or misspelt fields raise: json_format.ParseDict with ignore_unknown_fields=False."""
    assert len(docs) == 2, "expected the pipeline spec and the platform spec"
    spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    platform_spec = json_format.ParseDict(docs[1], pipeline_spec_pb2.PlatformSpec(), ignore_unknown_fields=False)
    k8s = json_format.MessageToDict(platform_spec.platforms["kubernetes"].deployment_spec)["executors"]
    executors = {name: json_format.ParseDict(config, kubernetes_executor_config_pb2.KubernetesExecutorConfig(),
                                             ignore_unknown_fields=False)
                 for name, config in k8s.items()}
    # The deployment spec is a Struct inside PipelineSpec: parse it into its own message too.
    deployment = json_format.ParseDict(json_format.MessageToDict(spec.deployment_spec),
                                       pipeline_spec_pb2.PipelineDeploymentConfig(), ignore_unknown_fields=False)
    spec.deployment_spec.Clear()
    return spec, executors, deployment


def normalized(docs):
    """The IR with volatile fields replaced: SDK version, the component source, the image."""
    spec = yaml.safe_load(yaml.safe_dump(docs[0]))
    spec.pop("sdkVersion")
    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor["container"]
        assert container["image"] == IMAGE
        container["image"] = "<IMAGE>"
        # command = [sh, -ec, <launcher script>, <the component's Python source>]
        container["command"][-1] = "<component source>"
    return [spec, docs[1]]


@pytest.mark.parametrize("name", ["distill_pipeline", "drift_pipeline"])
def test_matches_snapshot(compiled, name):
    parse_strictly(compiled[name])
    got = normalized(compiled[name])
    snapshot = SNAPSHOTS / f"{name}.yaml"
    if os.environ.get("DISTILLOPS_UPDATE_SNAPSHOTS"):
        snapshot.write_text(yaml.safe_dump_all(got, sort_keys=True))
    want = list(yaml.safe_load_all(snapshot.read_text()))
    assert got == want, f"{name} differs from {snapshot}; if intended, regenerate it (see this module's docstring)"


def test_strict_parsing_rejects_an_unknown_field(compiled):
    docs = yaml.safe_load(yaml.safe_dump(compiled["drift_pipeline"]))
    docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-monitor-drift"]["secretAsEnvs"] = []
    with pytest.raises(json_format.ParseError, match="secretAsEnvs"):
        parse_strictly(docs)


def test_every_task_gets_the_cluster_settings(compiled):
    steps = {"distill_pipeline": ["version_data", "plan_teacher_shards", "teacher_shard_worker",
                                  "cache_teacher_outputs", "train_student", "benchmark_gate", "promote",
                                  "record_refusal"], "drift_pipeline": ["monitor_drift"]}
    for name, names in steps.items():
        spec, executors, deployment = parse_strictly(compiled[name])
        assert sorted(executors) == sorted(f"exec-{s.replace('_', '-')}" for s in names)
        for step in names:
            k8s = executors[f"exec-{step.replace('_', '-')}"]
            secrets = {s.secret_name: s for s in k8s.secret_as_env}
            assert {e.env_var for e in secrets[platform.OBJECT_STORE_SECRET].key_to_env} == set(platform.OBJECT_STORE_KEYS)
            assert not secrets[platform.OBJECT_STORE_SECRET].optional
            # The pipeline's own MLflow user (the server runs basic-auth).
            assert {e.env_var for e in secrets[platform.MLFLOW_USER_SECRET].key_to_env} == set(platform.MLFLOW_USER_KEYS)
            signed = step in platform.SIGNING_STEPS
            assert set(secrets) == {platform.OBJECT_STORE_SECRET, platform.MLFLOW_USER_SECRET,
                                    *([platform.SIGNING_SECRET] if signed else [])}
            if signed:  # optional: a cluster without the secret runs unsigned, binding still applies
                key = secrets[platform.SIGNING_SECRET]
                assert key.optional and [(e.secret_key, e.env_var) for e in key.key_to_env] == [
                    (platform.SIGNING_SECRET_KEY, signing.KEY_ENV)]
            assert [(m.constant, m.mount_path) for m in k8s.pvc_mount] == [(platform.HOME_PVC, platform.CLUSTER_HOME)]
            assert k8s.config_map_as_volume[0].mount_path == platform.DVC_SYSTEM_CONFIG_DIR
            resources = deployment.executors[f"exec-{step.replace('_', '-')}"].container.resources
            want = platform.RESOURCES[step]
            assert (resources.resource_cpu_request, resources.resource_memory_request) == (want.cpu, want.memory)
            assert not resources.accelerator.resource_type  # CPU unless DISTILLOPS_ACCELERATOR is set
            task = _task(spec, step)
            assert task.retry_policy.max_retry_count == want.retries


def _task(spec, step):
    tasks = dict(spec.root.dag.tasks)
    for component in spec.components.values():  # dsl.If and dsl.ParallelFor bodies are sub-DAGs
        tasks.update(component.dag.tasks)
    return tasks[step.replace("_", "-")]


def test_a_preempted_training_or_gate_task_is_retried(compiled):
    """RELIABILITY 40: a deleted pod's train_student / benchmark_gate gets a bounded retry (the
    retried training resumes from its checkpoint: tests/component/test_train_student_preemption.py)."""
    spec, _, _ = parse_strictly(compiled["distill_pipeline"])
    for step in ("train_student", "benchmark_gate", "teacher_shard_worker"):  # a killed worker's retry resumes
        policy = _task(spec, step).retry_policy
        assert 1 <= policy.max_retry_count <= 5, step
        assert policy.backoff_duration.seconds > 0, step


def test_promote_and_drift_never_come_from_the_cache(compiled):
    spec, _, _ = parse_strictly(compiled["distill_pipeline"])
    assert not _task(spec, "promote").caching_options.enable_cache
    assert not _task(spec, "record_refusal").caching_options.enable_cache  # RELIABILITY item 39
    assert _task(spec, "train_student").caching_options.enable_cache
    drift, _, _ = parse_strictly(compiled["drift_pipeline"])
    assert not _task(drift, "monitor_drift").caching_options.enable_cache


def test_gpu_and_pinned_image_are_compile_time_settings(tmp_path):
    """DISTILLOPS_IMAGE (a digest) and DISTILLOPS_ACCELERATOR are read when the pipelines are
    defined: compile in a fresh interpreter with them set."""
    digest = "registry.example.com/distillops@sha256:" + "0123456789abcdef" * 4
    env = dict(os.environ, DISTILLOPS_IMAGE=digest, DISTILLOPS_ACCELERATOR="nvidia.com/gpu")
    subprocess.run([sys.executable, "-m", "pipelines.cli", "compile", "--output-dir", str(tmp_path)], env=env,
                   cwd=ROOT, check=True, capture_output=True)
    _, _, deployment = parse_strictly(list(yaml.safe_load_all((tmp_path / "distill_pipeline.yaml").read_text())))
    for name, executor in deployment.executors.items():
        assert executor.container.image == digest
        step = name.removeprefix("exec-").replace("-", "_")
        accelerator = executor.container.resources.accelerator
        if step in platform.GPU_STEPS:
            assert (accelerator.resource_type, accelerator.resource_count) == ("nvidia.com/gpu", "1")
        else:
            assert not accelerator.resource_type
    # The teacher's forward passes run in its workers: they, not the plan or the merge, get the accelerator.
    gpu = {name for name, e in deployment.executors.items() if e.container.resources.accelerator.resource_type}
    assert {"exec-teacher-shard-worker", "exec-train-student", "exec-benchmark-gate"} <= gpu
    assert not {"exec-plan-teacher-shards", "exec-cache-teacher-outputs"} & gpu


def test_compile_puts_a_digest_given_with_image_into_every_task(tmp_path, capsys):
    """RELIABILITY item 36: `compile --image name@sha256:...` runs every task of every DAG in it."""
    from pipelines.cli import main

    digest = "registry.example.com/distillops@sha256:" + "fedcba9876543210" * 4
    assert main(["compile", "--output-dir", str(tmp_path), "--image", digest]) == 0
    assert "movable tag" not in capsys.readouterr().err
    for name in ("distill_pipeline", "drift_pipeline", "drift_redistill_pipeline", "watch_pipeline"):
        docs = list(yaml.safe_load_all((tmp_path / f"{name}.yaml").read_text()))
        images = {e["container"]["image"] for e in docs[0]["deploymentSpec"]["executors"].values()}
        assert images == {digest}, name
        if name in ("distill_pipeline", "drift_pipeline"):
            parse_strictly(docs)
    assert main(["compile", "--output-dir", str(tmp_path), "--image", "registry.example.com/d:latest"]) == 0
    assert "is a movable tag" in capsys.readouterr().err  # a warning: submit and schedule refuse it


def test_a_malformed_image_reference_fails_at_compile_time(tmp_path):
    env = dict(os.environ, DISTILLOPS_IMAGE="registry.example.com/distillops")
    out = subprocess.run([sys.executable, "-m", "pipelines.cli", "compile", "--output-dir", str(tmp_path)],
                         env=env, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0
    assert "DISTILLOPS_IMAGE='registry.example.com/distillops': expected name:tag or name@sha256" in out.stderr


@pytest.mark.parametrize("name", ["distill_pipeline", "drift_pipeline"])
def test_no_task_installs_packages_at_start(compiled, name):
    """The image carries kfp and the project (install_kfp_package=False, no packages_to_install)."""
    _, _, deployment = parse_strictly(compiled[name])
    for executor_name, executor in deployment.executors.items():
        script = " ".join(executor.container.command)
        assert "pip install" not in script and "pip3 install" not in script, executor_name
        assert executor.container.image == IMAGE


def test_every_pipeline_parameter_has_a_default_and_a_description(tmp_path):
    """A run can be started from the KFP UI: every root input of every compiled DAG comes with a
    default and a description, and the defaults are params.yaml's (the config slices and hash)."""
    from components.common.config import config_from_json, config_hash, load_config
    from pipelines.compile import compile_redistill, compile_watch
    from pipelines.parameters import STEP_SECTIONS, step_config_json, validate

    params_yaml = load_config(ROOT / "params.yaml")
    validate(params_yaml)  # the defaults pass the registries' checks too (loss keys, student builder)
    paths = [*compile_all(tmp_path), compile_redistill(tmp_path), compile_watch(tmp_path)[0]]
    slices = {"data_config": "version_data", "teacher_config": "cache_teacher_outputs",
              "train_config": "train_student", "gate_config": "benchmark_gate", "promote_config": "promote",
              "drift_config": "monitor_drift", "redistill_config": "prepare_redistill"}
    seen = set()
    for path in paths:
        inputs = next(yaml.safe_load_all(path.read_text()))["root"]["inputDefinitions"]["parameters"]
        assert len(inputs) >= 6, path.name
        for name, spec in inputs.items():
            assert "defaultValue" in spec and spec.get("isOptional"), f"{path.name}: {name} has no default"
            assert len(spec.get("description", "")) > 20, f"{path.name}: {name} has no description"
            default = spec["defaultValue"]
            if name in slices:
                assert default == step_config_json(params_yaml, slices[name]), name
                assert set(json.loads(default)) == set(STEP_SECTIONS[slices[name]])
                assert config_from_json(default) == params_yaml
            elif name == "config_json":
                assert config_from_json(default) == params_yaml
            elif name == "config_hash":
                assert default == config_hash(params_yaml)
            elif name in ("home", "data_path", "production_path"):
                assert default.startswith(platform.CLUSTER_HOME), name
            elif name == "teacher_ref":
                assert default == params_yaml.teacher.ref
            elif name == "text_column":
                assert default == params_yaml.data.text_column
            elif name == "model_ref":
                assert default == f"models:/{params_yaml.student.registered_name}@champion"
            seen.add(name)
    assert {"data_fingerprint", "teacher_version", "trigger", "production_fingerprint"} <= seen


def test_a_pipeline_parameter_without_a_description_is_an_error():
    from pipelines.parameters import describe_parameters

    def pipeline(home: str = "/h", epochs: str = "3"):
        """A pipeline."""

    with pytest.raises(KeyError, match="pipeline: no description for parameter\\(s\\) epochs"):
        describe_parameters(pipeline)
