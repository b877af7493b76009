"""KFP interface of monitor_drift."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Output

from components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def monitor_drift(
    home: str,
    production_path: str,
    production_fingerprint: str,
    text_column: str,
    model_ref: str,
    config_json: str,
    drift_report: Output[HTML],
    drift_verdict: Output[Artifact],
) -> bool:
    """Evidently report: production inputs vs the monitored model's training inputs; returns drifted."""
    from components.common.config import config_from_json
    from components.monitor_drift.runner import run

    verdict = run(
        home=home,
        production_path=production_path,
        text_column=text_column,
        model_ref=model_ref,
        cfg=config_from_json(config_json),
        report_html=drift_report.path,
        verdict_json=drift_verdict.path,
    )
    drift_verdict.metadata.update({"drifted": verdict["drifted"], "reasons": verdict["reasons"],
                                   "step_report": verdict["step_report"]})
    return bool(verdict["drifted"])
