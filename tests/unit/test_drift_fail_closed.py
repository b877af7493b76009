"""A drift statistic that is NaN or infinite is "not evaluated" and the verdict fails closed
(issue 13 defect 6; RELIABILITY.md 34): it never reads as "no drift"."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from components.monitor_drift.core import (
    DESCRIPTOR_COLUMNS,
    DriftInputError,
    DriftPolicy,
    combine_signals,
    decide_drift,
    text_descriptors,
)

QUIET = {"drifted": False, "score": 0.4, "method": "ks"}


def _quiet_columns() -> dict[str, dict]:
    return {name: dict(QUIET) for name in DESCRIPTOR_COLUMNS}


@pytest.mark.parametrize("score", [math.nan, math.inf, -math.inf])
def test_a_non_finite_label_statistic_fails_closed(score):
    label = {"drifted": False, "score": score, "method": "chisquare"}
    verdict = decide_drift(_quiet_columns(), label, DriftPolicy(), 1200, 300)
    assert verdict.drifted is True
    assert "predicted label" in verdict.not_evaluated
    assert verdict.signals == ["not_evaluated"]
    assert not any("did not drift" in r for r in verdict.reasons)
    assert any(r.startswith("predicted label: not evaluated (method chisquare, score ") and "fail closed" in r
               for r in verdict.reasons)


def test_a_non_finite_column_statistic_fails_closed_and_is_left_out_of_the_share():
    columns = _quiet_columns()
    columns["word_count"] = {"drifted": False, "score": math.nan, "method": "ks",
                             "note": "the reference holds one value (3) in all 1200 rows"}
    verdict = decide_drift(columns, dict(QUIET), DriftPolicy(), 1200, 300)
    assert verdict.drifted is True and verdict.drifted_columns == []
    assert verdict.not_evaluated == {"word_count": "the reference holds one value (3) in all 1200 rows"}
    assert verdict.reasons[0] == "0 of 6 evaluated text descriptors drifted, below the 50% share"
    assert any("word_count: not evaluated" in r and "the reference holds one value" in r for r in verdict.reasons)


def test_finite_statistics_still_decide_as_before():
    verdict = decide_drift(_quiet_columns(), dict(QUIET), DriftPolicy(), 100, 100)
    assert verdict.drifted is False and verdict.not_evaluated == {} and verdict.signals == []


def test_non_finite_embedding_score_fails_closed():
    quiet = decide_drift(_quiet_columns(), dict(QUIET), DriftPolicy(), 100, 100)
    emb = {"drifted": False, "score": math.nan, "threshold": 0.55, "method": "domain_classifier_roc_auc"}
    out = combine_signals(quiet, emb, None)
    assert out["drifted"] is True and out["signals"] == ["not_evaluated"]
    assert any(r.startswith("embeddings: not evaluated") for r in out["reasons"])


def test_constant_predicted_label_over_1000_rows_fails_closed_with_evidently():
    """The reported case: chi-square on a label that is constant in both batches gives NaN."""
    from components.monitor_drift.evidently_report import build_drift_report

    reference = text_descriptors([f"the cat sat {i}" for i in range(1200)])
    production = text_descriptors([f"the dog ran {i}" for i in range(200)])
    reference["predicted_label"] = "positive"
    production["predicted_label"] = "positive"
    _, columns, label = build_drift_report(reference, production, "predicted_label", DriftPolicy())
    assert not math.isfinite(label["score"]) and label["drifted"] is True
    assert "predicted_label" in label["note"] and "one value ('positive')" in label["note"]
    verdict = decide_drift(columns, label, DriftPolicy(), 1200, 200)
    assert verdict.drifted is True and "predicted label" in verdict.not_evaluated
    assert not any("did not drift (method chisquare, score nan)" in r for r in verdict.reasons)
    assert verdict.to_dict()["not_evaluated"]["predicted label"].startswith("predicted_label: the reference")


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_all_bad_descriptor_column_is_refused_before_evidently(bad):
    from components.monitor_drift.evidently_report import build_drift_report

    reference = text_descriptors([f"text {i}" for i in range(30)])
    production = reference.copy()
    production["length"] = bad
    with pytest.raises(DriftInputError, match=r"production column 'length' row 0 is -?(inf|nan)"):
        build_drift_report(reference, production, None, DriftPolicy())


def test_constant_in_both_descriptor_with_a_finite_score_is_noted_not_failed():
    """A descriptor constant in both batches (no digits anywhere) has a finite p = 1: identical
    distributions, so it stays "not drifted" with a note; only undefined statistics fail closed."""
    from components.monitor_drift.evidently_report import build_drift_report

    reference = text_descriptors([f"the cat {'x' * (i % 7)}" for i in range(60)])
    production = text_descriptors([f"the dog {'y' * (i % 5)}" for i in range(40)])
    _, columns, _ = build_drift_report(reference, production, None, DriftPolicy())
    digits = columns["digit_share"]
    assert math.isfinite(digits["score"]) and digits["drifted"] is False and "constant" in digits["note"]
    assert "digit_share" not in decide_drift(columns, None, DriftPolicy(), 60, 40).not_evaluated


def test_monitor_samples_large_batches_before_evidently():
    from components.monitor_drift.runner import MAX_ROWS, _sample

    texts = [f"t{i}" for i in range(MAX_ROWS * 3)]
    sample = _sample(texts, MAX_ROWS)
    assert len(sample) == MAX_ROWS and set(sample) <= set(texts)
    assert _sample(texts, MAX_ROWS) == sample  # seeded: the same batch gives the same sample


def test_verdict_json_is_strict_json_with_a_nan_score():
    import json

    label = {"drifted": False, "score": math.nan, "method": "chisquare"}
    out = decide_drift(_quiet_columns(), label, DriftPolicy(), 1200, 300).to_dict()
    assert json.loads(json.dumps(out, allow_nan=False))["drifted"] is True
    assert isinstance(pd.Series(out["column_scores"]).sum(), float)
