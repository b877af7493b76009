"""The distillation DAG: version_data -> cache_teacher_outputs (plan -> workers -> merge) -> train_student -> benchmark_gate
-> promote if the gate passed, else record_refusal. Wiring only; each step's logic lives in
components/. The DAG's outputs are every task's outputs (each carries its step's report), which is
what the run summary is built from.

Content versions travel as parameters (data_fingerprint, data_version, teacher_version,
config_hash): KFP's cache key covers parameter values but only artifact *names*, so a content
change must show up as a parameter change to rerun exactly the steps it affects.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Model

from components.benchmark_gate.component import benchmark_gate
from components.cache_teacher_outputs.component import (
    cache_teacher_outputs,
    plan_teacher_shards,
    teacher_shard_worker,
)
from components.promote.component import promote, record_refusal
from components.train_student.component import train_student
from components.version_data.component import version_data
from pipelines.parameters import default_parameters, describe_parameters
from pipelines.platform import CLUSTER_DATA, CLUSTER_HOME, CLUSTER_PRODUCTION, configure

PIPELINE_NAME = "distillops-distill"
# Every parameter of every DAG has a default (params.yaml's defaults, the cluster paths) and a
# description, so a run can be started from the KFP UI; submissions pass every value explicitly.
DEFAULTS = default_parameters(CLUSTER_HOME, CLUSTER_DATA, CLUSTER_PRODUCTION)


class Outputs(NamedTuple):
    passed: bool
    gate_report: Artifact
    dataset: Dataset
    teacher_outputs: Artifact
    student: Model
    # promote's result, or record_refusal's on the dsl.Else branch (JSON).
    promotion: str


def teacher_fan_out(home, dataset, data_version, teacher_ref, teacher_version, teacher_config):
    """The cache step's tasks: plan (the rows the store lacks, in cache.shards shards) -> one teacher
    worker per shard (dsl.ParallelFor) -> the merge (cache_teacher_outputs), which collects the
    workers' reports so it runs after them; returns the merge task. The plan never returns an empty
    list: kfp.local fails a ParallelFor over one, and a fan-in inside dsl.If cannot hand its artifact
    out (kfp.local refuses dsl.OneOf of artifacts), so a store that holds every row gets one empty
    shard, whose worker exits without loading the teacher."""
    plan = plan_teacher_shards(home=home, dataset=dataset, data_version=data_version, teacher_ref=teacher_ref,
                               teacher_version=teacher_version, config_json=teacher_config)
    configure(plan, "plan_teacher_shards")
    with dsl.ParallelFor(plan.output, name="teacher-shards") as shard:
        worker = teacher_shard_worker(home=home, shard=shard, teacher_ref=teacher_ref,
                                      teacher_version=teacher_version, config_json=teacher_config)
        configure(worker, "teacher_shard_worker")
    merge = cache_teacher_outputs(home=home, dataset=dataset, data_version=data_version, teacher_ref=teacher_ref,
                                  teacher_version=teacher_version, config_json=teacher_config,
                                  worker_reports=dsl.Collected(worker.output))
    configure(merge, "cache_teacher_outputs")
    return merge


@dsl.pipeline(name=PIPELINE_NAME, description="Distil a student from a teacher, gate it, promote it.")
@describe_parameters
def distill_pipeline(
    home: str = DEFAULTS["home"],
    data_path: str = DEFAULTS["data_path"],
    data_fingerprint: str = DEFAULTS["data_fingerprint"],
    teacher_ref: str = DEFAULTS["teacher_ref"],
    teacher_version: str = DEFAULTS["teacher_version"],
    data_config: str = DEFAULTS["data_config"],
    teacher_config: str = DEFAULTS["teacher_config"],
    train_config: str = DEFAULTS["train_config"],
    gate_config: str = DEFAULTS["gate_config"],
    promote_config: str = DEFAULTS["promote_config"],
    config_hash: str = DEFAULTS["config_hash"],
    trigger: str = DEFAULTS["trigger"],
) -> Outputs:
    """The distillation DAG."""
    data = version_data(home=home, data_path=data_path, data_fingerprint=data_fingerprint,
                        config_json=data_config)
    data.set_display_name("version_data")
    configure(data, "version_data")
    teacher = teacher_fan_out(home, data.outputs["dataset"], data.outputs["Output"], teacher_ref, teacher_version,
                              teacher_config)
    train = train_student(home=home, dataset=data.outputs["dataset"],
                          teacher_outputs=teacher.outputs["teacher_outputs"], data_version=data.outputs["Output"],
                          teacher_ref=teacher_ref, teacher_version=teacher.outputs["Output"],
                          config_json=train_config, config_hash=config_hash)
    configure(train, "train_student")
    gate = benchmark_gate(home=home, dataset=data.outputs["dataset"],
                          teacher_outputs=teacher.outputs["teacher_outputs"], student=train.outputs["student"],
                          teacher_ref=teacher_ref, teacher_version=teacher.outputs["Output"],
                          config_json=gate_config, trigger=trigger)
    configure(gate, "benchmark_gate")
    # kfp.local resolves a condition on a task's single return value ("Output"), not on named outputs.
    with dsl.If(gate.outputs["Output"] == True, name="gate-passed"):  # noqa: E712 (a KFP expression)
        promotion = promote(home=home, student=train.outputs["student"], gate_report=gate.outputs["gate_report"],
                            config_json=promote_config, pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                            trigger=trigger)
        # The registry is external state: never replay a promotion from the cache (promote is idempotent).
        promotion.set_caching_options(False)
        configure(promotion, "promote")
    with dsl.Else(name="gate-refused"):
        # A refused student is part of the promotion history too.
        refusal = record_refusal(home=home, student=train.outputs["student"], gate_report=gate.outputs["gate_report"],
                                 config_json=promote_config)
        refusal.set_caching_options(False)
        configure(refusal, "record_refusal")
    return Outputs(passed=gate.outputs["Output"], gate_report=gate.outputs["gate_report"],
                   dataset=data.outputs["dataset"], teacher_outputs=teacher.outputs["teacher_outputs"],
                   student=train.outputs["student"], promotion=dsl.OneOf(promotion.output, refusal.output))
