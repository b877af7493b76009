"""The generative gate's pure checks (benchmark_gate/lm_core.py): a passing student, each check failing
with its numbers in the reason, every failure reported at once, the champion's regression, and the
thresholds at 0 that report without gating; the Markdown of a report escapes user text."""

from __future__ import annotations

import dataclasses
import math

import pytest

from components.benchmark_gate.lm_core import evaluate_lm_gate, lm_compression, speed_table
from components.benchmark_gate.lm_report import render_lm_markdown
from components.common.config import ConfigError, GateConfig, config_from_dict

TEACHER = {"rouge_l": 1.0, "exact_match": 1.0, "token_agreement": 1.0, "token_kl": 0.0, "teacher_nll": 0.40,
           "tokens_per_s_batch1": 20.0, "ttft_ms_batch1": 40.0, "tokens_per_s_batch8": 120.0,
           "ttft_ms_batch8": 90.0, "parameters": 134_515_008, "size_bytes": 538_000_000,
           "references": 4, "reference_rouge_l": 0.30}
STUDENT = {"rouge_l": 0.41, "exact_match": 0.05, "token_agreement": 0.71, "token_kl": 0.62, "teacher_nll": 1.30,
           "tokens_per_s_batch1": 52.0, "ttft_ms_batch1": 15.0, "tokens_per_s_batch8": 300.0,
           "ttft_ms_batch8": 35.0, "parameters": 56_000_000, "size_bytes": 224_000_000,
           "references": 4, "reference_rouge_l": 0.27}


def _student(**changes):
    return {**STUDENT, **changes}


def _check(result, name):
    return next(c for c in result.checks if c.name == name)


def test_a_good_student_passes_with_the_defaults():
    result = evaluate_lm_gate(STUDENT, TEACHER, None, GateConfig())
    assert result.passed and result.reasons == []
    names = [c.name for c in result.checks]
    assert names == ["lm_rouge_l", "lm_exact_match", "lm_token_agreement", "lm_token_kl", "lm_nll_excess",
                     "lm_reference_retention", "lm_speedup_batch1", "lm_speedup_batch8", "lm_parameter_fraction"]
    assert math.isclose(_check(result, "lm_nll_excess").value, 0.9)
    assert math.isclose(_check(result, "lm_speedup_batch1").value, 2.6)
    assert math.isclose(_check(result, "lm_parameter_fraction").value, round(56_000_000 / 134_515_008, 6))
    assert set(result.models) == {"teacher", "student"}


@pytest.mark.parametrize(("name", "change", "number", "required"), [
    ("lm_rouge_l", {"rouge_l": 0.20}, "0.2000", "required >= 0.25"),
    ("lm_token_agreement", {"token_agreement": 0.31}, "0.3100", "required >= 0.5"),
    ("lm_nll_excess", {"teacher_nll": 2.5}, "2.1000", "required <= 1.5"),
    ("lm_speedup_batch1", {"tokens_per_s_batch1": 30.0}, "1.5000", "required >= 2"),
    ("lm_parameter_fraction", {"parameters": 80_000_000}, "0.5947", "required <= 0.45"),
])
def test_each_failing_check_refuses_with_its_number(name, change, number, required):
    result = evaluate_lm_gate(_student(**change), TEACHER, None, GateConfig())
    assert not result.passed
    assert len(result.reasons) == 1
    assert result.reasons[0] == _check(result, name).message
    assert number in result.reasons[0] and required in result.reasons[0] and "FAILED" in result.reasons[0]


def test_every_failure_is_reported_at_once():
    bad = _student(rouge_l=0.1, token_agreement=0.2, teacher_nll=3.0, tokens_per_s_batch1=21.0,
                   parameters=100_000_000)
    policy = GateConfig(lm_min_exact_match=0.2, lm_max_token_kl=0.5, lm_min_reference_retention=0.95,
                        lm_min_speedup_batch8=3.0)
    result = evaluate_lm_gate(bad, TEACHER, {"rouge_l": 0.5}, policy)
    failed = sorted(c.name for c in result.checks if not c.passed)
    assert failed == sorted(["lm_rouge_l", "lm_exact_match", "lm_token_agreement", "lm_token_kl", "lm_nll_excess",
                             "lm_reference_retention", "lm_speedup_batch1", "lm_speedup_batch8",
                             "lm_parameter_fraction", "lm_champion_regression"])
    assert len(result.reasons) == 10
    retention = _check(result, "lm_reference_retention")
    assert "student 0.2700 / teacher 0.3000" in retention.message and math.isclose(retention.value, 0.9)


def test_champion_regression():
    within = evaluate_lm_gate(STUDENT, TEACHER, {"rouge_l": 0.425}, GateConfig())
    assert within.passed and "champion" in within.models
    assert math.isclose(_check(within, "lm_champion_regression").value, 0.015)
    worse = evaluate_lm_gate(STUDENT, TEACHER, {"rouge_l": 0.45}, GateConfig())
    assert not worse.passed
    assert worse.reasons == [_check(worse, "lm_champion_regression").message]
    assert "0.4500 -> 0.4100" in worse.reasons[0] and "required <= 0.02" in worse.reasons[0]
    # A better student than the champion: a negative drop passes even with no drop allowed.
    assert evaluate_lm_gate(STUDENT, TEACHER, {"rouge_l": 0.3}, GateConfig(lm_max_champion_regression=0.0)).passed


def test_thresholds_at_zero_report_without_gating():
    zero = GateConfig(lm_min_rouge_l=0, lm_min_token_agreement=0, lm_max_nll_excess=0, lm_min_speedup=0,
                      lm_max_parameter_fraction=0)
    awful = _student(rouge_l=0.0, token_agreement=0.0, token_kl=9.0, teacher_nll=11.0, tokens_per_s_batch1=1.0,
                     tokens_per_s_batch8=1.0, parameters=10**9, reference_rouge_l=0.0)
    result = evaluate_lm_gate(awful, TEACHER, None, zero)
    assert result.passed
    for c in result.checks:
        assert c.passed and "(reported, not gated)" in c.message, c
    assert math.isclose(_check(result, "lm_token_kl").value, 9.0)
    assert math.isclose(_check(result, "lm_speedup_batch1").value, 0.05)


def test_references_absent_means_no_reference_check():
    no_refs = {k: v for k, v in STUDENT.items() if k not in ("references", "reference_rouge_l")}
    result = evaluate_lm_gate(no_refs, TEACHER, None, GateConfig(lm_min_reference_retention=0.9))
    assert "lm_reference_retention" not in [c.name for c in result.checks]


def test_an_unmeasured_number_fails_closed_and_a_missing_one_is_named():
    result = evaluate_lm_gate(_student(token_agreement=float("nan")), TEACHER, None, GateConfig())
    assert not result.passed and "nan" in _check(result, "lm_token_agreement").message
    speedless = dict(TEACHER, tokens_per_s_batch1=0.0)
    assert not evaluate_lm_gate(STUDENT, speedless, None, GateConfig()).passed
    with pytest.raises(ValueError, match=r"student card lacks \['teacher_nll'\]"):
        evaluate_lm_gate({k: v for k, v in STUDENT.items() if k != "teacher_nll"}, TEACHER, None, GateConfig())


def test_compression_and_speed_table():
    c = lm_compression(STUDENT, TEACHER)
    assert math.isclose(c["speedup_batch1"], 2.6) and math.isclose(c["speedup_batch8"], 2.5)
    assert math.isclose(c["ttft_speedup_batch1"], 40 / 15) and math.isclose(c["size_ratio"], 224 / 538)
    rows = speed_table({"teacher": TEACHER, "student": STUDENT})
    assert [(r["model"], r["batch_size"]) for r in rows] == [("teacher", 1), ("student", 1), ("teacher", 8),
                                                             ("student", 8)]
    assert rows[1]["speedup_vs_teacher"] == 2.6 and rows[3]["ttft_ms"] == 35.0


def test_lm_gate_keys_are_validated():
    cfg = config_from_dict({"gate": {"lm_min_rouge_l": 0.4, "lm_min_speedup": 3.0}})
    assert (cfg.gate.lm_min_rouge_l, cfg.gate.lm_min_speedup) == (0.4, 3.0)
    with pytest.raises(ConfigError) as err:
        config_from_dict({"gate": {"lm_min_rouge_l": 1.5, "lm_max_nll_excess": -1, "lm_speed_repeats": 0}})
    for text in ("gate.lm_min_rouge_l: expected a share in [0, 1], got 1.5",
                 "gate.lm_max_nll_excess: must be >= 0", "gate.lm_speed_repeats: must be >= 1, got 0"):
        assert text in str(err.value)
    assert dataclasses.asdict(GateConfig())["lm_max_parameter_fraction"] == 0.45


def test_markdown_escapes_user_text():
    result = evaluate_lm_gate(STUDENT, TEACHER, None, GateConfig())
    report = {**result.to_dict(), "compression": lm_compression(STUDENT, TEACHER),
              "speed": speed_table(result.models), "context": {"task": "generation"},
              "samples": [{"prompt": "<script>alert(1)</script> a|b\nline", "reference": None, "teacher": "hi",
                           "student": "<b>x</b>", "student_rouge_l": 0.0}]}
    md = render_lm_markdown(report)
    assert "<script>" not in md and "&lt;script&gt;alert(1)&lt;/script&gt; a\\|b<br>line" in md
    assert "&lt;b&gt;x&lt;/b&gt; (0.00)" in md
    assert "PASSED" in md and "| batch-1 generated tokens/s | 20.0 | 52.0 |" in md


def test_flat_metrics_for_mlflow_and_kfp():
    from components.benchmark_gate.lm_core import flat_metrics

    result = evaluate_lm_gate(_student(token_kl=float("nan")), TEACHER, {"rouge_l": 0.4, "note": "x"}, GateConfig())
    report = {**result.to_dict(), "compression": lm_compression(STUDENT, TEACHER)}
    m = flat_metrics(report)
    assert m["student_rouge_l"] == 0.41 and m["teacher_tokens_per_s_batch8"] == 120.0 and m["champion_rouge_l"] == 0.4
    assert m["student_speedup_batch1"] == 2.6 and math.isclose(m["check_lm_nll_excess"], 0.9)
    assert "student_token_kl" not in m and "check_lm_token_kl" not in m and "champion_note" not in m
