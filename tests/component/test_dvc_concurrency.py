"""Concurrent DVC operations on one data repository, and the locks a `kill -9` leaves behind
(RELIABILITY.md item 42), with real DVC and a local remote."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from components.common import dvc_store
from components.common.hashing import md5_file

ROOT = Path(__file__).resolve().parents[2]

ADD = """
import os, sys, time
from components.common import dvc_store
go = sys.argv[1]
open(go + "." + str(os.getpid()), "w").close()
while not os.path.exists(go):
    time.sleep(0.01)
start = time.time()
version = dvc_store.add_and_push(sys.argv[2], sys.argv[3], sys.argv[4])
print(version, start, time.time())  # the last line: DVC prints too
"""

# Holds every lock an interrupted add_and_push holds (distillops' flock, DVC's repo lock and its
# rwlock on the target) until it is killed.
HOLD = """
import sys, time
from pathlib import Path
from components.common import dvc_store
from dvc.rwlock import rwlock
root, remote, ready = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
with dvc_store._locked(root):
    repo = dvc_store._open_repo(root, remote)
    with repo.lock, rwlock(repo.tmp_dir, repo.fs, "dvc add (killed)", [], [str(root / "versions")], False):
        open(ready, "w").close()
        time.sleep(600)
"""


def _snapshot(path: Path, text: str) -> Path:
    path.write_text(json.dumps({"label": "x", "split": "train", "text": text}) + "\n")
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "DVC_NO_ANALYTICS": "1"}


def test_two_concurrent_versionings_of_one_repo_both_succeed(tmp_path):
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    snaps = [_snapshot(tmp_path / f"snap{i}.jsonl", f"text {i}") for i in range(2)]
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", ADD, str(go), str(repo), str(remote), str(s)], cwd=ROOT,
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in snaps]
    deadline = time.time() + 120
    while len(list(tmp_path.glob("go.*"))) < 2 and time.time() < deadline:
        time.sleep(0.05)
    go.write_text("go")
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    lines = [out.strip().splitlines()[-1].split() for out, _ in outs]
    assert max(float(x[1]) for x in lines) < min(float(x[2]) for x in lines)  # they really overlapped
    versions = [x[0] for x in lines]
    assert versions == [md5_file(s) for s in snaps]
    # Both on the remote, and both come back from it alone.
    shutil.rmtree(repo / ".dvc" / "cache")
    for version, snap in zip(versions, snaps, strict=True):
        (repo / "versions" / version / dvc_store.SNAPSHOT_NAME).unlink()
        back = dvc_store.materialize(repo, str(remote), version, tmp_path / f"back-{version}.jsonl")
        assert back.read_text() == snap.read_text()


def test_locks_left_by_a_killed_dvc_operation_do_not_block_the_rerun(tmp_path):
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    first = dvc_store.add_and_push(repo, str(remote), _snapshot(tmp_path / "a.jsonl", "a"))
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(repo), str(remote), str(ready)], cwd=ROOT, env=_env(),
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while not ready.exists() and holder.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ready.exists(), holder.stderr.read() if holder.poll() is not None else "holder not ready"
    rwlock = repo / ".dvc" / "tmp" / "rwlock"
    assert str(holder.pid) in rwlock.read_text()  # the killed operation's claim is on disk
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    assert (repo / ".dvc" / "tmp" / "lock").exists() and str(holder.pid) in rwlock.read_text()  # stale

    snap = _snapshot(tmp_path / "b.jsonl", "b")
    started = time.time()
    second = dvc_store.add_and_push(repo, str(remote), snap)  # neither waits forever nor fails
    assert time.time() - started < 120
    assert second == md5_file(snap) != first
    assert str(holder.pid) not in rwlock.read_text()  # the dead process's claim was dropped
    assert dvc_store.add_and_push(repo, str(remote), snap) == second  # and the rerun is idempotent
    (repo / "versions" / second / dvc_store.SNAPSHOT_NAME).unlink()
    shutil.rmtree(repo / ".dvc" / "cache")
    assert dvc_store.materialize(repo, str(remote), second, tmp_path / "back.jsonl").read_text() == snap.read_text()
