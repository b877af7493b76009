"""The section distillops adds on top of Evidently's drift report: every signal the verdict was
decided on, with its value, threshold and verdict as text (DRIFT / OK / NOT EVALUATED, coloured),
the predicted-label distribution and the teacher-student disagreement as a plot, and where the
Evidently workspace that keeps every run (drift over time) lives.

Evidently's page shows the descriptors and the predicted label; the embedding drift has its own
Evidently page and the teacher-student disagreement is in no Evidently page, so without this section
a reader could not see why the verdict says what it says. Pure: no Evidently import; every value is
escaped (``html.escape``) and the plot is an inline PNG.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

_SECTION_ID = "distillops-signals"

_CSS = f"""
#{_SECTION_ID}{{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;
max-width:1180px;margin:1em auto;padding:0 1em 1em;color:#222;line-height:1.4;background:#fff;
border-bottom:3px solid #d0d7de}}
#{_SECTION_ID} h1{{font-size:1.7em;margin:.4em 0}} #{_SECTION_ID} h2{{font-size:1.2em;margin:1em 0 .3em}}
#{_SECTION_ID} table{{border-collapse:collapse;font-size:.9em;margin:.4em 0}}
#{_SECTION_ID} th,#{_SECTION_ID} td{{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}}
#{_SECTION_ID} thead th{{background:#f6f8fa}} #{_SECTION_ID} td.num{{text-align:right;white-space:nowrap}}
#{_SECTION_ID} tr.drift td{{background:#fdecec}}
#{_SECTION_ID} .verdict{{display:inline-block;padding:.1em .6em;border-radius:.3em;color:#fff;font-weight:700}}
#{_SECTION_ID} .badge{{display:inline-block;padding:0 .4em;border-radius:.25em;color:#fff;font-weight:700;
font-size:.85em}}
#{_SECTION_ID} .drift{{background:#c62828}} #{_SECTION_ID} .ok{{background:#1a7f37}}
#{_SECTION_ID} .na{{background:#b26a00}} #{_SECTION_ID} .info{{background:#57606a}}
#{_SECTION_ID} tr.drift .badge{{background:#c62828}}
#{_SECTION_ID} img{{display:block;max-width:100%;margin:.6em 0}} #{_SECTION_ID} code{{word-break:break-all}}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _n(value: Any, fmt: str = "{:.4g}") -> str:
    if value is None:
        return "–"
    if isinstance(value, int | float):
        return fmt.format(value) if math.isfinite(value) else str(value)
    return str(value)


def _badge(state: str) -> str:
    text, cls = {"drift": ("DRIFT", "drift"), "ok": ("OK", "ok"), "na": ("NOT EVALUATED", "na"),
                 "info": ("NOT COUNTED", "info")}[state]
    return f'<span class="badge {cls}">{text}</span>'


def signal_rows(verdict: dict, columns: dict[str, dict], label: dict | None,
                column_drift_share: float, label_drift_counts: bool = True) -> list[dict[str, Any]]:
    """Every signal as {"signal", "value", "threshold", "rule", "state", "detail"}; ``state`` is
    "drift", "ok", "na" (not evaluated: counted as drift) or "info" (drifted, but the policy does
    not count it alone)."""
    not_evaluated = verdict.get("not_evaluated") or {}
    rows = []
    for name, r in columns.items():
        score = r.get("score")
        state = "na" if name in not_evaluated else ("drift" if r.get("drifted") else "ok")
        rows.append({"signal": f"descriptor {name}", "value": score, "threshold": r.get("threshold"),
                     "rule": f"{r.get('method')}: drift when p < threshold", "state": state,
                     "detail": not_evaluated.get(name) or r.get("note") or ""})
    drifted = verdict.get("drifted_columns") or []
    evaluated = len(columns) - len([c for c in columns if c in not_evaluated])
    share = len(drifted) / evaluated if evaluated else 0.0
    rows.append({"signal": "share of drifted descriptors", "value": share, "threshold": column_drift_share,
                 "rule": "drift when share >= threshold",
                 "state": "drift" if drifted and share >= column_drift_share - 1e-12 else "ok",
                 "detail": f"{len(drifted)} of {evaluated}" + (f": {', '.join(drifted)}" if drifted else "")})
    if label is not None:
        state = ("na" if "predicted label" in not_evaluated else
                 ("drift" if label_drift_counts else "info") if label.get("drifted") else "ok")
        rows.append({"signal": "predicted-label distribution", "value": label.get("score"),
                     "threshold": label.get("threshold"), "rule": f"{label.get('method')}: drift when p < threshold",
                     "state": state, "detail": not_evaluated.get("predicted label") or label.get("note") or ""})
    emb = verdict.get("embedding")
    if emb is not None:
        state = "na" if "embeddings" in not_evaluated else ("drift" if emb.get("drifted") else "ok")
        rows.append({"signal": "embeddings (domain classifier)", "value": emb.get("score"),
                     "threshold": emb.get("threshold"), "rule": "ROC AUC telling the batches apart; drift when > "
                     "threshold", "state": state, "detail": not_evaluated.get("embeddings", "")})
    dis = verdict.get("disagreement")
    if dis is not None:
        rows.append({"signal": "teacher-student disagreement", "value": dis["increase"],
                     "threshold": dis["threshold"], "rule": "increase of the disagreement rate; drift when > "
                     "threshold", "state": "drift" if dis.get("drifted") else "ok",
                     "detail": f"{dis['production']:.1%} of {dis['n_production']} production inputs vs "
                               f"{dis['reference']:.1%} on the reference"
                               + (f" (teacher {dis['teacher_version']})" if dis.get("teacher_version") else "")
                               + (f"; measure: {dis['measure']}" if dis.get("measure") else "")})
    return rows


def _plot(verdict: dict) -> str:
    """Predicted-label shares (reference vs production) and the disagreement rates, one PNG."""
    ref, prod = verdict.get("reference_label_share") or {}, verdict.get("production_label_share") or {}
    dis = verdict.get("disagreement")
    labels = sorted(set(ref) | set(prod))
    if not labels and dis is None:
        return ""
    import matplotlib

    # Label names are data: "$5 refund" must print as it is, not be parsed as mathtext.
    with matplotlib.rc_context({"text.parse_math": False}):
        return _draw(ref, prod, dis, labels)


def _draw(ref: dict, prod: dict, dis: dict | None, labels: list[str]) -> str:
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.2))
    axes = fig.subplots(1, 2, squeeze=False)[0]
    ax = axes[0]
    x = np.arange(len(labels))
    ax.bar(x - 0.2, [ref.get(k, 0.0) for k in labels], 0.4, label="reference (training data)", color="#4c72b0")
    ax.bar(x + 0.2, [prod.get(k, 0.0) for k in labels], 0.4, label="production", color="#dd8452")
    ax.set_xticks(x, labels, fontsize=8, rotation=20, ha="right")
    ax.set_ylabel("share of inputs", fontsize=8)
    ax.set_title("predicted-label distribution", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1]
    if dis is not None:
        values = [dis["reference"], dis["production"]]
        ax.bar([0, 1], values, 0.5, color=["#4c72b0", "#dd8452"])
        for xi, v in enumerate(values):
            ax.annotate(f"{v:.1%}", (xi, v), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8)
        limit = dis["reference"] + dis["threshold"]
        ax.axhline(limit, color="#c62828", linestyle="--", linewidth=1)
        ax.annotate(f"drift above {limit:.1%} (reference + {dis['threshold']:.1%})", (0.02, limit),
                    xycoords=("axes fraction", "data"), fontsize=7, color="#c62828", va="bottom")
        ax.set_xticks([0, 1], ["reference", "production"], fontsize=8)
        ax.set_ylim(0, max(values + [limit]) * 1.25 + 0.01)
        ax.set_ylabel("teacher and student disagree", fontsize=8)
        ax.set_title("teacher-student disagreement", fontsize=9)
    else:
        ax.set_axis_off()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return (f'<img alt="label distribution and disagreement" '
            f'src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">')


def render_signals_section(verdict: dict, columns: dict[str, dict], label: dict | None,
                           column_drift_share: float, label_drift_counts: bool = True,
                           history: list[dict[str, Any]] | None = None) -> str:
    """The section (a <style> and a <div>) that ``add_signals_section`` puts at the top of the page;
    with ``history`` (drift history entries, this run last), drift over time too."""
    drifted = bool(verdict.get("drifted"))
    rows = signal_rows(verdict, columns, label, column_drift_share, label_drift_counts)
    body = "".join(
        f'<tr class="{r["state"] if r["state"] == "drift" else ""}"><td>{_e(r["signal"])}</td>'
        f'<td class="num">{_e(_n(r["value"]))}</td><td class="num">{_e(_n(r["threshold"], "{:g}"))}</td>'
        f'<td>{_badge(r["state"])}</td><td>{_e(r["rule"])}</td><td>{_e(r["detail"])}</td></tr>' for r in rows)
    ref, prod = verdict.get("reference_label_share") or {}, verdict.get("production_label_share") or {}
    shares = "".join(
        f'<tr><td>{_e(k)}</td><td class="num">{_e(_n(ref.get(k, 0.0), "{:.1%}"))}</td>'
        f'<td class="num">{_e(_n(prod.get(k, 0.0), "{:.1%}"))}</td>'
        f'<td class="num">{_e(_n(prod.get(k, 0.0) - ref.get(k, 0.0), "{:+.1%}"))}</td></tr>'
        for k in sorted(set(ref) | set(prod)))
    reasons = "".join(f"<li>{_e(r)}</li>" for r in verdict.get("reasons") or [])
    action = verdict.get("action")
    action_html = ""
    if action:
        a_cls = {"redistill": "drift", "none": "ok"}.get(action, "na")
        action_html = (f'<h2>Action: <span class="verdict {a_cls}">{_e(action.upper().replace("_", " "))}</span></h2>'
                       + "<ul>" + "".join(f"<li>{_e(r)}</li>" for r in verdict.get("action_reasons") or [])
                       + "</ul>")
        moving = verdict.get("moving_reference") or {}
        if moving.get("reasons"):
            action_html += ("<details><summary>The moving reference (what persistent_input reads)</summary><ul>"
                            + "".join(f"<li>{_e(r)}</li>" for r in moving["reasons"]) + "</ul></details>")
    facts = [("model", verdict.get("model")), ("reference data version", verdict.get("reference_data_version")),
             ("production", verdict.get("production")), ("rows compared",
                                                         f"{verdict.get('n_reference')} reference, "
                                                         f"{verdict.get('n_production')} production"),
             ("created at", verdict.get("created_at")),
             ("embedding report", verdict.get("embedding_report_html"))]
    ws = verdict.get("evidently_workspace")
    if ws:
        facts += [("Evidently workspace", f"{ws['path']} (project {ws['project']}; drift over time: "
                                          f"evidently ui --workspace {ws['path']})")]
    fact_rows = "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>" for k, v in facts if v)
    title, cls = ("DRIFT", "drift") if drifted else ("NO DRIFT", "ok")
    return (f"<style>{_CSS}</style>\n<div id=\"{_SECTION_ID}\">"
            f'<h1>Drift verdict: <span class="verdict {cls}">{title}</span></h1>'
            f"<ul>{reasons}</ul>" + action_html
            + f"<h2>Signals</h2><table><thead><tr><th>signal</th><th>value</th><th>threshold</th><th>verdict</th>"
            f"<th>rule</th><th>detail</th></tr></thead><tbody>{body}</tbody></table>"
            + (f"<h2>Predicted labels</h2><table><thead><tr><th>label</th><th>reference</th><th>production</th>"
               f"<th>change</th></tr></thead><tbody>{shares}</tbody></table>" if shares else "")
            + _plot(verdict)
            + render_history_section(history or [])
            + f"<h2>Run</h2><table>{fact_rows}</table>"
            "<p>Below: Evidently's report of the text descriptors and the predicted label.</p></div>\n")


def add_signals_section(evidently_html: str, section: str) -> str:
    """``section`` at the top of Evidently's standalone page (right after its <body>)."""
    at = evidently_html.find("<body>")
    if at < 0:
        raise RuntimeError("Evidently's report has no <body> tag: cannot add the signals section")
    at += len("<body>")
    return evidently_html[:at] + "\n" + section + evidently_html[at:]


# ---------------------------------------------------------------------------------------------
# Drift over time: the history (history.py) as an inline SVG chart and a table
# ---------------------------------------------------------------------------------------------

# (score key, legend, colour): the lines of the chart, every one a number in [0, 1].
_SERIES = (("disagreement_production", "teacher-student disagreement on production", "#c62828"),
           ("disagreement_reference", "disagreement on the reference", "#4c72b0"),
           ("embedding_auc", "embedding drift (domain classifier ROC AUC)", "#8c564b"),
           ("drifted_descriptor_share", "share of drifted descriptors", "#dd8452"))
_ACTION_COLOURS = {"redistill": "#c62828", "skipped_cooldown": "#b26a00", "skipped_budget": "#b26a00",
                   "skipped_gathering": "#b26a00",
                   "would_redistill": "#6f42c1", "none": "#57606a"}
_W, _H, _L, _R, _T, _B = 760, 240, 44, 12, 12, 28  # size and margins of the plot, in px


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def history_svg(entries: list[dict[str, Any]]) -> str:
    """Each signal's score per monitor run (x: run, oldest left; y: 0..1), a dashed vertical line at
    every run that redistilled, and a marker per run coloured by its action. Pure SVG, no script."""
    if not entries:
        return ""
    n = len(entries)
    pw, ph = _W - _L - _R, _H - _T - _B

    def x(i: int) -> float:
        return _L + (pw * (i + 0.5) / n)

    def y(v: float) -> float:
        return _T + ph * (1 - max(0.0, min(1.0, v)))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H + 22 * 3}" role="img" '
             f'aria-label="drift signals over time" font-family="sans-serif" font-size="10">',
             f'<rect x="{_L}" y="{_T}" width="{pw}" height="{ph}" fill="#fff" stroke="#d0d7de"/>']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{_L}" x2="{_L + pw}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#eee"/>'
                     f'<text x="{_L - 4}" y="{y(tick) + 3:.1f}" text-anchor="end">{tick:g}</text>')
    for i, e in enumerate(entries):
        if e.get("redistill"):
            parts.append(f'<line class="redistill" x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{_T}" y2="{_T + ph}" '
                         f'stroke="#c62828" stroke-dasharray="4 3"><title>run {i + 1}: redistilled</title></line>')
    for key, name, colour in _SERIES:
        points = [(x(i), y(v)) for i, e in enumerate(entries)
                  if (v := _finite((e.get("scores") or {}).get(key))) is not None]
        if not points:
            continue
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        parts.append(f'<polyline class="series" data-signal="{_e(key)}" points="{path}" fill="none" '
                     f'stroke="{colour}" stroke-width="1.5"><title>{_e(name)}</title></polyline>')
        parts.extend(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2" fill="{colour}"/>' for px, py in points)
    for i, e in enumerate(entries):
        action = str(e.get("action", "none"))
        colour = _ACTION_COLOURS.get(action, "#57606a")
        parts.append(f'<rect class="action" x="{x(i) - 4:.1f}" y="{_T + ph + 6}" width="8" height="8" fill="{colour}">'
                     f'<title>run {i + 1} ({_e(e.get("time", ""))}): {_e(action)}</title></rect>')
    legend_y = _H + 4
    for j, (_key, name, colour) in enumerate(_SERIES):
        lx, ly = _L + (j % 2) * 360, legend_y + (j // 2) * 16
        parts.append(f'<line x1="{lx}" x2="{lx + 18}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"/>'
                     f'<text x="{lx + 22}" y="{ly + 3}">{_e(name)}</text>')
    ly = legend_y + 32
    parts.append(f'<line x1="{_L}" x2="{_L + 18}" y1="{ly}" y2="{ly}" stroke="#c62828" stroke-dasharray="4 3"/>'
                 f'<text x="{_L + 22}" y="{ly + 3}">redistillation; squares below the plot: each run\'s '
                 f'action (red redistill, amber skipped, purple would redistil, grey none)</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_history_section(entries: list[dict[str, Any]], last: int = 50) -> str:
    """Drift over time: the last ``last`` monitor runs of this model as a chart and a table."""
    entries = entries[-last:]
    if not entries:
        return ""
    rows = []
    for e in entries:
        s = e.get("scores") or {}
        result = e.get("result") or {}
        cls = "drift" if e.get("redistill") else ""
        rows.append(
            f'<tr class="{cls}"><td>{_e(e.get("time", ""))}</td><td>{_e(e.get("model_version", ""))}</td>'
            f'<td class="num">{_e(_n(s.get("disagreement_production"), "{:.1%}"))}</td>'
            f'<td class="num">{_e(_n(s.get("disagreement_increase"), "{:+.1%}"))}</td>'
            f'<td class="num">{_e(_n(s.get("embedding_auc"), "{:.3f}"))}</td>'
            f'<td class="num">{_e(_n(s.get("drifted_descriptor_share"), "{:.0%}"))}</td>'
            f'<td>{"yes" if e.get("drifted") else "no"}</td><td>{_e(e.get("action", ""))}</td>'
            f'<td>{_e(", ".join(e.get("triggers") or []))}</td>'
            f'<td>{_e(result.get("version") or "")}</td></tr>')
    return (f'<div class="history"><h2>Drift over time (the last {len(entries)} runs of this model)</h2>'
            + history_svg(entries)
            + "<table><thead><tr><th>time</th><th>model version</th><th>disagreement</th><th>increase</th>"
              "<th>embedding AUC</th><th>drifted descriptors</th><th>drift seen</th><th>action</th>"
              "<th>triggers</th><th>resulting version</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>\n")
