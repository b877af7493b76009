"""Kubernetes settings of each task on a Kubeflow cluster (kfp-kubernetes): secrets and config as
environment variables (the signing key, optional, to the steps that sign or verify), the home volume (teacher cache, DVC repository, reports), the DVC remote
config file, CPU/memory/GPU requests, retries of transient steps.

`configure(task, step)` is called for every task in the pipeline definitions. kfp.local ignores
all of it (resources, retries and the Kubernetes platform spec), so the same pipeline runs
locally and on a cluster; the compiled IR YAML carries it to the cluster.

The names here (secret, config map, PVC, mount path) are the ones infra/k8s/base creates: change
them in both places.

GPU nodes: set DISTILLOPS_ACCELERATOR (e.g. ``nvidia.com/gpu``) when compiling, and the GPU steps
(`GPU_STEPS`) request one accelerator each. Read when the pipelines are defined, like the image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from components.common.signing import KEY_ENV

# Every task mounts the home PVC here and gets it as its `home` parameter on a cluster.
CLUSTER_HOME = "/var/lib/distillops"
# Where the compiled pipelines' data parameters point by default (files copied onto the home volume;
# docs/deploy.md): the recurring watch run and the KFP UI start from these.
CLUSTER_DATA = f"{CLUSTER_HOME}/incoming/train.jsonl"
CLUSTER_PRODUCTION = f"{CLUSTER_HOME}/production/latest.jsonl"  # where the producer writes each batch
HOME_PVC = "distillops-home"
# Object-store credentials (DVC's S3 remote; the MLflow server proxies model artifacts itself).
OBJECT_STORE_SECRET = "distillops-object-store"
OBJECT_STORE_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# Where the services are: tracking server, DVC remote URL, S3 endpoint.
CONFIG_MAP = "distillops-config"
CONFIG_KEYS = ("MLFLOW_TRACKING_URI", "DISTILLOPS_DVC_REMOTE", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION",
               "DISTILLOPS_ARTIFACT_ROOT")
# The pipeline's own user on the MLflow server (basic-auth app): MLflow's client reads these.
MLFLOW_USER_SECRET = "distillops-mlflow-pipeline"
MLFLOW_USER_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
# The signing key (docs/promotion.md): the gate signs its report, promote and record_refusal verify
# it, the teacher-cache step signs and verifies its manifest records, and so does monitor_drift (it
# reads and writes the teacher's generations through the same store: unsigned records it wrote would
# be quarantined and recomputed by the next cache step). Optional: a cluster without the secret runs
# unsigned (binding still applies). Only the steps that sign or verify get it; train_student reads
# the TeacherOutputs artifact, not the store, and never sees the key.
SIGNING_SECRET = "distillops-signing-key"
SIGNING_SECRET_KEY = "key"
SIGNING_STEPS = ("plan_teacher_shards", "teacher_shard_worker", "cache_teacher_outputs", "benchmark_gate", "promote",
                 "record_refusal", "monitor_drift")
# DVC's system-level config directory: its `config` file (remote "storage" endpoint) merges
# under the repository's own config, which only sets the remote URL.
DVC_CONFIG_MAP = "distillops-dvc-config"
DVC_SYSTEM_CONFIG_DIR = "/etc/xdg/dvc"

# The teacher's forward passes run in its workers (teacher_shard_worker): they get the accelerator; the
# plan (key lookups) and the merge (stacking rows, a 16-row fidelity check) run on CPU.
GPU_STEPS = ("teacher_shard_worker", "train_student", "benchmark_gate")


@dataclass(frozen=True)
class StepResources:
    cpu: str
    memory: str
    # Retries for steps whose failures are usually transient (object store, registry, network);
    # every such step is safe to repeat (content-addressed writes, idempotent promotion).
    retries: int = 0


RESOURCES: dict[str, StepResources] = {
    "version_data": StepResources(cpu="1", memory="2Gi", retries=3),
    # The plan loads the teacher for its tokenizer and keys and reads which rows the store holds.
    "plan_teacher_shards": StepResources(cpu="1", memory="4Gi", retries=2),
    # One pod per shard (dsl.ParallelFor), each with these requests (and the accelerator): size them for
    # one copy of the teacher. A killed or preempted worker is retried and computes only the rows its
    # attempt had not flushed to the store (cache.flush_rows), so retries are cheap: allow more.
    "teacher_shard_worker": StepResources(cpu="2", memory="6Gi", retries=3),
    # The merge: reads every row from the store, writes TeacherOutputs, recomputes the fidelity sample.
    "cache_teacher_outputs": StepResources(cpu="2", memory="6Gi", retries=2),
    # A preempted or killed training is retried and resumes: its checkpoints live on the home volume
    # under a key of config, data and teacher versions (train_student.runner.checkpoint_dir), the last
    # complete one is verified and loaded, and SIGTERM makes it checkpoint and exit 75 within the pod's
    # grace period (a failed main container: Argo's default retryPolicy OnFailure retries it).
    "train_student": StepResources(cpu="4", memory="8Gi", retries=2),
    # Measures and writes its reports atomically; nothing external is created, so a retry is a rerun.
    "benchmark_gate": StepResources(cpu="2", memory="6Gi", retries=2),
    "promote": StepResources(cpu="1", memory="2Gi", retries=3),
    # The gate's refusal, appended to the promotion ledger (idempotent by its attempt id).
    "record_refusal": StepResources(cpu="1", memory="2Gi", retries=3),
    "monitor_drift": StepResources(cpu="1", memory="4Gi", retries=2),
    # Reads DVC and runs the teacher on the production batch; safe to repeat (atomic file write).
    "prepare_redistill": StepResources(cpu="2", memory="6Gi", retries=2),
}


def accelerator() -> str:
    """The accelerator resource GPU steps request ('' on CPU-only clusters)."""
    return os.environ.get("DISTILLOPS_ACCELERATOR", "").strip()


def configure(task, step: str):
    """Apply the cluster settings of `step` to `task` (a no-op under kfp.local); return the task."""
    from kfp import kubernetes

    if step not in RESOURCES:
        raise KeyError(f"no platform settings for step {step!r}; known: {', '.join(sorted(RESOURCES))}")
    res = RESOURCES[step]
    task.set_cpu_request(res.cpu).set_memory_request(res.memory).set_memory_limit(res.memory)
    if res.retries:
        task.set_retry(num_retries=res.retries, backoff_duration="30s", backoff_factor=2.0)
    if step in GPU_STEPS and accelerator():
        task.set_accelerator_type(accelerator()).set_accelerator_limit(1)
    kubernetes.use_secret_as_env(task, secret_name=OBJECT_STORE_SECRET,
                                 secret_key_to_env={key: key for key in OBJECT_STORE_KEYS})
    if step in SIGNING_STEPS:
        kubernetes.use_secret_as_env(task, secret_name=SIGNING_SECRET,
                                     secret_key_to_env={SIGNING_SECRET_KEY: KEY_ENV}, optional=True)
    kubernetes.use_secret_as_env(task, secret_name=MLFLOW_USER_SECRET,
                                 secret_key_to_env={key: key for key in MLFLOW_USER_KEYS})
    kubernetes.use_config_map_as_env(task, config_map_name=CONFIG_MAP,
                                     config_map_key_to_env={key: key for key in CONFIG_KEYS})
    kubernetes.use_config_map_as_volume(task, config_map_name=DVC_CONFIG_MAP, mount_path=DVC_SYSTEM_CONFIG_DIR)
    kubernetes.mount_pvc(task, pvc_name=HOME_PVC, mount_path=CLUSTER_HOME)
    # A digest-pinned or versioned image never changes under its name: use the node's copy.
    kubernetes.set_image_pull_policy(task, "IfNotPresent")
    return task
