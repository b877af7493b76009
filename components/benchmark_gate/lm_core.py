"""Pure logic of the generative gate (task: generation): the checks, all evaluated, then one decision.

Each model is described by a *card* of numbers measured on the held-out prompts (lm_runner):

- fidelity to the teacher: ``rouge_l`` and ``exact_match`` of the model's greedy answers against the
  teacher's cached generations; teacher-forced on those generations, ``token_agreement`` (share of
  positions where the model's most likely token is the teacher's), ``token_kl`` (mean
  KL(teacher || model) per token over the cached top-k + tail) and ``teacher_nll`` (NLL of the
  teacher's tokens under the model, nats per token);
- quality where the data has reference responses: ``reference_rouge_l`` (``references`` rows);
- speed, the models timed side by side: ``tokens_per_s_batch1`` / ``_batch8`` and
  ``ttft_ms_batch1`` / ``_batch8`` (time to first token);
- ``parameters`` and ``size_bytes``.

The teacher's card holds its own figures (ROUGE-L 1.0 against itself, its own NLL, its references
score and speed). Every check is collected, failed or not, with its numbers, so a refusal names all
its reasons at once (as the classification gate does: core.py). Thresholds are ``gate.lm_*`` keys;
where a key's value 0 means "reported, not gated", the check is still in the report with its value
and the words "reported, not gated". A number that could not be measured (NaN) fails its check:
never a silent pass.

Why the defaults (``gate.lm_*`` in config.py) are what a distilled SmolLM2-135M student can pass:
the speed-up (2.0 at batch 1) and the parameter fraction (0.45) are the issue's targets, the ones
the student is shaped to. ROUGE-L 0.25: two unrelated fluent English answers already share some
function words (ROUGE-L of roughly 0.1), so the floor asks for clearly more than chance overlap
without asking for word-for-word reproduction, which greedy decoding amplifies: one different
token early changes the rest of the answer. Token agreement 0.5, teacher-forced, does not have that
cascade: the student's top token is the teacher's on at least half of the teacher's own tokens. NLL
excess 1.5 nats/token: on average the student gives the teacher's tokens at least e^-1.5 (about a
fifth) of the probability the teacher gives them; an untrained student of a 49k vocabulary is many
nats away. Champion regression 0.02 as the classification gate's macro-F1 regression. Exact match,
KL, reference retention and the batch-8 speed-up are reported only: their useful level depends on
the prompts and the decoding length. These are reasoned, not yet measured on the real teacher; the
issue's benchmark is where they get confirmed or retuned.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from components.benchmark_gate.core import Check, GateResult, _check, trigger_check
from components.common.config import GateConfig

SPEED_BATCHES = (1, 8)
# What every card must hold (references aside, which exist only where the data has them).
CARD_KEYS = ("rouge_l", "exact_match", "token_agreement", "token_kl", "teacher_nll", "parameters",
             *(f"{k}_batch{b}" for b in SPEED_BATCHES for k in ("tokens_per_s", "ttft_ms")))


def _need(card: dict[str, Any], who: str, keys=CARD_KEYS) -> None:
    missing = [k for k in keys if k not in card]
    if missing:
        raise ValueError(f"generative gate: the {who} card lacks {missing} (has {sorted(card)})")


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b and b > 0 else float("nan")


def _gated(name: str, value: float, threshold: float, at_least: bool, what: str) -> Check:
    """A check whose threshold 0 means "reported, not gated" (the value still shown)."""
    if threshold == 0:
        shown = f"{value:.4f}" if math.isfinite(value) else "nan (not measured)"
        return Check(name, True, round(value, 6) if math.isfinite(value) else value, 0.0,
                     f"{what}: {shown} (reported, not gated)")
    return _check(name, value, threshold, at_least, what)


def fidelity_checks(student: dict, teacher: dict, policy: GateConfig) -> list[Check]:
    """ROUGE-L and exact match against the teacher's generations; teacher-forced agreement, KL and
    the NLL excess over the teacher's own NLL of its tokens."""
    excess = float(student["teacher_nll"]) - float(teacher["teacher_nll"])
    return [
        _gated("lm_rouge_l", float(student["rouge_l"]), policy.lm_min_rouge_l, True,
               "mean ROUGE-L F1 of the student's answers against the teacher's generations"),
        _gated("lm_exact_match", float(student["exact_match"]), policy.lm_min_exact_match, True,
               "share of student answers identical to the teacher's"),
        _gated("lm_token_agreement", float(student["token_agreement"]), policy.lm_min_token_agreement, True,
               "teacher-forced token agreement (student's top token = the teacher's)"),
        _gated("lm_token_kl", float(student["token_kl"]), policy.lm_max_token_kl, False,
               "teacher-forced mean KL(teacher || student) per token"),
        _gated("lm_nll_excess", excess, policy.lm_max_nll_excess, False,
               f"NLL of the teacher's tokens under the student {float(student['teacher_nll']):.4f} minus under "
               f"the teacher {float(teacher['teacher_nll']):.4f} (nats/token)"),
    ]


def reference_check(student: dict, teacher: dict, policy: GateConfig) -> list[Check]:
    """Quality against reference responses, where the prompts have them: the student's ROUGE-L as a
    share of the teacher's (a small student is not expected to beat its teacher on references; what
    is gated is how much of the teacher's quality it keeps). None when there are no references."""
    if not student.get("references"):
        return []
    s, t = float(student["reference_rouge_l"]), float(teacher["reference_rouge_l"])
    return [_gated("lm_reference_retention", _ratio(s, t), policy.lm_min_reference_retention, True,
                   f"ROUGE-L against the {student['references']} reference responses: student {s:.4f} / teacher "
                   f"{t:.4f} retention")]


def speed_checks(student: dict, teacher: dict, policy: GateConfig) -> list[Check]:
    """Generated tokens/s over the teacher's at batch 1 and at batch 8 (timed side by side)."""
    checks = []
    for batch, threshold in zip(SPEED_BATCHES, (policy.lm_min_speedup, policy.lm_min_speedup_batch8), strict=True):
        key = f"tokens_per_s_batch{batch}"
        s, t = float(student[key]), float(teacher[key])
        checks.append(_gated(f"lm_speedup_batch{batch}", _ratio(s, t), threshold, True,
                             f"batch-{batch} generated tokens/s over the teacher's ({s:.1f} vs {t:.1f})"))
    return checks


def size_checks(student: dict, teacher: dict, policy: GateConfig) -> list[Check]:
    s, t = int(student["parameters"]), int(teacher["parameters"])
    return [_gated("lm_parameter_fraction", _ratio(s, t), policy.lm_max_parameter_fraction, False,
                   f"student parameters {s:,} / teacher {t:,}")]


def champion_check(student: dict, champion: dict | None, policy: GateConfig) -> list[Check]:
    """The change against the serving champion: the drop of ROUGE-L against the teacher (0 forbids
    any drop, a legitimate policy, so it is always gated)."""
    if champion is None:
        return []
    c, s = float(champion["rouge_l"]), float(student["rouge_l"])
    return [_check("lm_champion_regression", c - s, policy.lm_max_champion_regression, False,
                   f"ROUGE-L against the teacher: drop against the champion ({c:.4f} -> {s:.4f})")]


def evaluate_lm_gate(student: dict[str, Any], teacher: dict[str, Any], champion: dict[str, Any] | None,
                     policy: GateConfig, trigger: dict[str, Any] | None = None) -> GateResult:
    """Decide whether a generative `student` may replace `champion` (cards: see the module docstring).

    A champion card needs ``rouge_l`` only (a champion with another tokenizer has no teacher-forced
    figures and no side-by-side speed). The student passes when every gated check passes."""
    _need(student, "student")
    _need(teacher, "teacher", ("teacher_nll", "parameters",
                               *(f"tokens_per_s_batch{b}" for b in SPEED_BATCHES)))
    if student.get("references"):
        _need(student, "student", ("reference_rouge_l",))
        _need(teacher, "teacher", ("reference_rouge_l",))
    if champion is not None:
        _need(champion, "champion", ("rouge_l",))
    checks = [*fidelity_checks(student, teacher, policy), *reference_check(student, teacher, policy),
              *speed_checks(student, teacher, policy), *size_checks(student, teacher, policy),
              *champion_check(student, champion, policy)]
    if trigger is not None:  # a drift-triggered run: did the student learn the prompts that drifted?
        checks.append(trigger_check(trigger, replace(policy, max_trigger_disagreement=policy.lm_max_trigger_disagreement)))
    models = {"teacher": teacher, "student": student, **({"champion": champion} if champion is not None else {})}
    return GateResult(all(c.passed for c in checks if not c.informational), checks, models)


def lm_compression(student: dict, teacher: dict) -> dict[str, float | None]:
    """Parameter and size ratios (student / teacher), and tokens/s speed-ups per batch size (None
    where a figure is missing)."""

    def ratio(a, b):
        ok = isinstance(a, int | float) and isinstance(b, int | float) and b > 0
        return float(a) / float(b) if ok else None

    out = {"parameter_ratio": ratio(student.get("parameters"), teacher.get("parameters")),
           "size_ratio": ratio(student.get("size_bytes"), teacher.get("size_bytes"))}
    for b in SPEED_BATCHES:
        out[f"speedup_batch{b}"] = ratio(student.get(f"tokens_per_s_batch{b}"), teacher.get(f"tokens_per_s_batch{b}"))
        out[f"ttft_speedup_batch{b}"] = ratio(teacher.get(f"ttft_ms_batch{b}"), student.get(f"ttft_ms_batch{b}"))
    return out


def speed_table(models: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, batch size): tokens/s, time to first token and the speed-up over the teacher."""
    rows = []
    teacher = models["teacher"]
    for b in SPEED_BATCHES:
        for name, card in models.items():
            tps = card.get(f"tokens_per_s_batch{b}")
            if tps is None:
                continue
            t = teacher.get(f"tokens_per_s_batch{b}")
            rows.append({"model": name, "batch_size": b, "tokens_per_s": tps, "ttft_ms": card.get(f"ttft_ms_batch{b}"),
                         "speedup_vs_teacher": round(tps / t, 4) if t else None})
    return rows


def flat_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The report's numbers as one flat {name: value} map for MLflow / KFP metrics: every model's
    figures (``student_rouge_l``, ``teacher_tokens_per_s_batch1``, ...), the compression
    (``student_speedup_batch1``, ...) and every check's value (``check_lm_rouge_l``, ...). Figures
    that are not finite numbers (not measured) are left out."""

    def number(v) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    out = {f"{name}_{key}": float(v) for name, card in report["models"].items() for key, v in card.items()
           if number(v)}
    out.update({f"student_{key}": float(v) for key, v in report.get("compression", {}).items() if number(v)})
    out.update({f"check_{c['name']}": float(c["value"]) for c in report["checks"] if number(c["value"])})
    return out
