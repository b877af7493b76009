"""The gate records where it timed the speeds: a refusal on speed on a busy machine says so."""

import os

import pytest
import torch

from components.benchmark_gate import runner
from components.benchmark_gate.core import evaluate_gate, loaded, render_markdown
from components.common.config import GateConfig
from components.distillation.measure import cores_available

TEACHER = {"accuracy": 0.90, "macro_f1": 0.88, "throughput_rows_per_s": 100.0, "latency_p50_ms": 10.0,
           "parameters": 1000, "size_bytes": 4_000_000, "agreement": 1.0}
STUDENT = {**TEACHER, "accuracy": 0.89, "throughput_rows_per_s": 280.0, "latency_p50_ms": 3.0, "parameters": 250,
           "agreement": 0.95}
TEACHER_INT8 = {**TEACHER, "throughput_rows_per_s": 160.0}
BUSY = {"load_average": 4.78, "cores": 2, "threads": 1}
QUIET = {"load_average": 1.1, "cores": 2, "threads": 2}


def _check(result, name):
    return next(c for c in result.checks if c.name == name)


@pytest.mark.parametrize(("speed", "busy"), [(BUSY, True), (QUIET, False), ({**BUSY, "load_average": 2.0}, False),
                                             ({**BUSY, "load_average": None}, False), ({}, False), (None, False)])
def test_loaded_means_more_runnable_work_than_cores(speed, busy):
    assert loaded(speed) is busy


def test_a_speed_refusal_under_load_says_the_machine_was_busy():
    busy = evaluate_gate(STUDENT, TEACHER, None, GateConfig(), TEACHER_INT8, speed=BUSY)
    quiet = evaluate_gate(STUDENT, TEACHER, None, GateConfig(), TEACHER_INT8, speed=QUIET)
    assert not busy.passed and not quiet.passed  # the load never changes the decision, only the message
    assert _check(busy, "speedup").value == _check(quiet, "speedup").value == pytest.approx(2.8)
    note = "[timed under load: load average 4.78 on 2 cores; a quiet machine may read a different speed-up]"
    assert busy.reasons == [f"batch-32 throughput speed-up over the teacher {note}: 2.8000 (required >= 3) FAILED"]
    assert note in _check(busy, "student_speedup_over_int8_teacher").message
    assert "under load" not in render_markdown(quiet, {}) and note in render_markdown(busy, {})
    assert busy.to_dict()["speed"] == BUSY and evaluate_gate(STUDENT, TEACHER, None, GateConfig()).speed == {}


def test_the_runner_records_load_cores_and_threads(monkeypatch):
    monkeypatch.setattr(runner, "load_average", lambda: cores_available() + 3.0)
    speed = runner.speed_context()
    assert speed == {"load_average": cores_available() + 3.0, "cores": cores_available(),
                     "threads": torch.get_num_threads()}
    assert runner.timing_summary(speed).endswith("; loaded: other work stretched the timed calls")
    monkeypatch.setattr(runner, "load_average", lambda: None)
    assert "load average unknown" in runner.timing_summary(runner.speed_context())


def test_cores_available_is_this_process_s_share():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert cores_available() == expected
