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
    acts: bool = True,
) -> bool:
    """Evidently report: production inputs vs the monitored model's moving reference (its training
    inputs plus the recent production rows it was redistilled on). Returns "redistil now": the drift
    policy's action (drift.trigger_on, cooldown, budget), not merely whether drift was seen (the
    verdict's ``drifted``). ``acts=False`` (watch only): returns whether it would redistil, and the
    history records ``would_redistill`` (no budget spent)."""
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
        acts=acts,
    )
    drift_verdict.metadata.update({"drifted": verdict["drifted"], "action": verdict["action"],
                                   "reasons": verdict["reasons"], "action_reasons": verdict["action_reasons"],
                                   "step_report": verdict["step_report"]})
    # kfp.local resolves dsl.If only on a task's single return value: this is what the loop acts on.
    return verdict["action"] in ("redistill", "would_redistill")
