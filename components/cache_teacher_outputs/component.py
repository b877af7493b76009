"""KFP interface of cache_teacher_outputs."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def cache_teacher_outputs(home: str, dataset: Input[Dataset], data_version: str, teacher_ref: str,
                          teacher_version: str, config_json: str, teacher_outputs: Output[Artifact]) -> str:
    """The teachers' outputs for every row, from the content-addressed store; returns teacher_version.

    `data_version` and `teacher_version` are parameters so KFP's cache key follows content; the
    teacher loaded must be `teacher_version` (the run's pinned teacher), else the step fails.
    """
    from components.cache_teacher_outputs.runner import run
    from components.common.config import config_from_json

    summary = run(home=home, snapshot_path=dataset.path, teacher_ref=teacher_ref, cfg=config_from_json(config_json),
                  outputs_path=teacher_outputs.path, teacher_version=teacher_version)
    teacher_outputs.metadata.update(summary)
    return summary["teacher_version"]
