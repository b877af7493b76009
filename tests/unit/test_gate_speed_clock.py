"""The gate's speed clock (gate.speed_clock): on a loaded machine the speed-ups are decided on CPU
time, timed on one thread, and every report says which clock decided and why."""

import os

import pytest
import torch

from components.benchmark_gate import runner
from components.benchmark_gate.core import compression, evaluate_gate, render_markdown, speed_clock
from components.benchmark_gate.report_html import render_html
from components.common.config import ConfigError, GateConfig, config_from_dict
from components.distillation.measure import cores_available, torch_threads

# Wall clock stretched by other processes (2.5x); CPU time is the models' own cost (3.4x).
TEACHER = {"accuracy": 0.90, "macro_f1": 0.88, "throughput_rows_per_s": 100.0, "throughput_cpu_rows_per_s": 120.0,
           "latency_p50_ms": 10.0, "parameters": 1000, "size_bytes": 4_000_000, "agreement": 1.0}
STUDENT = {**TEACHER, "accuracy": 0.89, "throughput_rows_per_s": 250.0, "throughput_cpu_rows_per_s": 408.0,
           "latency_p50_ms": 3.0, "parameters": 250, "agreement": 0.95}
TEACHER_INT8 = {**TEACHER, "throughput_rows_per_s": 160.0, "throughput_cpu_rows_per_s": 204.0}
LOADED = {"clock": "cpu", "setting": "auto", "load_average": 4.5, "cores": 2, "threads": 1}


def _check(result, name):
    return next(c for c in result.checks if c.name == name)


@pytest.mark.parametrize(("setting", "load", "cores", "clock"), [
    ("auto", 4.5, 2, "cpu"), ("auto", 2.0, 2, "wall"), ("auto", 1.2, 2, "wall"), ("auto", None, 2, "wall"),
    ("auto", 9.0, 16, "wall"), ("wall", 9.0, 2, "wall"), ("cpu", 0.1, 2, "cpu")])
def test_auto_takes_cpu_time_only_when_the_load_exceeds_the_cores(setting, load, cores, clock):
    assert speed_clock(setting, load, cores) == clock


def test_a_loaded_gate_decides_the_speedup_on_cpu_time_and_says_so():
    wall = evaluate_gate(STUDENT, TEACHER, None, GateConfig())
    loaded = evaluate_gate(STUDENT, TEACHER, None, GateConfig(), speed=LOADED)
    assert not wall.passed and _check(wall, "speedup").value == pytest.approx(2.5)
    check = _check(loaded, "speedup")
    assert loaded.passed and check.value == pytest.approx(3.4)
    assert "CPU time on 1 thread: load average 4.50 on 2 cores; wall clock 2.50x" in check.message
    assert loaded.to_dict()["speed"]["clock"] == "cpu" and wall.to_dict()["speed"] == {"clock": "wall"}


def test_the_cpu_clock_also_decides_the_speedup_over_the_int8_teacher_and_the_headlines():
    policy = GateConfig(min_speedup_over_int8_teacher=2.0)
    assert not evaluate_gate(STUDENT, TEACHER, None, policy, teacher_int8=TEACHER_INT8).passed  # wall: 1.5625x
    result = evaluate_gate(STUDENT, TEACHER, None, policy, teacher_int8=TEACHER_INT8, speed=LOADED)
    assert result.passed and _check(result, "student_speedup_over_int8_teacher").value == pytest.approx(2.0)
    c = compression(STUDENT, TEACHER, TEACHER_INT8, "cpu")
    assert c["throughput_speedup"] == pytest.approx(3.4) and c["throughput_speedup_over_int8_teacher"] == 2.0
    assert "3.40x its batch-32 throughput" in render_markdown(result, {})
    page = render_html(result, {"test_rows": 10}, None, None)
    assert "3.40x faster" in page and "of CPU time, one thread (the machine was loaded)" in page


def test_a_card_without_cpu_time_cannot_be_decided_on_it():
    wall_only = {k: v for k, v in STUDENT.items() if k != "throughput_cpu_rows_per_s"}
    with pytest.raises(TypeError):  # a gate run always measures both; a hand-built card must too
        evaluate_gate(wall_only, TEACHER, None, GateConfig(), speed=LOADED)


def test_speed_clock_must_be_known():
    with pytest.raises(ConfigError, match="gate.speed_clock: expected 'auto', 'wall' or 'cpu', got 'cpus'"):
        config_from_dict({"gate": {"speed_clock": "cpus"}})
    assert GateConfig().speed_clock == "auto"


def test_the_runner_times_on_one_thread_when_loaded_and_restores_the_threads(monkeypatch):
    monkeypatch.setattr(runner, "load_average", lambda: cores_available() + 3.0)
    loaded = runner.speed_context("auto")
    assert loaded["clock"] == "cpu" and loaded["threads"] == 1 and loaded["cores"] == cores_available()
    assert "CPU time, 1 thread (gate.speed_clock: auto; load average" in runner._timing_summary(loaded)
    monkeypatch.setattr(runner, "load_average", lambda: 0.0)
    quiet = runner.speed_context("auto")
    assert quiet["clock"] == "wall" and quiet["threads"] == torch.get_num_threads()
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_cores_available_is_this_process_s_share():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert cores_available() == expected
