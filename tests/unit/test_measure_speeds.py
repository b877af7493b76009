"""measure_speeds: throughput comes from each model's fastest batch call, so a load spike that hits one
model's call does not decide the speed-up ratio."""

from __future__ import annotations

import time

import pytest

from components.distillation import measure


class Sleeper:
    """A "model" whose batch calls take `seconds`, except the ones listed in `slow` (call index -> seconds)."""

    def __init__(self, seconds: float, slow: dict[int, float] | None = None):
        self.seconds, self.slow, self.batch_calls = seconds, slow or {}, 0

    def eval(self):
        return self

    def __call__(self, input_ids):
        if len(input_ids) > 2:  # a batch call (warm-up and batch-1 calls are instant)
            time.sleep(self.slow.get(self.batch_calls, self.seconds))
            self.batch_calls += 1


def test_a_spike_on_one_call_does_not_decide_the_speedup(monkeypatch):
    monkeypatch.setattr(measure, "encode", lambda tokenizer, texts, max_length: {"input_ids": list(texts)})
    teacher = Sleeper(0.08)
    # the student is 4x faster, but a spike makes three of its five calls slower than the teacher's
    student = Sleeper(0.02, slow={0: 0.1, 2: 0.1, 3: 0.1})
    speeds = measure.measure_speeds({"teacher": (teacher, None, 8), "student": (student, None, 8)}, ["a", "b"],
                                    latency_samples=1, throughput_batches=5)
    assert teacher.batch_calls == student.batch_calls == 5
    ratio = speeds["student"]["throughput_rows_per_s"] / speeds["teacher"]["throughput_rows_per_s"]
    assert ratio == pytest.approx(4.0, rel=0.35)


def test_cpu_throughput_is_not_stretched_by_waiting(monkeypatch):
    """A call that waits (another process holds the core) takes wall time but no CPU time of ours."""
    monkeypatch.setattr(measure, "encode", lambda tokenizer, texts, max_length: {"input_ids": list(texts)})
    speeds = measure.measure_speeds({"m": (Sleeper(0.05), None, 8)}, ["a", "b"], latency_samples=1,
                                    throughput_batches=3)
    assert speeds["m"]["throughput_rows_per_s"] < 32 / 0.045
    assert speeds["m"]["throughput_cpu_rows_per_s"] > 10 * speeds["m"]["throughput_rows_per_s"]


class ByLongest:
    """A "model" whose batch call takes `per_char` seconds per character of the batch's longest text."""

    def __init__(self, per_char: float):
        self.per_char, self.batches = per_char, []

    def eval(self):
        return self

    def __call__(self, input_ids):
        if len(input_ids) > 2:
            self.batches.append(tuple(input_ids))
            time.sleep(self.per_char * max(len(t) for t in input_ids))


def test_throughput_is_over_several_distinct_batches(monkeypatch):
    """One long row pads its whole batch: timed over four batches it weighs a quarter, not all of it."""
    monkeypatch.setattr(measure, "encode", lambda tokenizer, texts, max_length: {"input_ids": list(texts)})
    texts = ["x" * 40] + [f"{i:010d}" for i in range(159)]  # 160 rows: 5 batches of 32 fit, 4 are timed
    model = ByLongest(0.001)
    speeds = measure.measure_speeds({"m": (model, None, 8)}, texts, latency_samples=1, throughput_batches=2)
    assert speeds["m"]["throughput_batches_distinct"] == 4 and len(set(model.batches)) == 4
    assert len(model.batches) == 8  # 2 rounds x 4 batches
    # batch times 0.040 + 3 x 0.010 = 0.070 s for 128 rows (one batch alone: 32 rows in 0.040 s)
    assert speeds["m"]["throughput_rows_per_s"] == pytest.approx(128 / 0.070, rel=0.25)
    few = measure.measure_speeds({"m": (ByLongest(0.001), None, 8)}, texts[:40], latency_samples=1,
                                 throughput_batches=1)
    assert few["m"]["throughput_batches_distinct"] == 1
