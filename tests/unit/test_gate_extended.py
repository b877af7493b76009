"""The gate's extended checks, measurements, perturbations and HTML report (pure logic)."""

import numpy as np
import pytest

from components.benchmark_gate.core import (
    confusion_matrix,
    evaluate_gate,
    mean_kl,
    per_label_metrics,
    perturb,
)
from components.benchmark_gate.report_html import render_html
from components.common.config import GateConfig

TEACHER = {"accuracy": 0.90, "macro_f1": 0.88, "throughput_rows_per_s": 100.0, "latency_p50_ms": 10.0,
           "parameters": 1000, "size_bytes": 4_000_000, "agreement": 1.0}


def student(**kw):
    base = {**TEACHER, "accuracy": 0.89, "macro_f1": 0.87, "throughput_rows_per_s": 300.0, "latency_p50_ms": 3.0,
            "parameters": 400, "size_bytes": 1_500_000, "agreement": 0.95, "kl_to_teacher": 0.05,
            "robustness": {"typos": 0.85, "truncation": 0.60},
            "labels": {"a": {"support": 10, "recall": 0.9, "f1": 0.9}, "b": {"support": 5, "recall": 0.4, "f1": 0.5}}}
    return {**base, **kw}


def test_zero_thresholds_report_without_gating():
    result = evaluate_gate(student(), TEACHER, None, GateConfig())
    assert result.passed, result.reasons
    assert {c.name for c in result.checks} == {"accuracy_retention", "speedup", "agreement"}


def test_every_extended_check_fails_with_its_numbers_at_once():
    policy = GateConfig(min_accuracy=0.95, min_macro_f1=0.9, min_f1_retention=1.0, max_kl_to_teacher=0.01,
                        min_robust_accuracy_ratio=0.8, max_latency_p50_ms=2.0, max_size_mb=1.0,
                        max_parameters=100, min_label_f1=0.6, max_champion_f1_regression=0.01)
    champion = student(macro_f1=0.95, accuracy=0.89)
    result = evaluate_gate(student(), TEACHER, champion, policy)
    failed = {c.name for c in result.checks if not c.passed}
    assert failed == {"min_accuracy", "min_macro_f1", "f1_retention", "kl_to_teacher", "robustness_truncation",
                      "latency_budget", "size_budget", "parameter_budget", "label_f1[b]", "champion_f1_regression"}
    assert "robustness_typos" not in failed  # 0.85 / 0.89 = 0.955 >= 0.8
    text = " | ".join(result.reasons)
    assert "0.6000 / clean 0.8900" in text and "1.5000" in text and "label 'b'" in text
    assert "0.9500 -> 0.8700" in text


def test_slices_kl_and_confusion():
    pred, gold = np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1])
    slices = per_label_metrics(pred, gold, ["x", "y", "z"])
    assert set(slices) == {"x", "y"} and slices["y"]["support"] == 3 and abs(slices["y"]["recall"] - 1 / 3) < 1e-9
    assert confusion_matrix(pred, gold, 3) == [[1, 0, 0], [1, 1, 1], [0, 0, 0]]
    logits = np.array([[2.0, 0.0], [0.0, 1.0]])
    assert mean_kl(logits, logits) == pytest.approx(0.0, abs=1e-12)
    assert mean_kl(logits, -logits) > 0.5


def test_perturbations_are_deterministic_and_change_the_text():
    texts = ["please refund my broken order today", "where is my parcel"]
    for kind in ("typos", "casing", "whitespace", "truncation"):
        once, twice = perturb(texts, kind, 3), perturb(texts, kind, 3)
        assert once == twice and once != texts, kind
    assert perturb(texts, "truncation", 0) == ["please refund my", "where is"]  # the first half of the words
    with pytest.raises(ValueError, match="unknown perturbation 'emoji'"):
        perturb(texts, "emoji", 0)


def test_html_report_is_self_contained_with_plots():
    result = evaluate_gate(student(), TEACHER, student(accuracy=0.95), GateConfig())
    page = render_html(result, {"data_version": "abc"}, [[3, 1], [0, 4]], ["a", "b"])
    assert page.startswith("<!doctype html>") and '<span class="verdict fail">FAIL</span>' in page
    # check gauges, trade-off, quality, speed, robustness, per-label F1, confusion matrices
    assert page.count("data:image/png;base64,") == 7
    assert "<pre>" not in page and "✅" not in page and "❌" not in page  # real tables, no emoji
    assert page.count("<table") >= 4  # checks, models, labels, confusion
    # the headline says how much smaller and faster: 400 / 1000 parameters, 300 / 100 rows/s
    assert "2.5x fewer" in page and "3.00x faster" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch


def test_html_report_escapes_every_value():
    nasty = "<script>alert(1)</script>"
    # a label matplotlib would parse as (invalid) mathtext must not break the plots
    labels = {nasty: {"support": 3, "recall": 1.0, "f1": 1.0},
              r"$\oops$ refund": {"support": 1, "recall": 1.0, "f1": 1.0}}
    result = evaluate_gate(student(labels=labels), {**TEACHER, "labels": labels}, None, GateConfig())
    page = render_html(result, {"data_version": nasty}, [[3, 0], [0, 1]], [nasty, r"$\oops$ refund"],
                       {"student_vs_teacher": [[3, 0], [0, 1]]})
    assert nasty not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<span class="verdict pass">PASS</span>' in page
