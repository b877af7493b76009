"""Side effects of promote: apply the plan to the MLflow registry (version, tags, aliases), and
record a gate's refusal in the promotion history (the DAG's ``dsl.Else`` branch)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

from components.common import registry
from components.common.config import Config
from components.common.hashing import digest_dir
from components.common.home import Home
from components.common.lineage import read_lineage
from components.common.steplog import record_step
from components.common.tracking import log_model
from components.promote.core import plan_promotion

log = logging.getLogger(__name__)


class PromotionRefused(RuntimeError):
    """promote was asked to promote a student that did not pass the gate."""


def git_commit() -> str:
    if os.environ.get("DISTILLOPS_GIT_COMMIT"):
        return os.environ["DISTILLOPS_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def lineage_tags(lineage: dict, gate: dict, digest: str, pipeline_run_id: str, trigger: dict) -> dict[str, str]:
    """Every lineage tag a registered student carries (and its audit record repeats)."""
    ctx = gate.get("context", {})
    tags = {
        "data_version": lineage["data_version"], "teacher_version": lineage["teacher_version"],
        "teacher_ref": lineage["teacher_ref"], "teacher_cache_key": ctx.get("teacher_cache_key", ""),
        "config_hash": lineage["config_hash"], "git_commit": git_commit(), "model_digest": digest,
        "mlflow_run_id": lineage["mlflow_run_id"], "pipeline_run_id": pipeline_run_id or "",
        "gate_report": ctx.get("report_location", ""), "gate_champion": ctx.get("champion_version", "none"),
    }
    if trigger:
        tags["trigger"] = json.dumps(trigger, sort_keys=True)
        tags.update({f"trigger_{k}": str(v) for k, v in trigger.items() if k in ("drift_report", "drift_run_id",
                                                                                  "drift_verdict")})
    return tags


def run(home: str, student_path: str, gate_report_path: str, cfg: Config, pipeline_run_id: str = "",
        trigger_json: str = "") -> dict:
    """Plan, then apply: register (once per weights), append a compare-and-set claim to the ledger,
    sync. The claim expects the champion the gate compared against; if another promotion landed
    first, the claim is recorded as rejected and PromotionRefused is raised."""
    from components.promote.audit import append_and_sync, new_record, record_refusal, sync

    h = Home.resolve(home).ensure()
    name = cfg.student.registered_name
    with record_step(h, "promote") as counters:
        gate = json.loads(Path(gate_report_path).read_text())
        lineage = read_lineage(student_path)
        trigger = json.loads(trigger_json) if trigger_json else {}
        digest = digest_dir(student_path)
        tags = lineage_tags(lineage, gate, digest, pipeline_run_id, trigger)
        client = registry.connect(h)
        # First finish whatever an interrupted promotion left pending, so the plan sees the truth.
        state, _ = sync(client, h, name)
        existing = registry.find_versions(client, name, "model_digest", digest)
        plan = plan_promotion(gate["passed"], gate["reasons"], str(existing[0].version) if existing else None,
                              state.champion)
        log.info("promotion plan: %s (%s)", plan.action, "; ".join(plan.reasons))
        if plan.action == "refuse":
            record_refusal(client, h, name, list(plan.reasons), tags)
            raise PromotionRefused(f"not promoting {student_path}: " + "; ".join(plan.reasons))
        version, outcome, seq = plan.version, None, None
        if plan.action == "register":
            gate_tags = {
                "gate_passed": str(gate["passed"]), "gate_reasons": json.dumps(gate["reasons"]),
                "gate_checks": json.dumps([{k: c[k] for k in ("name", "passed", "value", "threshold")}
                                           for c in gate["checks"]])[:4900],
                "student_accuracy": f"{gate['models']['student']['accuracy']:.4f}",
            }
            model_uri = log_model(h, student_path, run_id=lineage["mlflow_run_id"])
            version = str(registry.register(client, model_uri, name, {**tags, **gate_tags}).version)
            version = _deduplicate(client, name, digest, version)
        if plan.action in ("register", "alias_existing"):
            expected = gate.get("context", {}).get("champion_version", "none")
            record = new_record("promote", name, version, expected, list(plan.reasons), tags)
            seq, outcome, state = append_and_sync(client, h, name, record)
            if outcome.status != "applied":
                counters.update(action="rejected", version=version, ledger_seq=seq)
                raise PromotionRefused(f"promotion of {name} version {version} (ledger entry {seq}) rejected: "
                                       f"{outcome.why}")
        counters.update(action=plan.action, version=version, ledger_seq=seq)
    return {"action": plan.action, "version": version, "previous": state.previous, "reasons": list(plan.reasons),
            "model": name, "ledger_seq": seq, "outcome": outcome.to_dict() if outcome else None,
            "step_report": counters}


def record_gate_refusal(home: str, student_path: str, gate_report_path: str, cfg: Config) -> dict:
    """A student the gate refused is part of the promotion history too: append a refusal record
    (no alias changes) with the gate's reasons and the student's lineage."""
    from components.promote.audit import record_refusal

    h = Home.resolve(home).ensure()
    name = cfg.student.registered_name
    with record_step(h, "record_refusal") as counters:
        gate = json.loads(Path(gate_report_path).read_text())
        if gate.get("passed"):
            raise ValueError(f"{gate_report_path}: the gate passed; there is no refusal to record")
        lineage = read_lineage(student_path)
        ctx = gate.get("context", {})
        seq = record_refusal(registry.connect(h), h, name, list(gate.get("reasons", [])),
                             {"data_version": lineage["data_version"], "config_hash": lineage["config_hash"],
                              "teacher_version": lineage["teacher_version"],
                              "gate_report": ctx.get("report_location", "")})
        counters.update(action="refused", ledger_seq=seq)
    return {"action": "refused", "version": None, "reasons": list(gate.get("reasons", [])), "model": name,
            "ledger_seq": seq, "step_report": counters}


def _deduplicate(client, name: str, digest: str, version: str) -> str:
    """Two racing promotions of the same weights both register; keep the lowest version only."""
    same = registry.find_versions(client, name, "model_digest", digest)
    lowest = str(same[0].version) if same else version
    if lowest != version:
        log.info("weights already registered as version %s by a concurrent promotion; dropping %s", lowest, version)
        registry.delete_version(client, name, version)
    return lowest
