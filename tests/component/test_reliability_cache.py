"""Reliability checklist A5 and B9-B12 (docs/reliability.md): the teacher-output cache after a crash,
against malformed shards, stale keys, misaligned rows and non-finite values.

"Consistent" damage below rewrites a shard *and* its manifest record, so the sha256 check passes and
only the checks behind it can catch it (the case of a record rewritten along with its shard).
"""

import hashlib
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from fakes import make_rows, make_tiny_teacher
from safetensors.numpy import load, save

from components.cache_teacher_outputs import runner as cache_step
from components.common.config import config_from_dict
from components.common.dataset import Snapshot, write_snapshot
from components.common.teacher_outputs import (
    TeacherOutputs,
    TeacherOutputsError,
    check_aligned,
    read_teacher_outputs,
    write_teacher_outputs,
)
from components.common.teacher_store import CacheIntegrityError, TeacherOutputStore, row_key
from components.common.teachers import tokenizer_id
from components.common.topk import topk_compress
from components.train_student import runner as train_step

ROOT = Path(__file__).parents[2]


def _snapshot(rows, path):
    write_snapshot(Snapshot([r["text"] for r in rows], [r["label"] for r in rows], ["train"] * len(rows)), path)
    return path


def _keys(*texts, version="t"):
    return [row_key(version, "tok", 8, "logits", t) for t in texts]


def _rewrite_consistently(root: Path, shard: Path, data: bytes, rows: int | None = None) -> Path:
    """Replace `shard` by `data` and its manifest record by one that matches the new bytes."""
    record = json.loads((root / "manifest" / f"{shard.stem}.json").read_text())
    (root / "manifest" / f"{shard.stem}.json").unlink()
    shard.unlink()
    sha = hashlib.sha256(data).hexdigest()
    new = root / "shards" / f"{sha}.safetensors"
    new.write_bytes(data)
    record.update(sha256=sha, size=len(data), rows=record["rows"] if rows is None else rows)
    (root / "manifest" / f"{sha}.json").write_text(json.dumps(record))
    return new


# --- 5: kill -9 during teacher-output generation ------------------------------------------------

WRITER = """
import sys, numpy as np
from components.common.teacher_store import TeacherOutputStore, row_key
store = TeacherOutputStore(sys.argv[1])
i = 0
while True:  # until killed
    keys = [row_key("t", "tok", 8, "logits", f"row-{i}-{j}") for j in range(50)]
    store.put_many(keys, np.random.default_rng(i).normal(size=(50, 512)).astype(np.float32))
    i += 1
"""


def test_sigkilled_writer_leaves_only_whole_shards(tmp_path):
    root = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], env=env)
    deadline = time.time() + 60
    while len(list((root / "manifest").glob("*.json"))) < 5 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-stream: likely between a shard's bytes and its record
    proc.wait(timeout=30)
    store = TeacherOutputStore(root)
    records = store.records()
    assert len(records) >= 5
    listed = [bytes.fromhex(k) for r in records.values() for k in r.keys]
    got = store.get_many(listed)
    assert store.last_problems == [] and len(got) == len(listed)
    # Every stored row is exactly what the writer computed (no partial shard is ever listed).
    for i in range(len(records)):
        keys = [row_key("t", "tok", 8, "logits", f"row-{i}-{j}") for j in range(50)]
        want = np.random.default_rng(i).normal(size=(50, 512)).astype(np.float32)
        np.testing.assert_array_equal(np.stack([got[k] for k in keys]), want)
    # A row of the shard being written when killed is missing, not half there.
    unlisted = [row_key("t", "tok", 8, "logits", f"row-{len(records)}-{j}") for j in range(50)]
    assert store.get_many(unlisted) == {}


def test_rerun_after_a_kill_computes_only_missing_rows_and_never_reuses_a_partial_shard(home, tmp_path,
                                                                                        tiny_teacher):
    cfg = config_from_dict({})
    rows = make_rows(30)
    full = _snapshot(rows, tmp_path / "full.jsonl")
    # The killed run: shards for the first 18 rows are complete (shard + record) ...
    first = cache_step.run(str(home), str(_snapshot(rows[:18], tmp_path / "part.jsonl")), str(tiny_teacher), cfg,
                           str(tmp_path / "part.safetensors"))
    assert first["teacher_forward_passes"] == 18
    # ... and the shard of the other 12 was cut off: truncated bytes at the final name with no record
    # (a store on a filesystem without atomic rename), plus the temp file of the atomic writer.
    store_root = home / "teacher-cache"
    scratch = TeacherOutputStore(tmp_path / "scratch")
    cold = cache_step.run(str(home / "cold"), str(full), str(tiny_teacher), cfg, str(tmp_path / "cold.safetensors"))
    cold_out = read_teacher_outputs(tmp_path / "cold.safetensors")
    tail_keys = [row_key(first["teacher_version"], tokenizer_id(tiny_teacher),
                         cfg.teacher.max_length, "logits", r["text"]) for r in rows[18:]]
    partial = Path(scratch.put_many(tail_keys, np.full((12, cold_out.logits.shape[1]), 9.0, np.float32)))
    (store_root / "shards" / partial.name).write_bytes(partial.read_bytes()[:-40])
    (store_root / "shards" / f".{partial.name}.0123456789ab.tmp").write_bytes(partial.read_bytes()[:100])

    again = cache_step.run(str(home), str(full), str(tiny_teacher), cfg, str(tmp_path / "again.safetensors"))
    assert again["teacher_forward_passes"] == 12 and again["integrity_problems"] == []
    assert cold["teacher_forward_passes"] == 30
    out = read_teacher_outputs(tmp_path / "again.safetensors")
    np.testing.assert_allclose(out.logits, cold_out.logits, rtol=1e-5, atol=1e-6)  # not the planted 9.0s
    assert not (out.logits == 9.0).any()


# --- 9: malformed shards -------------------------------------------------------------------------


def _one_shard(tmp_path):
    store = TeacherOutputStore(tmp_path)
    keys = _keys("a", "b", "c")
    shard = Path(store.put_many(keys, np.arange(12, dtype=np.float32).reshape(3, 4)))
    return store, keys, shard


def test_shard_with_trailing_bytes_is_refused_before_it_is_read(tmp_path, monkeypatch):
    store, keys, shard = _one_shard(tmp_path)
    with open(shard, "ab") as f:
        f.write(b"\0" * (8 << 20))  # 8 MB appended
    size = shard.stat().st_size
    reads = []
    real_cat = store.fs.cat_file
    monkeypatch.setattr(store.fs, "cat_file", lambda path, *a, **k: reads.append(path) or real_cat(path, *a, **k))
    assert store.get_many(keys) == {}
    assert f"truncated or resized: {size} bytes" in str(store.last_problems[0])
    assert [r for r in reads if "/shards/" in str(r)] == []  # refused on its size: the 8 MB were never read into memory


@pytest.mark.parametrize("damage,reason", [
    (lambda d: struct.pack("<Q", 2 ** 63) + d[8:], "header too large"),
    (lambda d: d[:-8], "incomplete metadata, file not fully covered"),
    (lambda d: d + b"trailing", "incomplete metadata, file not fully covered"),
    (lambda d: b"\xff" * 8 + b"{}", "header too large"),
])
def test_malformed_shard_whose_record_was_rewritten_is_quarantined_quickly(tmp_path, damage, reason):
    store, keys, shard = _one_shard(tmp_path)
    bad = _rewrite_consistently(tmp_path, shard, damage(shard.read_bytes()))
    tracemalloc.start()
    started = time.perf_counter()
    got = store.get_many(keys)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert got == {} and len(store.last_problems) == 1
    assert f"not a readable safetensors file (Error while deserializing: {reason})" in str(store.last_problems[0])
    assert elapsed < 2.0 and peak < 16 << 20  # no attempt to allocate the 2^63-byte header
    assert (tmp_path / "quarantine" / bad.name).exists() and store.records() == {}


# --- 10: a change of teacher, tokenizer, max length or data is a miss; temperature is not --------


def test_every_part_of_the_teacher_identity_misses_the_cache(home, tmp_path, tiny_teacher):
    rows = make_rows(12)
    snap = _snapshot(rows, tmp_path / "s.jsonl")
    cfg = config_from_dict({"cache": {"fidelity_sample": 0}})

    def run(teacher, cfg=cfg, snapshot=snap):
        return cache_step.run(str(home), str(snapshot), str(teacher), cfg, str(tmp_path / "o.safetensors"))

    base = run(tiny_teacher)
    assert base["teacher_forward_passes"] == 12 and run(tiny_teacher)["teacher_forward_passes"] == 0
    base_logits = read_teacher_outputs(tmp_path / "o.safetensors").logits

    # Another revision of the teacher (new weights under the same directory name).
    retrained = make_tiny_teacher(tmp_path / "v2" / tiny_teacher.name, seed=7)
    moved = run(retrained)
    assert moved["teacher_forward_passes"] == 12 and moved["teacher_version"] != base["teacher_version"]
    assert not np.allclose(read_teacher_outputs(tmp_path / "o.safetensors").logits, base_logits)

    # The same weights with another tokenizer (a token added to its configuration).
    retok = tmp_path / "retok"
    shutil.copytree(tiny_teacher, retok)
    conf = json.loads((retok / "tokenizer_config.json").read_text())
    conf["model_max_length"] = 33
    (retok / "tokenizer_config.json").write_text(json.dumps(conf))
    assert run(retok)["teacher_forward_passes"] == 12

    # Another max length.
    assert run(tiny_teacher, config_from_dict({"teacher": {"max_length": 16}}))["teacher_forward_passes"] == 12

    # Another data version: only the changed row is computed (keys are per row content, never position).
    edited = [dict(r) for r in rows]
    edited[4]["text"] = edited[4]["text"] + " changed"
    random.Random(0).shuffle(edited)
    assert run(tiny_teacher, snapshot=_snapshot(edited, tmp_path / "s2.jsonl"))["teacher_forward_passes"] == 1

    # The temperature is applied in the loss, not stored: the raw logits are rightly reused.
    warm = run(tiny_teacher, config_from_dict({"cache": {"fidelity_sample": 0}, "distill": {"temperature": 7.0}}))
    assert warm["teacher_forward_passes"] == 0


def test_dense_and_topk_rows_never_answer_for_each_other(tmp_path):
    store = TeacherOutputStore(tmp_path)
    dense_keys, topk_keys = _keys("a", "b"), _keys("a", "b", version="t-top8")
    store.put_many(dense_keys, np.ones((2, 16), np.float32))
    store.put_topk_many(topk_keys, topk_compress(np.random.default_rng(0).normal(size=(2, 16)), 8))
    assert store.get_topk_many(dense_keys) == {} and store.get_many(topk_keys) == {}
    assert set(store.get_many(dense_keys)) == set(dense_keys) and set(store.get_topk_many(topk_keys)) == set(topk_keys)


# --- 11: rows that do not line up ----------------------------------------------------------------


def test_shard_whose_rows_do_not_match_its_record_is_quarantined(tmp_path):
    cases = {
        "reordered": lambda t: {**t, "keys": t["keys"][::-1].copy()},
        "float64": lambda t: {**t, "values": t["values"].astype(np.float64)},
        "row count": lambda t: {"keys": t["keys"][:2].copy(), "values": t["values"][:2].copy()},
        "no values": lambda t: {"keys": t["keys"]},
    }
    reasons = {"reordered": "row keys differ from the manifest's", "float64": "tensor 'values' is float64",
               "row count": "keys uint8 [2, 32], manifest says 3 rows", "no values": "tensor 'values' is missing"}
    for name, change in cases.items():
        root = tmp_path / name.replace(" ", "-")
        store, keys, shard = _one_shard(root)
        _rewrite_consistently(root, shard, save(change(load(shard.read_bytes())), metadata={"format": "dense"}))
        assert store.get_many(keys) == {}, name
        assert reasons[name] in str(store.last_problems[0]), (name, str(store.last_problems[0]))


def test_cached_rows_of_another_width_stop_the_cache_step(home, tmp_path, tiny_teacher):
    rows = make_rows(10)
    snap = _snapshot(rows, tmp_path / "s.jsonl")
    cfg = config_from_dict({"cache": {"fidelity_sample": 0}})
    first = cache_step.run(str(home), str(snap), str(tiny_teacher), cfg, str(tmp_path / "o.safetensors"))
    store = TeacherOutputStore(home / "teacher-cache")
    keys = [bytes.fromhex(k) for r in store.records().values() for k in r.keys]
    shutil.rmtree(home / "teacher-cache")
    # Rows under this teacher's keys, but 5 wide: the teacher has 3 labels (a vocabulary mismatch).
    TeacherOutputStore(home / "teacher-cache").put_many(keys, np.zeros((len(keys), 5), np.float32))
    with pytest.raises(CacheIntegrityError, match=r"logits rows of shapes \[\(5,\)\] .* expected \(3,\)"):
        cache_step.run(str(home), str(snap), str(tiny_teacher), cfg, str(tmp_path / "bad.safetensors"))
    assert not (tmp_path / "bad.safetensors").exists() and first["teacher_forward_passes"] == 10


def test_outputs_of_shuffled_rows_are_refused_by_training(home, tmp_path, tiny_teacher):
    rows = make_rows(30)
    snap = _snapshot(rows, tmp_path / "s.jsonl")
    cfg = config_from_dict({"student": {"shape": "manual", "layers": [0, 1]}, "distill": {"epochs": 1}})
    cache_step.run(str(home), str(snap), str(tiny_teacher), cfg, str(tmp_path / "o.safetensors"))
    shuffled = list(rows)
    random.Random(1).shuffle(shuffled)
    other = _snapshot(shuffled, tmp_path / "shuffled.jsonl")  # same rows, same count, another order
    with pytest.raises(TeacherOutputsError, match="other texts or another row order"):
        train_step.run(str(home), str(other), str(tmp_path / "o.safetensors"), str(tiny_teacher), cfg, "v",
                       str(tmp_path / "student"), "h")
    assert not (tmp_path / "student").exists()


def test_check_aligned_reports_every_mismatch_at_once():
    texts = ["a", "b", "c"]
    bad = TeacherOutputs(np.array([[0.0, np.nan], [1.0, 2.0], [np.inf, 0.0]], np.float32), "t", ["x", "y", "z"],
                         {"pooled:1": np.zeros((2, 4), np.float32)}, texts_sha256="0" * 64)
    with pytest.raises(TeacherOutputsError) as err:
        check_aligned(bad, texts, "o.safetensors")
    message = str(err.value)
    for part in ("logits have 2 columns for 3 labels", "other texts or another row order",
                 "pooled:1: 2 rows for 3 logit rows", "logits: 2 rows hold NaN or Inf", "o.safetensors"):
        assert part in message


# --- 12: NaN / Inf in teacher outputs ------------------------------------------------------------


def test_non_finite_teacher_rows_are_never_stored(tmp_path):
    store = TeacherOutputStore(tmp_path)
    with pytest.raises(ValueError, match=r"value row 1 \(key [0-9a-f]+\.\.\.\) is not finite; nothing was stored"):
        store.put_many(_keys("a", "b", "c"), np.array([[1.0, 2.0], [np.inf, 0.0], [np.nan, 1.0]]))
    assert store.stats()["shards"] == 0


def test_non_finite_rows_smuggled_into_a_shard_are_counted_and_recomputed(tmp_path):
    store, keys, shard = _one_shard(tmp_path)
    tensors = load(shard.read_bytes())
    tensors["values"][1, 2] = np.nan
    tensors["values"][2, 0] = -np.inf
    _rewrite_consistently(tmp_path, shard, save(tensors, metadata={"format": "dense"}))
    assert store.get_many(keys) == {}
    assert "tensor 'values' has 2 rows with NaN or Inf" in str(store.last_problems[0])


def test_teacher_outputs_artifact_with_nan_is_refused(tmp_path):
    texts = ["a", "b"]
    path = tmp_path / "o.safetensors"
    write_teacher_outputs(TeacherOutputs(np.array([[0.0, np.nan], [1.0, 2.0]], np.float32), "t", ["x", "y"]), path)
    with pytest.raises(TeacherOutputsError, match="logits: 1 rows hold NaN or Inf"):
        check_aligned(read_teacher_outputs(path), texts, path)
