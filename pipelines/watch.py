"""The watch DAG, for a recurring run on a cluster: check_for_changes -> (if changed) the whole
distillation DAG. Wiring only; `distillops watch` does the same locally.

The changed versions travel into the distillation DAG as parameters (data_fingerprint, the pinned
teacher reference and teacher_version that check_for_changes resolved), so KFP's cache reruns
exactly the steps they affect and every step loads the same teacher.
"""

from kfp import dsl

from components.watch.component import check_for_changes
from pipelines.distill import DEFAULTS, distill_pipeline
from pipelines.parameters import describe_parameters

PIPELINE_NAME = "distillops-watch"


@dsl.pipeline(name=PIPELINE_NAME, description="Rerun the distillation DAG when the data or the teacher changed.")
@describe_parameters
def watch_pipeline(
    home: str = DEFAULTS["home"],
    data_path: str = DEFAULTS["data_path"],
    teacher_ref: str = DEFAULTS["teacher_ref"],
    config_json: str = DEFAULTS["config_json"],
    data_config: str = DEFAULTS["data_config"],
    teacher_config: str = DEFAULTS["teacher_config"],
    train_config: str = DEFAULTS["train_config"],
    gate_config: str = DEFAULTS["gate_config"],
    promote_config: str = DEFAULTS["promote_config"],
    config_hash: str = DEFAULTS["config_hash"],
):
    """The watch DAG."""
    check = check_for_changes(home=home, data_path=data_path, teacher_ref=teacher_ref, config_json=config_json)
    check.set_display_name("check_for_changes")
    # Data and registry aliases move between runs with the same parameters: never serve this from cache.
    check.set_caching_options(False)
    with dsl.If(check.outputs["changed"] == True, name="versions-changed"):  # noqa: E712 (a KFP expression)
        distill_pipeline(home=home, data_path=data_path, data_fingerprint=check.outputs["data_fingerprint"],
                         teacher_ref=check.outputs["teacher_ref"], teacher_version=check.outputs["teacher_version"],
                         data_config=data_config, teacher_config=teacher_config, train_config=train_config,
                         gate_config=gate_config, promote_config=promote_config, config_hash=config_hash)
