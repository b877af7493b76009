"""The gate report as one self-contained HTML page: the decision, every check, and plots (teacher
vs student vs champion, and the int8-quantized teacher / student when measured, per metric;
robustness, the student's confusion matrix, latency and throughput) embedded
as base64 PNGs, so the file opens anywhere (KFP UI, MLflow artifact view, a mail attachment)."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

from components.benchmark_gate.core import GateResult, render_markdown

_COLORS = {"teacher": "#4c72b0", "student": "#dd8452", "champion": "#55a868", "teacher_int8": "#8da0cb",
           "student_int8": "#fc8d62"}


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _grouped_bars(models: dict[str, dict], keys: list[tuple[str, str]], title: str, ylabel: str) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = list(models)
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(keys))
    for i, name in enumerate(names):
        values = [float(models[name].get(k, np.nan)) if not isinstance(models[name].get(k), dict) else np.nan
                  for k, _ in keys]
        ax.bar(x + i * width, values, width, label=name, color=_COLORS.get(name))
    ax.set_xticks(x + width * (len(names) - 1) / 2, [label for _, label in keys])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    return _png(fig)


def _confusion(matrix: list[list[int]], names: list[str]) -> str:
    import matplotlib.pyplot as plt

    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(names), 1 + 0.6 * len(names)))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    ax.set_title("student confusion matrix (test split)")
    return _png(fig)


def render_html(result: GateResult, context: dict[str, Any], confusion: list[list[int]] | None = None,
                label_names: list[str] | None = None) -> str:
    models = result.models
    verdict = "PASSED" if result.passed else "FAILED"
    rows = "".join(
        f"<tr class={'ok' if c.passed or c.informational else 'bad'}>"
        f"<td>{'ℹ️' if c.informational else '✅' if c.passed else '❌'}</td><td>{html.escape(c.name)}</td>"
        f"<td>{c.value:g}</td><td>{c.threshold:g}</td><td>{html.escape(c.message)}</td></tr>" for c in result.checks)
    plots = [_grouped_bars(models, [("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("agreement", "agreement")],
                           "quality on the test split", "score")]
    robust = sorted({k for m in models.values() for k in m.get("robustness", {})})
    if robust:
        flat = {n: {k: m.get("robustness", {}).get(k, np.nan) for k in robust} | {"clean": m["accuracy"]}
                for n, m in models.items() if m.get("robustness")}
        plots.append(_grouped_bars(flat, [("clean", "clean")] + [(k, k) for k in robust],
                                   "accuracy on perturbed test inputs", "accuracy"))
    plots.append(_grouped_bars(models, [("latency_p50_ms", "batch-1 p50 latency (ms)")],
                               "latency on the gate's machine", "ms"))
    plots.append(_grouped_bars(models, [("throughput_rows_per_s", "batch-32 throughput (rows/s)")],
                               "throughput on the gate's machine (int8: dynamic quantization, CPU)", "rows/s"))
    if confusion is not None and label_names:
        plots.append(_confusion(confusion, label_names))
    md = html.escape(render_markdown(result, context))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Benchmark gate: {verdict}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}} td,th{{padding:2px 8px}}
tr.bad{{background:#fdd}} h1.PASSED{{color:#2a7}} h1.FAILED{{color:#c33}} img{{display:block;margin:1em 0}}
pre{{background:#f6f6f6;padding:1em;white-space:pre-wrap}}</style></head><body>
<h1 class="{verdict}">Benchmark gate: {verdict}</h1>
<ul>{''.join(f'<li><b>{html.escape(str(k))}</b>: <code>{html.escape(str(v))}</code></li>' for k, v in context.items())}</ul>
<h2>Checks</h2><table><tr><th></th><th>check</th><th>value</th><th>threshold</th><th>message</th></tr>{rows}</table>
<h2>Plots</h2>{''.join(plots)}
<h2>Full report</h2><pre>{md}</pre>
</body></html>
"""
