"""Reliability checklist A6, B13, B14 (docs/reliability.md) against real DVC and a local remote:
a push killed midway, an object altered in DVC's cache or on the remote, and `dvc gc`.

"A fresh clone" is a new DVC repository holding only the version's ``.dvc`` file (what a clone
carries; `git clone` of the data repo itself is tested in test_dvc_store.py); its snapshot comes from
the remote alone and is checked with an independent sha256.
"""

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes import make_rows, write_jsonl

from components.common import dvc_store

ROOT = Path(__file__).parents[2]


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _object(root: Path, md5: str) -> Path:
    return root / "files" / "md5" / md5[:2] / md5[2:]


def _fresh_clone_pull(repo: Path, remote: Path, version: str, tmp_path: Path) -> Path:
    clone = tmp_path / f"clone-{time.monotonic_ns()}"
    handle = Path("versions", version, "dataset.jsonl.dvc")
    (clone / handle).parent.mkdir(parents=True)
    shutil.copy(repo / handle, clone / handle)
    return dvc_store.materialize(clone, str(remote), version, tmp_path / f"pulled-{clone.name}.jsonl")


def _overwrite(path: Path, data: bytes) -> None:
    path.chmod(0o644)  # DVC makes cache and remote objects read-only
    path.write_bytes(data)


# --- 6: a push killed midway --------------------------------------------------------------------

PUSHER = """
import sys
from components.common import dvc_store
dvc_store.add_and_push(sys.argv[1], sys.argv[2], sys.argv[3])
"""


def test_push_killed_midway_then_rerun_completes_and_a_fresh_clone_matches(tmp_path):
    snap = tmp_path / "snap.jsonl"
    line = b'{"label": "x", "split": "train", "text": "' + b"y" * 1000 + b'"}\n'
    snap.write_bytes(line * 40_000)  # 40 MB: the push takes long enough to be cut
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", PUSHER, str(repo), str(remote), str(snap)], env=env)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline and not list((repo / ".dvc" / "cache").rglob("*")):
        time.sleep(0.01)
    time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    version = dvc_store.add_and_push(repo, str(remote), snap)  # the rerun
    assert _sha256(_object(remote, version)) == _sha256(snap)
    assert _sha256(_fresh_clone_pull(repo, remote, version, tmp_path)) == _sha256(snap)


def test_a_torn_remote_object_is_pushed_again(tmp_path):
    snap = write_jsonl(make_rows(50), tmp_path / "snap.jsonl")
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    version = dvc_store.add_and_push(repo, str(remote), snap)
    # What a killed upload leaves on a remote without atomic writes: the object's name, half its bytes.
    _overwrite(_object(remote, version), snap.read_bytes()[:100])
    assert dvc_store.add_and_push(repo, str(remote), snap) == version  # the rerun
    assert _sha256(_object(remote, version)) == _sha256(snap)
    assert _sha256(_fresh_clone_pull(repo, remote, version, tmp_path)) == _sha256(snap)


# --- 13: an object altered in DVC's cache (or on the remote) -----------------------------------


def test_an_altered_cache_object_is_not_pushed_and_is_restored(tmp_path):
    snap = write_jsonl(make_rows(50), tmp_path / "snap.jsonl")
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    version = dvc_store.add_and_push(repo, str(remote), snap)
    _object(remote, version).unlink()  # a new remote, or one that lost the object
    _overwrite(_object(repo / ".dvc" / "cache", version), b'{"label": "x", "split": "train", "text": "evil"}\n')
    assert dvc_store.add_and_push(repo, str(remote), snap) == version
    assert _sha256(_object(remote, version)) == _sha256(snap)
    assert _sha256(_object(repo / ".dvc" / "cache", version)) == _sha256(snap)


def test_altered_bytes_handed_back_by_dvc_are_refused_on_read(tmp_path):
    snap = write_jsonl(make_rows(50), tmp_path / "snap.jsonl")
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    version = dvc_store.add_and_push(repo, str(remote), snap)
    evil = b'{"label": "x", "split": "train", "text": "evil"}\n'
    _overwrite(_object(repo / ".dvc" / "cache", version), evil)
    _overwrite(_object(remote, version), evil)
    (repo / "versions" / version / "dataset.jsonl").unlink()
    dest = tmp_path / "back.jsonl"
    with pytest.raises(dvc_store.DataIntegrityError,
                       match=rf"data version {version}: .*dataset.jsonl hashes to ([0-9a-f]{{32}}|nothing) after dvc pull"):
        dvc_store.materialize(repo, str(remote), version, dest)
    assert not dest.exists()


# --- 14: dvc gc --------------------------------------------------------------------------------


def test_gc_in_a_clone_leaves_the_champions_data_on_the_remote(tmp_path):
    from dvc.repo import Repo

    repo, remote = tmp_path / "repo", tmp_path / "remote"
    champion = dvc_store.add_and_push(repo, str(remote), write_jsonl(make_rows(40), tmp_path / "a.jsonl"))
    newer = dvc_store.add_and_push(repo, str(remote), write_jsonl(make_rows(60), tmp_path / "b.jsonl"))
    # A clone that checked out only the newer version, then collected its workspace garbage.
    clone = tmp_path / "clone"
    shutil.copytree(repo, clone, ignore=shutil.ignore_patterns("dataset.jsonl"))
    shutil.rmtree(clone / "versions" / champion)
    with Repo(str(clone)) as r:
        r.gc(workspace=True, force=True)
    assert not _object(clone / ".dvc" / "cache", champion).exists()  # gc did remove it locally
    assert _object(remote, champion).is_file() and _object(remote, newer).is_file()
    assert _sha256(_fresh_clone_pull(repo, remote, champion, tmp_path)) == _sha256(tmp_path / "a.jsonl")


def test_no_automation_runs_gc_against_the_remote():
    scanned = [p for folder in ("components", "pipelines", "infra", "benchmarks", ".ci") if (ROOT / folder).exists()
               for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in ("", ".py", ".sh", ".yaml", ".yml")]
    assert scanned, "nothing scanned: the list of folders is stale"
    cloud_gc = re.compile(r"dvc\s+gc\b[^\n]*(--cloud|\s-[a-zA-Z]*c)|\.gc\([^)]*cloud\s*=\s*True|\"gc\"[^\n]*\"(--cloud|-c)\"")
    offenders = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in scanned for m in cloud_gc.finditer(p.read_text())]
    assert offenders == []
    # the pattern does catch what it is for
    assert cloud_gc.search("dvc gc -w --cloud") and cloud_gc.search("repo.gc(workspace=True, cloud=True)")


@pytest.mark.parametrize("torn", ["", "outs:\n- md5: 12", "outs:\n- md5: \"ab"])
def test_a_dvc_file_left_empty_or_cut_by_a_kill_is_versioned_again(tmp_path, torn):
    """DVC writes the .dvc file in place: a kill -9 in `dvc add` can leave it empty or cut. The rerun
    versions the snapshot again instead of failing on the torn file (found by the killed-push test)."""
    snap = tmp_path / "snap.jsonl"
    snap.write_text('{"label": "x", "split": "train", "text": "hello"}\n')
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    version = dvc_store.add_and_push(repo, str(remote), snap)
    dvc_file = repo / "versions" / version / (dvc_store.SNAPSHOT_NAME + ".dvc")
    dvc_file.write_text(torn)

    assert dvc_store.add_and_push(repo, str(remote), snap) == version
    assert dvc_store._dvc_md5(dvc_file) == version
    assert _sha256(_fresh_clone_pull(repo, remote, version, tmp_path)) == _sha256(snap)
