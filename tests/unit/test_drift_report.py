"""Tests of monitor_drift.evidently_report running the real Evidently (offline, about a second each)."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from components.monitor_drift.core import (
    DESCRIPTOR_COLUMNS,
    DriftInputError,
    DriftPolicy,
    decide_drift,
    text_descriptors,
)
from components.monitor_drift.evidently_report import build_drift_report, extract_value_drift

SUBJECTS = [
    "The cat",
    "A dog",
    "My friend",
    "The teacher",
    "Our team",
    "The weather",
    "This movie",
    "The food",
]
VERBS = ["is", "was", "seems", "looks", "felt"]
ADJECTIVES = ["great", "terrible", "fine", "boring", "lovely", "awful", "okay", "amazing", "quiet"]
ENDINGS = ["today.", "this week.", "again!", "as usual.", "to me.", "."]


def english_sentences(n: int, seed: int) -> list[str]:
    """Short templated English sentences: no digits, one capital letter, one or two punctuation marks."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(ADJECTIVES)} {rng.choice(ENDINGS)}"
        for _ in range(n)
    ]


def shouting_numbers(n: int, seed: int) -> list[str]:
    """Long texts full of digits and upper case: a very different distribution."""
    rng = random.Random(seed)
    return [
        " ".join(
            f"ORDER {rng.randint(10_000, 99_999)} QTY {rng.randint(1, 999)}"
            for _ in range(rng.randint(8, 15))
        )
        for _ in range(n)
    ]


def labelled(texts: list[str], positive_share: float, seed: int) -> pd.DataFrame:
    frame = text_descriptors(texts)
    rng = random.Random(seed)
    frame["predicted_label"] = ["positive" if rng.random() < positive_share else "negative" for _ in texts]
    return frame


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return labelled(english_sentences(200, seed=1), positive_share=0.5, seed=11)


@pytest.fixture(scope="module")
def same_distribution(reference) -> tuple:
    production = labelled(english_sentences(200, seed=2), positive_share=0.5, seed=12)
    return build_drift_report(reference, production, "predicted_label", DriftPolicy())


def test_same_distribution_does_not_drift(same_distribution):
    html, columns, label = same_distribution
    assert list(columns) == list(DESCRIPTOR_COLUMNS)
    for name, result in columns.items():
        assert set(result) >= {"drifted", "score", "method"}, name
        assert 0.0 <= result["score"] <= 1.0
    verdict = decide_drift(columns, label, DriftPolicy(), 200, 200)
    assert verdict.drifted is False, verdict.reasons
    assert verdict.label_drifted is False
    assert verdict.reasons[0].endswith("below the 50% share")


def test_small_samples_use_p_value_tests(same_distribution):
    _, columns, label = same_distribution
    # 200 reference rows: Evidently auto-picks K-S for many distinct values, chi-square for
    # 3 to 5 values, Z-test for 1 or 2 values (a binary label, a constant column).
    assert columns["length"]["method"] == "ks"
    assert label["method"] == "z"
    assert all(result["threshold"] == 0.05 for result in columns.values())


def test_html_is_a_standalone_report(same_distribution):
    html = same_distribution[0]
    assert isinstance(html, str)
    assert "<html" in html[:2000]
    assert len(html) > 100_000  # the Evidently UI bundle is inlined, so no network is needed to view it


def test_constant_columns_do_not_crash_and_are_noted(same_distribution):
    # The templated sentences never hold a digit: digit_share is 0 in both batches.
    _, columns, _ = same_distribution
    digit = columns["digit_share"]
    assert digit["drifted"] is False
    assert "constant" in digit["note"]


def test_long_digit_upper_texts_drift(reference):
    production = labelled(shouting_numbers(200, seed=3), positive_share=0.5, seed=13)
    html, columns, label = build_drift_report(reference, production, "predicted_label", DriftPolicy())
    verdict = decide_drift(columns, label, DriftPolicy(), len(reference), len(production))
    assert verdict.drifted is True
    assert {"length", "digit_share", "upper_share"} <= set(verdict.drifted_columns)
    assert columns["length"]["score"] < 0.05
    assert verdict.reasons[0].endswith(">= 50% share")
    assert "<html" in html


def test_label_distribution_change_is_label_drift(reference):
    # Same kind of texts, but the model now predicts "positive" 90% of the time.
    production = labelled(english_sentences(200, seed=4), positive_share=0.9, seed=14)
    _, columns, label = build_drift_report(reference, production, "predicted_label", DriftPolicy())
    assert label is not None and label["drifted"] is True
    assert label["score"] < 0.05
    verdict = decide_drift(columns, label, DriftPolicy(), len(reference), len(production))
    assert verdict.drifted is True
    # The texts did not change, so the label alone made the verdict.
    assert verdict.reasons[0].endswith("below the 50% share")
    assert any(
        reason.startswith("predicted-label distribution drifted (method z") for reason in verdict.reasons
    )


def test_all_constant_columns_and_labels_do_not_crash():
    reference = text_descriptors(["same text"] * 30)
    production = text_descriptors(["same text"] * 20)
    reference["predicted_label"] = "positive"
    production["predicted_label"] = "positive"
    html, columns, label = build_drift_report(reference, production, "predicted_label", DriftPolicy())
    assert all(result["drifted"] is False and "constant" in result["note"] for result in columns.values())
    assert label["drifted"] is False
    assert decide_drift(columns, label, DriftPolicy(), 30, 20).drifted is False
    assert "<html" in html


def test_without_label_column(reference):
    production = text_descriptors(english_sentences(50, seed=5))
    _, columns, label = build_drift_report(
        reference.drop(columns="predicted_label"), production, None, DriftPolicy()
    )
    assert label is None
    assert set(columns) == set(DESCRIPTOR_COLUMNS)


def test_large_reference_pins_p_value_tests():
    # Above 1000 reference rows Evidently would switch to distances (Wasserstein, Jensen-Shannon);
    # the adapter pins K-S / chi-square so stattest_threshold stays a p-value threshold.
    reference = labelled(english_sentences(1200, seed=6), positive_share=0.5, seed=16)
    production = labelled(english_sentences(300, seed=7), positive_share=0.5, seed=17)
    _, columns, label = build_drift_report(reference, production, "predicted_label", DriftPolicy())
    assert {result["method"] for result in columns.values()} == {"ks"}
    assert label["method"] == "chisquare"
    assert decide_drift(columns, label, DriftPolicy(), 1200, 300).drifted is False


def test_mismatched_columns_fail_closed(reference):
    production = reference.drop(columns="digit_share")
    with pytest.raises(DriftInputError, match=r"only in reference \['digit_share'\]"):
        build_drift_report(reference, production, "predicted_label", DriftPolicy())


def test_nan_descriptor_fails_closed(reference):
    production = reference.copy()
    production.loc[7, "length"] = float("nan")
    with pytest.raises(DriftInputError, match=r"production column 'length' row 7 is nan"):
        build_drift_report(reference, production, "predicted_label", DriftPolicy())


def test_missing_label_fails_closed(reference):
    production = reference.copy()
    production["predicted_label"] = production["predicted_label"].astype(object)
    production.loc[3, "predicted_label"] = None
    with pytest.raises(DriftInputError, match=r"production label column 'predicted_label' row 3 is None"):
        build_drift_report(reference, production, "predicted_label", DriftPolicy())


def test_extract_value_drift_reads_json_statuses_and_falls_back_to_scores():
    snapshot = {
        "metrics": [
            {
                "id": "m1",
                "config": {
                    "type": "evidently:metric_v2:ValueDrift",
                    "column": "a",
                    "method": "K-S p_value",
                    "threshold": 0.05,
                },
                "value": 0.01,
            },
            {
                "id": "m2",
                "config": {
                    "type": "evidently:metric_v2:ValueDrift",
                    "column": "b",
                    "method": "K-S p_value",
                    "threshold": 0.05,
                },
                "value": 0.01,
            },
            {
                "id": "m3",
                "config": {
                    "type": "evidently:metric_v2:ValueDrift",
                    "column": "c",
                    "method": "Wasserstein distance (normed)",
                    "threshold": 0.1,
                },
                "value": 0.3,
            },
            {
                "id": "m4",
                "config": {"type": "evidently:metric_v2:DriftedColumnsCount"},
                "value": {"count": 1, "share": 0.3},
            },
        ],
        "tests": [
            {
                "metric_config": {"metric_id": "m1", "params": {"type": "evidently:metric_v2:ValueDrift"}},
                "status": "SUCCESS",
            },
        ],
    }
    results = extract_value_drift(snapshot)
    assert set(results) == {"a", "b", "c"}
    assert results["a"]["drifted"] is False  # Evidently's test status wins over the score
    assert results["b"] == {"score": 0.01, "method": "ks", "threshold": 0.05, "drifted": True}
    assert results["c"]["drifted"] is True and results["c"]["method"] == "wasserstein"
