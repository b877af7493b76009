"""Measurement shared by the gate, the teacher step and the benchmarks: accuracy, parameters, size
on disk, and batch-1 latency / batch-32 throughput measured side by side."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score

from components.common.modeling import encode


def accuracy(logits: np.ndarray, label_ids: Sequence[int]) -> float:
    """Share of rows whose highest logit is the gold label (nan for no rows)."""
    if len(label_ids) == 0:
        return float("nan")
    return float(accuracy_score(np.asarray(label_ids), np.asarray(logits).argmax(-1)))


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def size_on_disk(path: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def load_average() -> float | None:
    """The machine's 1-minute load average (runnable processes), None where the platform has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def cores_available() -> int:
    """The CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@torch.inference_mode()
def measure_speeds(models: dict, texts: Sequence[str], latency_samples: int = 32, throughput_batches: int = 3,
                   batch_size: int = 32, distinct_batches: int = 4) -> dict[str, dict[str, float]]:
    """Batch-1 latency (p50, p90, p99 in ms) and batch-32 throughput (rows/s) of several models, side by side.

    `models` maps a name to (model, tokenizer, max_length). Calls alternate between the models, so a
    load spike on a shared machine hits every model alike instead of deciding a speed-up ratio by
    itself. Latency percentiles are over all batch-1 calls (what a caller sees, spikes included).
    Throughput is from the fastest of the `throughput_batches` batch calls: another process on the
    machine can only slow a call down, never speed it up, so the fastest call is the model's own
    speed, and the ratio of two such figures does not depend on which call a spike happened to hit
    (with a median of 3, one slowed student call and two clean teacher calls moved a batch-32
    speed-up from 5.5x to 2.0x in the drift replay).

    `throughput_cpu_rows_per_s` is the same figure from the CPU time the process spent (fastest
    call): wall-clock minima still favour the short calls of a small model under load (a short
    call can fit into one time slice, a long one is always stretched), so with four processes on
    two cores the fastest-call ratio read 4.56x for a student that times 2.30x alone. CPU time is
    not stretched by other processes; callers that decide on a ratio can take the smaller of both.

    Throughput is over up to `distinct_batches` different batches of `batch_size` consecutive texts
    (as many as the texts fill, at least one): rows / the sum of each batch's fastest call. A
    batch is padded to its longest row, and one batch's longest row decides a ratio by itself
    when the two models tokenize differently (a student with a trimmed vocabulary splits a word it
    never saw into more pieces: trec's first test batch, 25 pieces for the teacher and 33 for the
    student, read 2.8x where the first batch of test.jsonl, 15 and 15, read 3.4x).
    """
    texts = list(texts) or ["hello"]
    count = max(1, min(distinct_batches, len(texts) // batch_size))
    batches = [[texts[(b * batch_size + i) % len(texts)] for i in range(batch_size)] for b in range(count)]
    prepared = {}
    for name, (model, tokenizer, max_length) in models.items():
        model.eval()
        model(**encode(tokenizer, texts[:2], max_length))  # warm-up: first call allocates
        prepared[name] = (model, [encode(tokenizer, [texts[i % len(texts)]], max_length)
                                  for i in range(latency_samples)],
                          [encode(tokenizer, batch, max_length) for batch in batches])
    latency = {name: [] for name in models}
    batch_time = {name: [[] for _ in batches] for name in models}
    batch_cpu = {name: [[] for _ in batches] for name in models}
    for i in range(latency_samples):
        for name, (model, singles, _) in prepared.items():
            t0 = time.perf_counter()
            model(**singles[i])
            latency[name].append(time.perf_counter() - t0)
    for _ in range(max(1, throughput_batches)):
        for b in range(count):
            for name, (model, _, encoded) in prepared.items():
                t0, c0 = time.perf_counter(), time.process_time()
                model(**encoded[b])
                batch_time[name][b].append(time.perf_counter() - t0)
                batch_cpu[name][b].append(time.process_time() - c0)
    rows = batch_size * count
    return {name: {**_latency_percentiles(latency[name]),
                   "throughput_rows_per_s": rows / sum(min(t) for t in batch_time[name]),
                   "throughput_cpu_rows_per_s": rows / max(sum(min(t) for t in batch_cpu[name]), 1e-6),
                   "throughput_batches_distinct": count}
            for name in models}


def _latency_percentiles(seconds: list[float]) -> dict[str, float]:
    """p50 (the median), p90 and p99 of the batch-1 calls, in ms (linear interpolation between calls;
    with n calls, p99 is about the slowest of them)."""
    if not seconds:
        return {"latency_p50_ms": float("nan"), "latency_p90_ms": float("nan"), "latency_p99_ms": float("nan")}
    ms = np.asarray(seconds) * 1000
    return {"latency_p50_ms": statistics.median(ms.tolist()), "latency_p90_ms": float(np.percentile(ms, 90)),
            "latency_p99_ms": float(np.percentile(ms, 99))}


def measure_speed(model, tokenizer, texts: Sequence[str], max_length: int, latency_samples: int = 32,
                  throughput_batches: int = 3, batch_size: int = 32, distinct_batches: int = 4) -> dict[str, float]:
    """Batch-1 p50 latency (ms) and batch-32 throughput (rows/s) of one model on this machine."""
    return measure_speeds({"model": (model, tokenizer, max_length)}, texts, latency_samples, throughput_batches,
                          batch_size, distinct_batches)["model"]
