"""KFP interface of promote: promote a gated student, or record the gate's refusal."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model

from components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def promote(home: str, student: Input[Model], gate_report: Input[Artifact], config_json: str,
            pipeline_run_id: str = "", trigger: str = "") -> str:
    """Register the gated student with its lineage and make it `champion` (the former one: `previous`).

    Returns the promotion as JSON (action, version, ledger entry, the step's report). Refuses a
    student whose gate report says it failed, and one whose gate compared it against a champion
    that has since been replaced (both are recorded in the audit log). `trigger`: JSON saying what
    started this run (the drift report), or "".
    """
    import json

    from components.common.config import config_from_json
    from components.promote.runner import run

    result = run(home=home, student_path=student.path, gate_report_path=gate_report.path,
                 cfg=config_from_json(config_json), pipeline_run_id=pipeline_run_id, trigger_json=trigger)
    return json.dumps(result, sort_keys=True, default=str)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def record_refusal(home: str, student: Input[Model], gate_report: Input[Artifact], config_json: str) -> str:
    """The gate refused the student: record the refusal (with its reasons) in the promotion history.

    Returns the record as JSON, shaped like promote's result (action "refused").
    """
    import json

    from components.common.config import config_from_json
    from components.promote.runner import record_gate_refusal

    result = record_gate_refusal(home=home, student_path=student.path, gate_report_path=gate_report.path,
                                 cfg=config_from_json(config_json))
    return json.dumps(result, sort_keys=True, default=str)
