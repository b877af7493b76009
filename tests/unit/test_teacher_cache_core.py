import json
from pathlib import Path

import numpy as np
import pytest

from components.cache_teacher_outputs.core import (
    compare_outputs,
    fidelity_sample,
    flush_size,
    plan_rows,
    shard_rows,
)
from components.common.teacher_store import CacheIntegrityError, TeacherOutputStore, row_key
from components.common.topk import kl_full_vs_topk, topk_compress, topk_log_probs


def keys_for(*texts):
    return [row_key("t", "tok", 8, "logits", t) for t in texts]


def test_row_key_covers_every_part_of_the_identity():
    base = row_key("t1", "tok", 64, "logits", "hello")
    assert row_key("t1", "tok", 64, "logits", "hello") == base
    for variant in (("t2", "tok", 64, "logits", "hello"), ("t1", "tok2", 64, "logits", "hello"),
                    ("t1", "tok", 32, "logits", "hello"), ("t1", "tok", 64, "hidden", "hello"),
                    ("t1", "tok", 64, "logits", "hello!")):
        assert row_key(*variant) != base


def test_store_roundtrip_and_incremental_plan(tmp_path):
    store = TeacherOutputStore(tmp_path)
    texts = ["a", "b", "c"]
    keys = keys_for(*texts)
    assert plan_rows(texts, keys, store.get_many(keys)) == [0, 1, 2]
    store.put_many(keys[:2], np.array([[1.0, 2.0], [3.0, 4.0]]))
    cached = store.get_many(keys)
    assert plan_rows(texts, keys, cached) == [2]
    np.testing.assert_array_equal(cached[keys[1]], [3.0, 4.0])
    # Removing rows recomputes nothing: a subset of the texts is entirely cached.
    assert plan_rows(texts[:2], keys[:2], store.get_many(keys[:2])) == []
    # A new teacher version misses everything.
    new = [row_key("t2", "tok", 8, "logits", t) for t in texts]
    assert plan_rows(texts, new, store.get_many(new)) == [0, 1, 2]


def test_store_accepts_a_file_url(tmp_path):
    store = TeacherOutputStore(f"file://{tmp_path}")
    keys = keys_for("a")
    store.put_many(keys, np.ones((1, 3), dtype=np.float32))
    assert set(TeacherOutputStore(tmp_path).get_many(keys)) == set(keys)


def test_duplicate_texts_are_computed_once(tmp_path):
    keys = keys_for("a", "a", "b")
    assert plan_rows(["a", "a", "b"], keys, {}) == [0, 2]


def test_manifest_records_each_shard_sha256(tmp_path):
    store = TeacherOutputStore(tmp_path)
    shard = Path(store.put_many(keys_for("a", "b"), np.zeros((2, 4))))
    import hashlib

    record = json.loads((tmp_path / "manifest" / f"{shard.stem}.json").read_text())
    assert record["sha256"] == hashlib.sha256(shard.read_bytes()).hexdigest() == shard.stem
    assert record["rows"] == 2 and record["size"] == shard.stat().st_size
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]  # temp files renamed away


def _corrupt_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte inside the values
    path.write_bytes(bytes(data))


def _corrupt_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


def _corrupt_delete(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize("damage,reason", [(_corrupt_flip, "corrupted: sha256"), (_corrupt_truncate, "truncated"),
                                           (_corrupt_delete, "missing")])
def test_damaged_shard_is_detected_reported_and_its_rows_recomputed(tmp_path, caplog, damage, reason):
    store = TeacherOutputStore(tmp_path)
    good, bad = keys_for("good"), keys_for("bad")
    store.put_many(good, np.array([[1.0, 2.0]]))
    shard = Path(store.put_many(bad, np.array([[5.0, 6.0]])))
    damage(shard)

    cached = store.get_many(good + bad)
    assert list(cached) == good  # the damaged row is not used, the intact one is
    assert len(store.last_problems) == 1 and reason in str(store.last_problems[0])
    assert reason in caplog.text
    assert not shard.exists()  # quarantined out of the live set, and out of the manifest
    assert not (tmp_path / "manifest" / f"{shard.stem}.json").exists()
    if damage is not _corrupt_delete:
        assert (tmp_path / "quarantine" / shard.name).exists()
    # The caller recomputes the missing row; afterwards the store is whole and reads are quiet.
    assert plan_rows(["good", "bad"], good + bad, cached) == [1]
    store.put_many(bad, np.array([[5.0, 6.0]]))
    again = store.get_many(good + bad)
    np.testing.assert_array_equal(again[bad[0]], [5.0, 6.0])
    assert store.last_problems == []


def test_verify_checks_every_shard(tmp_path):
    store = TeacherOutputStore(tmp_path)
    store.put_many(keys_for("a"), np.ones((1, 2)))
    _corrupt_flip(Path(store.put_many(keys_for("b"), np.ones((1, 2)))))
    problems = store.verify()
    assert len(problems) == 1 and store.stats()["quarantined_shards"] == 1 and store.stats()["entries"] == 1


def test_bad_values_leave_nothing_behind(tmp_path):
    store = TeacherOutputStore(tmp_path)
    with pytest.raises(ValueError, match="value row 1 .* is not finite"):
        store.put_many(keys_for("a", "b"), np.array([[1.0], [np.nan]]))
    with pytest.raises(ValueError, match="2 keys for values of shape"):
        store.put_many(keys_for("a", "b"), np.ones((3, 2)))
    with pytest.raises(ValueError, match="32-byte"):
        store.put_many([b"short"], np.ones((1, 2)))
    assert store.stats()["shards"] == 0 and not list(tmp_path.rglob("*.safetensors"))


def test_gc_keeps_referenced_rows_and_rewrites_mixed_shards(tmp_path):
    store = TeacherOutputStore(tmp_path)
    a, b, c = keys_for("a", "b", "c")
    store.put_many([a, b], np.array([[1.0], [2.0]]))
    store.put_many([c], np.array([[3.0]]))
    store.record_ref("snap1", [a])
    plan = store.gc(dry_run=True)
    assert plan.rows_removed == 2 and store.stats()["entries"] == 3  # a dry run changes nothing
    result = store.gc()
    assert (result.rows_removed, result.rows_kept) == (2, 1)
    assert set(store.get_many([a, b, c])) == {a}
    np.testing.assert_array_equal(store.get_many([a])[a], [1.0])
    assert store.stats()["entries"] == 1 and store.stats()["shards"] == 1


def test_gc_refuses_to_empty_a_store_without_refs(tmp_path):
    store = TeacherOutputStore(tmp_path)
    store.put_many(keys_for("a"), np.ones((1, 1)))
    with pytest.raises(CacheIntegrityError, match="no snapshot references"):
        store.gc()
    assert store.stats()["entries"] == 1


def test_gc_removes_old_orphan_shards_only(tmp_path):
    store = TeacherOutputStore(tmp_path)
    store.record_ref("snap", keys_for("a"))
    shard = Path(store.put_many(keys_for("a"), np.ones((1, 1))))
    (tmp_path / "manifest" / f"{shard.stem}.json").unlink()  # a writer that died between its two writes
    assert store.gc(orphan_grace_s=3600).orphans_removed == 0 and shard.exists()
    assert store.gc(orphan_grace_s=0).orphans_removed == 1 and not shard.exists()


def test_stats_counts_entries_and_bytes(tmp_path):
    store = TeacherOutputStore(tmp_path)
    store.put_many(keys_for("a", "b"), np.ones((2, 4)))
    store.put_many(keys_for("b", "c"), np.ones((2, 4)))  # "b" twice: one entry, two stored rows
    stats = store.stats()
    assert stats["entries"] == 3 and stats["rows_stored"] == 4 and stats["shards"] == 2
    assert stats["bytes"] == sum(p.stat().st_size for p in (tmp_path / "shards").iterdir())


def test_topk_roundtrip_and_error_shrinks_with_k(tmp_path):
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((6, 500)) * 3).astype(np.float32)
    kls = [float(kl_full_vs_topk(logits, topk_compress(logits, k)).mean()) for k in (1, 8, 64, 500)]
    assert kls[0] > kls[1] > kls[2] > 0 and abs(kls[3]) < 1e-3
    t = topk_compress(logits, 8)
    assert t.logprobs.dtype == np.float16 and t.indices.dtype == np.int32
    assert (t.indices[:, 0] == logits.argmax(-1)).all()
    np.testing.assert_allclose(np.exp(topk_log_probs(t, 500)).sum(-1), 1.0, rtol=1e-6)

    store = TeacherOutputStore(tmp_path)
    keys = keys_for(*"abcdef")
    store.put_topk_many(keys, t)
    got = store.get_topk_many(keys)
    np.testing.assert_array_equal(got[keys[2]].indices[0], t.indices[2])
    assert store.get_many(keys) == {}  # dense and top-k rows never mix
    with pytest.raises(ValueError, match="k=501 must be in 1..500"):
        topk_compress(logits, 501)


def test_fidelity_sample_is_deterministic_and_distinct():
    keys = keys_for(*[str(i) for i in range(50)]) + keys_for("0")
    s1 = fidelity_sample(keys, 10, "teacher-a")
    assert s1 == fidelity_sample(keys, 10, "teacher-a") and len(set(s1)) == 10 and 50 not in s1
    assert fidelity_sample(keys, 10, "teacher-b") != s1
    assert fidelity_sample(keys[:3], 10, "x") == [0, 1, 2]


def test_compare_outputs_names_rows_beyond_tolerance():
    fresh = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert compare_outputs(fresh + 1e-5, fresh, 1e-3, 1e-3) == []
    bad = compare_outputs(fresh + np.array([[0.0, 0.0], [0.0, 0.5]]), fresh, 1e-3, 1e-3)
    assert bad == [(1, 0.5)]


def test_shards_are_balanced_runs_of_whole_batches_in_the_given_order():
    order = [9, 3, 7, 1, 0, 2, 8, 4, 6, 5, 11]  # 11 rows in batch order: batches of 3 = 4 batches
    parts = shard_rows(order, 3, 2)
    assert parts == [[9, 3, 7, 1, 0, 2], [8, 4, 6, 5, 11]]
    assert sum(parts, []) == order  # every row once, order kept
    assert [len(p) for p in shard_rows(order, 3, 3)] == [3, 3, 5]  # sizes differ by at most one batch
    assert shard_rows(order, 3, 9) == [[9, 3, 7], [1, 0, 2], [8, 4, 6], [5, 11]]  # never more shards than batches
    assert shard_rows(order, 3, 1) == [order]
    assert shard_rows([], 3, 4) == []
    with pytest.raises(ValueError, match="must be >= 1"):
        shard_rows(order, 3, 0)


def test_a_flush_never_splits_a_batch():
    assert [flush_size(n, 8) for n in (1, 8, 9, 256)] == [8, 8, 16, 256]
