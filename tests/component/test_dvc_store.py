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
