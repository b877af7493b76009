"""The drift-monitor DAG: monitor_drift on a batch of production inputs. Wiring only.

`production_fingerprint` (sha256 of the batch) makes KFP's cache key follow the batch's content.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact

from components.monitor_drift.component import monitor_drift
from pipelines.platform import configure

PIPELINE_NAME = "distillops-drift"


class Outputs(NamedTuple):
    drifted: bool
    verdict: Artifact


@dsl.pipeline(name=PIPELINE_NAME, description="Compare production inputs with the champion's training data.")
def drift_pipeline(home: str, production_path: str, production_fingerprint: str, text_column: str,
                   model_ref: str, drift_config: str) -> Outputs:
    drift = monitor_drift(home=home, production_path=production_path, production_fingerprint=production_fingerprint,
                          text_column=text_column, model_ref=model_ref, config_json=drift_config)
    # The champion may have changed since the last batch: always look again.
    drift.set_caching_options(False)
    configure(drift, "monitor_drift")
    return Outputs(drifted=drift.outputs["Output"], verdict=drift.outputs["drift_verdict"])
