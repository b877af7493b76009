"""The teacher-output store against real processes, a real S3-compatible server, and the live teacher."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import make_rows, write_jsonl

from components.cache_teacher_outputs import runner as cache_step
from components.common.config import config_from_dict
from components.common.dataset import Snapshot, write_snapshot
from components.common.teacher_store import TeacherOutputStore, row_key

WRITER = """
import sys, numpy as np
from components.common.teacher_store import TeacherOutputStore, row_key
root, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = TeacherOutputStore(root)
for i in range(n):
    keys = [row_key("t", "tok", 8, "logits", f"{who}-{i}-{j}") for j in range(3)]
    store.put_many(keys, np.full((3, 4), float(i), dtype=np.float32))
"""


def test_concurrent_writer_processes_lose_nothing(tmp_path):
    """Four processes write 25 shards each into one store at the same time."""
    root = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), f"w{w}", "25"], env=env)
             for w in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    store = TeacherOutputStore(root)
    keys = [row_key("t", "tok", 8, "logits", f"w{w}-{i}-{j}") for w in range(4) for i in range(25) for j in range(3)]
    got = store.get_many(keys)
    assert len(got) == 300 and store.last_problems == []
    assert store.stats()["shards"] == 100
    assert not [p for p in root.rglob("*") if ".tmp" in p.name]


def _snapshot(rows, path):
    write_snapshot(Snapshot([r["text"] for r in rows], [r["label"] for r in rows], ["train"] * len(rows)), path)
    return path


def test_runner_recomputes_damaged_rows_and_reports_them(home, tmp_path, tiny_teacher):
    cj = config_from_dict({"distill": {"augment_copies": 0}})  # the rows counted are the snapshot's
    snap = _snapshot(make_rows(30), tmp_path / "s.jsonl")
    first = cache_step.run(str(home), str(snap), str(tiny_teacher), cj, str(tmp_path / "o1.safetensors"))
    assert first["teacher_forward_passes"] == 30 and first["fidelity_passes"] == 0
    shard = next((home / "teacher-cache" / "shards").glob("*.safetensors"))
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x01
    shard.write_bytes(bytes(data))
    again = cache_step.run(str(home), str(snap), str(tiny_teacher), cj, str(tmp_path / "o2.safetensors"))
    assert again["teacher_forward_passes"] == 30 and "corrupted" in again["integrity_problems"][0]
    third = cache_step.run(str(home), str(snap), str(tiny_teacher), cj, str(tmp_path / "o3.safetensors"))
    assert third["teacher_forward_passes"] == 0 and third["integrity_problems"] == []
    assert third["fidelity_passes"] == 16


def test_fidelity_check_stops_on_a_tampered_cache(home, tmp_path, tiny_teacher):
    """A cache whose bytes and manifest agree but whose values are not the teacher's (rewritten by
    someone, or left by a teacher that changed without a new version) must stop the run."""
    cj = config_from_dict({"cache": {"fidelity_sample": 30}, "distill": {"augment_copies": 0}})
    rows = make_rows(20)
    snap = _snapshot(rows, tmp_path / "s.jsonl")
    out = cache_step.run(str(home), str(snap), str(tiny_teacher), cj, str(tmp_path / "o.safetensors"))
    store = TeacherOutputStore(home / "teacher-cache")
    keys = list(store.get_many([bytes.fromhex(k) for r in store.records().values() for k in r.keys]))
    values = np.stack([store.get_many(keys)[k] for k in keys])
    shutil.rmtree(home / "teacher-cache")
    TeacherOutputStore(home / "teacher-cache").put_many(keys, values + np.eye(1, values.shape[1]) * 0.5)
    with pytest.raises(cache_step.CacheFidelityError, match=r"20 of 20 sampled cached rows differ .* stale or"):
        cache_step.run(str(home), str(snap), str(tiny_teacher), cj, str(tmp_path / "bad.safetensors"))
    assert not (tmp_path / "bad.safetensors").exists()
    assert out["teacher_forward_passes"] == 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_endpoint(monkeypatch):
    """A real S3-compatible server (moto's standalone server) on loopback, for this test only."""
    pytest.importorskip("s3fs", reason="s3fs is not installed")
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail("moto server did not start")
                time.sleep(0.2)
        for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": url}.items():
            monkeypatch.setenv(k, v)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem(endpoint_url=url).mkdir("distillops-test")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_s3_store_roundtrip_integrity_and_runner(s3_endpoint, home, tmp_path, tiny_teacher):
    import s3fs

    url = "s3://distillops-test/teacher-cache"
    store = TeacherOutputStore(url)
    keys = [row_key("t", "tok", 8, "logits", t) for t in ("a", "b")]
    shard = store.put_many(keys, np.array([[1.0, 2.0], [3.0, 4.0]]))
    np.testing.assert_array_equal(TeacherOutputStore(url).get_many(keys)[keys[1]], [3.0, 4.0])

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    fs.pipe_file(shard, fs.cat_file(shard)[:-5])  # truncate the object in place
    assert store.get_many(keys) == {} and "truncated" in str(store.last_problems[0])
    assert fs.exists(f"distillops-test/teacher-cache/quarantine/{Path(shard).name}")

    # The step itself, with cache.url pointing at the bucket: cold, then all hits.
    cj = config_from_dict({"cache": {"url": "s3://distillops-test/step-cache"}, "distill": {"augment_copies": 0}})
    snap = write_jsonl([{"text": r["text"], "label": r["label"], "split": "train"} for r in make_rows(12)],
                       tmp_path / "s.jsonl")
    cold = cache_step.run(str(home), str(snap), str(tiny_teacher), cj, str(tmp_path / "o1.safetensors"))
    warm = cache_step.run(str(home), str(snap), str(tiny_teacher), cj, str(tmp_path / "o2.safetensors"))
    assert (cold["teacher_forward_passes"], warm["teacher_forward_passes"]) == (12, 0)
    assert TeacherOutputStore("s3://distillops-test/step-cache").stats()["entries"] == 12
