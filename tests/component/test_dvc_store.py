import shutil

from components.common import dvc_store
from components.common.hashing import md5_file


def test_add_push_and_materialize_from_the_remote(tmp_path):
    snap = tmp_path / "snap.jsonl"
    snap.write_text('{"label": "x", "split": "train", "text": "hello"}\n')
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    version = dvc_store.add_and_push(repo, str(remote), snap)
    assert version == md5_file(snap)
    assert (remote / "files" / "md5" / version[:2] / version[2:]).is_file()  # really pushed
    assert dvc_store.add_and_push(repo, str(remote), snap) == version  # idempotent

    # Lose the workspace copy and the local cache: the remote alone must bring the version back.
    shutil.rmtree(repo / ".dvc" / "cache")
    (repo / "versions" / version / "dataset.jsonl").unlink()
    out = dvc_store.materialize(repo, str(remote), version, tmp_path / "back.jsonl")
    assert out.read_text() == snap.read_text()


def test_unknown_version_is_a_clear_error(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="data version deadbeef is not known"):
        dvc_store.materialize(tmp_path / "repo", str(tmp_path / "remote"), "deadbeef", tmp_path / "x")


def _dvc(cwd, *args):
    import os
    import subprocess

    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)


def _snapshot(tmp_path):
    snap = tmp_path / "snap.jsonl"
    snap.write_text('{"label": "x", "split": "train", "text": "hello"}\n{"label": "y", "split": "test", "text": "bye"}\n')
    return snap


def test_a_git_clone_of_the_data_repo_pulls_every_version_from_the_remote(tmp_path):
    """The data repo is a git repository whose commits hold each version's .dvc file and the
    remote (named, the default): `git clone` + `dvc pull`, no distillops code, restores the snapshot."""
    import subprocess

    snap = _snapshot(tmp_path)
    repo, remote = tmp_path / "home" / "data-repo", tmp_path / "shared" / "remote"  # a remote outside the home
    version = dvc_store.add_and_push(repo, str(remote), snap)
    clone = tmp_path / "elsewhere" / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    assert "storage" in _dvc(clone, "remote", "default").stdout
    assert str(remote) in _dvc(clone, "remote", "list").stdout  # outside the home: recorded as given
    _dvc(clone, "pull")
    assert md5_file(clone / "versions" / version / "dataset.jsonl") == version
    log = subprocess.run(["git", "log", "--format=%s"], cwd=repo, capture_output=True, text=True).stdout
    assert f"data version {version}" in log
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == ""


def test_a_remote_inside_the_home_is_recorded_relative_and_survives_moving_the_home(tmp_path):
    import subprocess

    snap = _snapshot(tmp_path)
    home = tmp_path / "home"
    version = dvc_store.add_and_push(home / "data-repo", str(home / "dvc-remote"), snap)
    config = (home / "data-repo" / ".dvc" / "config").read_text()
    assert "url = ../../dvc-remote" in config and str(tmp_path) not in config
    moved = tmp_path / "home2"
    home.rename(moved)
    # plain DVC, nothing of distillops: the recorded remote is the moved one
    shutil.rmtree(moved / "data-repo" / ".dvc" / "cache")
    (moved / "data-repo" / "versions" / version / "dataset.jsonl").unlink()
    _dvc(moved / "data-repo", "pull")
    assert md5_file(moved / "data-repo" / "versions" / version / "dataset.jsonl") == version
    # a clone beside the repository resolves the same relative remote
    subprocess.run(["git", "clone", "-q", str(moved / "data-repo"), str(moved / "data-repo-clone")], check=True)
    _dvc(moved / "data-repo-clone", "pull")
    assert md5_file(moved / "data-repo-clone" / "versions" / version / "dataset.jsonl") == version
    # and distillops at the new place neither rewrites nor loses anything
    out = dvc_store.materialize(moved / "data-repo", str(moved / "dvc-remote"), version, tmp_path / "back.jsonl")
    assert out.read_text() == snap.read_text()
    assert (moved / "data-repo" / ".dvc" / "config").read_text() == config


def test_a_no_scm_repository_from_before_becomes_a_git_repository_with_its_versions(tmp_path):
    import os
    import subprocess

    from dvc.repo import Repo

    snap = _snapshot(tmp_path)
    repo, remote = tmp_path / "home" / "data-repo", tmp_path / "home" / "dvc-remote"
    old = repo / "versions" / "v1" / "dataset.jsonl"  # what distillops before issue 17 made: --no-scm
    old.parent.mkdir(parents=True)
    shutil.copy(snap, old)
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    Repo.init(str(repo), no_scm=True)
    Repo(str(repo)).add(str(old))
    assert not (repo / ".git").exists()

    other = tmp_path / "other.jsonl"
    other.write_text('{"label": "z", "split": "train", "text": "new"}\n')
    version = dvc_store.add_and_push(repo, str(remote), other)
    tracked = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True).stdout.split()
    assert "versions/v1/dataset.jsonl.dvc" in tracked and f"versions/{version}/dataset.jsonl.dvc" in tracked
    assert not [t for t in tracked if t.endswith("/dataset.jsonl")]  # snapshots stay out of git
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == ""
