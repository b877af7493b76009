"""Side effects of promote: apply the plan to the MLflow registry (version, tags, aliases), and
record a gate's refusal in the promotion history (the DAG's ``dsl.Else`` branch).

Both first check that the gate report is bound to the student they were given (model digest and
lineage, recomputed here over a private copy of the student, which is what gets registered) and,
when a signing key is configured, signed by the gate. A report that is not is refused before the
registry is touched: nothing is registered, recorded or moved. docs/promotion.md explains it.

Both tasks go through the same functions (``run``, ``record_gate_refusal``): the student's own
config.json decides its task (``lineage.student_task``, which its lineage must agree with), the gate
report must be that task's gate's, and the model is logged for that task: a classifier as
text-classification (``tracking.log_model``), a causal LM as text-generation
(``tracking.log_lm_model``: ``mlflow models serve`` answers prompts with generated text). Registry,
lineage tags, ledger and audit are the same. A registered model holds one task's students only.
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
from components.common.lineage import bound_context, read_lineage, student_task
from components.common.model_card import (
    gate_summary,
    license_text,
    lm_gate_summary,
    lm_version_description,
    render_card,
    render_lm_card,
    version_description,
)
from components.common.steplog import record_step
from components.common.tracking import log_lm_model, log_model, source_commit
from components.promote.core import binding_problems, int8_decision, plan_promotion

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
    verdict on the student in `student_dir` (for a causal-LM student, the generative gate's);
    return what it is bound to (model digest, lineage) and the student's ``task``."""
    bound = bound_context(student_dir)
    task = student_task(student_dir)
    problems = binding_problems(report, bound, task) + signing.verify_report(report, signing.key_from_env())
    if problems:
        raise GateReportRejected(f"gate report {report_path} is not the gate's verdict on {shown_as}: "
                                 + "; ".join(problems))
    return {**bound, "task": task}


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


def max_new_tokens(lineage: dict, cfg: Config) -> int:
    """A generative student's answer length when served: generation.max_new_tokens of the config it
    was distilled with (its lineage's resolved config), else of `cfg`."""
    resolved = lineage.get("config")
    value = (resolved.get("generation") or {}).get("max_new_tokens") if isinstance(resolved, dict) else None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else \
        int(cfg.generation.max_new_tokens)


def describe(client, name: str, gate: dict, lineage: dict, staged: Path, task: str = "classification",
             new_tokens: int | None = None) -> tuple[str, str, str]:
    """(version description, model card, LICENSE.txt) of the student in `staged`."""
    license_ = inherited_license(client, str(lineage.get("teacher_ref", "")), str(lineage.get("teacher_version", "")))
    examples = [str(x) for x in lineage.get("input_example", []) or []]
    if task == "generation":
        description = lm_version_description(lm_gate_summary(gate), lineage, license_)
        card = render_lm_card(name, gate, lineage, license_, examples, new_tokens)
    else:
        id2label = json.loads((staged / "config.json").read_text()).get("id2label", {})
        labels = [id2label[k] for k in sorted(id2label, key=int)]
        description = version_description(gate_summary(gate), lineage, license_)
        card = render_card(name, gate, lineage, labels, license_, examples)
    teacher_dir = Path(str(lineage.get("teacher_ref", "")))
    return description, card, license_text(license_, teacher_dir if teacher_dir.is_dir() else None)


# The student's headline figures a gate report carries, per task (into gate_metrics and the tags).
HEADLINE = {"classification": ("accuracy", "macro_f1", "agreement"),
            "generation": ("rouge_l", "exact_match", "token_agreement", "teacher_nll", "reference_rouge_l")}


def gate_metrics(gate: dict, task: str = "classification") -> str:
    """Compact JSON of what the gate measured: every check's value and the student's headline figures."""
    student = gate.get("models", {}).get("student", {})
    figures = {c["name"]: c.get("value") for c in gate.get("checks", []) if "name" in c}
    figures.update({f"student_{k}": student[k] for k in HEADLINE[task] if k in student})
    return json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()},
                      sort_keys=True, separators=(",", ":"))[:900]


def lineage_tags(lineage: dict, gate: dict, digest: str, pipeline_run_id: str, trigger: dict,
                 task: str = "classification") -> dict[str, str]:
    """Every lineage tag a registered student carries (and its audit record repeats)."""
    ctx = gate.get("context", {})
    tags = {
        "task": task,
        "data_version": lineage["data_version"], "teacher_version": lineage["teacher_version"],
        "teacher_ref": lineage["teacher_ref"], "teacher_cache_key": ctx.get("teacher_cache_key", ""),
        "config_hash": lineage["config_hash"], "git_commit": git_commit(), "model_digest": digest,
        "mlflow_run_id": lineage["mlflow_run_id"], "pipeline_run_id": pipeline_run_id or "",
        "gate_report": ctx.get("report_location", ""), "gate_champion": ctx.get("champion_version", "none"),
        # The gate's numbers travel with the record: history stays complete after a version is deleted.
        "gate_metrics": gate_metrics(gate, task),
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
        bound = check_gate_report(gate, gate_report_path, staged, student_path)
        digest, task = bound["model_digest"], bound["task"]
        lineage = read_lineage(staged)
        trigger = json.loads(trigger_json) if trigger_json else {}
        tags = lineage_tags(lineage, gate, digest, pipeline_run_id, trigger, task)
        client = registry.connect(h)
        # First finish whatever an interrupted promotion left pending, so the plan sees the truth.
        state, _ = sync(client, h, name)
        if gate["passed"]:
            _check_same_task(client, name, state.champion, task, student_path)
        existing = registry.find_versions(client, name, "model_digest", digest)
        plan = plan_promotion(gate["passed"], gate.get("reasons", []), str(existing[0].version) if existing else None,
                              state.champion)
        log.info("promotion plan: %s (%s)", plan.action, "; ".join(plan.reasons))
        if plan.action == "refuse":
            record_refusal(client, h, name, list(plan.reasons), tags)
            raise PromotionRefused(f"not promoting {student_path}: " + "; ".join(plan.reasons))
        version, outcome, seq, int8 = plan.version, None, None, None
        if plan.action == "register":
            gate_tags = {
                "gate_passed": str(gate["passed"]), "gate_reasons": json.dumps(gate.get("reasons", [])),
                "gate_checks": json.dumps([{k: c.get(k) for k in ("name", "passed", "value", "threshold")}
                                           for c in gate.get("checks", [])])[:4900],
                **student_figure_tags(gate, task, gate_report_path),
            }
            new_tokens = max_new_tokens(lineage, cfg) if task == "generation" else None
            description, card, license_file = describe(client, name, gate, lineage, staged, task, new_tokens)
            example = lineage.get("input_example") or None
            if task == "generation":
                gate_tags["max_new_tokens"] = str(new_tokens)
                model_uri = log_lm_model(h, staged, run_id=lineage["mlflow_run_id"], input_example=example,
                                         card=card, license_text=license_file, max_new_tokens=new_tokens)
            else:
                if cfg.gate.emit_quantized_student:  # logged before registering: a failure registers nothing
                    int8 = _emit_int8(h, staged, lineage["mlflow_run_id"], gate, digest)
                    gate_tags.update(int8_tags(int8))
                model_uri = log_model(h, staged, run_id=lineage["mlflow_run_id"], input_example=example, card=card,
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
            "model": name, "task": task, "ledger_seq": seq, "outcome": outcome.to_dict() if outcome else None,
            **({"int8": int8} if int8 is not None else {}), "step_report": counters}


INT8_ARTIFACT = "student_int8"


def _emit_int8(h: Home, staged: Path, run_id: str, gate: dict, digest: str) -> dict:
    """gate.emit_quantized_student: the decision from the gate report and, when it says emit, the
    staged (gated) student quantized to dynamic int8 and logged in its MLflow run as `student_int8/`
    (written whole to a temporary directory first). Quantization is deterministic, so these are the
    weights the gate measured. Returns the decision, with `uri` when logged."""
    import mlflow

    from components.distillation.quantize import save_int8_classifier

    decision = int8_decision(gate)
    if not decision["emit"]:
        log.info("int8 student not emitted: %s", decision["why"])
        return decision
    meta = {"source_model_digest": digest, **{k: v for k, v in decision.items() if k not in ("emit", "why")}}
    with tempfile.TemporaryDirectory(prefix=".int8-", suffix=".partial", dir=h.root) as tmp:
        out = save_int8_classifier(staged, Path(tmp) / INT8_ARTIFACT, meta)
        mlflow.MlflowClient().log_artifacts(run_id, str(out), artifact_path=INT8_ARTIFACT)
    uri = f"runs:/{run_id}/{INT8_ARTIFACT}"
    log.info("int8 student logged as %s (%s)", uri, decision["why"])
    return {**decision, "uri": uri}


def int8_tags(int8: dict) -> dict[str, str]:
    """The registered version's tags for the int8 decision: its URI when emitted, else why not."""
    tags = {"int8_emitted": str(int8["emit"]).lower(), "int8_reason": int8["why"][:4900]}
    if int8.get("uri"):
        tags["int8_model_uri"] = int8["uri"]
    for key in ("accuracy", "accuracy_retention"):
        if isinstance(int8.get(key), (int, float)):
            tags[f"int8_{key}"] = f"{int8[key]:.6g}"
    return tags


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
                             {"task": bound["task"], "data_version": lineage["data_version"],
                              "config_hash": lineage["config_hash"],
                              "teacher_version": lineage["teacher_version"], "model_digest": bound["model_digest"],
                              "gate_report": ctx.get("report_location", "")})
        counters.update(action="refused", ledger_seq=seq)
    return {"action": "refused", "version": None, "reasons": list(gate.get("reasons", [])), "model": name,
            "task": bound["task"], "ledger_seq": seq, "step_report": counters}


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def student_figure_tags(gate: dict, task: str, report_path: str = "the gate report") -> dict[str, str]:
    """The student's headline figures as version tags: ``student_accuracy`` for a classifier (the
    classification gate always reports it), ``student_<figure>`` for each generative figure reported.
    A report without the student's figures is refused (GateReportRejected) before anything is logged."""
    models = gate.get("models")
    student = models.get("student") if isinstance(models, dict) else None
    if not isinstance(student, dict):
        raise GateReportRejected(f"gate report {report_path}: no models.student figures; not a {task} gate's report")
    if task == "classification":
        if not _number(student.get("accuracy")):
            raise GateReportRejected(f"gate report {report_path}: models.student.accuracy is "
                                     f"{student.get('accuracy')!r}; expected a number")
        return {"student_accuracy": f"{student['accuracy']:.4f}"}
    return {f"student_{k}": f"{float(student[k]):.4f}" for k in HEADLINE[task] if _number(student.get(k))}


def _check_same_task(client, name: str, champion: str | None, task: str, student_path: str) -> None:
    """A registered model holds one task's students: a causal LM never replaces a classifier as
    champion (what serves it, the drift monitor and the next gate would get another kind of model),
    nor the reverse. A champion without a task tag was registered before tasks: a classifier."""
    if champion is None:
        return
    mv = registry.get_version(client, registry.ModelRef(name, version=champion))
    held = (dict(mv.tags).get("task") if mv is not None else None) or "classification"
    if held != task:
        raise PromotionRefused(f"not promoting {student_path}: it is a {task} student, but {name}'s champion "
                               f"(version {champion}) is a {held} model; a registered model holds one task's "
                               f"students. Register it under another name (student.registered_name)")


def _deduplicate(client, name: str, digest: str, version: str) -> str:
    """Two racing promotions of the same weights both register; keep the lowest version only."""
    same = registry.find_versions(client, name, "model_digest", digest)
    lowest = str(same[0].version) if same else version
    if lowest != version:
        log.info("weights already registered as version %s by a concurrent promotion; dropping %s", lowest, version)
        registry.delete_version(client, name, version)
    return lowest
