"""The gate report as one self-contained HTML page people want to open.

- a headline: PASS / FAIL as coloured text (no emoji: readable in any font), the reasons, how much
  smaller and faster the student is (parameters, size, batch-32 throughput, batch-1 latency);
- every check as an HTML table row and as a zoomed gauge (value, threshold, pass and fail sides),
  so a 0.942 against a 0.95 floor is visibly short of it;
- the accuracy / latency / parameters / size trade-off of teacher, int8 teacher, student and the
  champion, with the budgets drawn; latency spread (p50, p90, p99) and throughput;
- per-label F1 of teacher vs student; the student's confusion matrix against gold labels and
  against the teacher's predictions (where they disagree);
- the same numbers as HTML tables, every value escaped (``html.escape``).

Plots are base64 PNGs and there are no external links, so the file opens anywhere (KFP UI, MLflow
artifact view, a mail attachment, a browser offline). The Markdown report stays as it is.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

import numpy as np

from components.benchmark_gate.core import GateResult, compression

_COLORS = {"teacher": "#4c72b0", "student": "#dd8452", "champion": "#55a868", "teacher_int8": "#8da0cb",
           "student_int8": "#fc8d62"}
_MARKERS = {"teacher": "s", "teacher_int8": "D", "student": "o", "student_int8": "P", "champion": "^"}
_PASS, _FAIL = "#1a7f37", "#c62828"

# Model-table rows: (key, label, format).
_ROWS = [("accuracy", "accuracy", "{:.4f}"), ("macro_f1", "macro-F1", "{:.4f}"),
         ("agreement", "agreement with the teacher", "{:.4f}"), ("kl_to_teacher", "KL(teacher || model)", "{:.4f}"),
         ("latency_p50_ms", "batch-1 latency p50 (ms)", "{:.2f}"), ("latency_p90_ms", "batch-1 latency p90 (ms)",
                                                                    "{:.2f}"),
         ("latency_p99_ms", "batch-1 latency p99 (ms)", "{:.2f}"),
         ("throughput_rows_per_s", "batch-32 throughput (rows/s)", "{:.1f}"), ("parameters", "parameters", "{:,}"),
         ("size_bytes", "size on disk (bytes)", "{:,}")]


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, fmt: str = "{:.4g}") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def _num(value: float, signed: bool = False) -> str:
    """A check's number: 4 decimals for ratios and scores, thousands separators for counts."""
    if value is None or not math.isfinite(value):
        return "–"
    sign = "+" if signed else ""
    return f"{value:{sign},.0f}" if abs(value) >= 1000 else f"{value:{sign}.4f}"


def _png(fig, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return (f'<img class="plot" alt="{_e(alt)}" '
            f'src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">')


def _figure(width: float, height: float, ncols: int = 1, nrows: int = 1):
    # matplotlib's object API, not pyplot: no global state, no GUI backend needed.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _model_label(name: str, context: dict) -> str:
    if name == "champion" and context.get("champion_version") not in (None, "", "none"):
        return f"champion v{context['champion_version']}"
    return name


# ---------------------------------------------------------------------------------------------
# Checks: a table and one zoomed gauge per check
# ---------------------------------------------------------------------------------------------


def _at_least(check) -> bool | None:
    """Direction of a check from its message ("required >=" / "required <="); None = not gated."""
    if "(required >=" in check.message:
        return True
    if "(required <=" in check.message:
        return False
    if check.informational and ">= " in check.message:
        return True
    return None


def _status(check) -> tuple[str, str]:
    if check.informational:
        return ("INFO: PASS" if check.passed else "INFO: FAIL"), "info"
    if _at_least(check) is None:
        return "REPORTED", "info"
    return ("PASS", "pass") if check.passed else ("FAIL", "fail")


def _margin(check) -> float | None:
    direction = _at_least(check)
    if direction is None:
        return None
    return check.value - check.threshold if direction else check.threshold - check.value


def _checks_table(result: GateResult) -> str:
    rows = []
    for c in result.checks:
        text, cls = _status(c)
        margin = _margin(c)
        op = {True: "≥", False: "≤", None: ""}[_at_least(c)]
        threshold = _num(c.threshold) if abs(c.threshold) >= 1000 else f"{c.threshold:g}"
        rows.append(f'<tr class="{cls}"><td><span class="badge {cls}">{_e(text)}</span></td>'
                    f'<td><code>{_e(c.name)}</code></td><td class="num">{_e(_num(c.value))}</td>'
                    f'<td class="num">{_e(op)} {_e(threshold)}</td>'
                    f'<td class="num">{_e(_num(margin, signed=True) if margin is not None else "–")}</td>'
                    f'<td>{_e(c.message)}</td></tr>')
    return ('<table class="checks"><thead><tr><th>verdict</th><th>check</th><th>value</th><th>required</th>'
            '<th>margin</th><th>what</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")


def _gauges(result: GateResult) -> str:
    """One row per check: the axis zoomed on value and threshold, the passing side shaded green,
    the failing side red, the threshold a dashed line."""
    checks = [c for c in result.checks if _at_least(c) is not None and math.isfinite(c.value)]
    if not checks:
        return ""
    fig, axes = _figure(9, 0.72 * len(checks) + 0.4, nrows=len(checks))
    for ax, c in zip(axes[:, 0], checks, strict=True):
        v, t = float(c.value), float(c.threshold)
        lo, hi = min(v, t), max(v, t)
        span = (hi - lo) or max(abs(hi), 1e-3) * 0.05
        left, right = lo - 0.8 * span, hi + 0.8 * span
        if lo >= 0:  # a count or a score: no negative axis
            left = max(left, lo - 0.08 * span)
        at_least = _at_least(c)
        ok_color, bad_color = "#d8f0dd", "#f8d7d7"
        ax.axvspan(left, t, color=bad_color if at_least else ok_color, zorder=0)
        ax.axvspan(t, right, color=ok_color if at_least else bad_color, zorder=0)
        ax.axvline(t, color="#333", linestyle="--", linewidth=1.2)
        color = _PASS if c.passed else _FAIL
        ax.plot([v], [0], marker="o", markersize=10, color=color, zorder=3)
        ax.annotate(f"{v:.4g}", (v, 0), xytext=(0, 7), textcoords="offset points", ha="center", fontsize=8,
                    color=color)
        ax.annotate(f"required {'≥' if at_least else '≤'} {t:g}", (t, 0), xytext=(3, -13),
                    textcoords="offset points", fontsize=7, color="#333")
        ax.set_xlim(left, right)
        ax.set_ylim(-1, 1)
        ax.set_yticks([])
        ax.set_ylabel(c.name + ("  (info)" if c.informational else ""), rotation=0, ha="right", va="center",
                      fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    fig.suptitle("each check, zoomed on its value (dot) and threshold (dashed); green = passing side",
                 fontsize=9)
    fig.tight_layout()
    return _png(fig, "check gauges")


# ---------------------------------------------------------------------------------------------
# Models: table, quality dots, trade-off, latency spread
# ---------------------------------------------------------------------------------------------


def _models_table(models: dict, context: dict) -> str:
    names = list(models)
    head = "".join(f"<th>{_e(_model_label(n, context))}</th>" for n in names)
    body = []
    for key, label, fmt in _ROWS:
        if not any(key in models[n] for n in names):
            continue
        cells = "".join(f'<td class="num">{_e(_fmt(models[n].get(key), fmt))}</td>' for n in names)
        body.append(f"<tr><th>{_e(label)}</th>{cells}</tr>")
    for kind in sorted({k for m in models.values() for k in m.get("robustness", {})}):
        cells = "".join(f'<td class="num">{_e(_fmt(models[n].get("robustness", {}).get(kind), "{:.4f}"))}</td>'
                        for n in names)
        body.append(f"<tr><th>accuracy ({_e(kind)}-perturbed)</th>{cells}</tr>")
    return (f'<table class="models"><thead><tr><th>metric</th>{head}</tr></thead><tbody>{"".join(body)}'
            "</tbody></table>")


def _finite(value: Any) -> bool:
    # No gold test rows: accuracy is nan (not measured), and has no place on an axis.
    return isinstance(value, int | float) and math.isfinite(value)


def _check_value(result: GateResult, name: str):
    return next((c for c in result.checks if c.name == name), None)


def _quality_dots(models: dict, context: dict) -> str:
    """Accuracy, macro-F1 and agreement per model on axes zoomed to the values, not 0-1."""
    keys = [(k, label) for k, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"),
                                        ("agreement", "agreement with the teacher"))
            if any(_finite(m.get(k)) for m in models.values())]
    fig, axes = _figure(9, 0.9 * len(keys) + 0.6, nrows=len(keys))
    for ax, (key, label) in zip(axes[:, 0], keys, strict=True):
        values = {n: float(m[key]) for n, m in models.items() if _finite(m.get(key))}
        lo, hi = min(values.values()), max(values.values())
        pad = max((hi - lo) * 0.25, 0.005)
        for i, (name, v) in enumerate(values.items()):
            ax.plot([v], [0], marker=_MARKERS.get(name, "o"), markersize=10, color=_COLORS.get(name, "#777"),
                    linestyle="", label=_model_label(name, context), alpha=0.9)
            ax.annotate(f"{v:.4f}", (v, 0), xytext=(0, 8 if i % 2 == 0 else -14), textcoords="offset points",
                        ha="center", fontsize=7)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    axes[0, 0].legend(fontsize=7, ncol=len(models), loc="lower center", bbox_to_anchor=(0.5, 1.05), frameon=False)
    fig.tight_layout()
    return _png(fig, "quality per model, zoomed")


def _tradeoff(result: GateResult, context: dict, past: list[dict[str, Any]] = ()) -> str:
    """Accuracy against batch-1 latency, parameters and size: where each model sits (earlier
    champions, measured again on this test split, in grey), with the gate's floors and budgets drawn."""
    models = result.models
    fig, axes = _figure(12, 3.8, ncols=3)
    teacher_acc = float(models["teacher"]["accuracy"])
    retention = _check_value(result, "accuracy_retention")
    floor_acc = _check_value(result, "min_accuracy")
    budgets = {"latency_p50_ms": (_check_value(result, "latency_budget"), 1.0),
               "parameters": (_check_value(result, "parameter_budget"), 1.0),
               "size_bytes": (_check_value(result, "size_budget"), 1e6)}
    panels = [("latency_p50_ms", "batch-1 latency (ms; bar: p50 to p99)", 1.0),
              ("parameters", "parameters (millions)", 1e6), ("size_bytes", "size on disk (MB)", 1e6)]
    for ax, (key, xlabel, scale) in zip(axes[0], panels, strict=True):
        for name, m in models.items():
            if not isinstance(m.get(key), int | float) or not _finite(m.get("accuracy")):
                continue
            x, y = float(m[key]) / scale, float(m["accuracy"])
            if key == "latency_p50_ms" and isinstance(m.get("latency_p99_ms"), int | float):
                ax.plot([x, float(m["latency_p99_ms"])], [y, y], color=_COLORS.get(name, "#777"), linewidth=2,
                        alpha=0.6)
            ax.plot([x], [y], marker=_MARKERS.get(name, "o"), markersize=10, linestyle="",
                    color=_COLORS.get(name, "#777"), label=_model_label(name, context))
            ax.annotate(_model_label(name, context), (x, y), xytext=(5, 4), textcoords="offset points", fontsize=7)
        for i, p in enumerate(past):
            if not isinstance(p.get(key), int | float) or not _finite(p.get("accuracy")):
                continue
            x, y = float(p[key]) / scale, float(p["accuracy"])
            ax.plot([x], [y], marker="v", markersize=8, linestyle="", color="#999999",
                    label="earlier champions" if i == 0 else None)
            ax.annotate(f"v{p['version']}", (x, y), xytext=(5, -9), textcoords="offset points", fontsize=7,
                        color="#666666")
        if retention is not None:
            ax.axhline(teacher_acc * retention.threshold, color=_FAIL, linestyle=":", linewidth=1)
            ax.annotate(f"retention floor {teacher_acc * retention.threshold:.4f}", (0.01, teacher_acc *
                        retention.threshold), xycoords=("axes fraction", "data"), fontsize=7, color=_FAIL,
                        va="bottom")
        if floor_acc is not None:
            ax.axhline(floor_acc.threshold, color=_FAIL, linestyle="-.", linewidth=1)
        check, unit = budgets[key]
        if check is not None:
            ax.axvline(check.threshold * unit / scale, color=_FAIL, linestyle="--", linewidth=1)
            ax.annotate("budget", (check.threshold * unit / scale, 0.02), xycoords=("data", "axes fraction"),
                        fontsize=7, color=_FAIL, rotation=90, ha="right")
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("accuracy (test split)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.margins(x=0.15, y=0.15)
    if axes[0, 0].get_legend_handles_labels()[0]:  # no gold rows: no accuracy, nothing drawn
        axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle("trade-off: accuracy against latency, parameters and size (up and left is better)", fontsize=9)
    fig.tight_layout()
    return _png(fig, "accuracy vs latency, parameters and size")


def _past_table(past: list[dict[str, Any]]) -> str:
    """The earlier champions of the trade-off plot, as numbers (measured again on this test split)."""
    if not past:
        return ""
    def cell(v, fmt):
        return html.escape(format(v, fmt)) if isinstance(v, int | float) else "&ndash;"
    rows = "".join(
        f"<tr><td>champion v{html.escape(str(p.get('version')))}</td><td>{cell(p.get('accuracy'), '.4f')}</td>"
        f"<td>{cell(p.get('macro_f1'), '.4f')}</td><td>{cell(p.get('latency_p50_ms'), '.2f')}</td>"
        f"<td>{cell(p.get('parameters'), ',')}</td><td>{cell(p.get('size_bytes'), ',')}</td></tr>" for p in past)
    return ("<p>Earlier champions, measured again on this run's test split (not gated):</p><table><thead><tr>"
            "<th>model</th><th>accuracy</th><th>macro-F1</th><th>p50 latency (ms)</th><th>parameters</th>"
            f"<th>size (bytes)</th></tr></thead><tbody>{rows}</tbody></table>")


def _speed(result: GateResult, context: dict) -> str:
    """Latency spread (p50, p90, p99) per model, and batch-32 throughput with the required speed-up."""
    models = result.models
    names = list(models)
    fig, axes = _figure(12, 3.4, ncols=2)
    ax = axes[0, 0]
    width = 0.26
    x = np.arange(len(names))
    for i, (key, label) in enumerate((("latency_p50_ms", "p50"), ("latency_p90_ms", "p90"),
                                      ("latency_p99_ms", "p99"))):
        values = [float(models[n].get(key, np.nan)) for n in names]
        ax.bar(x + (i - 1) * width, values, width, label=label, color=["#9ecae1", "#4292c6", "#08519c"][i])
    budget = _check_value(result, "latency_budget")
    if budget is not None:
        ax.axhline(budget.threshold, color=_FAIL, linestyle="--", linewidth=1, label="p50 budget")
    ax.set_xticks(x, [_model_label(n, context) for n in names], fontsize=8, rotation=15)
    ax.set_ylabel("batch-1 latency (ms)", fontsize=8)
    ax.set_title("latency spread on the gate's machine", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    values = [float(models[n].get("throughput_rows_per_s", np.nan)) for n in names]
    ax.bar(x, values, 0.6, color=[_COLORS.get(n, "#777") for n in names])
    for xi, v in zip(x, values, strict=True):
        ax.annotate(f"{v:.0f}", (xi, v), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=7)
    speedup = _check_value(result, "speedup")
    if speedup is not None and speedup.threshold > 0:
        need = float(models["teacher"]["throughput_rows_per_s"]) * speedup.threshold
        ax.axhline(need, color=_FAIL, linestyle="--", linewidth=1)
        ax.annotate(f"required: {speedup.threshold:g}x the teacher", (0.01, need), xycoords=("axes fraction", "data"),
                    fontsize=7, color=_FAIL, va="bottom")
    ax.set_xticks(x, [_model_label(n, context) for n in names], fontsize=8, rotation=15)
    ax.set_ylabel("rows/s", fontsize=8)
    ax.set_title("batch-32 throughput (int8: dynamic quantization, CPU)", fontsize=9)
    fig.tight_layout()
    return _png(fig, "latency spread and throughput")


def _robustness(models: dict, context: dict) -> str:
    kinds = sorted({k for m in models.values() for k in m.get("robustness", {})})
    if not kinds:
        return ""
    names = [n for n, m in models.items() if m.get("robustness")]
    cols = ["clean", *kinds]
    fig, axes = _figure(9, 3.2)
    ax = axes[0, 0]
    width = 0.8 / len(names)
    x = np.arange(len(cols))
    values_all = []
    for i, n in enumerate(names):
        values = [float(models[n]["accuracy"])] + [float(models[n]["robustness"].get(k, np.nan)) for k in kinds]
        values_all += [v for v in values if math.isfinite(v)]
        ax.bar(x + i * width, values, width, label=_model_label(n, context), color=_COLORS.get(n))
    lo = min(values_all) if values_all else 0.0
    ax.set_ylim(max(0.0, lo - 0.1), min(1.0, max(values_all, default=1.0) + 0.05))
    ax.set_xticks(x + width * (len(names) - 1) / 2, cols, fontsize=8)
    ax.set_ylabel("accuracy (axis zoomed)", fontsize=8)
    ax.set_title("accuracy on perturbed test inputs", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig, "robustness")


# ---------------------------------------------------------------------------------------------
# Labels and confusion matrices
# ---------------------------------------------------------------------------------------------


def _labels_table(models: dict, result: GateResult) -> str:
    student, teacher = models["student"].get("labels", {}), models["teacher"].get("labels", {})
    if not student and not teacher:
        return ""
    rows = []
    for label in list(dict.fromkeys([*teacher, *student])):
        s, t = student.get(label, {}), teacher.get(label, {})
        delta = s["f1"] - t["f1"] if "f1" in s and "f1" in t else None
        check = _check_value(result, f"label_f1[{label}]")
        cls = "" if check is None else ("pass" if check.passed else "fail")
        verdict = "" if check is None else f'<span class="badge {cls}">{"PASS" if check.passed else "FAIL"}</span>'
        rows.append(f'<tr><td>{_e(label)}</td><td class="num">{_e(s.get("support", t.get("support", "–")))}</td>'
                    f'<td class="num">{_e(_fmt(t.get("f1"), "{:.4f}"))}</td>'
                    f'<td class="num">{_e(_fmt(s.get("f1"), "{:.4f}"))}</td>'
                    f'<td class="num">{_e(_fmt(delta, "{:+.4f}"))}</td>'
                    f'<td class="num">{_e(_fmt(s.get("recall"), "{:.4f}"))}</td><td>{verdict}</td></tr>')
    return ('<table class="labels"><thead><tr><th>label</th><th>support</th><th>teacher F1</th><th>student F1</th>'
            '<th>student − teacher</th><th>student recall</th><th>label_f1 check</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")


def _labels_plot(models: dict, result: GateResult) -> str:
    student, teacher = models["student"].get("labels", {}), models["teacher"].get("labels", {})
    labels = list(dict.fromkeys([*teacher, *student]))
    if not labels:
        return ""
    fig, axes = _figure(max(6.0, 0.9 * len(labels) + 2), 3.2)
    ax = axes[0, 0]
    x = np.arange(len(labels))
    shown = []
    for i, (name, stats) in enumerate((("teacher", teacher), ("student", student))):
        values = [float(stats.get(k, {}).get("f1", np.nan)) for k in labels]
        shown += [v for v in values if math.isfinite(v)]
        ax.bar(x + (i - 0.5) * 0.38, values, 0.38, label=name, color=_COLORS[name])
        for xi, v in zip(x, values, strict=True):
            if math.isfinite(v):
                ax.annotate(f"{v:.3f}", (xi + (i - 0.5) * 0.38, v), xytext=(0, 2), textcoords="offset points",
                            ha="center", fontsize=6)
    floor = next((c.threshold for c in result.checks if c.name.startswith("label_f1[")), None)
    if floor is not None:
        shown.append(floor)
        ax.axhline(floor, color=_FAIL, linestyle="--", linewidth=1, label=f"min label F1 {floor:g}")
    ax.set_xticks(x, labels, fontsize=8, rotation=20, ha="right")
    # Zoomed on the values (a 0-1 axis hides the gaps that decide), never below 0.
    ax.set_ylim(max(0.0, min(shown, default=0.0) - 0.05), min(1.0, max(shown, default=1.0)) + 0.03)
    ax.set_ylabel("F1 (test split, axis zoomed)", fontsize=8)
    ax.set_title("per-label F1: teacher vs student", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the bars, never over them
    fig.tight_layout()
    return _png(fig, "per-label F1 teacher vs student")


def _matrix_plot(ax, matrix: list[list[int]], names: list[str], title: str, ylabel: str, xlabel: str) -> None:
    m = np.asarray(matrix)
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    for (i, j), v in np.ndenumerate(m):
        weight = "bold" if i != j and v > 0 else "normal"
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8, fontweight=weight,
                color="white" if v > m.max() / 2 else ("#b00" if i != j and v > 0 else "black"))
    ax.set_title(title, fontsize=9)


def _matrices(matrices: dict[str, list[list[int]]], names: list[str]) -> str:
    panels = [(key, title, ylabel) for key, title, ylabel in (
        ("student", "student vs gold labels", "gold label"),
        ("student_vs_teacher", "student vs teacher (disagreements off the diagonal)", "teacher's prediction"))
        if matrices.get(key) is not None]
    if not panels or not names:
        return ""
    side = 1.6 + 0.55 * len(names)
    fig, axes = _figure(side * len(panels) + 1, side, ncols=len(panels))
    for ax, (key, title, ylabel) in zip(axes[0], panels, strict=True):
        _matrix_plot(ax, matrices[key], names, title, ylabel, "student's prediction")
    fig.tight_layout()
    return _png(fig, "confusion matrices")


def _matrix_table(matrix: list[list[int]], names: list[str], rows_are: str) -> str:
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    body = "".join(
        f"<tr><th>{_e(names[i])}</th>" + "".join(
            f'<td class="num{" off" if i != j and v else ""}">{_e(v)}</td>' for j, v in enumerate(row)) + "</tr>"
        for i, row in enumerate(matrix))
    return (f'<table class="matrix"><thead><tr><th>{_e(rows_are)} ↓ / student →</th>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


# ---------------------------------------------------------------------------------------------
# Page
# ---------------------------------------------------------------------------------------------


def _headline(result: GateResult, context: dict) -> str:
    models = result.models
    c = compression(models["student"], models["teacher"], models.get("teacher_int8"))
    cards = []

    def card(title: str, value: str, detail: str) -> None:
        cards.append(f'<div class="card"><div class="k">{_e(title)}</div><div class="v">{_e(value)}</div>'
                     f'<div class="d">{_e(detail)}</div></div>')

    s, t = models["student"], models["teacher"]
    if c.get("parameter_ratio") is not None:
        card("parameters", f"{1 / c['parameter_ratio']:.1f}x fewer" if c["parameter_ratio"] > 0 else "–",
             f"student {s['parameters']:,} / teacher {t['parameters']:,} = {c['parameter_ratio']:.3f}")
    if c.get("size_ratio") is not None:
        card("size on disk", f"{1 / c['size_ratio']:.1f}x smaller" if c["size_ratio"] > 0 else "–",
             f"{s['size_bytes'] / 1e6:.2f} MB vs {t['size_bytes'] / 1e6:.2f} MB = {c['size_ratio']:.3f}")
    if c.get("throughput_speedup") is not None:
        card("batch-32 throughput", f"{c['throughput_speedup']:.2f}x faster",
             f"{s['throughput_rows_per_s']:.0f} vs {t['throughput_rows_per_s']:.0f} rows/s")
    if c.get("latency_speedup_p50") is not None:
        card("batch-1 latency p50", f"{c['latency_speedup_p50']:.2f}x faster",
             f"{s['latency_p50_ms']:.2f} ms vs {t['latency_p50_ms']:.2f} ms")
    if c.get("throughput_speedup_over_int8_teacher") is not None:
        card("vs int8 teacher", f"{c['throughput_speedup_over_int8_teacher']:.2f}x faster",
             "batch-32 throughput over the teacher quantized to dynamic int8")
    retention = _check_value(result, "accuracy_retention")
    if retention is not None:
        card("accuracy retention", f"{retention.value:.4f}",
             f"student {s['accuracy']:.4f} / teacher {t['accuracy']:.4f}")
    return '<div class="cards">' + "".join(cards) + "</div>"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;max-width:1180px;
margin:1.5em auto;padding:0 1em;color:#222;line-height:1.4}
h1{margin:.2em 0} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.verdict{display:inline-block;padding:.15em .6em;border-radius:.3em;color:#fff;font-weight:700;letter-spacing:.05em}
.verdict.pass{background:#1a7f37} .verdict.fail{background:#c62828}
.badge{display:inline-block;min-width:3.2em;text-align:center;padding:0 .4em;border-radius:.25em;color:#fff;
font-weight:700;font-size:.85em}
.badge.pass{background:#1a7f37} .badge.fail{background:#c62828} .badge.info{background:#57606a}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} th,td{border:1px solid #d0d7de;padding:3px 8px;
text-align:left;vertical-align:top} thead th{background:#f6f8fa} td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.fail td{background:#fdecec} td.off{color:#b00;font-weight:700}
.cards{display:flex;flex-wrap:wrap;gap:.6em;margin:.8em 0}
.card{border:1px solid #d0d7de;border-radius:.4em;padding:.5em .8em;min-width:150px}
.card .k{font-size:.8em;color:#57606a} .card .v{font-size:1.35em;font-weight:700} .card .d{font-size:.75em;color:#57606a}
ul.reasons li{color:#c62828} img.plot{display:block;max-width:100%;margin:.8em 0}
dl.context{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em;font-size:.85em}
dl.context dt{font-weight:600} dl.context dd{margin:0;word-break:break-all}
"""


def render_html(result: GateResult, context: dict[str, Any], confusion: list[list[int]] | None = None,
                label_names: list[str] | None = None,
                matrices: dict[str, list[list[int]]] | None = None,
                past_champions: list[dict[str, Any]] | None = None, provenance: dict[str, Any] | None = None,
                trigger_batch: dict[str, Any] | None = None) -> str:
    """The page. ``confusion``: student vs gold (rows gold); ``matrices`` may add
    ``student_vs_teacher`` (rows: the teacher's prediction, columns: the student's);
    ``past_champions``: earlier champions measured on this test split (``version`` and PAST_FIELDS),
    drawn in the trade-off plot; ``provenance``: the test split's gold and teacher-labelled rows
    apart (core.label_provenance); ``trigger_batch``: a drift-triggered run's triggering batch."""
    import matplotlib

    # Label names are data: "$5 refund" must print as it is, not be parsed as mathtext.
    with matplotlib.rc_context({"text.parse_math": False}):
        return _render(result, context, confusion, label_names, matrices, past_champions or [], provenance,
                       trigger_batch)


def _provenance(p: dict[str, Any]) -> str:
    """Gold rows measure accuracy; teacher-labelled rows only agreement with the teacher."""
    champ = "champion_accuracy_gold" in p
    head = "<th>rows</th><th>count</th><th>teacher</th><th>student</th>" + ("<th>champion</th>" if champ else "")
    gold = (f"<tr><th>gold (accuracy)</th><td class=\"num\">{p['gold_rows']:,}</td>"
            f"<td class=\"num\">{_fmt(p['teacher_accuracy_gold'], '{:.4f}')}</td>"
            f"<td class=\"num\">{_fmt(p['student_accuracy_gold'], '{:.4f}')}</td>"
            + (f"<td class=\"num\">{_fmt(p['champion_accuracy_gold'], '{:.4f}')}</td>" if champ else "") + "</tr>")
    taught = (f"<tr><th>teacher-labelled (agreement with the teacher)</th>"
              f"<td class=\"num\">{p['teacher_labelled_rows']:,}</td><td class=\"num\">– (its own labels)</td>"
              f"<td class=\"num\">{_fmt(p['student_teacher_agreement_teacher_labelled'], '{:.4f}')}</td>"
              + (f"<td class=\"num\">{_fmt(p.get('champion_teacher_agreement_teacher_labelled'), '{:.4f}')}</td>"
                 if champ else "") + "</tr>")
    note = ("<p>Accuracy, retention and the champion's regressions are measured on the gold rows only: on "
            "teacher-labelled rows the teacher is right by construction.</p>")
    return (f'{note}<table class="models"><thead><tr>{head}</tr></thead><tbody>{gold}{taught}</tbody></table>')


def _trigger(t: dict[str, Any]) -> str:
    return (f"<p>The drift that started this run was seen on <code>{_e(t['production'])}</code>; "
            f"{t['rows']:,} distinct texts of its {t['batch_rows']:,} rows were scored. Disagreement with the "
            f"teacher: student <b>{_fmt(t['student_disagreement'], '{:.4f}')}</b>, champion "
            f"<b>{_fmt(t['champion_disagreement'], '{:.4f}')}</b> (check <code>trigger_disagreement</code>).</p>")


def _render(result: GateResult, context: dict[str, Any], confusion, label_names, matrices, past,
            provenance=None, trigger_batch=None) -> str:
    models = result.models
    verdict, cls = ("PASS", "pass") if result.passed else ("FAIL", "fail")
    all_matrices = {**({"student": confusion} if confusion is not None else {}), **(matrices or {})}
    names = list(label_names or [])
    reasons = "".join(f"<li>{_e(r)}</li>" for r in result.reasons)
    sections = [
        f'<h1>Benchmark gate: <span class="verdict {cls}">{verdict}</span></h1>',
        f'<p>{"All gated checks passed." if result.passed else "The student was refused:"}</p>',
        f'<ul class="reasons">{reasons}</ul>' if reasons else "",
        _headline(result, context),
        "<h2>Checks</h2>", _checks_table(result), _gauges(result),
        "<h2>Trade-off</h2>", _tradeoff(result, context, past), _past_table(past),
        "<h2>Models (test split)</h2>", _models_table(models, context), _quality_dots(models, context),
        "<h2>Speed</h2>", _speed(result, context),
    ]
    if provenance is not None:
        sections += ["<h2>Label provenance (test split)</h2>", _provenance(provenance)]
    if trigger_batch is not None:
        sections += ["<h2>Triggering production batch</h2>", _trigger(trigger_batch)]
    robust = _robustness(models, context)
    if robust:
        sections += ["<h2>Robustness</h2>", robust]
    labels_table = _labels_table(models, result)
    if labels_table:
        sections += ["<h2>Per-label F1</h2>", labels_table, _labels_plot(models, result)]
    if all_matrices and names:
        sections += ["<h2>Confusion matrices</h2>", _matrices(all_matrices, names)]
        if all_matrices.get("student") is not None:
            sections += ["<h3>student vs gold</h3>", _matrix_table(all_matrices["student"], names, "gold")]
        if all_matrices.get("student_vs_teacher") is not None:
            sections += ["<h3>student vs teacher</h3>",
                         _matrix_table(all_matrices["student_vs_teacher"], names, "teacher")]
    ctx = "".join(f"<dt>{_e(k)}</dt><dd><code>{_e(v)}</code></dd>" for k, v in context.items())
    sections += ["<h2>Run</h2>", f'<dl class="context">{ctx}</dl>']
    body = "\n".join(s for s in sections if s)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Benchmark gate: {verdict}</title>'
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")
