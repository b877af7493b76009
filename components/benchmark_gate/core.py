"""Pure logic of benchmark_gate: metrics, the policy, and the report.

The gate evaluates every check, collects every failure, then decides once, so a report always
says all the reasons a student was refused, each with the numbers that failed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from components.common.config import GateConfig


def classification_metrics(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1 (the unweighted mean of per-label F1 over labels present in gold or pred)."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    f1s = []
    for c in range(n_labels):
        tp = int(((pred == c) & (gold == c)).sum())
        fp = int(((pred == c) & (gold != c)).sum())
        fn = int(((pred != c) & (gold == c)).sum())
        if tp + fp + fn == 0:
            continue  # label absent from both: it says nothing about this model
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float((pred == gold).mean()), "macro_f1": float(np.mean(f1s)) if f1s else 0.0}


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


@dataclass
class GateResult:
    passed: bool
    checks: list[Check]
    models: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        return [c.message for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": self.reasons, "checks": [asdict(c) for c in self.checks],
                "models": self.models}


def _check(name: str, value: float, threshold: float, at_least: bool, what: str) -> Check:
    ok = value >= threshold if at_least else value <= threshold
    op = ">=" if at_least else "<="
    verdict = "ok" if ok else "FAILED"
    return Check(name, ok, round(value, 6), threshold, f"{what}: {value:.4f} (required {op} {threshold:g}) {verdict}")


def evaluate_gate(student: dict[str, float], teacher: dict[str, float], champion: dict[str, float] | None,
                  policy: GateConfig) -> GateResult:
    """Decide whether `student` may replace `champion`. Each dict holds accuracy, macro_f1,
    throughput_rows_per_s, latency_p50_ms, parameters, size_bytes; the student's also agreement."""
    checks = [
        _check("accuracy_retention", student["accuracy"] / max(teacher["accuracy"], 1e-12),
               policy.min_accuracy_retention, True,
               f"student accuracy {student['accuracy']:.4f} / teacher {teacher['accuracy']:.4f} retention"),
        _check("speedup", student["throughput_rows_per_s"] / max(teacher["throughput_rows_per_s"], 1e-12),
               policy.min_speedup, True, "batch-32 throughput speed-up over the teacher"),
        _check("agreement", student["agreement"], policy.min_agreement, True, "agreement with the teacher"),
    ]
    if champion is not None:
        drop = champion["accuracy"] - student["accuracy"]
        checks.append(_check("champion_regression", drop, policy.max_champion_regression, False,
                             f"accuracy drop against the champion ({champion['accuracy']:.4f} -> "
                             f"{student['accuracy']:.4f})"))
    models = {"student": student, "teacher": teacher}
    if champion is not None:
        models["champion"] = champion
    return GateResult(all(c.passed for c in checks), checks, models)


_ROWS = [("accuracy", "{:.4f}"), ("macro_f1", "{:.4f}"), ("agreement", "{:.4f}"), ("latency_p50_ms", "{:.2f}"),
         ("throughput_rows_per_s", "{:.1f}"), ("parameters", "{:,}"), ("size_bytes", "{:,}")]


def render_markdown(result: GateResult, context: dict[str, Any]) -> str:
    """A report people can read: the decision, every reason, and the side-by-side numbers."""
    lines = [f"# Benchmark gate: {'PASSED' if result.passed else 'FAILED'}", ""]
    lines += [f"- **{k}**: `{v}`" for k, v in context.items()]
    lines += ["", "## Checks", ""]
    lines += [f"- {'✅' if c.passed else '❌'} {c.message}" for c in result.checks]
    names = list(result.models)
    lines += ["", "## Models (test split)", "", "| metric | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    for key, fmt in _ROWS:
        cells = []
        for n in names:
            v = result.models[n].get(key)
            cells.append("–" if v is None else fmt.format(v))
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
