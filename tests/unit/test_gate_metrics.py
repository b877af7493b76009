"""The gate's classification metrics (sklearn.metrics underneath) against values worked out by hand
on a small fixture: a label never predicted, a label predicted but absent from gold, a label absent
from both (left out of macro-F1 and of the slices), and a prediction outside the labels."""

import math

import numpy as np

from components.benchmark_gate.core import classification_metrics, confusion_matrix, per_label_metrics
from components.distillation.measure import accuracy

NAMES = ["a", "b", "c", "d", "e"]
GOLD = np.array([0, 0, 0, 1, 1, 2, 2])
# a: tp 2, fp 1, fn 1 | b: tp 1, fp 2, fn 1 | c: never predicted (tp 0, fn 2) | d: predicted once, never gold
# e: absent from both
PRED = np.array([0, 0, 1, 1, 3, 0, 1])


def test_accuracy_and_macro_f1_by_hand():
    m = classification_metrics(PRED, GOLD, len(NAMES))
    assert m["accuracy"] == 3 / 7
    # macro-F1 over a, b, c, d (e is absent from gold and predictions): (4/6 + 2/5 + 0 + 0) / 4
    assert math.isclose(m["macro_f1"], (4 / 6 + 2 / 5) / 4, rel_tol=1e-15)
    assert classification_metrics(np.array([1, 1]), np.array([1, 1]), 3) == {"accuracy": 1.0, "macro_f1": 1.0}
    empty = classification_metrics(np.array([], dtype=int), np.array([], dtype=int), 3)
    assert math.isnan(empty["accuracy"]) and empty["macro_f1"] == 0.0


def test_per_label_slices_by_hand():
    slices = per_label_metrics(PRED, GOLD, NAMES)
    assert slices == {"a": {"support": 3, "recall": 2 / 3, "f1": 4 / 6},
                      "b": {"support": 2, "recall": 1 / 2, "f1": 2 / 5},
                      "c": {"support": 2, "recall": 0.0, "f1": 0.0}}  # never predicted; d, e: no gold rows
    assert all(type(s["support"]) is int and type(s["f1"]) is float for s in slices.values())  # JSON-ready


def test_confusion_matrix_by_hand():
    assert confusion_matrix(PRED, GOLD, len(NAMES)) == [[2, 1, 0, 0, 0],
                                                        [0, 1, 0, 1, 0],
                                                        [1, 1, 0, 0, 0],
                                                        [0, 0, 0, 0, 0],
                                                        [0, 0, 0, 0, 0]]
    # rows gold, columns predicted; a prediction outside the labels is dropped
    assert confusion_matrix(np.array([0, 9]), np.array([0, 1]), 2) == [[1, 0], [0, 0]]
    assert confusion_matrix(np.array([0]), np.array([0]), 1) == [[1]]


def test_accuracy_from_logits():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    assert accuracy(logits, [0, 1, 1, 2]) == 0.5
    assert math.isnan(accuracy(logits, []))
