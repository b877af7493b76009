"""Side effects of promote: apply the plan to the MLflow registry (version, tags, aliases)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

from components.common import registry
from components.common.config import config_from_json
from components.common.hashing import digest_dir
from components.common.home import Home
from components.common.steplog import record_step
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


def run(home: str, student_path: str, gate_report_path: str, config_json: str) -> dict:
    h = Home.resolve(home).ensure()
    cfg = config_from_json(config_json)
    name = cfg.student.registered_name
    with record_step(h, "promote") as counters:
        gate = json.loads(Path(gate_report_path).read_text())
        lineage = json.loads(Path(student_path, "distillops.json").read_text())
        digest = digest_dir(student_path)
        client = registry.connect(h)
        existing = registry.find_versions(client, name, "model_digest", digest)
        champion = registry.get_version(client, registry.ModelRef(name, alias="champion"))
        plan = plan_promotion(gate["passed"], gate["reasons"], str(existing[0].version) if existing else None,
                              str(champion.version) if champion else None)
        log.info("promotion plan: %s (%s)", plan.action, "; ".join(plan.reasons))
        if plan.action == "refuse":
            raise PromotionRefused(f"not promoting {student_path}: " + "; ".join(plan.reasons))
        version = plan.version
        if plan.action == "register":
            tags = {
                "data_version": lineage["data_version"], "teacher_version": lineage["teacher_version"],
                "teacher_ref": lineage["teacher_ref"], "config_hash": lineage["config_hash"],
                "git_commit": git_commit(), "model_digest": digest, "mlflow_run_id": lineage["mlflow_run_id"],
                "gate_passed": str(gate["passed"]), "gate_reasons": json.dumps(gate["reasons"]),
                "gate_checks": json.dumps([{k: c[k] for k in ("name", "passed", "value", "threshold")}
                                           for c in gate["checks"]]),
                "student_accuracy": f"{gate['models']['student']['accuracy']:.4f}",
            }
            model_uri = registry.log_model(student_path, run_id=lineage["mlflow_run_id"])
            version = str(registry.register(client, model_uri, name, tags).version)
        if plan.action in ("register", "alias_existing"):
            # `previous` first: a crash between the two leaves the old champion serving, not lost.
            if plan.previous is not None:
                registry.set_alias(client, name, "previous", plan.previous)
            registry.set_alias(client, name, "champion", version)
        counters.update(action=plan.action, version=version)
    return {"action": plan.action, "version": version, "previous": plan.previous, "reasons": list(plan.reasons),
            "model": name}
