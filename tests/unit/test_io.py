"""Atomic IO: a reader sees the whole new file or the old one; a failed write leaves nothing behind."""

import os

import pytest

from components.common.io import atomic_copy, atomic_dir, atomic_write_text, atomic_writer, file_lock


def test_failed_writes_leave_the_old_content_and_no_temp_files(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_writer(target) as f:
        f.write("half of the new")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.json"]


def test_copy_and_directory_publish_whole(tmp_path):
    atomic_write_text(tmp_path / "a", "data")
    assert atomic_copy(tmp_path / "a", tmp_path / "sub" / "b").read_text() == "data"
    with atomic_dir(tmp_path / "model") as staging:
        (staging / "weights").write_text("v1")
    with pytest.raises(ValueError), atomic_dir(tmp_path / "model") as staging:
        (staging / "weights").write_text("v2, torn")
        raise ValueError("crash")
    assert (tmp_path / "model" / "weights").read_text() == "v1"
    with atomic_dir(tmp_path / "model") as staging:
        (staging / "other").write_text("v3")
    assert sorted(os.listdir(tmp_path / "model")) == ["other"]
    assert sorted(os.listdir(tmp_path)) == ["a", "model", "sub"]


def test_file_lock_is_reentrant_across_calls(tmp_path):
    with file_lock(tmp_path / ".lock"):
        pass
    with file_lock(tmp_path / ".lock"):
        assert (tmp_path / ".lock").exists()
