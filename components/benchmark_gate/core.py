"""Pure logic of benchmark_gate: metrics, the policy, and the report.

The gate evaluates every check, collects every failure, then decides once, so a report always
says all the reasons a student was refused, each with the numbers that failed.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn import metrics

from components.common.config import GateConfig
from components.common.numerics import log_softmax


def classification_metrics(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1 (the unweighted mean of per-label F1 over labels present in gold or pred)."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    if not len(gold):
        return {"accuracy": float("nan"), "macro_f1": 0.0}
    # A label absent from both says nothing about this model: macro-F1 averages over the others only.
    present = [c for c in range(n_labels) if (gold == c).any() or (pred == c).any()]
    macro_f1 = metrics.f1_score(gold, pred, labels=present, average="macro", zero_division=0) if present else 0.0
    return {"accuracy": float(metrics.accuracy_score(gold, pred)), "macro_f1": float(macro_f1)}


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows on which two models predict the same label."""
    return float((np.asarray(a) == np.asarray(b)).mean())


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: float
    threshold: float
    message: str
    # An informational check is reported with its verdict but never refuses the student.
    informational: bool = False


@dataclass
class GateResult:
    passed: bool
    checks: list[Check]
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Where the speeds were timed (the runner's speed_context): the 1-minute load average and the
    # cores when timing began, torch's threads. Empty for a result built by hand.
    speed: dict[str, Any] = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        return [c.message for c in self.checks if not c.passed and not c.informational]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": self.reasons, "checks": [asdict(c) for c in self.checks],
                "models": self.models, "speed": self.speed}


def loaded(speed: dict[str, Any] | None) -> bool:
    """Whether the speeds were timed on a loaded machine: the 1-minute load average above the cores."""
    speed = speed or {}
    return speed.get("load_average") is not None and speed["load_average"] > speed.get("cores", float("inf"))


def _load_note(speed: dict[str, Any] | None) -> str:
    """For a speed-up check's message: nothing on a quiet machine; under load, the load and what it
    does to the figure (other processes stretch the timed calls: on 2 cores, one batch, a trec
    student read 2.47-2.71x with the other work paused and 2.68-3.50x at load 4-4.8, docs/benchmarks.md)."""
    if not loaded(speed):
        return ""
    return (f" [timed under load: load average {speed['load_average']:.2f} on {speed['cores']} cores; "
            f"a quiet machine may read a different speed-up]")


def _check(name: str, value: float, threshold: float, at_least: bool, what: str) -> Check:
    ok = value >= threshold if at_least else value <= threshold
    op = ">=" if at_least else "<="
    verdict = "ok" if ok else "FAILED"
    return Check(name, ok, round(value, 6), threshold, f"{what}: {value:.4f} (required {op} {threshold:g}) {verdict}")


def evaluate_gate(student: dict[str, float], teacher: dict[str, float], champion: dict[str, float] | None,
                  policy: GateConfig, teacher_int8: dict[str, float] | None = None,
                  student_int8: dict[str, float] | None = None, provenance: dict[str, Any] | None = None,
                  trigger: dict[str, Any] | None = None, speed: dict[str, Any] | None = None) -> GateResult:
    """Decide whether `student` may replace `champion`. Each dict holds accuracy, macro_f1,
    throughput_rows_per_s, latency_p50_ms, parameters, size_bytes; the student's also agreement.
    `teacher_int8` / `student_int8`: the same models quantized to dynamic int8, measured beside them
    (`_quantized_checks`); they are reported as model cards too.

    `provenance` (label_provenance): ``gold_rows`` and ``teacher_labelled_rows`` of the test split;
    the cards' accuracy and F1 figures are on the gold rows only. With fewer gold rows than
    ``gate.min_gold_test_rows`` every gold-based check is left out and one failing ``gold_test_rows``
    check says why (never a silent pass). `trigger` (trigger_batch): the drift-triggered run's
    disagreements on the triggering batch (trigger_check); None for a run started by hand.
    `speed`: where the speeds were timed (`load_average`, `cores`, `threads`); under load the
    speed-up checks say so in their messages."""
    gold_ok = provenance is None or provenance["gold_rows"] >= policy.min_gold_test_rows
    checks = []
    if gold_ok:
        checks.append(_check("accuracy_retention", student["accuracy"] / max(teacher["accuracy"], 1e-12),
                             policy.min_accuracy_retention, True,
                             f"student accuracy {student['accuracy']:.4f} / teacher {teacher['accuracy']:.4f} "
                             f"retention{_on_gold(provenance)}"))
    checks += [
        _check("speedup", student["throughput_rows_per_s"] / max(teacher["throughput_rows_per_s"], 1e-12),
               policy.min_speedup, True, "batch-32 throughput speed-up over the teacher" + _load_note(speed)),
        _check("agreement", student["agreement"], policy.min_agreement, True, "agreement with the teacher"),
    ]
    if champion is not None and gold_ok:
        drop = champion["accuracy"] - student["accuracy"]
        checks.append(_check("champion_regression", drop, policy.max_champion_regression, False,
                             f"accuracy drop against the champion ({champion['accuracy']:.4f} -> "
                             f"{student['accuracy']:.4f}){_on_gold(provenance)}"))
    checks += provenance_checks(student, provenance, policy)
    checks += _extended_checks(student, teacher, champion, policy, gold=gold_ok)
    checks += _quantized_checks(student, teacher, teacher_int8, student_int8 if gold_ok else None, policy, speed)
    if trigger is not None:
        checks.append(trigger_check(trigger, policy))
    models = {"student": student, "teacher": teacher}
    if champion is not None:
        models["champion"] = champion
    for name, card in (("teacher_int8", teacher_int8), ("student_int8", student_int8)):
        if card is not None:
            models[name] = card
    return GateResult(all(c.passed for c in checks if not c.informational), checks, models, dict(speed or {}))


def provenance_scores(pred: np.ndarray, teacher_pred: np.ndarray, gold: np.ndarray, is_gold: np.ndarray,
                      names: list[str]) -> dict[str, Any]:
    """One model's test-split figures by label provenance: accuracy, macro-F1 and the per-label
    slices against the gold rows only; agreement with the teacher on every row; and on the
    teacher-labelled rows (whose label *is* the teacher's prediction) agreement only, as
    ``agreement_teacher_labelled`` (absent when there are none)."""
    pred, teacher_pred, gold = np.asarray(pred), np.asarray(teacher_pred), np.asarray(gold)
    is_gold = np.asarray(is_gold, dtype=bool)
    card: dict[str, Any] = classification_metrics(pred[is_gold], gold[is_gold], len(names))
    card["labels"] = per_label_metrics(pred[is_gold], gold[is_gold], names)
    card["agreement"] = agreement(pred, teacher_pred) if len(pred) else float("nan")
    if (~is_gold).any():
        card["agreement_teacher_labelled"] = agreement(pred[~is_gold], teacher_pred[~is_gold])
    return card


def label_provenance(is_gold: np.ndarray, teacher: dict, student: dict, champion: dict | None) -> dict[str, Any]:
    """The test split's gold and teacher-labelled rows apart: counts, accuracy on the gold rows
    (teacher, student, champion) and agreement with the teacher on the teacher-labelled rows
    (None where a figure has no rows to be measured on)."""
    is_gold = np.asarray(is_gold, dtype=bool)
    gold, taught = int(is_gold.sum()), int((~is_gold).sum())

    def figure(card: dict | None, key: str, rows: int) -> float | None:
        return None if card is None or not rows or key not in card else float(card[key])

    out = {"gold_rows": gold, "teacher_labelled_rows": taught,
           "teacher_accuracy_gold": figure(teacher, "accuracy", gold),
           "student_accuracy_gold": figure(student, "accuracy", gold),
           "student_teacher_agreement_teacher_labelled": figure(student, "agreement_teacher_labelled", taught)}
    if champion is not None:
        out.update(champion_accuracy_gold=figure(champion, "accuracy", gold),
                   champion_teacher_agreement_teacher_labelled=figure(champion, "agreement_teacher_labelled",
                                                                       taught))
    return out


def _on_gold(provenance: dict | None) -> str:
    if not provenance or not provenance.get("teacher_labelled_rows"):
        return ""
    return f" on the {provenance['gold_rows']} gold-labelled test rows"


def provenance_checks(student: dict, provenance: dict | None, policy: GateConfig) -> list[Check]:
    """Label provenance of the test split. Teacher-labelled rows are scored by the student's
    agreement with the teacher (fidelity), never as accuracy; too few gold rows refuse, since
    accuracy against ground truth then cannot be measured. Nothing for an all-gold split that has
    enough rows (a normal run's report is unchanged)."""
    if provenance is None:
        return []
    gold, taught = provenance["gold_rows"], provenance["teacher_labelled_rows"]
    checks = []
    if gold < policy.min_gold_test_rows:
        checks.append(Check("gold_test_rows", False, float(gold), float(policy.min_gold_test_rows),
                            f"gold-labelled test rows: {gold} of {gold + taught} (required >= "
                            f"{policy.min_gold_test_rows}) FAILED: accuracy, retention and the champion's "
                            f"regressions need ground truth and were not measured; the {taught} "
                            f"teacher-labelled rows only measure agreement with the teacher"))
    elif taught:
        checks.append(Check("gold_test_rows", True, float(gold), float(policy.min_gold_test_rows),
                            f"gold-labelled test rows: {gold} of {gold + taught} (required >= "
                            f"{policy.min_gold_test_rows}) ok: accuracy checks use these only"))
    if taught:
        checks.append(_check("teacher_labelled_agreement", student["agreement_teacher_labelled"],
                             policy.min_agreement, True,
                             f"agreement with the teacher on the {taught} teacher-labelled test rows (fidelity, "
                             f"not accuracy)"))
    return checks


def trigger_check(trigger: dict[str, Any], policy: GateConfig) -> Check:
    """Prove the redistillation helped where drift was seen: on the triggering production batch the
    new student's disagreement with the teacher must be at most gate.max_trigger_disagreement and
    below the champion's (the model that drifted). When the champion already agrees everywhere
    (0), the student must too. No champion: the threshold alone, said in the message.
    gate.max_trigger_disagreement = 0: measured and reported, not gated."""
    s, c, limit = trigger["student_disagreement"], trigger.get("champion_disagreement"), \
        policy.max_trigger_disagreement
    what = (f"disagreement with the teacher on the triggering production batch ({trigger['rows']} rows): "
            f"student {s:.4f}, " + (f"champion {c:.4f}" if c is not None else "no champion to compare"))
    if limit == 0:
        return Check("trigger_disagreement", True, round(s, 6), 0.0, f"{what} (reported, not gated)",
                     informational=True)
    under = s <= limit
    beats = c is None or s < c or (c == 0 and s == 0)
    failed = ([] if under else [f"above {limit:g}"]) + ([] if beats else ["not below the champion's"])
    required = f"required <= {limit:g}" + (" and below the champion's" if c is not None else "")
    verdict = "ok" if not failed else "FAILED: " + " and ".join(failed)
    return Check("trigger_disagreement", not failed, round(s, 6), limit, f"{what} ({required}) {verdict}")


def _quantized_checks(student: dict, teacher: dict, teacher_int8: dict | None, student_int8: dict | None,
                      policy: GateConfig, speed: dict[str, Any] | None = None) -> list[Check]:
    """What a user could have for free: the student's speed-up over the int8-quantized teacher (the
    number that justifies distilling; 0 = reported, not gated) and, informational, whether the int8
    student keeps the gate's accuracy retention."""
    checks = []
    if teacher_int8 is not None:
        name = "student_speedup_over_int8_teacher"
        what = "batch-32 throughput speed-up over the int8-quantized teacher" + _load_note(speed)
        value = student["throughput_rows_per_s"] / max(teacher_int8["throughput_rows_per_s"], 1e-12)
        threshold = policy.min_speedup_over_int8_teacher
        checks.append(_check(name, value, threshold, True, what) if threshold > 0 else
                      Check(name, True, round(value, 6), 0.0, f"{what}: {value:.4f} (reported, not gated)"))
    if student_int8 is not None:
        value = student_int8["accuracy"] / max(teacher["accuracy"], 1e-12)
        kept = value >= policy.min_accuracy_retention
        checks.append(Check("student_int8_accuracy_retention", kept, round(value, 6), policy.min_accuracy_retention,
                            f"int8 student accuracy {student_int8['accuracy']:.4f} / teacher "
                            f"{teacher['accuracy']:.4f} retention: {value:.4f} "
                            f"({'keeps' if kept else 'does not keep'} >= {policy.min_accuracy_retention:g}; "
                            f"informational: it never refuses the fp32 student; gate.emit_quantized_student "
                            f"logs it when kept)", informational=True))
    return checks


def compression(student: dict, teacher: dict, teacher_int8: dict | None = None) -> dict[str, float | None]:
    """How much smaller and faster the student is: parameter and size ratios (student / teacher) and
    speed-ups (batch-32 throughput, batch-1 p50 latency; over the int8 teacher too when measured).
    A figure that was not measured is None."""

    def ratio(a, b):
        ok = isinstance(a, int | float) and isinstance(b, int | float) and b > 0
        return float(a) / float(b) if ok else None

    return {"parameter_ratio": ratio(student.get("parameters"), teacher.get("parameters")),
            "size_ratio": ratio(student.get("size_bytes"), teacher.get("size_bytes")),
            "throughput_speedup": ratio(student.get("throughput_rows_per_s"), teacher.get("throughput_rows_per_s")),
            "latency_speedup_p50": ratio(teacher.get("latency_p50_ms"), student.get("latency_p50_ms")),
            "throughput_speedup_over_int8_teacher": ratio(student.get("throughput_rows_per_s"),
                                                          (teacher_int8 or {}).get("throughput_rows_per_s"))}


_ROWS = [("accuracy", "{:.4f}"), ("macro_f1", "{:.4f}"), ("agreement", "{:.4f}"), ("kl_to_teacher", "{:.4f}"),
         ("latency_p50_ms", "{:.2f}"), ("latency_p90_ms", "{:.2f}"),
         ("latency_p99_ms", "{:.2f}"), ("throughput_rows_per_s", "{:.1f}"), ("parameters", "{:,}"),
         ("size_bytes", "{:,}")]


def render_markdown(result: GateResult, context: dict[str, Any], provenance: dict[str, Any] | None = None,
                    trigger_batch: dict[str, Any] | None = None) -> str:
    """A report people can read: the decision, every reason, and the side-by-side numbers."""
    lines = [f"# Benchmark gate: {'PASSED' if result.passed else 'FAILED'}", ""]
    c = compression(result.models["student"], result.models["teacher"])
    if c["parameter_ratio"] is not None and c["throughput_speedup"] is not None:
        size = f", {c['size_ratio']:.3f} of its size" if c["size_ratio"] is not None else ""
        lines += [f"Student: {c['parameter_ratio']:.3f} of the teacher's parameters{size}, "
                  f"{c['throughput_speedup']:.2f}x its batch-32 throughput.", ""]
    lines += [f"- **{k}**: `{v}`" for k, v in context.items()]
    lines += ["", "## Checks", ""]
    lines += [f"- {'ℹ️' if c.informational else '✅' if c.passed else '❌'} {c.message}" for c in result.checks]
    names = list(result.models)
    lines += ["", "## Models (test split)", "", "| metric | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    for key, fmt in _ROWS:
        cells = []
        for n in names:
            v = result.models[n].get(key)
            cells.append("–" if v is None else fmt.format(v))
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    for key in sorted({k for n in names for k in result.models[n].get("robustness", {})}):
        cells = [f"{result.models[n]['robustness'][key]:.4f}" if key in result.models[n].get("robustness", {})
                 else "–" for n in names]
        lines.append(f"| accuracy ({key}) | " + " | ".join(cells) + " |")
    lines += provenance_lines(provenance, trigger_batch)
    labels = result.models["student"].get("labels", {})
    if labels:
        lines += ["", "## Per-label slices (student)", "", "| label | support | recall | F1 |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['support']} | {v['recall']:.4f} | {v['f1']:.4f} |" for k, v in labels.items()]
    return "\n".join(lines) + "\n"


def _share(value: float | None) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.4f}"


def provenance_lines(provenance: dict[str, Any] | None, trigger_batch: dict[str, Any] | None) -> list[str]:
    """Markdown: gold and teacher-labelled test rows apart, and the triggering batch of a drift run."""
    lines = []
    if provenance is not None:
        p = provenance
        lines += ["", "## Label provenance (test split)", "",
                  "| rows | count | measured |", "|---|---|---|",
                  f"| gold | {p['gold_rows']} | accuracy: teacher {_share(p['teacher_accuracy_gold'])}, student "
                  f"{_share(p['student_accuracy_gold'])}"
                  + (f", champion {_share(p['champion_accuracy_gold'])}" if "champion_accuracy_gold" in p else "")
                  + " |",
                  f"| teacher-labelled | {p['teacher_labelled_rows']} | agreement with the teacher: student "
                  f"{_share(p['student_teacher_agreement_teacher_labelled'])}"
                  + (f", champion {_share(p['champion_teacher_agreement_teacher_labelled'])}"
                     if "champion_teacher_agreement_teacher_labelled" in p else "")
                  + " (not accuracy: the teacher labelled them) |"]
    if trigger_batch is not None:
        t = trigger_batch
        lines += ["", "## Triggering production batch", "",
                  f"`{t['production']}`: {t['rows']} distinct texts scored (of {t['batch_rows']} rows); "
                  f"disagreement with the teacher: student {_share(t['student_disagreement'])}, champion "
                  f"{_share(t['champion_disagreement'])}."]
    return lines


def _extended_checks(student: dict, teacher: dict, champion: dict | None, policy: GateConfig,
                     gold: bool = True) -> list[Check]:
    """Absolute floors, F1 retention and regression, fidelity, robustness, budgets and slices.

    A threshold of 0 means "measured and reported, not gated" for every check here except the
    champion's macro-F1 regression (0 there would forbid any drop at all, a legitimate policy).
    `gold` False (too few gold test rows): the checks against gold labels are left out (the failing
    gold_test_rows check says why); fidelity and budgets remain.
    """
    checks = []
    if gold:
        checks += _gold_checks(student, teacher, champion, policy)
    if policy.max_kl_to_teacher > 0 and "kl_to_teacher" in student:
        checks.append(_check("kl_to_teacher", student["kl_to_teacher"], policy.max_kl_to_teacher, False,
                             "mean KL(teacher || student) on the test split"))
    if policy.max_latency_p50_ms > 0:
        checks.append(_check("latency_budget", student["latency_p50_ms"], policy.max_latency_p50_ms, False,
                             "batch-1 p50 latency (ms) on this machine"))
    if policy.max_size_mb > 0:
        checks.append(_check("size_budget", student["size_bytes"] / 1e6, policy.max_size_mb, False,
                             "size on disk (MB)"))
    if policy.max_parameters > 0:
        checks.append(_check("parameter_budget", float(student["parameters"]), float(policy.max_parameters),
                             False, "parameters"))
    if gold and policy.min_label_f1 > 0:
        for label, stats in student.get("labels", {}).items():
            checks.append(_check(f"label_f1[{label}]", stats["f1"], policy.min_label_f1, True,
                                 f"F1 on label {label!r} ({stats['support']} test rows)"))
    return checks


def _gold_checks(student: dict, teacher: dict, champion: dict | None, policy: GateConfig) -> list[Check]:
    """Floors, F1 retention and regression, robustness: measured against gold labels."""
    checks = []
    if policy.min_accuracy > 0:
        checks.append(_check("min_accuracy", student["accuracy"], policy.min_accuracy, True, "student accuracy"))
    if policy.min_macro_f1 > 0:
        checks.append(_check("min_macro_f1", student["macro_f1"], policy.min_macro_f1, True, "student macro-F1"))
    if policy.min_f1_retention > 0:
        checks.append(_check("f1_retention", student["macro_f1"] / max(teacher["macro_f1"], 1e-12),
                             policy.min_f1_retention, True,
                             f"student macro-F1 {student['macro_f1']:.4f} / teacher {teacher['macro_f1']:.4f} "
                             f"retention"))
    if champion is not None:
        checks.append(_check("champion_f1_regression", champion["macro_f1"] - student["macro_f1"],
                             policy.max_champion_f1_regression, False,
                             f"macro-F1 drop against the champion ({champion['macro_f1']:.4f} -> "
                             f"{student['macro_f1']:.4f})"))
    if policy.min_robust_accuracy_ratio > 0:
        for name, acc in student.get("robustness", {}).items():
            checks.append(_check(f"robustness_{name}", acc / max(student["accuracy"], 1e-12),
                                 policy.min_robust_accuracy_ratio, True,
                                 f"accuracy on {name}-perturbed inputs {acc:.4f} / clean {student['accuracy']:.4f}"))
    return checks


# ---------------------------------------------------------------------------------------------
# Measurements that need no model: per-label slices, KL, confusion matrix, perturbations.
# ---------------------------------------------------------------------------------------------


def per_label_metrics(pred: np.ndarray, gold: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    """Support, recall and F1 of every label present in gold (the slices of the gate)."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    present = [c for c in range(len(names)) if (gold == c).any()]
    if not present:
        return {}
    _, recall, f1, support = metrics.precision_recall_fscore_support(gold, pred, labels=present, zero_division=0)
    return {names[c]: {"support": int(n), "recall": float(r), "f1": float(f)}
            for c, r, f, n in zip(present, recall, f1, support, strict=True)}


def mean_kl(teacher_logits: np.ndarray, student_logits: np.ndarray) -> float:
    """Mean over rows of KL(softmax(teacher) || softmax(student)), in nats, at temperature 1."""
    lt, ls = log_softmax(teacher_logits), log_softmax(student_logits)
    return float((np.exp(lt) * (lt - ls)).sum(-1).mean())


def confusion_matrix(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> list[list[int]]:
    """rows: gold label, columns: predicted label; a prediction outside the labels is dropped."""
    if not len(gold):
        return np.zeros((n_labels, n_labels), dtype=int).tolist()
    with warnings.catch_warnings():  # sklearn warns on a 1 x 1 matrix even when given the labels
        warnings.filterwarnings("ignore", message="A single label was found", category=UserWarning)
        return metrics.confusion_matrix(np.asarray(gold), np.asarray(pred), labels=list(range(n_labels))).tolist()


def _typos(text: str, rng) -> str:
    # Swap two inner letters of about one word in five (at least one when a word is long enough).
    words = text.split(" ")
    long = [i for i, w in enumerate(words) if len(w) >= 4]
    if not long:
        return text
    for i in rng.sample(long, max(1, len(long) // 5)):
        w = words[i]
        j = rng.randrange(1, len(w) - 2)
        words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
    return " ".join(words)


def _whitespace(text: str, rng) -> str:
    gaps = ["  ", "\t", " \n ", "   "]
    return "  " + "".join(w + rng.choice(gaps) for w in text.split()) .rstrip() + " \n"


def _truncation(text: str, rng) -> str:
    words = text.split()
    return " ".join(words[: max(1, (len(words) + 1) // 2)])


PERTURBATIONS = {
    "typos": _typos,
    "casing": lambda text, rng: text.upper(),
    "whitespace": _whitespace,
    "truncation": _truncation,
}


def perturb(texts: list[str], kind: str, seed: int) -> list[str]:
    """A perturbed copy of `texts`; the same (texts, kind, seed) always gives the same copy."""
    import random

    if kind not in PERTURBATIONS:
        raise ValueError(f"gate.robustness_perturbations: unknown perturbation {kind!r}; "
                         f"allowed: {', '.join(PERTURBATIONS)}")
    return [PERTURBATIONS[kind](t, random.Random(f"{seed}:{kind}:{i}")) for i, t in enumerate(texts)]


# What the report keeps of each earlier champion (measured again on this run's test split).
PAST_FIELDS = ("accuracy", "macro_f1", "latency_p50_ms", "latency_p99_ms", "parameters", "size_bytes")
_CHAMPION_ACTIONS = ("promote", "rollback", "adopt")


def past_champion_versions(ledger: list[tuple[int, dict, dict[str, str]]], current: str | None, n: int) -> list[str]:
    """The `n` versions most recently made champion by an applied ledger entry, other than `current`
    (oldest first). `ledger` is ``registry.read_ledger``'s list; an entry counts only once the
    promotion history has tagged its outcome ``applied`` (a rejected compare-and-set never does)."""
    if n <= 0:
        return []
    order: list[str] = []
    for _, record, tags in ledger:
        version = record.get("version")
        if record.get("action") not in _CHAMPION_ACTIONS or version in (None, "", "none"):
            continue
        try:
            applied = json.loads(tags.get("outcome", "{}")).get("status") == "applied"
        except (ValueError, AttributeError):
            applied = False
        if applied:
            version = str(version)
            if version in order:
                order.remove(version)
            order.append(version)
    return [v for v in order if v != str(current)][-n:]
