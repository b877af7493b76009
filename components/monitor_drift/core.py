"""Pure logic of monitor_drift: validate text batches, compute offline text descriptors, decide drift.

Evidently only runs the statistical tests (see ``evidently_report``); the decision of whether a
production batch "drifted" is made here, from plain dicts, so that the policy is unit-testable
without Evidently and the reasons handed to people are sentences with the numbers in them.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from components.common.dataset import TextBatchError, validate_texts  # noqa: F401 (validate_texts: re-exported)

# Order matters: it is the column order of text_descriptors() and of the report.
DESCRIPTOR_COLUMNS: tuple[str, ...] = (
    "length",
    "word_count",
    "mean_word_length",
    "non_letter_share",
    "digit_share",
    "upper_share",
    "punctuation_share",
)


# Degenerate input to drift detection (empty batch, missing or non-string texts, bad results); the
# same class as the dataset module's text-batch error, so the CLI reports it as bad input (exit 2).
DriftInputError = TextBatchError


# ---------------------------------------------------------------------------------------------
# Descriptors
# ---------------------------------------------------------------------------------------------


def _share(count: int, total: int) -> float:
    return count / total if total else 0.0


def _is_punctuation(ch: str) -> bool:
    # Unicode categories P* (Pc, Pd, Pe, Pf, Pi, Po, Ps): covers typographic quotes and dashes
    # that string.punctuation misses. Symbols such as $ + < = > ^ | ~ are S*, not punctuation.
    return unicodedata.category(ch).startswith("P")


def describe_text(text: str) -> dict[str, float]:
    """Offline descriptors of one text; every share is a fraction of all characters (0.0 if empty).

    Words are whitespace-separated tokens (``str.split()``), so punctuation stuck to a word counts
    toward its length; this is cheap, deterministic and language-agnostic.
    """
    n_chars = len(text)
    words = text.split()
    n_words = len(words)
    letters = sum(ch.isalpha() for ch in text)
    spaces = sum(ch.isspace() for ch in text)
    return {
        "length": float(n_chars),
        "word_count": float(n_words),
        "mean_word_length": sum(len(w) for w in words) / n_words if n_words else 0.0,
        "non_letter_share": _share(n_chars - letters - spaces, n_chars),
        "digit_share": _share(sum(ch.isdigit() for ch in text), n_chars),
        "upper_share": _share(sum(ch.isupper() for ch in text), n_chars),
        "punctuation_share": _share(sum(_is_punctuation(ch) for ch in text), n_chars),
    }


def text_descriptors(texts: list[str]) -> pd.DataFrame:
    """One row per text, one float column per name in DESCRIPTOR_COLUMNS (in that order)."""
    rows = [describe_text(text) for text in texts]
    return pd.DataFrame(rows, columns=list(DESCRIPTOR_COLUMNS), dtype="float64")


# ---------------------------------------------------------------------------------------------
# Policy and verdict
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftPolicy:
    """When a production batch counts as drifted."""

    column_drift_share: float = 0.5
    """The dataset drifts when at least this share of the descriptor columns drift."""
    stattest_threshold: float = 0.05
    """p-value threshold handed to Evidently's per-column tests (drift when p is below it)."""
    label_drift: bool = True
    """Whether drift of the predicted-label distribution alone makes the batch drifted."""

    def __post_init__(self) -> None:
        if not 0.0 < self.column_drift_share <= 1.0:
            raise ValueError(f"column_drift_share must be in (0, 1], got {self.column_drift_share!r}")
        if not 0.0 < self.stattest_threshold < 1.0:
            raise ValueError(f"stattest_threshold must be in (0, 1), got {self.stattest_threshold!r}")


@dataclass
class DriftVerdict:
    """The drift decision for one production batch, with the numbers that led to it."""

    drifted: bool
    reasons: list[str]
    drifted_columns: list[str]
    column_scores: dict[str, float]
    label_drifted: bool | None
    n_reference: int
    n_production: int
    # Not part of the decision; carried so the verdict JSON says which method scored what.
    column_methods: dict[str, str] = field(default_factory=dict)
    # Signals whose statistic is NaN or infinite, with why: not evaluated, so the verdict fails
    # closed (drifted) instead of reading an undefined number as "no drift".
    not_evaluated: dict[str, str] = field(default_factory=dict)
    # What made the verdict drifted: "descriptors_or_labels" (a test said so), "not_evaluated".
    signals: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: non-finite scores become None (JSON has no NaN)."""
        out = asdict(self)
        out["column_scores"] = {k: _json_float(v) for k, v in self.column_scores.items()}
        return out


def _json_float(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _format_share(share: float) -> str:
    # 0.5 -> "50%", 1/3 -> "33.3%": short, and exact for the usual round policies.
    return f"{share * 100:.3g}%"


def _format_score(score: float) -> str:
    return f"{score:.4g}"


def _check_result(name: str, result: Any) -> tuple[bool, float, str]:
    """Unpack one {"drifted", "score", "method"} dict, failing closed on a malformed one."""
    if not isinstance(result, dict):
        raise DriftInputError(f"drift result for {name!r} is {type(result).__name__}, expected a dict")
    missing = [key for key in ("drifted", "score", "method") if key not in result]
    if missing:
        raise DriftInputError(f"drift result for {name!r} lacks {', '.join(missing)}: {result!r}")
    return bool(result["drifted"]), float(result["score"]), str(result["method"])


def _descriptor_reason(drifted: list[str], total: int, share: float, policy: DriftPolicy,
                       evaluated: str = "") -> str:
    listed = f" ({', '.join(drifted)})" if drifted else ""
    needed = _format_share(policy.column_drift_share)
    counted = f"{len(drifted)} of {total} {evaluated}text descriptors drifted{listed}"
    if _descriptors_drift(len(drifted), share, policy):
        return f"{counted} >= {needed} share"
    return f"{counted}, below the {needed} share"


def _descriptors_drift(n_drifted: int, share: float, policy: DriftPolicy) -> bool:
    # The small tolerance keeps 3 of 6 at a 0.5 policy drifted despite float rounding.
    return n_drifted > 0 and share >= policy.column_drift_share - 1e-12


def _label_reason(label_drifted: bool, score: float, method: str, policy: DriftPolicy) -> str:
    numbers = f"(method {method}, score {_format_score(score)})"
    if not label_drifted:
        return f"predicted-label distribution did not drift {numbers}"
    if policy.label_drift:
        return f"predicted-label distribution drifted {numbers}"
    return f"predicted-label distribution drifted {numbers}, but the policy does not count label drift alone"


def _not_evaluated_reason(name: str, score: float, method: str, why: str) -> str:
    return (f"{name}: not evaluated (method {method}, score {score}): {why}; counted as drifted "
            f"(fail closed: an undefined statistic is not evidence of no drift)")


def decide_drift(
    column_results: dict[str, dict],
    label_result: dict | None,
    policy: DriftPolicy,
    n_reference: int,
    n_production: int,
) -> DriftVerdict:
    """Apply ``policy`` to per-column test results (``{"drifted", "score", "method"}`` dicts).

    A result may carry an optional ``"note"`` (e.g. a column constant in both batches); notes are
    appended to the reasons so the verdict explains every column that was not really tested.

    Fails closed: a NaN or infinite score (chi-square on a label constant in the reference, say)
    makes that signal "not evaluated" and the verdict drifted, whatever its "drifted" flag says;
    the descriptor share is then over the evaluated columns only.
    """
    if not column_results:
        raise DriftInputError("no descriptor drift results: cannot decide drift on zero columns")
    if n_reference <= 0 or n_production <= 0:
        raise DriftInputError(
            f"batch sizes must be positive, got reference={n_reference}, production={n_production}"
        )

    scores: dict[str, float] = {}
    methods: dict[str, str] = {}
    drifted_columns: list[str] = []
    notes: list[str] = []
    not_evaluated: dict[str, str] = {}
    undefined: list[str] = []
    for name, result in column_results.items():
        drifted, score, method = _check_result(name, result)
        scores[name], methods[name] = score, method
        if not math.isfinite(score):
            not_evaluated[name] = str(result.get("note") or "the statistic is undefined")
            undefined.append(_not_evaluated_reason(name, score, method, not_evaluated[name]))
            continue
        if drifted:
            drifted_columns.append(name)
        if result.get("note"):
            notes.append(f"{name}: {result['note']}")

    n_evaluated = len(column_results) - len(not_evaluated)
    share = len(drifted_columns) / n_evaluated if n_evaluated else 0.0
    descriptors_drifted = _descriptors_drift(len(drifted_columns), share, policy)
    reasons = [_descriptor_reason(drifted_columns, n_evaluated, share, policy,
                                  "evaluated " if not_evaluated else "")]

    label_drifted: bool | None = None
    if label_result is None:
        reasons.append("no predicted labels given: label drift not checked")
    else:
        flag, label_score, label_method = _check_result("predicted label", label_result)
        if math.isfinite(label_score):
            label_drifted = flag
            reasons.append(_label_reason(label_drifted, label_score, label_method, policy))
        else:
            not_evaluated["predicted label"] = str(label_result.get("note") or "the statistic is undefined")
            undefined.append(_not_evaluated_reason("predicted label", label_score, label_method,
                                                   not_evaluated["predicted label"]))

    signals = []
    if descriptors_drifted or bool(label_drifted and policy.label_drift):
        signals.append("descriptors_or_labels")
    if not_evaluated:
        signals.append("not_evaluated")
    return DriftVerdict(
        drifted=bool(signals),
        reasons=reasons + undefined + notes,
        drifted_columns=drifted_columns,
        column_scores=scores,
        label_drifted=label_drifted,
        n_reference=int(n_reference),
        n_production=int(n_production),
        column_methods=methods,
        not_evaluated=not_evaluated,
        signals=signals,
    )


# ---------------------------------------------------------------------------------------------
# Distillation-specific signals: embedding drift and teacher-student disagreement
# ---------------------------------------------------------------------------------------------


def validate_embeddings(matrix: Any, batch_name: str) -> Any:
    """A float matrix [rows, dims] with finite values and at least two distinct rows, or an error.

    A batch whose embeddings are all identical (one text repeated, an upstream bug) has no
    distribution to compare; failing closed beats a classifier's meaningless verdict on it.
    """
    import numpy as np

    m = np.asarray(matrix, dtype="float64")
    if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] == 0:
        raise DriftInputError(f"{batch_name} embeddings have shape {m.shape}, expected [rows > 0, dims > 0]")
    bad = ~np.isfinite(m)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise DriftInputError(f"{batch_name} embeddings row {row} dimension {col} is {float(m[row, col])!r}, expected a "
                              f"finite number")
    if m.shape[0] > 1 and np.ptp(m, axis=0).max() == 0.0:
        raise DriftInputError(f"{batch_name} embeddings are identical for all {m.shape[0]} rows (a constant "
                              f"batch): cannot test embedding drift")
    return m


def disagreement_result(reference_student: Any, reference_teacher: Any, production_student: Any,
                        production_teacher: Any, max_increase: float) -> dict[str, Any]:
    """Teacher-student disagreement on production vs on the reference: drift when it grew by more
    than ``max_increase`` (the student no longer imitates its teacher where traffic now is)."""
    import numpy as np

    pairs = {"reference": (reference_student, reference_teacher), "production": (production_student,
                                                                                 production_teacher)}
    rates = {}
    for name, (s, t) in pairs.items():
        s, t = np.asarray(s), np.asarray(t)
        if len(s) == 0 or len(s) != len(t):
            raise DriftInputError(f"{name} disagreement sample: {len(s)} student and {len(t)} teacher predictions")
        rates[name] = float((s != t).mean())
    return disagreement_from_rates(rates["reference"], rates["production"], len(np.asarray(production_student)),
                                   max_increase)


def disagreement_from_rates(reference: float, production: float, n_production: int,
                            max_increase: float) -> dict[str, Any]:
    """The disagreement signal from the two rates (any measure in [0, 1]: a label mismatch share, or
    1 - ROUGE-L of generated answers): drift when production exceeds the reference by more than
    ``max_increase``."""
    for name, value in (("reference", reference), ("production", production)):
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise DriftInputError(f"{name} disagreement rate must be in [0, 1], got {value!r}")
    if n_production <= 0:
        raise DriftInputError(f"disagreement sample: {n_production} production rows")
    increase = production - reference
    return {"reference": reference, "production": production, "increase": increase,
            "threshold": max_increase, "drifted": increase > max_increase, "n_production": n_production}


def combine_signals(verdict: DriftVerdict, embedding: dict | None, disagreement: dict | None) -> dict[str, Any]:
    """The verdict of the descriptors and labels, plus the embedding and disagreement signals.

    ``embedding``: {"score", "threshold", "method", "drifted"}; ``disagreement``: disagreement_result().
    The batch drifted when any signal did; every signal's sentence is in the reasons.
    """
    out = verdict.to_dict()
    signals = list(verdict.signals)
    if embedding is not None and not math.isfinite(embedding["score"]):
        why = "the domain classifier's ROC AUC is undefined"
        out["not_evaluated"]["embeddings"] = why
        out["reasons"].append(_not_evaluated_reason("embeddings", embedding["score"], embedding["method"], why))
        if "not_evaluated" not in signals:
            signals.append("not_evaluated")
        embedding = {**embedding, "score": None}
    elif embedding is not None:
        verb = "drifted" if embedding["drifted"] else "did not drift"
        out["reasons"].append(f"embeddings {verb} (method {embedding['method']}, score "
                              f"{_format_score(embedding['score'])}, threshold {embedding['threshold']:g})")
        if embedding["drifted"]:
            signals.append("embeddings")
    if disagreement is not None:
        verb = "grew" if disagreement["drifted"] else "did not grow"
        out["reasons"].append(
            f"teacher-student disagreement {verb}: {disagreement['production']:.1%} on "
            f"{disagreement['n_production']} production inputs vs {disagreement['reference']:.1%} on the reference "
            f"(increase {disagreement['increase']:+.1%}, allowed {disagreement['threshold']:.1%})")
        if disagreement["drifted"]:
            signals.append("teacher_student_disagreement")
    out.update(embedding=embedding, disagreement=disagreement, signals=signals, drifted=bool(signals))
    return out
