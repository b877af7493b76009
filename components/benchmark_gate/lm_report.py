"""The generative gate's report (task: generation) as Markdown and as one self-contained HTML page.

Both are rendered from the JSON-able report dict of lm_runner.evaluate_generation, so a stored
report can be rendered again. The page follows report_html's house style and reuses its helpers:
the verdict and every reason, headline cards (parameters, size, tokens/s speed-ups, fidelity), the
checks table with one zoomed gauge per gated check, the models' metrics, the speed table (time to
first token and generated tokens/s at batch 1 and 8, measured side by side) with a plot, and sample
prompts with the teacher's, student's and champion's answers side by side. Prompts and answers are
user data: every text is escaped (``html.escape``; in Markdown too, since Markdown viewers pass raw
HTML through).
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from components.benchmark_gate.core import Check, GateResult
from components.benchmark_gate.lm_core import SPEED_BATCHES
from components.benchmark_gate.report_html import (
    _COLORS,
    _CSS,
    _checks_table,
    _e,
    _figure,
    _fmt,
    _gauges,
    _model_label,
    _png,
)

# Model-table rows: (key, label, format).
_ROWS = [("rouge_l", "ROUGE-L vs the teacher's generations", "{:.4f}"),
         ("exact_match", "exact match with the teacher", "{:.4f}"),
         ("token_agreement", "token agreement (teacher-forced)", "{:.4f}"),
         ("token_kl", "KL(teacher ‖ model) per token (teacher-forced)", "{:.4f}"),
         ("teacher_nll", "NLL of the teacher's tokens (nats/token)", "{:.4f}"),
         ("forced_tokens", "teacher-forced tokens", "{:,}"),
         ("references", "prompts with a reference response", "{:,}"),
         ("reference_rouge_l", "ROUGE-L vs reference responses", "{:.4f}"),
         *((f"tokens_per_s_batch{b}", f"batch-{b} generated tokens/s", "{:.1f}") for b in SPEED_BATCHES),
         *((f"ttft_ms_batch{b}", f"batch-{b} time to first token (ms)", "{:.2f}") for b in SPEED_BATCHES),
         ("parameters", "parameters", "{:,}"), ("size_bytes", "size on disk (bytes)", "{:,}")]


def _result(report: dict[str, Any]) -> GateResult:
    return GateResult(report["passed"], [Check(**c) for c in report["checks"]], report["models"])


def _md_text(text: Any) -> str:
    """A user text in a Markdown table cell: HTML escaped, pipes escaped, line breaks kept."""
    if text is None:
        return "–"
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def _md_code(value: Any) -> str:
    return str(value).replace("`", "'").replace("\r", " ").replace("\n", " ")


def render_lm_markdown(report: dict[str, Any]) -> str:
    """The decision, every check, the models' numbers, the speed table and the sample prompts."""
    result = _result(report)
    lines = [f"# Benchmark gate (generation): {'PASSED' if result.passed else 'FAILED'}", ""]
    c = report.get("compression", {})
    if c.get("parameter_ratio") is not None and c.get("speedup_batch1") is not None:
        lines += [f"Student: {c['parameter_ratio']:.3f} of the teacher's parameters, {c['speedup_batch1']:.2f}x its "
                  f"batch-1 generated tokens/s.", ""]
    # Context values sit in code spans (no HTML is parsed there): only backticks and breaks go.
    lines += [f"- **{_md_text(k)}**: `{_md_code(v)}`" for k, v in report.get("context", {}).items()]
    lines += ["", "## Checks", ""]
    # The checks' messages are the gate's own words and numbers (no user text): kept as they are.
    lines += [f"- {'ℹ️' if ch.informational else '✅' if ch.passed else '❌'} {ch.message}" for ch in result.checks]
    names = list(result.models)
    lines += ["", "## Models (held-out prompts)", "", "| metric | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    for key, label, fmt in _ROWS:
        if any(key in result.models[n] for n in names):
            lines.append(f"| {label} | " + " | ".join(_fmt(result.models[n].get(key), fmt) for n in names) + " |")
    lines += ["", "## Speed (measured side by side)", "",
              "| model | batch | generated tokens/s | time to first token (ms) | speed-up vs teacher |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['batch_size']} | {_fmt(r['tokens_per_s'], '{:.1f}')} | "
              f"{_fmt(r['ttft_ms'], '{:.2f}')} | {_fmt(r['speedup_vs_teacher'], '{:.2f}x')} |"
              for r in report.get("speed", [])]
    samples = report.get("samples", [])
    if samples:
        champ = any("champion" in s for s in samples)
        refs = any(s.get("reference") is not None for s in samples)
        head = ["prompt", *(["reference"] if refs else []), "teacher", "student (ROUGE-L)",
                *(["champion (ROUGE-L)"] if champ else [])]
        lines += ["", f"## Sample prompts ({len(samples)})", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        for s in samples:
            cells = [_md_text(s["prompt"]), *([_md_text(s.get("reference"))] if refs else []), _md_text(s["teacher"]),
                     f"{_md_text(s['student'])} ({s['student_rouge_l']:.2f})"]
            if champ:
                cells.append(f"{_md_text(s['champion'])} ({s['champion_rouge_l']:.2f})" if "champion" in s else "–")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _headline(report: dict[str, Any]) -> str:
    models, c = report["models"], report.get("compression", {})
    s, t = models["student"], models["teacher"]
    cards = []

    def card(title: str, value: str, detail: str) -> None:
        cards.append(f'<div class="card"><div class="k">{_e(title)}</div><div class="v">{_e(value)}</div>'
                     f'<div class="d">{_e(detail)}</div></div>')

    if c.get("parameter_ratio"):
        card("parameters", f"{1 / c['parameter_ratio']:.1f}x fewer",
             f"student {s['parameters']:,} / teacher {t['parameters']:,} = {c['parameter_ratio']:.3f}")
    if c.get("size_ratio"):
        card("size on disk", f"{1 / c['size_ratio']:.1f}x smaller",
             f"{s['size_bytes'] / 1e6:.2f} MB vs {t['size_bytes'] / 1e6:.2f} MB = {c['size_ratio']:.3f}")
    for b in SPEED_BATCHES:
        if c.get(f"speedup_batch{b}") is not None:
            card(f"batch-{b} tokens/s", f"{c[f'speedup_batch{b}']:.2f}x faster",
                 f"{s[f'tokens_per_s_batch{b}']:.1f} vs {t[f'tokens_per_s_batch{b}']:.1f} generated tokens/s")
    card("ROUGE-L vs teacher", _fmt(s.get("rouge_l"), "{:.4f}"),
         f"exact match {_fmt(s.get('exact_match'), '{:.4f}')}, token agreement "
         f"{_fmt(s.get('token_agreement'), '{:.4f}')}")
    return '<div class="cards">' + "".join(cards) + "</div>"


def _models_table(models: dict, context: dict) -> str:
    names = list(models)
    head = "".join(f"<th>{_e(_model_label(n, context))}</th>" for n in names)
    body = []
    for key, label, fmt in _ROWS:
        if any(key in models[n] for n in names):
            cells = "".join(f'<td class="num">{_e(_fmt(models[n].get(key), fmt))}</td>' for n in names)
            body.append(f"<tr><th>{_e(label)}</th>{cells}</tr>")
    notes = "".join(f"<p>{_e(_model_label(n, context))}: {_e(m['note'])}</p>" for n, m in models.items()
                    if m.get("note"))
    return (f'<table class="models"><thead><tr><th>metric</th>{head}</tr></thead><tbody>{"".join(body)}'
            f"</tbody></table>{notes}")


def _speed_table(rows: list[dict[str, Any]], context: dict) -> str:
    body = "".join(
        f"<tr><td>{_e(_model_label(r['model'], context))}</td><td class=\"num\">{_e(r['batch_size'])}</td>"
        f"<td class=\"num\">{_e(_fmt(r['tokens_per_s'], '{:.1f}'))}</td>"
        f"<td class=\"num\">{_e(_fmt(r['ttft_ms'], '{:.2f}'))}</td>"
        f"<td class=\"num\">{_e(_fmt(r['speedup_vs_teacher'], '{:.2f}x'))}</td></tr>" for r in rows)
    return ('<table class="speed"><thead><tr><th>model</th><th>batch</th><th>generated tokens/s</th>'
            '<th>time to first token (ms)</th><th>speed-up vs teacher</th></tr></thead><tbody>' + body
            + "</tbody></table>")


def _speed_plot(rows: list[dict[str, Any]], report: dict[str, Any]) -> str:
    """Generated tokens/s and time to first token per model, grouped by batch size."""
    names = list(dict.fromkeys(r["model"] for r in rows))
    if not names:
        return ""
    context = report.get("context", {})
    fig, axes = _figure(11, 3.2, ncols=2)
    width = 0.8 / len(names)
    x = np.arange(len(SPEED_BATCHES))
    for ax, key, ylabel in ((axes[0, 0], "tokens_per_s", "generated tokens/s"),
                            (axes[0, 1], "ttft_ms", "time to first token (ms)")):
        for i, n in enumerate(names):
            values = [next((float(r[key]) for r in rows if r["model"] == n and r["batch_size"] == b
                            and r[key] is not None), np.nan) for b in SPEED_BATCHES]
            ax.bar(x + (i - (len(names) - 1) / 2) * width, values, width, label=_model_label(n, context),
                   color=_COLORS.get(n, "#777"))
        ax.set_xticks(x, [f"batch {b}" for b in SPEED_BATCHES], fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    need = next((c for c in report["checks"] if c["name"] == "lm_speedup_batch1"), None)
    teacher_b1 = next((r["tokens_per_s"] for r in rows if r["model"] == "teacher" and r["batch_size"] == 1), None)
    if need is not None and need["threshold"] > 0 and teacher_b1:
        axes[0, 0].axhline(teacher_b1 * need["threshold"], color="#c62828", linestyle="--", linewidth=1,
                           label=f"required at batch 1: {need['threshold']:g}x the teacher")
        axes[0, 0].legend(fontsize=7)
    fig.suptitle("speed on the gate's machine, the models timed in alternation", fontsize=9)
    fig.tight_layout()
    return _png(fig, "generated tokens/s and time to first token")


def _answer(text: Any, score: float | None = None) -> str:
    if text is None:
        return '<td class="muted">–</td>'
    score_html = f'<div class="score">ROUGE-L vs teacher {score:.2f}</div>' if score is not None else ""
    return f'<td><div class="text">{_e(text)}</div>{score_html}</td>'


def _samples(samples: list[dict[str, Any]], context: dict) -> str:
    if not samples:
        return ""
    champ = any("champion" in s for s in samples)
    refs = any(s.get("reference") is not None for s in samples)
    head = ["prompt", *(["reference"] if refs else []), "teacher", "student",
            *([_model_label("champion", context)] if champ else [])]
    rows = []
    for s in samples:
        cells = [_answer(s["prompt"]), *([_answer(s.get("reference"))] if refs else []), _answer(s["teacher"]),
                 _answer(s["student"], s.get("student_rouge_l"))]
        if champ:
            cells.append(_answer(s.get("champion"), s.get("champion_rouge_l")))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ('<table class="samples"><thead><tr>' + "".join(f"<th>{_e(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


_LM_CSS = """
table.samples td{max-width:22em} table.samples .text{white-space:pre-wrap;word-break:break-word}
table.samples .score{font-size:.75em;color:#57606a;margin-top:.3em} td.muted{color:#999}
"""


def render_lm_html(report: dict[str, Any]) -> str:
    """The page: verdict, reasons, checks, models, speed and sample prompts side by side."""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False}):
        return _render(report)


def _render(report: dict[str, Any]) -> str:
    result = _result(report)
    context = report.get("context", {})
    verdict, cls = ("PASS", "pass") if result.passed else ("FAIL", "fail")
    reasons = "".join(f"<li>{_e(r)}</li>" for r in result.reasons)
    samples = report.get("samples", [])
    sections = [
        f'<h1>Benchmark gate (generation): <span class="verdict {cls}">{verdict}</span></h1>',
        f'<p>{"All gated checks passed." if result.passed else "The student was refused:"}</p>',
        f'<ul class="reasons">{reasons}</ul>' if reasons else "",
        _headline(report),
        "<h2>Checks</h2>", _checks_table(result), _gauges(result),
        "<h2>Models (held-out prompts)</h2>", _models_table(result.models, context),
        "<h2>Speed (measured side by side)</h2>", _speed_table(report.get("speed", []), context),
        _speed_plot(report.get("speed", []), report),
    ]
    if samples:
        sections += [f"<h2>Sample prompts ({len(samples)} of {_e(context.get('prompts', len(samples)))})</h2>",
                     _samples(samples, context)]
    ctx = "".join(f"<dt>{_e(k)}</dt><dd><code>{_e(v)}</code></dd>" for k, v in context.items())
    sections += ["<h2>Run</h2>", f'<dl class="context">{ctx}</dl>']
    body = "\n".join(s for s in sections if s)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>Benchmark gate (generation): {verdict}</title><style>{_CSS}{_LM_CSS}</style></head><body>\n"
            f"{body}\n</body></html>\n")
