"""KFP interface of promote."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model

from components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def promote(home: str, student: Input[Model], gate_report: Input[Artifact], config_json: str,
            pipeline_run_id: str = "", trigger: str = "") -> str:
    """Register the gated student with its lineage and make it `champion` (the former one: `previous`).

    Returns the registry version. Refuses a student whose gate report says it failed, and one
    whose gate compared it against a champion that has since been replaced (both are recorded in
    the audit log). `trigger`: JSON saying what started this run (the drift report), or "".
    """
    from components.promote.runner import run

    return run(home=home, student_path=student.path, gate_report_path=gate_report.path,
               config_json=config_json, pipeline_run_id=pipeline_run_id, trigger_json=trigger)["version"]
