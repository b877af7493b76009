"""A consistent tamper of the teacher cache (issue 13, defect 9): shard and manifest record both
rewritten by someone who can write the store. The sha256 manifest cannot see it (the record
matches the new bytes); with a signing key configured, the record's HMAC does."""

from __future__ import annotations

import numpy as np
from fakes import make_rows
from test_teacher_cache_store import _snapshot

from components.cache_teacher_outputs import runner as cache_step
from components.common.config import config_from_dict
from components.common.teacher_outputs import read_teacher_outputs
from components.common.teacher_store import TeacherOutputStore, row_key

KEY_ENV = "DISTILLOPS_SIGNING_KEY"
KEY = b"s" * 32


def _rewrite_consistently(root) -> None:
    """What an attacker without the key can do: new values for the same row keys, a new shard,
    and a manifest record that matches it (the old shard and record removed)."""
    honest = TeacherOutputStore(root)
    records = list(honest.records().values())
    for rec in records:
        keys = [bytes.fromhex(k) for k in rec.keys]
        values = np.stack([honest.get_many(keys)[k] for k in keys])
        honest.put_many(keys, values + 0.5)  # a store opened without the key signs nothing
        (root / "manifest" / f"{rec.sha256}.json").unlink()
        (root / "shards" / f"{rec.sha256}.safetensors").unlink()


def test_a_consistent_tamper_outside_the_fidelity_sample_is_recomputed(home, tmp_path, tiny_teacher, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY.decode())
    cfg = config_from_dict({"cache": {"fidelity_sample": 0}})  # every row is outside the sample
    snap = _snapshot(make_rows(20), tmp_path / "s.jsonl")
    first = cache_step.run(str(home), str(snap), str(tiny_teacher), cfg, str(tmp_path / "o1.safetensors"))
    assert first["teacher_forward_passes"] == 20
    _rewrite_consistently(home / "teacher-cache")
    assert TeacherOutputStore(home / "teacher-cache").verify() == []  # the sha256 manifest is satisfied

    again = cache_step.run(str(home), str(snap), str(tiny_teacher), cfg, str(tmp_path / "o2.safetensors"))
    assert again["teacher_forward_passes"] == 20, "tampered rows were used instead of recomputed"
    assert again["integrity_problems"] and "signature" in again["integrity_problems"][0]
    np.testing.assert_allclose(read_teacher_outputs(tmp_path / "o2.safetensors").logits,
                               read_teacher_outputs(tmp_path / "o1.safetensors").logits, atol=1e-5)
    # The recomputed rows are signed: a third run is quiet and computes nothing.
    third = cache_step.run(str(home), str(snap), str(tiny_teacher), cfg, str(tmp_path / "o3.safetensors"))
    assert third["teacher_forward_passes"] == 0 and third["integrity_problems"] == []


def _keys(name: str) -> list[bytes]:
    return [row_key("t", "tok", 8, "logits", name)]


def test_records_are_signed_and_checked_only_with_a_key(tmp_path):
    TeacherOutputStore(tmp_path, signing_key=KEY).put_many(_keys("a"), np.array([[1.0, 2.0]]))
    TeacherOutputStore(tmp_path).put_many(_keys("b"), np.array([[3.0, 4.0]]))
    # Without a key nothing is checked (the store keeps working for readers that hold no key).
    assert set(TeacherOutputStore(tmp_path).get_many(_keys("a") + _keys("b"))) == set(_keys("a") + _keys("b"))
    # With the key: the signed record reads, the unsigned one is refused (quarantined, recomputed).
    right = TeacherOutputStore(tmp_path, signing_key=KEY)
    assert set(right.get_many(_keys("a") + _keys("b"))) == set(_keys("a"))
    assert len(right.last_problems) == 1 and "has no signature" in str(right.last_problems[0])
    # With another key (a rotated or wrong secret), the signed record is refused too.
    other = TeacherOutputStore(tmp_path, signing_key=b"w" * 32)
    assert other.get_many(_keys("a")) == {}
    assert "signature does not match" in str(other.last_problems[0])
