"""The drift DAGs. Wiring only.

- ``drift_pipeline``: monitor_drift on a batch of production inputs (watch only).
- ``drift_redistill_pipeline``: the closed loop: monitor_drift, and if the drift policy says so
  (a configured trigger fired, no cooldown, budget left: the verdict's ``action``),
  prepare_redistill (the champion's data plus the production inputs labelled by the teacher) and
  then the distillation DAG itself, nested as a sub-DAG (version_data -> ... -> gate -> promote),
  with the drift report's lineage handed to the gate (which also gates on the triggering batch) and
  to promote.

`production_fingerprint` (sha256 of the batch) makes KFP's cache key follow the batch's content.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact

from components.monitor_drift.component import monitor_drift
from components.prepare_redistill.component import prepare_redistill
from pipelines.distill import DEFAULTS, distill_pipeline
from pipelines.parameters import describe_parameters
from pipelines.platform import configure

PIPELINE_NAME = "distillops-drift"


class Outputs(NamedTuple):
    redistill: bool  # the drift policy's "redistil now" (watch only: "would redistil"), not "drift seen"
    verdict: Artifact


@dsl.pipeline(name=PIPELINE_NAME, description="Compare production inputs with the champion's training data.")
@describe_parameters
def drift_pipeline(home: str = DEFAULTS["home"], production_path: str = DEFAULTS["production_path"],
                   production_fingerprint: str = DEFAULTS["production_fingerprint"],
                   text_column: str = DEFAULTS["text_column"], model_ref: str = DEFAULTS["model_ref"],
                   drift_config: str = DEFAULTS["drift_config"]) -> Outputs:
    """The drift monitor (watch only)."""
    drift = monitor_drift(home=home, production_path=production_path, production_fingerprint=production_fingerprint,
                          text_column=text_column, model_ref=model_ref, config_json=drift_config, acts=False)
    # The champion may have changed since the last batch: always look again.
    drift.set_caching_options(False)
    configure(drift, "monitor_drift")
    return Outputs(redistill=drift.outputs["Output"], verdict=drift.outputs["drift_verdict"])


REDISTILL_PIPELINE_NAME = "distillops-drift-redistill"


@dsl.pipeline(name=REDISTILL_PIPELINE_NAME,
              description="Watch production inputs; on drift, redistil from the teacher and gate and promote.")
@describe_parameters
def drift_redistill_pipeline(
    home: str = DEFAULTS["home"],
    production_path: str = DEFAULTS["production_path"],
    production_fingerprint: str = DEFAULTS["production_fingerprint"],
    text_column: str = DEFAULTS["text_column"],
    model_ref: str = DEFAULTS["model_ref"],
    drift_config: str = DEFAULTS["drift_config"],
    redistill_config: str = DEFAULTS["redistill_config"],
    teacher_ref: str = DEFAULTS["teacher_ref"],
    teacher_version: str = DEFAULTS["teacher_version"],
    data_config: str = DEFAULTS["data_config"],
    teacher_config: str = DEFAULTS["teacher_config"],
    train_config: str = DEFAULTS["train_config"],
    gate_config: str = DEFAULTS["gate_config"],
    promote_config: str = DEFAULTS["promote_config"],
    config_hash: str = DEFAULTS["config_hash"],
) -> Outputs:
    """The closed drift loop."""
    drift = monitor_drift(home=home, production_path=production_path, production_fingerprint=production_fingerprint,
                          text_column=text_column, model_ref=model_ref, config_json=drift_config)
    drift.set_caching_options(False)
    configure(drift, "monitor_drift")
    # kfp.local resolves a condition on a task's single return value ("Output"), not on named outputs.
    with dsl.If(drift.outputs["Output"] == True, name="redistill"):  # noqa: E712 (a KFP expression)
        data = prepare_redistill(home=home, drift_verdict=drift.outputs["drift_verdict"],
                                 production_path=production_path, text_column=text_column, teacher_ref=teacher_ref,
                                 teacher_version=teacher_version, config_json=redistill_config)
        data.set_caching_options(False)
        configure(data, "prepare_redistill")
        distill_pipeline(home=home, data_path=data.outputs["data_path"],
                         data_fingerprint=data.outputs["data_fingerprint"], teacher_ref=teacher_ref,
                         teacher_version=teacher_version, data_config=data_config, teacher_config=teacher_config,
                         train_config=train_config, gate_config=gate_config, promote_config=promote_config,
                         config_hash=config_hash, trigger=data.outputs["trigger"])
    return Outputs(redistill=drift.outputs["Output"], verdict=drift.outputs["drift_verdict"])
