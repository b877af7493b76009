import numpy as np

from components.cache_teacher_outputs.core import TeacherOutputStore, plan_rows, row_key


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
    keys = [row_key("t", "tok", 8, "logits", t) for t in texts]
    assert plan_rows(texts, keys, store.get_many(keys)) == [0, 1, 2]
    store.put_many(keys[:2], np.array([[1.0, 2.0], [3.0, 4.0]]))
    cached = store.get_many(keys)
    assert plan_rows(texts, keys, cached) == [2]
    np.testing.assert_array_equal(cached[keys[1]], [3.0, 4.0])


def test_duplicate_texts_are_computed_once(tmp_path):
    keys = [row_key("t", "tok", 8, "logits", t) for t in ("a", "a", "b")]
    assert plan_rows(["a", "a", "b"], keys, {}) == [0, 2]


def test_corrupted_shard_is_detected_and_ignored(tmp_path, caplog):
    store = TeacherOutputStore(tmp_path)
    keys = [row_key("t", "tok", 8, "logits", "a")]
    shard = store.put_many(keys, np.array([[1.0, 2.0]]))
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF  # same size, one flipped byte
    shard.write_bytes(bytes(data))
    assert store.get_many(keys) == {}
    assert "corrupted" in caplog.text
