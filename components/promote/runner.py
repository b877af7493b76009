"""Side effects of promote: apply the plan to the MLflow registry (version, tags, aliases), and
record a gate's refusal in the promotion history (the DAG's ``dsl.Else`` branch).

Both first check that the gate report is bound to the student they were given (model digest and
lineage, recomputed here over a private copy of the student, which is what gets registered) and,
when a signing key is configured, signed by the gate. A report that is not is refused before the
registry is touched: nothing is registered, recorded or moved. docs/promotion.md explains it.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from components.common import registry, signing
from components.common.config import Config
from components.common.export import inherited_license
from components.common.hashing import digest_dir
from components.common.home import Home
from components.common.lineage import bound_context, read_lineage
from components.common.model_card import gate_summary, license_text, render_card, version_description
from components.common.steplog import record_step
from components.common.tracking import log_model, source_commit
from components.promote.core import binding_problems, plan_promotion

log = logging.getLogger(__name__)


class PromotionRefused(RuntimeError):
    """promote was asked to promote a student that did not pass the gate."""


class GateReportRejected(PromotionRefused):
    """The gate report is not the gate's verdict on this student: not bound to its model digest or
    lineage, unreadable, or (with a signing key configured) unsigned or wrongly signed."""


def _read_gate_report(path: str) -> dict:
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise GateReportRejected(f"gate report {path}: cannot be read as JSON ({exc})") from None
    if not isinstance(report, dict):
        raise GateReportRejected(f"gate report {path}: not a JSON object")
    return report


def check_gate_report(report: dict, report_path: str, student_dir: str | Path, shown_as: str) -> dict[str, str]:
    """Refuse (GateReportRejected, every problem at once) a report that is not the gate's signed
    verdict on the student in `student_dir`; return what it is bound to (model digest, lineage)."""
    bound = bound_context(student_dir)
    problems = binding_problems(report, bound) + signing.verify_report(report, signing.key_from_env())
    if problems:
        raise GateReportRejected(f"gate report {report_path} is not the gate's verdict on {shown_as}: "
                                 + "; ".join(problems))
    return bound


@contextmanager
def _private_copy(h: Home, student_path: str) -> Iterator[Path]:
    """A copy of the student's files that only this process can change: what is checked against
    the gate report is exactly what is registered (no swap between the check and the upload)."""
    src = Path(student_path)
    if not src.is_dir():
        raise FileNotFoundError(f"{student_path}: no such student directory")
    with tempfile.TemporaryDirectory(prefix=".promote-", suffix=".partial", dir=h.root) as tmp:
        for f in src.iterdir():
            if f.is_file():
                shutil.copyfile(f, Path(tmp) / f.name)
        yield Path(tmp)


def _check_registered(h: Home, name: str, version: str, staged: Path) -> None:
    """RELIABILITY item 20: the registered version's artifact (fetched afresh) holds the gated
    weights, or it is not made champion."""
    want = digest_dir(staged)
    with tempfile.TemporaryDirectory(prefix=".verify-", suffix=".partial", dir=h.root) as tmp:
        try:
            got = digest_dir(registry.fetch_version_files(name, version, Path(tmp)))
        except (OSError, registry.RegistryError) as exc:
            raise PromotionRefused(f"{name} version {version}: its registered artifact cannot be read ({exc}); "
                                   f"not making it champion") from None
    if got != want:
        raise PromotionRefused(f"{name} version {version}: its registered artifact (weights digest {got}) does "
                               f"not match the gated student's ({want}); not making it champion")


def git_commit() -> str:
    return source_commit() or "unknown"


def describe(client, name: str, gate: dict, lineage: dict, staged: Path) -> tuple[str, str, str]:
    """(version description, model card, LICENSE.txt) of the student in `staged`."""
    license_ = inherited_license(client, str(lineage.get("teacher_ref", "")), str(lineage.get("teacher_version", "")))
    id2label = json.loads((staged / "config.json").read_text()).get("id2label", {})
    labels = [id2label[k] for k in sorted(id2label, key=int)]
    card = render_card(name, gate, lineage, labels, license_, list(lineage.get("input_example", [])))
    teacher_dir = Path(str(lineage.get("teacher_ref", "")))
    return (version_description(gate_summary(gate), lineage, license_), card,
            license_text(license_, teacher_dir if teacher_dir.is_dir() else None))


def gate_metrics(gate: dict) -> str:
    """Compact JSON of what the gate measured: every check's value and the student's headline figures."""
    student = gate.get("models", {}).get("student", {})
    figures = {c["name"]: c.get("value") for c in gate.get("checks", []) if "name" in c}
    figures.update({f"student_{k}": student[k] for k in ("accuracy", "macro_f1", "agreement") if k in student})
    return json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()},
                      sort_keys=True, separators=(",", ":"))[:900]


def lineage_tags(lineage: dict, gate: dict, digest: str, pipeline_run_id: str, trigger: dict) -> dict[str, str]:
    """Every lineage tag a registered student carries (and its audit record repeats)."""
    ctx = gate.get("context", {})
    tags = {
        "data_version": lineage["data_version"], "teacher_version": lineage["teacher_version"],
        "teacher_ref": lineage["teacher_ref"], "teacher_cache_key": ctx.get("teacher_cache_key", ""),
        "config_hash": lineage["config_hash"], "git_commit": git_commit(), "model_digest": digest,
        "mlflow_run_id": lineage["mlflow_run_id"], "pipeline_run_id": pipeline_run_id or "",
        "gate_report": ctx.get("report_location", ""), "gate_champion": ctx.get("champion_version", "none"),
        # The gate's numbers travel with the record: history stays complete after a version is deleted.
        "gate_metrics": gate_metrics(gate),
    }
    if trigger:
        tags["trigger"] = json.dumps(trigger, sort_keys=True)
        tags.update({f"trigger_{k}": str(v) for k, v in trigger.items() if k in ("drift_report", "drift_run_id",
                                                                                  "drift_verdict")})
    return tags


def run(home: str, student_path: str, gate_report_path: str, cfg: Config, pipeline_run_id: str = "",
        trigger_json: str = "") -> dict:
    """Check the gate report's binding (and signature), then plan and apply: register (once per
    weights), check the registered artifact, append a compare-and-set claim to the ledger, sync.
    The claim expects the champion the gate compared against; if another promotion landed first,
    the claim is recorded as rejected and PromotionRefused is raised. A report that is not bound to
    this student raises GateReportRejected before anything is written."""
    from components.promote.audit import append_and_sync, new_record, record_refusal, sync

    h = Home.resolve(home).ensure()
    name = cfg.student.registered_name
    with record_step(h, "promote") as counters, _private_copy(h, student_path) as staged:
        gate = _read_gate_report(gate_report_path)
        digest = check_gate_report(gate, gate_report_path, staged, student_path)["model_digest"]
        lineage = read_lineage(staged)
        trigger = json.loads(trigger_json) if trigger_json else {}
        tags = lineage_tags(lineage, gate, digest, pipeline_run_id, trigger)
        client = registry.connect(h)
        # First finish whatever an interrupted promotion left pending, so the plan sees the truth.
        state, _ = sync(client, h, name)
        existing = registry.find_versions(client, name, "model_digest", digest)
        plan = plan_promotion(gate["passed"], gate.get("reasons", []), str(existing[0].version) if existing else None,
                              state.champion)
        log.info("promotion plan: %s (%s)", plan.action, "; ".join(plan.reasons))
        if plan.action == "refuse":
            record_refusal(client, h, name, list(plan.reasons), tags)
            raise PromotionRefused(f"not promoting {student_path}: " + "; ".join(plan.reasons))
        version, outcome, seq = plan.version, None, None
        if plan.action == "register":
            gate_tags = {
                "gate_passed": str(gate["passed"]), "gate_reasons": json.dumps(gate.get("reasons", [])),
                "gate_checks": json.dumps([{k: c.get(k) for k in ("name", "passed", "value", "threshold")}
                                           for c in gate.get("checks", [])])[:4900],
                "student_accuracy": f"{gate['models']['student']['accuracy']:.4f}",
            }
            description, card, license_file = describe(client, name, gate, lineage, staged)
            model_uri = log_model(h, staged, run_id=lineage["mlflow_run_id"],
                                  input_example=lineage.get("input_example") or None, card=card,
                                  license_text=license_file)
            created = str(registry.register(client, model_uri, name, {**tags, **gate_tags},
                                            description=description).version)
            version = _deduplicate(client, name, digest, created)
            try:
                _check_registered(h, name, version, staged)
            except PromotionRefused:
                if version == created:  # ours, and never champion: leave nothing behind
                    registry.delete_version(client, name, version)
                raise
        elif plan.action == "alias_existing":
            _check_registered(h, name, version, staged)
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
    with record_step(h, "record_refusal") as counters, _private_copy(h, student_path) as staged:
        gate = _read_gate_report(gate_report_path)
        bound = check_gate_report(gate, gate_report_path, staged, student_path)
        if gate.get("passed"):
            raise ValueError(f"{gate_report_path}: the gate passed; there is no refusal to record")
        lineage = read_lineage(staged)
        ctx = gate.get("context", {})
        seq = record_refusal(registry.connect(h), h, name, list(gate.get("reasons", [])),
                             {"data_version": lineage["data_version"], "config_hash": lineage["config_hash"],
                              "teacher_version": lineage["teacher_version"], "model_digest": bound["model_digest"],
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
