"""Measuring a generative student for the gate (task: generation): teacher, student and champion on
the held-out prompts, then lm_core's checks and the report.

What is measured, all with components/distillation/lm_measure.py:

- the student's (and champion's) greedy answers, scored by ROUGE-L and exact match against the
  teacher's *cached* generations (the teacher does not generate again here);
- teacher-forced on those cached generations (lm_trainer.build_examples): token agreement, KL over
  the cached top-k + tail, and NLL of the teacher's tokens, for every model including the teacher
  itself (its agreement 1.0 and KL near 0 for greedy decoding: a check that the cache is its own);
- ROUGE-L against reference responses where the prompts have them (teacher: its cached answers);
- time to first token and generated tokens/s at batch 1 and batch 8, the models timed in alternation
  on the same prompts (generation_speed);
- parameters and size on disk.

Prompts are given raw (as the data holds them, and as the report shows them) and rendered here with
the teacher tokenizer's chat template (common/generation.render_prompts), exactly as
cache_teacher_outputs renders them for the teacher.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from components.benchmark_gate.lm_core import SPEED_BATCHES, evaluate_lm_gate, lm_compression, speed_table
from components.benchmark_gate.lm_report import render_lm_html, render_lm_markdown
from components.common.config import Config
from components.common.generation import Generation, render_prompts
from components.common.io import atomic_write_text
from components.common.modeling import ModelError
from components.common.teacher_generations import generation_texts
from components.distillation.lm_measure import (
    forced_fidelity,
    generation_speed,
    greedy_answers,
    rouge_l,
    text_fidelity,
)
from components.distillation.lm_students import check_same_vocabulary, parameter_count
from components.distillation.lm_trainer import build_examples
from components.distillation.measure import size_on_disk

log = logging.getLogger(__name__)


def load_causal_lm(path: str | Path, where: str):
    """(model, tokenizer) of a causal-LM directory saved with save_pretrained; a clear error otherwise."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not Path(path, "config.json").is_file():
        raise ModelError(f"{where} {path}: no config.json; expected a causal-LM directory saved with save_pretrained")
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, trust_remote_code=False)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _check_inputs(prompts, generations, references) -> list[str | None]:
    if not prompts:
        raise ValueError("generative gate: no held-out prompts to measure on (the test split is empty)")
    if len(generations) != len(prompts):
        raise ValueError(f"generative gate: {len(generations)} cached teacher generations for {len(prompts)} "
                         f"held-out prompts; expected one per prompt, in the same order")
    refs = list(references) if references is not None else [None] * len(prompts)
    if len(refs) != len(prompts):
        raise ValueError(f"generative gate: {len(refs)} reference responses for {len(prompts)} prompts; expected "
                         f"one per prompt (None where a prompt has none)")
    for i, g in enumerate(generations):
        if not isinstance(g, Generation):
            raise ValueError(f"generative gate: cached generation {i} is a {type(g).__name__}, expected a Generation")
    return refs


def _text_card(answers: list[str], teacher_texts: list[str], refs: list[str | None]) -> dict[str, Any]:
    card: dict[str, Any] = dict(text_fidelity(answers, teacher_texts))
    with_ref = [(a, r) for a, r in zip(answers, refs, strict=True) if r is not None]
    if with_ref:
        card["references"] = len(with_ref)
        card["reference_rouge_l"] = text_fidelity([a for a, _ in with_ref], [r for _, r in with_ref])["rouge_l"]
    return card


def _forced(model, examples, pad_id: int) -> dict[str, Any]:
    f = forced_fidelity(model, examples, pad_id)
    return {"token_agreement": f["token_agreement"], "token_kl": f["token_kl"], "teacher_nll": f["teacher_nll"],
            "forced_tokens": int(f["tokens"])}


def _rounded(card: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in card.items()}


def evaluate_generation(teacher_model, tokenizer, student_dir: str | Path, prompts: Sequence[str],
                        generations: Sequence[Generation], cfg: Config, *,
                        references: Sequence[str | None] | None = None, champion_dir: str | Path | None = None,
                        teacher_dir: str | Path | None = None, context: dict[str, Any] | None = None,
                        max_new_tokens: int | None = None, max_length: int = 512,
                        report_json: str | Path | None = None, report_md: str | Path | None = None,
                        report_html: str | Path | None = None, trigger: dict[str, Any] | None = None,
                        ) -> dict[str, Any]:
    """Measure the student at `student_dir` (and the champion at `champion_dir`, if any) against the
    loaded teacher on the held-out `prompts` (raw; rendered here with `tokenizer`'s chat template) and
    the teacher's cached `generations` for them (in the same order); decide with lm_core.

    `references`: one reference response per prompt, None where a prompt has none (or no argument at
    all). `teacher_dir`: for the teacher's size on disk (None: not reported). `context`: added to the
    report's context (data version, teacher version, ...). `max_new_tokens`: the students' answer
    length (default generation.max_new_tokens, the teacher's). The report is written to the paths
    given (atomically) and returned as a JSON-able dict with keys: passed, reasons, checks, models,
    compression, speed, samples, context.

    `trigger` (a drift-triggered run): {"prompts", "generations" (the teacher's, cached), "production",
    "batch_rows", ...}: the student's and champion's disagreement with the teacher on them (1 - ROUGE-L)
    is the trigger_disagreement check (gate.lm_max_trigger_disagreement, below the champion's).

    The student must share the teacher's tokenizer (a ModelError otherwise). A champion with another
    tokenizer is measured on its answers only (ROUGE-L, exact match, references, size)."""
    refs = _check_inputs(prompts, generations, references)
    gate = cfg.gate
    max_new = int(max_new_tokens or cfg.generation.max_new_tokens)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ModelError("the teacher's tokenizer has neither a pad nor an EOS token; batched generation needs one")
    rendered = render_prompts(tokenizer, prompts)
    teacher_texts = generation_texts(tokenizer, generations)
    positions = int(getattr(teacher_model.config, "max_position_embeddings", max_length) or max_length)
    examples = build_examples(tokenizer, rendered, generations, max_length=min(max_length, positions))

    student, s_tok = load_causal_lm(student_dir, "student")
    check_same_vocabulary(tokenizer, s_tok, f"student {student_dir}")
    log.info("generative gate: %d held-out prompts, %d with references", len(prompts), sum(r is not None for r in refs))

    # The teacher: its answers are the cache; teacher-forced figures are its own (a consistency check).
    t_card = {**_text_card(teacher_texts, teacher_texts, refs), **_forced(teacher_model, examples, pad),
              "parameters": parameter_count(teacher_model),
              "size_bytes": size_on_disk(teacher_dir) if teacher_dir else None}
    answers = {"student": greedy_answers(student, tokenizer, rendered, max_new)}
    s_card = {**_text_card(answers["student"], teacher_texts, refs), **_forced(student, examples, pad),
              "parameters": parameter_count(student), "size_bytes": size_on_disk(student_dir)}
    timed = {"teacher": teacher_model, "student": student}

    c_card = None
    if champion_dir is not None:
        champion, c_tok = load_causal_lm(champion_dir, "champion")
        try:
            check_same_vocabulary(tokenizer, c_tok, f"champion {champion_dir}")
            same = True
        except ModelError as exc:
            same = False
            log.warning("champion measured on its answers only: %s", exc)
        c_rendered = rendered if same else render_prompts(c_tok, prompts)
        answers["champion"] = greedy_answers(champion, tokenizer if same else c_tok, c_rendered, max_new)
        c_card = {**_text_card(answers["champion"], teacher_texts, refs), "parameters": parameter_count(champion),
                  "size_bytes": size_on_disk(champion_dir)}
        if same:
            c_card.update(_forced(champion, examples, pad))
            timed["champion"] = champion
        else:
            c_card["note"] = "another tokenizer than the teacher's: no teacher-forced figures, no side-by-side speed"

    cards = {"teacher": t_card, "student": s_card, **({"champion": c_card} if c_card is not None else {})}
    for batch in SPEED_BATCHES:
        speeds = generation_speed(timed, tokenizer, rendered, batch, new_tokens=gate.lm_speed_new_tokens,
                                  repeats=gate.lm_speed_repeats)
        for name, figures in speeds.items():
            cards[name].update({f"tokens_per_s_batch{batch}": figures["tokens_per_s"],
                                f"ttft_ms_batch{batch}": figures["ttft_ms"]})
    cards = {name: _rounded(card) for name, card in cards.items()}

    trigger_batch = None
    if trigger is not None:
        trigger_batch = _trigger_batch(trigger, tokenizer, {"student": (student, tokenizer), **(
            {"champion": (champion, tokenizer if same else c_tok)} if champion_dir is not None else {})}, max_new)
    result = evaluate_lm_gate(cards["student"], cards["teacher"], cards.get("champion"), gate, trigger_batch)
    samples = []
    for i in range(min(gate.lm_report_samples, len(prompts))):
        row = {"prompt": prompts[i], "reference": refs[i], "teacher": teacher_texts[i]}
        for name, texts in answers.items():
            row[name] = texts[i]
            row[f"{name}_rouge_l"] = round(rouge_l(texts[i], teacher_texts[i]), 4)
        samples.append(row)
    report = {**result.to_dict(), **({"trigger_batch": trigger_batch} if trigger_batch else {}),
              "compression": lm_compression(cards["student"], cards["teacher"]),
              "speed": speed_table(result.models), "samples": samples,
              "context": {"task": "generation", "prompts": len(prompts),
                          "references": sum(r is not None for r in refs), "max_new_tokens": max_new,
                          "speed_new_tokens": gate.lm_speed_new_tokens, "speed_repeats": gate.lm_speed_repeats,
                          "champion": "none" if champion_dir is None else str(champion_dir),
                          "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **(context or {})}}
    write_lm_reports(report, report_json, report_md, report_html)
    log.info("generative gate %s: %s", "PASSED" if report["passed"] else "FAILED",
             "; ".join(report["reasons"]) or "all checks ok")
    return report


def _trigger_batch(trigger: dict[str, Any], tokenizer, models: dict[str, tuple], max_new: int) -> dict[str, Any]:
    """Disagreement with the teacher (1 - ROUGE-L, mean) of each model's greedy answers to the
    triggering batch's sampled prompts, against the teacher's cached generations of them."""
    prompts = list(trigger["prompts"])
    teacher_texts = generation_texts(tokenizer, trigger["generations"])
    if len(teacher_texts) != len(prompts) or not prompts:
        raise ValueError(f"trigger: {len(teacher_texts)} teacher generations for {len(prompts)} triggering prompts")
    out = {}
    for name, (model, tok) in models.items():
        answers = greedy_answers(model, tok, render_prompts(tok, prompts), max_new)
        out[name] = round(1.0 - text_fidelity(answers, teacher_texts)["rouge_l"], 6)
    return {"production": trigger["production"], "drift_verdict": trigger.get("drift_verdict", ""),
            "rows": len(prompts), "batch_rows": trigger.get("batch_rows", len(prompts)),
            "student_disagreement": out["student"], "champion_disagreement": out.get("champion"),
            "measure": "1 - ROUGE-L against the teacher's cached generation"}


def write_lm_reports(report: dict[str, Any], report_json: str | Path | None = None,
                     report_md: str | Path | None = None, report_html: str | Path | None = None) -> None:
    """The report as JSON, Markdown and the self-contained HTML page, all rendered before any is
    written (a rendering error leaves no file), each written atomically."""
    texts = [(report_json, lambda: json.dumps(report, indent=2)), (report_md, lambda: render_lm_markdown(report)),
             (report_html, lambda: render_lm_html(report))]
    rendered = [(path, make()) for path, make in texts if path]
    for path, text in rendered:
        atomic_write_text(path, text)
