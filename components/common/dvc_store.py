"""The one module that talks to DVC: snapshots are `dvc add`-ed and `dvc push`-ed to a remote.

Layout of the DVC repository (``<home>/data-repo``, initialised with ``--no-scm``)::

    versions/<md5>/dataset.jsonl.dvc   one .dvc file per data version (the handle)
    versions/<md5>/dataset.jsonl       the snapshot, linked from DVC's cache

The remote is a local directory by default (``<home>/dvc-remote``) and any DVC URL
(``s3://bucket/path``) in production via ``DISTILLOPS_DVC_REMOTE``.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from components.common.hashing import md5_file
from components.common.io import atomic_copy, file_lock

REMOTE_NAME = "storage"
SNAPSHOT_NAME = "dataset.jsonl"


def _locked(repo_root: Path):
    """Serialise DVC operations of concurrent steps on one repository."""
    repo_root.mkdir(parents=True, exist_ok=True)
    return file_lock(repo_root.parent / f".{repo_root.name}.lock")


def _open_repo(repo_root: Path, remote_url: str):
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.repo import Repo

    if not (repo_root / ".dvc").is_dir():
        Repo.init(str(repo_root), no_scm=True)
    repo = Repo(str(repo_root))
    with repo.config.edit() as conf:
        conf["core"]["analytics"] = False
        conf["core"]["remote"] = REMOTE_NAME
        conf["remote"][REMOTE_NAME] = {"url": remote_url}
    return repo


def _dvc_md5(dvc_file: Path) -> str:
    meta = yaml.safe_load(dvc_file.read_text())
    return meta["outs"][0]["md5"]


def add_and_push(repo_root: str | Path, remote_url: str, snapshot_file: str | Path) -> str:
    """Version `snapshot_file`: dvc add + dvc push. Returns DVC's md5 (the data_version).

    Idempotent: a version already tracked is pushed again (a no-op when the remote has it).
    """
    repo_root = Path(repo_root)
    if not remote_url.startswith(("s3://", "gs://", "azure://", "http://", "https://", "ssh://")):
        Path(remote_url).mkdir(parents=True, exist_ok=True)
    md5 = md5_file(snapshot_file)
    with _locked(repo_root):
        repo = _open_repo(repo_root, remote_url)
        target = repo_root / "versions" / md5 / SNAPSHOT_NAME
        dvc_file = target.with_name(SNAPSHOT_NAME + ".dvc")
        if not dvc_file.exists():
            atomic_copy(snapshot_file, target)
            repo.add(str(target))
        repo.push(targets=[str(dvc_file)])
        version = _dvc_md5(dvc_file)
    if version != md5:
        raise RuntimeError(f"DVC recorded md5 {version} for {snapshot_file}, expected {md5}")
    return version


def materialize(repo_root: str | Path, remote_url: str, data_version: str, dest: str | Path) -> Path:
    """Copy the snapshot of `data_version` to `dest`, pulling it from the remote if needed."""
    repo_root = Path(repo_root)
    dvc_file = repo_root / "versions" / data_version / (SNAPSHOT_NAME + ".dvc")
    if not dvc_file.exists():
        raise FileNotFoundError(f"data version {data_version} is not known to the DVC repository {repo_root}")
    with _locked(repo_root):
        repo = _open_repo(repo_root, remote_url)
        target = dvc_file.with_name(SNAPSHOT_NAME)
        if not target.exists() or md5_file(target) != data_version:
            repo.pull(targets=[str(dvc_file)], force=True)
    return atomic_copy(target, dest)
