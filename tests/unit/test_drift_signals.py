"""Distillation-specific drift signals and the redistillation data merge (pure logic)."""

import numpy as np
import pytest

from components.monitor_drift.core import (
    DriftInputError,
    DriftPolicy,
    combine_signals,
    decide_drift,
    disagreement_result,
    validate_embeddings,
)
from components.prepare_redistill.core import merge_rows

NO_DRIFT = {"drifted": False, "score": 0.5, "method": "ks"}


def quiet_verdict():
    return decide_drift({"length": NO_DRIFT, "word_count": NO_DRIFT}, NO_DRIFT, DriftPolicy(), 100, 100)


def test_disagreement_growth_alone_is_drift():
    d = disagreement_result([0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 1, 0, 2], [1, 1, 2, 2, 2], max_increase=0.1)
    assert (d["reference"], d["production"], d["drifted"]) == (0.0, 0.6, True)
    out = combine_signals(quiet_verdict(), None, d)
    assert out["drifted"] and out["signals"] == ["teacher_student_disagreement"]
    assert any("60.0% on 5 production inputs vs 0.0%" in r for r in out["reasons"])


def test_embedding_signal_and_no_signal():
    emb = {"drifted": True, "score": 0.93, "threshold": 0.55, "method": "domain_classifier_roc_auc"}
    assert combine_signals(quiet_verdict(), emb, None)["signals"] == ["embeddings"]
    out = combine_signals(quiet_verdict(), {**emb, "drifted": False, "score": 0.5}, None)
    assert not out["drifted"] and any("embeddings did not drift" in r for r in out["reasons"])


def test_degenerate_embeddings_fail_closed():
    with pytest.raises(DriftInputError, match=r"production embeddings row 1 dimension 0 is nan"):
        validate_embeddings(np.array([[1.0, 2.0], [np.nan, 1.0]]), "production")
    with pytest.raises(DriftInputError, match="identical for all 3 rows"):
        validate_embeddings(np.ones((3, 4)), "production")
    with pytest.raises(DriftInputError, match="shape"):
        validate_embeddings(np.zeros((0, 4)), "reference")
    with pytest.raises(DriftInputError, match="0 student and 0 teacher"):
        disagreement_result([1], [1], [], [], 0.1)


def test_merge_keeps_human_labels_and_adds_teacher_labelled_rows():
    merged = merge_rows([("a", "x"), ("b", "y")], [("b", "z"), ("c", "x"), ("c", "x"), ("d", "y"), ("e", "y")],
                        max_added=2)
    assert merged.rows == [{"text": "a", "label": "x", "label_source": "gold"},
                           {"text": "b", "label": "y", "label_source": "gold"},
                           {"text": "c", "label": "x", "label_source": "teacher"},
                           {"text": "d", "label": "y", "label_source": "teacher"}]
    assert (merged.kept, merged.added, merged.already_present) == (2, 2, 2)
    with pytest.raises(ValueError, match="redistill_max_rows"):
        merge_rows([], [], -1)
