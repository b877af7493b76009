"""The signals section on top of the drift page: every signal with its value, threshold and verdict."""

import math

import pytest

from components.monitor_drift.core import DriftPolicy, combine_signals, decide_drift, disagreement_result
from components.monitor_drift.report_html import add_signals_section, render_signals_section, signal_rows

COLUMNS = {"length": {"drifted": True, "score": 0.001, "method": "ks", "threshold": 0.05},
           "word_count": {"drifted": False, "score": 0.4, "method": "ks", "threshold": 0.05},
           "digit_share": {"drifted": True, "score": float("nan"), "method": "chisquare", "threshold": 0.05,
                           "note": "the reference holds one value (0) in all 10 rows"}}
LABEL = {"drifted": True, "score": 0.01, "method": "chisquare", "threshold": 0.05}


def _verdict(label_drift=True):
    policy = DriftPolicy(label_drift=label_drift)
    d = disagreement_result([0] * 10, [0] * 10, [0] * 6 + [1] * 4, [0] * 10, 0.1)
    emb = {"drifted": False, "score": 0.52, "threshold": 0.55, "method": "domain_classifier_roc_auc"}
    return combine_signals(decide_drift(COLUMNS, LABEL, policy, 10, 10), emb, d)


def test_every_signal_has_a_row_with_value_threshold_and_verdict():
    rows = {r["signal"]: r for r in signal_rows(_verdict(), COLUMNS, LABEL, 0.5)}
    assert rows["descriptor length"]["state"] == "drift" and rows["descriptor word_count"]["state"] == "ok"
    assert rows["descriptor digit_share"]["state"] == "na" and math.isnan(rows["descriptor digit_share"]["value"])
    # the share is over the evaluated columns: 1 of 2 >= 0.5
    share = rows["share of drifted descriptors"]
    assert (share["value"], share["threshold"], share["state"]) == (0.5, 0.5, "drift")
    assert rows["predicted-label distribution"]["state"] == "drift"
    assert rows["embeddings (domain classifier)"]["value"] == 0.52 and rows["embeddings (domain classifier)"][
        "state"] == "ok"
    dis = rows["teacher-student disagreement"]
    assert dis["value"] == pytest.approx(0.4) and dis["threshold"] == 0.1 and dis["state"] == "drift"
    assert "40.0% of 10 production inputs vs 0.0%" in dis["detail"]
    # label drift the policy does not count alone is shown, marked as not counted
    rows = {r["signal"]: r for r in signal_rows(_verdict(False), COLUMNS, LABEL, 0.5, label_drift_counts=False)}
    assert rows["predicted-label distribution"]["state"] == "info"


def test_the_section_goes_on_top_of_the_evidently_page_escaped():
    verdict = {**_verdict(), "model": "<b>m</b>", "reference_label_share": {"a<": 0.5, r"$\oops$ refund": 0.5},
               "production_label_share": {"a<": 0.9, r"$\oops$ refund": 0.1},
               "evidently_workspace": {"path": "/h/evidently", "project": "m", "project_id": "x", "snapshots": {}}}
    section = render_signals_section(verdict, COLUMNS, LABEL, 0.5)
    assert "<b>m</b>" not in section and "&lt;b&gt;m&lt;/b&gt;" in section and "a&lt;" in section
    assert '<span class="verdict drift">DRIFT</span>' in section and "NOT EVALUATED" in section
    assert "evidently ui --workspace /h/evidently" in section and section.count("data:image/png;base64,") == 1
    page = add_signals_section("<html><head></head><body>\n<div id=root></div></body></html>", section)
    assert page.index('id="distillops-signals"') < page.index("id=root")
    with pytest.raises(RuntimeError, match="no <body> tag"):
        add_signals_section("<html></html>", section)
