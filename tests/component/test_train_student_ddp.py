"""train_student under torchrun: 2 CPU processes (gloo, DDP) reach the weights of one process.

Both runs go through the same entry point, `distillops train-student` (pipelines.cli): once in this
process, once as `python -m torch.distributed.run --standalone --nproc-per-node=2 -m pipelines.cli
train-student ...`, the command the Trainer job template runs.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from fakes import make_rows, write_jsonl
from safetensors.numpy import load_file

from components.cache_teacher_outputs import runner as cache_step
from components.common.config import config_from_dict
from components.common.dataset import read_snapshot
from components.distillation.distributed import DistributedConfigError, per_rank_batch, shard
from components.version_data import runner as version_step
from pipelines.cli import main

REPO = Path(__file__).resolve().parents[2]

# The runs are not bit-identical: DDP all-reduces the two ranks' gradients (a sum in another order
# than one batch's backward), each rank's forward runs on half the batch padded to its own longest
# text, and the per-process thread counts differ, so float32 rounding differs: measured max
# |difference| 1.2e-7 over all weights after 2 epochs (15 steps). 1e-4 is far above that rounding
# noise and far below what a wrong shard produces (both ranks on rank 0's rows: 6e-3, measured).
TOLERANCE = 1e-4

CONFIG = {
    # dropout off: with it, each rank draws its own masks, equal in expectation only
    "student": {"init": "config", "config_overrides": {
        "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32, "num_hidden_layers": 2,
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}},
    "distill": {"epochs": 2, "batch_size": 8, "alpha": 0.5, "temperature": 2.0, "learning_rate": 1e-3,
                "log_every": 1},
}


def test_two_process_ddp_matches_one_process(home, tmp_path, tiny_teacher):
    cfg = config_from_dict(CONFIG)
    snap = tmp_path / "s.jsonl"
    v = version_step.run(str(home), str(write_jsonl(make_rows(60), tmp_path / "d.jsonl")),
                         cfg, str(snap))
    n_train = len(read_snapshot(str(snap)).indices("train"))
    # full batches only: a padded last batch repeats rows on one rank, which one process does not
    assert n_train % CONFIG["distill"]["batch_size"] == 0, n_train
    outputs = tmp_path / "t.safetensors"
    cache_step.run(str(home), str(snap), str(tiny_teacher), cfg,
                   str(outputs))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(CONFIG))
    args = ["train-student", "--home", str(home), "--config", str(config_file), "--snapshot", str(snap),
            "--teacher-outputs", str(outputs), "--teacher", str(tiny_teacher), "--data-version", v["data_version"]]

    assert main([*args, "--out", str(tmp_path / "single")]) == 0

    env = {**os.environ, "DISTILLOPS_DDP_BACKEND": "gloo", "DISTILLOPS_PROGRESS": "0", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "pipelines.cli", *args, "--out", str(tmp_path / "ddp")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    single = load_file(tmp_path / "single" / "model.safetensors")
    ddp = load_file(tmp_path / "ddp" / "model.safetensors")
    assert single.keys() == ddp.keys()
    diff = max(float(np.abs(single[k] - ddp[k]).max()) for k in single)
    print(f"max |single - ddp| over {len(single)} tensors: {diff:.3g}")
    assert diff < TOLERANCE
    a = json.loads((tmp_path / "single" / "distillops.json").read_text())
    b = json.loads((tmp_path / "ddp" / "distillops.json").read_text())
    assert (a["best_epoch"], a["best_validation_accuracy"]) == (b["best_epoch"], b["best_validation_accuracy"])
    assert b["parameters"] == a["parameters"]


def test_shards_cover_each_global_batch_and_pad_to_equal_steps():
    order = [7, 3, 9, 0, 5, 1, 8]  # 7 rows, 2 ranks: padded with the first row, 4 each
    a, b = shard(order, 0, 2), shard(order, 1, 2)
    assert (a, b) == ([7, 9, 5, 8], [3, 0, 1, 7])
    # per-rank batch 2 = global batch 4: rank shards of batch j are exactly single-process batch j
    assert sorted(a[:2] + b[:2]) == sorted(order[:4])
    assert shard(order, 0, 1) == order


def test_global_batch_must_split_over_the_ranks():
    assert per_rank_batch(16, 4) == 4
    with pytest.raises(DistributedConfigError, match="batch_size 10 is not divisible by the world size 4"):
        per_rank_batch(10, 4)
