"""Unit tests of monitor_drift.core: input validation, text descriptors and the drift decision."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from components.monitor_drift.core import (
    DESCRIPTOR_COLUMNS,
    DriftInputError,
    DriftPolicy,
    decide_drift,
    text_descriptors,
    validate_texts,
)

# ---------------------------------------------------------------------------------------------
# validate_texts
# ---------------------------------------------------------------------------------------------


def test_validate_texts_returns_the_strings():
    assert validate_texts(["a b", "", "c"], "reference") == ["a b", "", "c"]


def test_validate_texts_accepts_any_sequence():
    assert validate_texts(("x", "y"), "production") == ["x", "y"]


def test_empty_batch_names_the_batch():
    with pytest.raises(DriftInputError, match=r"^production batch is empty"):
        validate_texts([], "production")


def test_none_batch_fails():
    with pytest.raises(DriftInputError, match="reference batch is None"):
        validate_texts(None, "reference")


def test_bare_string_batch_fails():
    # Iterating a str would describe one "text" per character.
    with pytest.raises(DriftInputError, match="reference batch is a single str"):
        validate_texts("hello", "reference")


def test_none_element_names_batch_and_row():
    with pytest.raises(DriftInputError, match=r"reference batch row 2 is None"):
        validate_texts(["a", "b", None, "d"], "reference")


def test_nan_element_names_batch_row_and_value():
    with pytest.raises(DriftInputError) as info:
        validate_texts(["a", float("nan")], "production")
    message = str(info.value)
    assert "production batch row 1" in message
    assert "NaN" in message and "nan" in message


def test_numpy_nan_element_is_nan_too():
    with pytest.raises(DriftInputError, match=r"production batch row 0 is NaN"):
        validate_texts([np.nan, "a"], "production")


def test_non_string_element_names_type_and_repr():
    with pytest.raises(DriftInputError) as info:
        validate_texts(["ok", "fine", 42], "reference")
    message = str(info.value)
    assert "reference batch row 2" in message
    assert "int 42" in message


def test_bytes_element_is_not_a_string():
    with pytest.raises(DriftInputError, match=r"row 0 is bytes b'raw'"):
        validate_texts([b"raw"], "production")


def test_all_empty_strings_fail():
    with pytest.raises(DriftInputError, match=r"production batch has 3 texts, all empty or whitespace-only"):
        validate_texts(["", "  ", "\n"], "production")


def test_some_empty_strings_are_fine():
    assert validate_texts(["", "text"], "reference") == ["", "text"]


def test_drift_input_error_is_a_value_error():
    assert issubclass(DriftInputError, ValueError)


# ---------------------------------------------------------------------------------------------
# text_descriptors
# ---------------------------------------------------------------------------------------------


def test_descriptor_columns_and_dtypes():
    frame = text_descriptors(["hello", "world"])
    assert list(frame.columns) == list(DESCRIPTOR_COLUMNS)
    assert len(frame) == 2
    assert all(str(dtype) == "float64" for dtype in frame.dtypes)


def test_descriptors_of_a_hand_made_text():
    # "Hi, Bob 42!" : 11 chars, words "Hi," "Bob" "42!" (3 + 3 + 3 chars),
    # letters H i B o b = 5, spaces 2, digits 4 2 = 2, upper H B = 2, punctuation , ! = 2.
    row = text_descriptors(["Hi, Bob 42!"]).iloc[0]
    assert row["length"] == 11
    assert row["word_count"] == 3
    assert row["mean_word_length"] == pytest.approx(3.0)
    assert row["non_letter_share"] == pytest.approx(4 / 11)  # , 4 2 !
    assert row["digit_share"] == pytest.approx(2 / 11)
    assert row["upper_share"] == pytest.approx(2 / 11)
    assert row["punctuation_share"] == pytest.approx(2 / 11)


def test_descriptors_of_plain_lowercase_text():
    row = text_descriptors(["the cat sat"]).iloc[0]
    assert row["length"] == 11
    assert row["word_count"] == 3
    assert row["mean_word_length"] == pytest.approx(3.0)
    for column in ("non_letter_share", "digit_share", "upper_share", "punctuation_share"):
        assert row[column] == 0.0


def test_descriptors_of_digits_and_caps():
    row = text_descriptors(["ABC 123"]).iloc[0]
    assert row["upper_share"] == pytest.approx(3 / 7)
    assert row["digit_share"] == pytest.approx(3 / 7)
    assert row["non_letter_share"] == pytest.approx(3 / 7)
    assert row["punctuation_share"] == 0.0


def test_unicode_punctuation_counts_and_symbols_do_not():
    # Typographic quotes are Unicode punctuation; "$" and "+" are symbols (non-letters only).
    row = text_descriptors(["\u201cok\u201d $+"]).iloc[0]
    assert row["length"] == 7
    assert row["punctuation_share"] == pytest.approx(2 / 7)
    assert row["non_letter_share"] == pytest.approx(4 / 7)


def test_descriptors_of_empty_and_blank_text_are_zero():
    frame = text_descriptors(["", "   "])
    assert frame.loc[0].tolist() == [0.0] * len(DESCRIPTOR_COLUMNS)
    assert frame.loc[1, "length"] == 3
    assert frame.loc[1, ["word_count", "mean_word_length", "non_letter_share"]].tolist() == [0.0, 0.0, 0.0]


def test_descriptors_are_deterministic():
    texts = ["Some text, 1", "OTHER text!", ""]
    assert text_descriptors(texts).equals(text_descriptors(texts))


def test_descriptors_of_no_texts_is_an_empty_frame():
    frame = text_descriptors([])
    assert list(frame.columns) == list(DESCRIPTOR_COLUMNS)
    assert frame.empty


# ---------------------------------------------------------------------------------------------
# DriftPolicy
# ---------------------------------------------------------------------------------------------


def test_policy_defaults():
    policy = DriftPolicy()
    assert (policy.column_drift_share, policy.stattest_threshold, policy.label_drift) == (0.5, 0.05, True)


@pytest.mark.parametrize(
    "kwargs", [{"column_drift_share": 0.0}, {"column_drift_share": 1.5}, {"stattest_threshold": 1.0}]
)
def test_policy_rejects_meaningless_values(kwargs):
    with pytest.raises(ValueError):
        DriftPolicy(**kwargs)


# ---------------------------------------------------------------------------------------------
# decide_drift
# ---------------------------------------------------------------------------------------------


def _results(drifted: set[str]) -> dict[str, dict]:
    return {
        name: {"drifted": name in drifted, "score": 0.001 if name in drifted else 0.4, "method": "ks"}
        for name in DESCRIPTOR_COLUMNS
    }


def test_descriptor_drift_at_the_share():
    results = _results({"length", "word_count", "digit_share", "upper_share"})
    verdict = decide_drift(results, None, DriftPolicy(), n_reference=200, n_production=150)
    assert verdict.drifted is True
    assert verdict.drifted_columns == ["length", "word_count", "digit_share", "upper_share"]
    assert verdict.reasons[0] == (
        "4 of 7 text descriptors drifted (length, word_count, digit_share, upper_share) >= 50% share"
    )
    assert verdict.label_drifted is None
    assert (verdict.n_reference, verdict.n_production) == (200, 150)
    assert verdict.column_scores["length"] == 0.001


def test_exact_share_counts_as_drift():
    results = {f"c{i}": {"drifted": i < 3, "score": 0.01, "method": "ks"} for i in range(6)}
    verdict = decide_drift(results, None, DriftPolicy(column_drift_share=0.5), 10, 10)
    assert verdict.drifted is True
    assert verdict.reasons[0].startswith("3 of 6 text descriptors drifted (c0, c1, c2) >= 50% share")


def test_below_share_is_not_drift_and_says_why():
    verdict = decide_drift(_results({"digit_share"}), None, DriftPolicy(), 200, 200)
    assert verdict.drifted is False
    assert verdict.drifted_columns == ["digit_share"]
    assert verdict.reasons[0] == "1 of 7 text descriptors drifted (digit_share), below the 50% share"
    assert "no predicted labels given: label drift not checked" in verdict.reasons


def test_nothing_drifted():
    label = {"drifted": False, "score": 0.73, "method": "z"}
    verdict = decide_drift(_results(set()), label, DriftPolicy(), 200, 200)
    assert verdict.drifted is False
    assert verdict.label_drifted is False
    assert verdict.reasons == [
        "0 of 7 text descriptors drifted, below the 50% share",
        "predicted-label distribution did not drift (method z, score 0.73)",
    ]


def test_label_drift_alone_is_drift():
    label = {"drifted": True, "score": 0.0012, "method": "chisquare"}
    verdict = decide_drift(_results(set()), label, DriftPolicy(), 200, 200)
    assert verdict.drifted is True
    assert verdict.label_drifted is True
    assert verdict.drifted_columns == []
    assert "predicted-label distribution drifted (method chisquare, score 0.0012)" in verdict.reasons


def test_label_drift_ignored_when_policy_says_so():
    label = {"drifted": True, "score": 0.0012, "method": "chisquare"}
    verdict = decide_drift(_results(set()), label, DriftPolicy(label_drift=False), 200, 200)
    assert verdict.drifted is False
    assert verdict.label_drifted is True
    assert any("does not count label drift alone" in reason for reason in verdict.reasons)


def test_lower_share_policy():
    verdict = decide_drift(
        _results({"length", "digit_share"}), None, DriftPolicy(column_drift_share=0.25), 5, 5
    )
    assert verdict.drifted is True
    assert verdict.reasons[0].endswith(">= 25% share")


def test_notes_are_appended_to_reasons():
    results = _results(set())
    results["digit_share"]["note"] = "constant (0) in both batches, not testable; not drifted"
    verdict = decide_drift(results, None, DriftPolicy(), 10, 10)
    assert verdict.reasons[-1] == "digit_share: constant (0) in both batches, not testable; not drifted"


def test_no_columns_fails_closed():
    with pytest.raises(DriftInputError, match="zero columns"):
        decide_drift({}, None, DriftPolicy(), 10, 10)


def test_malformed_result_fails_closed():
    with pytest.raises(DriftInputError, match=r"'length' lacks score"):
        decide_drift({"length": {"drifted": True, "method": "ks"}}, None, DriftPolicy(), 10, 10)


def test_zero_rows_fail_closed():
    with pytest.raises(DriftInputError, match="batch sizes must be positive"):
        decide_drift(_results(set()), None, DriftPolicy(), 0, 10)


def test_to_dict_is_json_safe():
    results = _results({"length"})
    results["word_count"]["score"] = math.nan
    verdict = decide_drift(results, {"drifted": False, "score": 0.5, "method": "z"}, DriftPolicy(), 3, 4)
    out = verdict.to_dict()
    assert out["column_scores"]["word_count"] is None
    # A NaN score is "not evaluated" and fails closed (issue 13, defect 6); it used to read as no drift.
    assert out["drifted"] is True and out["label_drifted"] is False
    assert out["not_evaluated"] == {"word_count": "the statistic is undefined"}
    assert out["column_methods"]["length"] == "ks"
    assert json.loads(json.dumps(out, allow_nan=False))["n_production"] == 4
