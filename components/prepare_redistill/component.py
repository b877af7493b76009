"""KFP interface of prepare_redistill."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input

from components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def prepare_redistill(home: str, drift_verdict: Input[Artifact], production_path: str, text_column: str,
                      teacher_ref: str, teacher_version: str, config_json: str,
                      ) -> NamedTuple("RedistillData", data_path=str, data_fingerprint=str, trigger=str, report=str):
    """The next data version's file: the monitored model's data plus the production inputs with the
    teacher's labels. Returns its path, its sha256 (the distillation DAG's data_fingerprint) and
    the trigger lineage (JSON) that links the drift report to whatever gets promoted."""
    from typing import NamedTuple

    from components.common.config import config_from_json
    from components.prepare_redistill.runner import run

    out = run(home=home, verdict_path=drift_verdict.path, production_path=production_path,
              text_column=text_column, teacher_ref=teacher_ref, cfg=config_from_json(config_json),
              teacher_version=teacher_version)

    class RedistillData(NamedTuple):
        data_path: str
        data_fingerprint: str
        trigger: str
        report: str  # the step's report (JSON), read by the run summary

    return RedistillData(out["data_path"], out["data_fingerprint"], out["trigger"], out["report"])
