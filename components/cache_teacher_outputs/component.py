"""KFP interface of cache_teacher_outputs: plan -> one worker per shard (dsl.ParallelFor) -> merge."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def plan_teacher_shards(home: str, dataset: Input[Dataset], data_version: str, teacher_ref: str,
                        teacher_version: str, config_json: str) -> list[str]:
    """The rows the teacher store lacks, split into cache.shards shards of whole teacher batches: one
    JSON descriptor per shard (its texts in a file under the home), one empty shard when none is missing.

    `data_version` and `teacher_version` are parameters so KFP's cache key follows content.
    """
    from components.cache_teacher_outputs.fanout import plan_shards
    from components.common.config import config_from_json

    return plan_shards(home=home, snapshot_path=dataset.path, teacher_ref=teacher_ref,
                       cfg=config_from_json(config_json), teacher_version=teacher_version)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def teacher_shard_worker(home: str, shard: str, teacher_ref: str, teacher_version: str, config_json: str) -> str:
    """One teacher worker: the shard's rows the store still lacks, written to the store in chunks of
    cache.flush_rows (a retried worker computes only what its killed attempt had not written); returns
    its report (JSON: rows, teacher_forward_passes, seconds, rows_per_s)."""
    import json

    from components.cache_teacher_outputs.fanout import work_shard
    from components.common.config import config_from_json

    report = work_shard(home=home, shard_json=shard, teacher_ref=teacher_ref, cfg=config_from_json(config_json),
                        teacher_version=teacher_version)
    return json.dumps(report, sort_keys=True)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def cache_teacher_outputs(home: str, dataset: Input[Dataset], data_version: str, teacher_ref: str,
                          teacher_version: str, config_json: str, worker_reports: list[str],
                          teacher_outputs: Output[Artifact]) -> str:
    """The merge: the teachers' outputs for every row, from the content-addressed store (the workers
    filled it), fidelity-checked; returns teacher_version.

    `data_version` and `teacher_version` are parameters so KFP's cache key follows content; the
    teacher loaded must be `teacher_version` (the run's pinned teacher), else the step fails.
    `worker_reports` (dsl.Collected) makes the merge run after every worker.
    """
    import json

    from components.cache_teacher_outputs.runner import run
    from components.common.config import config_from_json

    summary = run(home=home, snapshot_path=dataset.path, teacher_ref=teacher_ref, cfg=config_from_json(config_json),
                  outputs_path=teacher_outputs.path, teacher_version=teacher_version,
                  worker_reports=[json.loads(r) for r in worker_reports])
    teacher_outputs.metadata.update(summary)
    return summary["teacher_version"]
