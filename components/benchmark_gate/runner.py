"""Side effects of benchmark_gate: run student, teacher timing and champion; write the reports.

Beside them it measures the teacher quantized to dynamic int8 (``gate.quantized_teacher``, on by
default: what a user could have for free, so the student's speed-up over it is on every report) and,
when ``gate.quantized_student`` is on, the int8 student (reported; promote logs it beside the
promoted student when ``gate.emit_quantized_student`` is on and it keeps the accuracy retention).

The gate only measures and decides; a refusal is recorded in the promotion history by the DAG's
``dsl.Else`` branch (promote's ``record_refusal``), not from here. Its report binds the verdict to
the student it measured (model digest and lineage in ``context``) and is signed when a signing
key is configured (``common/signing.py``); promote accepts nothing else.

task: generation (``run_generation``, which ``run`` hands a generation config to): the generative
gate (lm_runner.evaluate_generation) on the prompt snapshot's test split and the teacher's cached
generations for those rows, against the serving champion of student.registered_name when there is
one (a causal LM); the report is bound, signed and published like the classification gate's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from components.benchmark_gate.core import (
    PAST_FIELDS,
    agreement,
    classification_metrics,
    compression,
    confusion_matrix,
    evaluate_gate,
    label_provenance,
    loaded,
    mean_kl,
    past_champion_versions,
    perturb,
    provenance_scores,
    render_markdown,
)
from components.benchmark_gate.report_html import render_html
from components.common import registry, signing
from components.common.config import Config
from components.common.dataset import read_prompt_snapshot, read_snapshot, read_texts, validate_texts
from components.common.generation_outputs import check_generations_aligned, read_generation_outputs
from components.common.hashing import sha256_file
from components.common.home import Home
from components.common.io import atomic_write_text
from components.common.lineage import bound_context, read_lineage
from components.common.modeling import ModelError, load_classifier, predict_logits
from components.common.paths import safe_name
from components.common.runtime import prepare_process
from components.common.steplog import record_step
from components.common.teacher_outputs import check_aligned, read_teacher_outputs
from components.common.teachers import load_pinned, load_teacher
from components.common.tracking import attach
from components.distillation.measure import (
    cores_available,
    count_parameters,
    load_average,
    measure_speeds,
    size_on_disk,
)
from components.distillation.quantize import quantize_dynamic_int8

log = logging.getLogger(__name__)


def _predict(model, tokenizer, texts, max_length, names) -> tuple[np.ndarray, np.ndarray]:
    """(logits in the teacher's label order, predicted label ids; -1 for a label the teacher lacks)."""
    logits = predict_logits(model, tokenizer, texts, max_length)
    own = [model.config.id2label[i] for i in range(model.config.num_labels)]
    pred = np.array([names.index(own[i]) if own[i] in names else -1 for i in logits.argmax(-1)])
    aligned = np.full((len(texts), len(names)), -1e4, dtype=np.float32)
    for j, label in enumerate(own):
        if label in names:
            aligned[:, names.index(label)] = logits[:, j]
    return aligned, pred


def _model_card(model, tokenizer, path, texts, gold, max_length, gate_cfg, names, is_gold, teacher_pred,
                teacher_logits=None) -> tuple[dict, np.ndarray]:
    """Quality, fidelity, robustness, speed and size of one model on the test texts. Accuracy,
    F1, the slices and robustness are measured on the gold rows (`is_gold`) only; agreement and KL
    on every row (core.provenance_scores). Returns the predictions of every row."""
    logits, pred = _predict(model, tokenizer, texts, max_length, names)
    card = provenance_scores(pred, teacher_pred, gold, is_gold, names)
    if teacher_logits is not None:
        card["kl_to_teacher"] = mean_kl(teacher_logits, logits)
    card["robustness"] = {}
    gold_texts = [t for t, g in zip(texts, is_gold, strict=True) if g]
    for kind in gate_cfg.robustness_perturbations if gold_texts else ():
        _, p_pred = _predict(model, tokenizer, perturb(gold_texts, kind, gate_cfg.robustness_seed), max_length,
                             names)
        card["robustness"][kind] = classification_metrics(p_pred, gold[is_gold], len(names))["accuracy"]
    # Speed is measured later for all models side by side (measure_speeds).
    card.update(parameters=count_parameters(model), size_bytes=size_on_disk(path))
    return card, pred


def _int8_card(model, tokenizer, texts, gold, max_length, names, teacher_pred, teacher_logits,
               parameters: int, is_gold) -> tuple[dict, tuple]:
    """`model` quantized to dynamic int8: its accuracy on the test texts measured live (it can differ
    a little from fp32), agreement with and KL to the fp32 teacher; and its entry for measure_speeds.
    `parameters` is the fp32 model's count: quantization stores the same weights in int8 (packed, so
    they are not module parameters any more); nothing is written to disk, so there is no size."""
    quantized = quantize_dynamic_int8(model)
    logits, pred = _predict(quantized, tokenizer, texts, max_length, names)
    card = classification_metrics(pred[is_gold], gold[is_gold], len(names))
    card.update(agreement=agreement(pred, teacher_pred), kl_to_teacher=mean_kl(teacher_logits, logits),
                parameters=parameters, quantization="dynamic int8 (nn.Linear), CPU")
    return card, (quantized, tokenizer, max_length)


def speed_context() -> dict:
    """Where this gate times speeds: the 1-minute load average and the cores just before timing,
    and torch's threads, so that a report refusing a student on speed shows whether the machine was busy."""
    return {"load_average": load_average(), "cores": cores_available(), "threads": torch.get_num_threads()}


def timing_summary(speed: dict) -> str:
    load = "unknown" if speed["load_average"] is None else f"{speed['load_average']:.2f}"
    busy = "; loaded: other work stretched the timed calls" if loaded(speed) else ""
    return (f"wall clock, {speed['threads']} thread{'s' if speed['threads'] != 1 else ''}, load average {load} "
            f"on {speed['cores']} cores{busy}")


def _parse_trigger(trigger: str) -> dict | None:
    """The drift loop's trigger lineage, or None for a run started by hand (empty)."""
    if not trigger.strip():
        return None
    try:
        parsed = json.loads(trigger)
    except json.JSONDecodeError as exc:
        raise ValueError(f"trigger: not JSON ({exc.msg}): {trigger[:200]!r}") from None
    if not isinstance(parsed, dict) or not parsed.get("production"):
        raise ValueError(f"trigger: expected prepare_redistill's lineage, a JSON object with \"production\" (the "
                         f"triggering batch's path), got {trigger[:200]!r}")
    return parsed


def _trigger_texts(trigger: dict, cfg: Config) -> tuple[list[str], int]:
    """(the sample, the batch's row count): the first gate.trigger_sample distinct texts of the
    triggering batch, in batch order (deterministic, like prepare_redistill's)."""
    path = trigger["production"]
    column = trigger.get("text_column") or cfg.data.text_column
    texts = validate_texts(read_texts(path, column, cfg.data.max_text_chars, cfg.data.long_texts),
                           f"triggering production batch {path}")
    return list(dict.fromkeys(texts))[: cfg.gate.trigger_sample], len(texts)


def _trigger_batch(trigger: dict, sample: list[str], batch_rows: int, teacher, names: list[str], timed: dict,
                   cfg: Config) -> dict:
    """Disagreement with the teacher of the student and the champion on the triggering batch's sample."""
    logits = teacher.compute(sample, ["logits"], cfg.teacher.max_length, cfg.teacher.batch_size,
                             desc="teacher on the triggering batch")["logits"]
    teacher_pred = np.array([names.index(teacher.label_names[i]) if teacher.label_names[i] in names else -1
                             for i in logits.argmax(-1)])
    preds = {name: _predict(model, tok, sample, max_length, names)[1]
             for name, (model, tok, max_length) in timed.items() if name in ("student", "champion")}
    disagreement = {name: round(1.0 - agreement(pred, teacher_pred), 6) for name, pred in preds.items()}
    return {"production": str(trigger["production"]), "drift_verdict": trigger.get("drift_verdict", ""),
            "rows": len(sample), "batch_rows": batch_rows, "student_disagreement": disagreement["student"],
            "champion_disagreement": disagreement.get("champion")}


def _lm_trigger_rows(trigger: dict, snapshot_prompts: list[str], cfg: Config) -> dict:
    """task generation: the triggering batch's first gate.lm_trigger_sample distinct prompts that the
    snapshot holds (their teacher generations are in this run's cache), as snapshot indices."""
    path = trigger["production"]
    column = trigger.get("text_column") or cfg.generation.prompt_column
    texts = validate_texts(read_texts(path, column, cfg.data.max_text_chars, cfg.data.long_texts),
                           f"triggering production batch {path}")
    where = {p: i for i, p in reversed(list(enumerate(snapshot_prompts)))}
    indices = [where[t] for t in dict.fromkeys(texts) if t in where][: cfg.gate.lm_trigger_sample]
    if not indices:
        raise ValueError(f"trigger: none of the {len(texts)} prompts of the triggering batch {path} is in the "
                         f"snapshot this student was trained on; was the batch added to the data (prepare_redistill)?")
    return {"production": str(path), "drift_verdict": trigger.get("drift_verdict", ""), "indices": indices,
            "prompts": [snapshot_prompts[i] for i in indices], "batch_rows": len(texts)}


def _shape_summary(lineage: dict) -> str:
    """What the student step chose and why (shape: budget), or that the config described it."""
    shape = lineage.get("shape") or {}
    weights = (f"; weights: the pretrained {lineage.get('pretrained_model')} (labels-only baseline init)"
               if lineage.get("init_weights") == "pretrained" else "")
    if "reason" not in shape:
        factored = (f", embeddings factored at rank {lineage['embedding_rank']}" if lineage.get("embedding_rank")
                    else "")
        return f"manual (student.init={shape.get('init', '?')}), {lineage.get('parameter_fraction', '?')} of the " \
               f"teacher's parameters{factored}{weights}"
    s = shape["shape"]
    return (f"layers {s['layers']}, feed-forward {s['intermediate_size']}, vocabulary {shape['vocab_size']}: "
            f"{shape['reason']}{weights}")


def _publish(h: Home, lineage: dict, report: dict, markdown: str, page: str,
             files: list[tuple[str | None, str]]) -> None:
    """The report as the step's outputs, a copy under the home and with the training run in MLflow."""
    for path, text in files:
        if path:
            atomic_write_text(path, text)
    # The lineage file travels with the student: its values never choose a path outside reports/.
    stem = safe_name(f"gate-{lineage['data_version'][:8]}-{lineage['config_hash'][:8]}", "gate report name")
    atomic_write_text(h.reports / f"{stem}.md", markdown)
    atomic_write_text(h.reports / f"{stem}.json", json.dumps(report, indent=2))
    atomic_write_text(h.reports / f"{stem}.html", page)
    run = attach(h, lineage["mlflow_run_id"])
    run.log_text(markdown, "gate/report.md")
    run.log_text(page, "gate/report.html")
    run.log_dict(report, "gate/report.json")
    student = report["models"]["student"]
    run.set_tags({"gate_passed": str(report["passed"])})
    run.log_metrics({**{f"gate_student_{k}": student[k] for k in ("accuracy", "macro_f1", "agreement",
                                                                    "latency_p50_ms", "throughput_rows_per_s")},
                     "gate_student_kl_to_teacher": student["kl_to_teacher"],
                     **{f"gate_student_robust_{k}": v for k, v in student["robustness"].items()},
                     **{f"gate_{c['name']}": c["value"] for c in report["checks"]
                        if c["name"] in ("student_speedup_over_int8_teacher", "student_int8_accuracy_retention",
                                         "trigger_disagreement")}})


def run(home: str, snapshot_path: str, teacher_outputs_path: str, student_path: str, teacher_ref: str,
        cfg: Config, report_json: str, report_md: str, report_html: str | None = None,
        teacher_version: str = "", trigger: str = "") -> dict:
    """Measure and decide. `trigger`: the drift loop's trigger lineage (JSON, prepare_redistill's);
    when set, the student is also gated on the triggering production batch (trigger_check);
    empty for a run started by hand (no such check).

    With cfg.task == "generation" the snapshot is a prompt snapshot, the outputs the generation
    artifact, and this is run_generation."""
    if cfg.task == "generation":
        return run_generation(home, snapshot_path, teacher_outputs_path, student_path, teacher_ref, cfg, report_json,
                              report_md, report_html, teacher_version, trigger)
    h = Home.resolve(home).ensure()
    prepare_process()
    with record_step(h, "benchmark_gate") as counters:
        # Before any measuring: a bad trigger or an unreadable batch fails fast.
        drift_trigger = _parse_trigger(trigger)
        trigger_sample, trigger_rows = _trigger_texts(drift_trigger, cfg) if drift_trigger else ([], 0)
        snapshot = read_snapshot(snapshot_path)
        outputs = read_teacher_outputs(teacher_outputs_path)
        check_aligned(outputs, snapshot.texts, teacher_outputs_path)
        lineage = read_lineage(student_path)
        if lineage["teacher_version"] != outputs.teacher_version:
            raise ValueError(f"{student_path} was trained on teacher {lineage['teacher_version']}, the teacher "
                             f"outputs {teacher_outputs_path} are of {outputs.teacher_version}: not the same run")
        # Digest before measuring: the verdict is bound to what was on disk when loaded.
        bound = bound_context(student_path)
        key = signing.key_from_env()
        names = outputs.label_names
        test_idx = snapshot.indices("test")
        texts = [snapshot.texts[i] for i in test_idx]
        gold = np.array([names.index(snapshot.labels[i]) for i in test_idx])
        # Teacher-labelled rows are not gold: the teacher scores 1.0 on them by construction.
        is_gold = np.array(snapshot.is_gold(test_idx), dtype=bool)
        max_len = cfg.distill.max_length

        # Teacher quality comes from the cached logits: no forward pass; only its speed is measured live.
        teacher_pred = outputs.logits[test_idx].argmax(-1)
        teacher_card = provenance_scores(teacher_pred, teacher_pred, gold, is_gold, names)
        teacher_card.pop("agreement_teacher_labelled", None)  # 1.0: its own labels
        teacher = load_pinned(teacher_ref, teacher_version or outputs.teacher_version, h)
        t_loaded = load_teacher(teacher)
        teacher_card.update(parameters=count_parameters(t_loaded.model), size_bytes=size_on_disk(teacher.path),
                            agreement=1.0)
        timed = {"teacher": (t_loaded.model, t_loaded.tokenizer, cfg.teacher.max_length)}

        s_model, s_tok = load_classifier(student_path)
        test_logits = outputs.logits[test_idx]
        student_card, student_pred = _model_card(s_model, s_tok, student_path, texts, gold, max_len, cfg.gate,
                                                 names, is_gold, teacher_pred, test_logits)
        timed["student"] = (s_model, s_tok, max_len)

        client = registry.connect(h)
        champion_card, champion_version = None, None
        ref = registry.ModelRef(cfg.student.registered_name, alias="champion")
        if registry.get_version(client, ref) is not None:
            c_path, mv = registry.download_model(client, h, ref)
            c_model, c_tok = load_classifier(c_path)
            champion_card, champion_pred = _model_card(c_model, c_tok, c_path, texts, gold, max_len, cfg.gate, names,
                                                       is_gold, teacher_pred, test_logits)
            champion_version = str(mv.version)
            timed["champion"] = (c_model, c_tok, max_len)

        # Earlier champions, measured again on this test split, for the trade-off plot (never gated).
        past_cards = {}
        for version in past_champion_versions(registry.read_ledger(client, cfg.student.registered_name),
                                              champion_version, cfg.gate.past_champions):
            try:
                p_path, _ = registry.download_model(
                    client, h, registry.ModelRef(cfg.student.registered_name, version=version))
            except Exception as exc:  # deleted since, or refused by the registry checks: left out
                log.warning("earlier champion v%s left out of the trade-off plot: %s", version, exc)
                continue
            p_model, p_tok = load_classifier(p_path)
            past_cards[version], _ = _model_card(p_model, p_tok, p_path, texts, gold, max_len,
                                                 dataclasses.replace(cfg.gate, robustness_perturbations=()), names,
                                                 is_gold, teacher_pred)
            timed[f"past_v{version}"] = (p_model, p_tok, max_len)

        # What a user could have for free: the same models quantized to int8, timed with the others.
        int8_cards = {}
        if cfg.gate.quantized_teacher:
            int8_cards["teacher_int8"], timed["teacher_int8"] = _int8_card(
                t_loaded.model, t_loaded.tokenizer, texts, gold, cfg.teacher.max_length, names, teacher_pred,
                test_logits, teacher_card["parameters"], is_gold)
        if cfg.gate.quantized_student:
            int8_cards["student_int8"], timed["student_int8"] = _int8_card(
                s_model, s_tok, texts, gold, max_len, names, teacher_pred, test_logits, student_card["parameters"],
                is_gold)

        # A drift-triggered run: did the new student learn the batch that drifted?
        trigger_batch = (_trigger_batch(drift_trigger, trigger_sample, trigger_rows, t_loaded, names, timed, cfg)
                         if drift_trigger else None)

        speed = speed_context()
        speeds = measure_speeds(timed, texts, cfg.gate.latency_samples, cfg.gate.throughput_batches)
        for name, card in (("teacher", teacher_card), ("student", student_card), ("champion", champion_card),
                           *int8_cards.items()):
            if card is not None:
                card.update(speeds[name])
        for version, card in past_cards.items():
            card.update(speeds[f"past_v{version}"])
        del timed

        provenance = label_provenance(is_gold, teacher_card, student_card, champion_card)
        result = evaluate_gate(student_card, teacher_card, champion_card, cfg.gate,
                               int8_cards.get("teacher_int8"), int8_cards.get("student_int8"), provenance,
                               trigger_batch, speed)
        context = {"data_version": lineage["data_version"], "teacher_version": outputs.teacher_version,
                   "config_hash": lineage["config_hash"], "champion_version": champion_version or "none",
                   "test_rows": len(texts), "gold_test_rows": provenance["gold_rows"],
                   "teacher_labelled_test_rows": provenance["teacher_labelled_rows"],
                   "trigger": "drift" if trigger_batch else "none", "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   # The teacher-cache key of this run: the digest of the cached teacher outputs it used.
                   "teacher_cache_key": f"sha256:{sha256_file(teacher_outputs_path)}",
                   "report_location": f"runs:/{lineage['mlflow_run_id']}/gate/report.html",
                   "student_shape": _shape_summary(lineage), "speed_timing": timing_summary(speed), **bound}
        # Rows: gold labels ("student") or the teacher's predictions ("student_vs_teacher"); columns:
        # the student's predictions. Off the diagonal of the second: where the student disagrees.
        report = {**result.to_dict(), "context": context,
                  "compression": compression(student_card, teacher_card, int8_cards.get("teacher_int8")),
                  "label_provenance": provenance,
                  # Rows "gold" only: teacher-labelled rows are in "student_vs_teacher".
                  "confusion_matrix": {"labels": names, "student": confusion_matrix(student_pred[is_gold],
                                                                                    gold[is_gold], len(names)),
                                       "student_vs_teacher": confusion_matrix(student_pred, teacher_pred,
                                                                              len(names))},
                  "past_champions": [{"version": v, **{k: c[k] for k in PAST_FIELDS if k in c}}
                                     for v, c in past_cards.items()]}
        if trigger_batch is not None:
            report["trigger_batch"] = trigger_batch
        if key is not None:
            report = signing.sign_report(report, key)
        markdown = render_markdown(result, context, provenance, trigger_batch)
        page = render_html(result, context, report["confusion_matrix"]["student"], names,
                           {"student_vs_teacher": report["confusion_matrix"]["student_vs_teacher"]},
                           past_champions=report["past_champions"], provenance=provenance,
                           trigger_batch=trigger_batch)
        _publish(h, lineage, report, markdown, page,
                 [(report_json, json.dumps(report, indent=2)), (report_md, markdown), (report_html, page)])
        timing_rows = 2 + cfg.gate.latency_samples + 32 * cfg.gate.throughput_batches
        counters.update(passed=result.passed, teacher_timing_passes=timing_rows, reasons=result.reasons,
                        gold_test_rows=provenance["gold_rows"],
                        teacher_labelled_test_rows=provenance["teacher_labelled_rows"],
                        **({"trigger_rows": trigger_batch["rows"]} if trigger_batch else {}))
    log.info("gate %s: %s", "PASSED" if result.passed else "FAILED", "; ".join(result.reasons) or "all checks ok")
    return {**report, "step_report": counters}


def _lm_champion(client, h: Home, name: str) -> tuple[str | None, str | None]:
    """(directory, version) of the serving champion of `name` for the generative gate, or (None, None)
    when there is none. A champion that is not a causal LM (a registered model holds one task's
    students) is a ModelError naming it: the generative student cannot be compared with it, and
    promote would refuse to put it beside it."""
    ref = registry.ModelRef(name, alias="champion")
    if registry.get_version(client, ref) is None:
        return None, None
    path, mv = registry.download_model(client, h, ref)
    config = Path(path) / "config.json"
    architectures = json.loads(config.read_text()).get("architectures") or [] if config.is_file() else []
    if not any(str(a).endswith("ForCausalLM") for a in architectures):
        raise ModelError(f"models:/{name}@champion (version {mv.version}) is not a causal LM (architectures "
                         f"{architectures or 'unknown'}): a registered model holds one task's students; set "
                         f"student.registered_name to another name for task generation")
    return str(path), str(mv.version)


def _publish_lm(h: Home, lineage: dict, report: dict, files: tuple[str | None, str | None, str | None]) -> None:
    """The generative report as the step's outputs, a copy under the home and with the training run in
    MLflow (its numbers as gate_* metrics: lm_core.flat_metrics), as _publish does for classification."""
    from components.benchmark_gate.lm_core import flat_metrics
    from components.benchmark_gate.lm_report import render_lm_html, render_lm_markdown

    # Rendered before any file is written: a rendering error leaves none.
    texts = (json.dumps(report, indent=2), render_lm_markdown(report), render_lm_html(report))
    stem = safe_name(f"gate-{lineage['data_version'][:8]}-{lineage['config_hash'][:8]}", "gate report name")
    home_copies = (h.reports / f"{stem}.json", h.reports / f"{stem}.md", h.reports / f"{stem}.html")
    for path, text in [*zip(files, texts, strict=True), *zip(home_copies, texts, strict=True)]:
        if path:
            atomic_write_text(path, text)
    _, markdown, page = texts
    run = attach(h, lineage["mlflow_run_id"])
    run.log_text(markdown, "gate/report.md")
    run.log_text(page, "gate/report.html")
    run.log_dict(report, "gate/report.json")
    run.set_tags({"gate_passed": str(report["passed"])})
    run.log_metrics({f"gate_{k}": v for k, v in flat_metrics(report).items()})


def run_generation(home: str, snapshot_path: str, teacher_outputs_path: str, student_path: str, teacher_ref: str,
                   cfg: Config, report_json: str, report_md: str, report_html: str | None = None,
                   teacher_version: str = "", trigger: str = "") -> dict:
    """task: generation: measure the generative student at `student_path` against the pinned causal-LM
    teacher on the prompt snapshot's test split, with the teacher's cached generations of those rows
    (`teacher_outputs_path`, the generation artifact) and the serving champion of
    student.registered_name if there is one; decide with lm_core (the gate.lm_* thresholds). The
    report (JSON, Markdown, HTML) is bound to the student, signed when a key is configured, written to
    the step's outputs and the home's reports/, and logged to the training run in MLflow. Returns it
    with the step report. `trigger` (the drift loop's lineage): the student is also gated on a sample
    of the triggering batch's prompts (gate.lm_trigger_sample), whose teacher generations this run's
    cache already holds (prepare_redistill added the batch to the data): no teacher call."""
    from components.benchmark_gate.lm_core import SPEED_BATCHES
    from components.benchmark_gate.lm_runner import evaluate_generation

    h = Home.resolve(home).ensure()
    prepare_process()
    with record_step(h, "benchmark_gate") as counters:
        drift_trigger = _parse_trigger(trigger)  # before any measuring: a bad trigger fails fast
        snapshot = read_prompt_snapshot(snapshot_path)
        outputs = read_generation_outputs(teacher_outputs_path)
        check_generations_aligned(outputs, snapshot.prompts, teacher_outputs_path)
        trigger_rows = _lm_trigger_rows(drift_trigger, snapshot.prompts, cfg) if drift_trigger else None
        lineage = read_lineage(student_path)
        if lineage.get("task") != "generation":
            raise ModelError(f"{student_path}: not a generative student (its lineage's task is "
                             f"{lineage.get('task', 'classification')!r}); task generation gates causal-LM students")
        if lineage["teacher_version"] != outputs.teacher_version:
            raise ValueError(f"{student_path} was trained on teacher {lineage['teacher_version']}, the teacher "
                             f"outputs {teacher_outputs_path} are of {outputs.teacher_version}: not the same run")
        # Digest before measuring: the verdict is bound to what was on disk when loaded.
        bound = bound_context(student_path)
        key = signing.key_from_env()
        test_idx = snapshot.indices("test")
        if not test_idx:
            raise ValueError(f"{snapshot_path}: the prompt snapshot's test split is empty; the generative gate "
                             f"measures on held-out prompts (data.test_fraction)")
        prompts = [snapshot.prompts[i] for i in test_idx]
        references = [snapshot.responses[i] for i in test_idx]
        teacher = load_pinned(teacher_ref, teacher_version or outputs.teacher_version, h)
        loaded = load_teacher(teacher)
        if "generation" not in loaded.produces:
            raise ModelError(f"task generation needs a causal-LM teacher; {teacher_ref} ({teacher.version}) is a "
                             f"{loaded.kind} teacher (generation.teacher_ref)")
        client = registry.connect(h)
        champion_dir, champion_version = _lm_champion(client, h, cfg.student.registered_name)
        context = {"data_version": lineage["data_version"], "teacher_version": outputs.teacher_version,
                   "config_hash": lineage["config_hash"], "champion_version": champion_version or "none",
                   "test_rows": len(prompts), "trigger": "drift" if drift_trigger else "none",
                   "teacher_cache_key": f"sha256:{sha256_file(teacher_outputs_path)}",
                   "report_location": f"runs:/{lineage['mlflow_run_id']}/gate/report.html",
                   "student_parameter_fraction": lineage.get("parameter_fraction"), **bound}
        # Reports are written below, once signed: evaluate_generation only measures and decides here.
        report = evaluate_generation(loaded.model, loaded.tokenizer, student_path, prompts,
                                     outputs.generations(test_idx), cfg, references=references,
                                     champion_dir=champion_dir, teacher_dir=teacher.path, context=context,
                                     max_new_tokens=int(outputs.decoding.get("max_new_tokens") or 0) or None,
                                     max_length=cfg.generation.max_length,
                                     trigger=None if trigger_rows is None else {
                                         **trigger_rows, "generations": outputs.generations(trigger_rows["indices"])})
        report["context"]["champion"] = f"version {champion_version}" if champion_version else "none"
        if key is not None:
            report = signing.sign_report(report, key)
        _publish_lm(h, lineage, report, (report_json, report_md, report_html))
        # The teacher's rows run during the gate: one teacher-forced pass over the held-out prompts, and
        # the speed measurement (per batch size: a warm-up, then a 1-token and a full generate per repeat).
        timing_rows = len(prompts) + sum(b * (1 + 2 * cfg.gate.lm_speed_repeats) for b in SPEED_BATCHES)
        counters.update(task="generation", passed=report["passed"], teacher_timing_passes=timing_rows,
                        reasons=report["reasons"], test_rows=len(prompts),
                        references=sum(r is not None for r in references))
    log.info("generative gate %s: %s", "PASSED" if report["passed"] else "FAILED",
             "; ".join(report["reasons"]) or "all checks ok")
    return {**report, "step_report": counters}
