"""The gate's int8 comparison (issue 16): the student's speed-up over the int8-quantized teacher and
the optional int8 student, in the decision and in the reports (pure logic)."""

import pytest

from components.benchmark_gate.core import evaluate_gate, render_markdown
from components.benchmark_gate.report_html import render_html
from components.common.config import ConfigError, GateConfig, config_from_dict

TEACHER = {"accuracy": 0.90, "macro_f1": 0.88, "throughput_rows_per_s": 100.0, "latency_p50_ms": 10.0,
           "parameters": 1000, "size_bytes": 4_000_000, "agreement": 1.0}
STUDENT = {**TEACHER, "accuracy": 0.89, "macro_f1": 0.87, "throughput_rows_per_s": 300.0, "latency_p50_ms": 3.0,
           "parameters": 400, "agreement": 0.95}
TEACHER_INT8 = {**TEACHER, "accuracy": 0.895, "throughput_rows_per_s": 150.0, "agreement": 0.99}  # student: 2x


def _check(result, name):
    return next(c for c in result.checks if c.name == name)


def test_speedup_over_int8_teacher_is_reported_and_not_gated_by_default():
    result = evaluate_gate(STUDENT, TEACHER, None, GateConfig(), teacher_int8=TEACHER_INT8)
    check = _check(result, "student_speedup_over_int8_teacher")
    assert result.passed and check.passed and check.value == pytest.approx(2.0) and check.threshold == 0.0
    assert "reported, not gated" in check.message
    slow = {**STUDENT, "throughput_rows_per_s": 30.0}  # 0.2x the int8 teacher (and fails the fp32 speed-up)
    assert _check(evaluate_gate(slow, TEACHER, None, GateConfig(min_speedup=0.1), teacher_int8=TEACHER_INT8),
                  "student_speedup_over_int8_teacher").passed
    assert "teacher_int8" in result.models


@pytest.mark.parametrize(("threshold", "passes"), [(2.0, True), (1.99, True), (2.01, False)])
def test_speedup_over_int8_teacher_decides_at_its_threshold(threshold, passes):
    result = evaluate_gate(STUDENT, TEACHER, None, GateConfig(min_speedup_over_int8_teacher=threshold),
                           teacher_int8=TEACHER_INT8)
    assert result.passed is passes and _check(result, "student_speedup_over_int8_teacher").passed is passes
    if not passes:
        assert result.reasons == [f"batch-32 throughput speed-up over the int8-quantized teacher: 2.0000 "
                                  f"(required >= {threshold:g}) FAILED"]


def test_without_an_int8_teacher_there_is_no_such_check():
    result = evaluate_gate(STUDENT, TEACHER, None, GateConfig())
    assert {c.name for c in result.checks} == {"accuracy_retention", "speedup", "agreement"}
    assert set(result.models) == {"student", "teacher"}


def test_int8_student_is_informational_and_says_whether_it_keeps_the_retention():
    keeps = {**STUDENT, "accuracy": 0.88, "throughput_rows_per_s": 450.0}  # 0.978 of the teacher
    loses = {**keeps, "accuracy": 0.80}  # 0.889
    ok = evaluate_gate(STUDENT, TEACHER, None, GateConfig(), TEACHER_INT8, keeps)
    bad = evaluate_gate(STUDENT, TEACHER, None, GateConfig(), TEACHER_INT8, loses)
    assert _check(ok, "student_int8_accuracy_retention").passed and "keeps >= 0.97" in ok.checks[-1].message
    check = _check(bad, "student_int8_accuracy_retention")
    assert check.informational and not check.passed and "does not keep >= 0.97" in check.message
    assert bad.passed and bad.reasons == []  # never refuses the student
    assert bad.to_dict()["checks"][-1]["informational"] is True


def test_reports_show_the_int8_teacher_beside_the_student():
    result = evaluate_gate(STUDENT, TEACHER, None, GateConfig(), TEACHER_INT8, {**STUDENT, "accuracy": 0.8})
    md = render_markdown(result, {"data_version": "abc"})
    assert "| metric | student | teacher | teacher_int8 | student_int8 |" in md
    assert "| throughput_rows_per_s | 300.0 | 100.0 | 150.0 | 300.0 |" in md
    assert "✅ batch-32 throughput speed-up over the int8-quantized teacher: 2.0000 (reported, not gated)" in md
    assert "ℹ️ int8 student accuracy" in md
    page = render_html(result, {"data_version": "abc"})
    assert "student_speedup_over_int8_teacher" in page and "teacher_int8" in page


def test_config_defaults_and_a_threshold_without_the_int8_teacher_is_refused():
    gate = GateConfig()
    assert (gate.quantized_teacher, gate.min_speedup_over_int8_teacher, gate.quantized_student) == (True, 0.0, False)
    with pytest.raises(ConfigError, match=r"gate.min_speedup_over_int8_teacher: needs gate.quantized_teacher"):
        config_from_dict({"gate": {"quantized_teacher": False, "min_speedup_over_int8_teacher": 2.0}})
    with pytest.raises(ConfigError, match=r"gate.min_speedup_over_int8_teacher: must be >= 0"):
        config_from_dict({"gate": {"min_speedup_over_int8_teacher": -1.0}})


def test_emitting_the_int8_student_needs_it_measured_and_kept():
    from components.promote.core import int8_decision
    from components.promote.runner import int8_tags

    assert GateConfig().emit_quantized_student is False
    with pytest.raises(ConfigError, match=r"gate.emit_quantized_student: needs gate.quantized_student"):
        config_from_dict({"gate": {"emit_quantized_student": True}})
    kept = evaluate_gate(STUDENT, TEACHER, None, GateConfig(), TEACHER_INT8, {**STUDENT, "accuracy": 0.885}).to_dict()
    lost = evaluate_gate(STUDENT, TEACHER, None, GateConfig(), TEACHER_INT8, {**STUDENT, "accuracy": 0.80}).to_dict()
    for report in (kept, lost):
        report["models"] = {"student_int8": {"accuracy": 0.885 if report is kept else 0.80,
                                             "throughput_rows_per_s": 400.0}}
    yes, no = int8_decision(kept), int8_decision(lost)
    assert yes["emit"] and yes["accuracy"] == 0.885 and yes["accuracy_retention"] == pytest.approx(0.983333, 1e-5)
    assert not no["emit"] and "below 0.97" in no["why"]
    missing = int8_decision({"checks": [], "models": {}})
    assert not missing["emit"] and "gate.quantized_student was off" in missing["why"]
    assert int8_tags(no) == {"int8_emitted": "false", "int8_reason": no["why"], "int8_accuracy": "0.8",
                             "int8_accuracy_retention": "0.888889"}
    assert int8_tags({**yes, "uri": "runs:/r/student_int8"})["int8_model_uri"] == "runs:/r/student_int8"
