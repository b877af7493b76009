"""KFP interface of train_student."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_student(home: str, dataset: Input[Dataset], teacher_outputs: Input[Artifact], data_version: str,
                  teacher_ref: str, teacher_version: str, config_json: str, config_hash: str,
                  student: Output[Model]) -> str:
    """Distil a student from the cached teacher logits; returns the MLflow run id of the training.

    On SIGTERM (a preempted pod) the training checkpoints and the task exits 75; its retry resumes.
    """
    import sys

    from components.common.config import config_from_json
    from components.distillation.preemption import Preempted
    from components.train_student.runner import run

    try:
        summary = run(home=home, snapshot_path=dataset.path, teacher_outputs_path=teacher_outputs.path,
                      teacher_ref=teacher_ref, cfg=config_from_json(config_json), data_version=data_version,
                      model_out=student.path, config_hash=config_hash, teacher_version=teacher_version)
    except Preempted as exc:  # SIGTERM: a checkpoint is written; the task's retry resumes from it
        sys.stderr.write(f"train_student: preempted: {exc}\n")
        raise SystemExit(exc.exit_code) from None
    student.metadata.update(summary)
    return summary["mlflow_run_id"]
