"""The one module that talks to DVC: snapshots are `dvc add`-ed and `dvc push`-ed to a remote.

Layout of the DVC repository (``<home>/data-repo``, a git repository)::

    .dvc/config                        the remote, named ``storage`` and the default (``core.remote``)
    versions/<md5>/dataset.jsonl.dvc   one .dvc file per data version (the handle), committed to git
    versions/<md5>/dataset.jsonl       the snapshot, linked from DVC's cache (git-ignored)

Every data version is a git commit, so ``git clone <home>/data-repo x && cd x && dvc pull`` restores
every snapshot from the remote. The remote is a local directory by default (``<home>/dvc-remote``)
and any DVC URL (``s3://bucket/path``) in production via ``DISTILLOPS_DVC_REMOTE``. A local remote
inside the home is recorded relative to the repository (DVC resolves it from ``.dvc/``), so a home
moved or copied elsewhere as a whole still pulls from its own remote; any other remote is recorded
as given. A repository made by an older distillops (``--no-scm``) becomes a git repository, its
versions committed, the first time it is opened.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import yaml

from components.common.hashing import md5_file
from components.common.io import atomic_copy, file_lock

REMOTE_NAME = "storage"
SNAPSHOT_NAME = "dataset.jsonl"

log = logging.getLogger(__name__)


def _locked(repo_root: Path):
    """Serialise DVC operations of concurrent steps on one repository."""
    repo_root.mkdir(parents=True, exist_ok=True)
    return file_lock(repo_root.parent / f".{repo_root.name}.lock")


def _git(repo_root: Path, *args: str, ok: tuple[int, ...] = (0,)) -> int:
    # Commits need an identity; a machine without git config (a pipeline pod) has none.
    cmd = ["git", "-c", "user.name=distillops", "-c", "user.email=distillops@localhost", *args]
    done = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True)
    if done.returncode not in ok:
        raise RuntimeError(f"{repo_root}: git {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.returncode


def _commit(repo_root: Path, message: str, paths: list[str]) -> None:
    """Commit `paths` (relative to the repository) when they changed; nothing else is staged."""
    existing = [p for p in paths if (repo_root / p).exists()]
    if existing:
        _git(repo_root, "add", "--", *existing)
    if _git(repo_root, "diff", "--cached", "--quiet", ok=(0, 1)) == 1:
        _git(repo_root, "commit", "-q", "-m", message)


_META = [".dvc/config", ".dvc/.gitignore", ".dvcignore"]


def _handles(repo_root: Path) -> list[str]:
    """Every data version's .dvc file and git-ignore file, relative to the repository."""
    found = sorted((repo_root / "versions").glob(f"*/{SNAPSHOT_NAME}.dvc"))
    return [str(p.relative_to(repo_root)) for d in found for p in (d, d.with_name(".gitignore"))]


def remote_setting(repo_root: Path, remote_url: str) -> str:
    """The remote URL as DVC's config editor should get it: a local directory inside the home (the
    repository's parent) as DVC's own RelPath, which it writes relative to ``.dvc/`` (so the home can
    move, the way `dvc remote add` records a relative path); anything else as given."""
    if not _is_local(remote_url):
        return remote_url
    from dvc.config_schema import RelPath

    remote, home = Path(remote_url).resolve(), repo_root.resolve().parent
    return RelPath(str(remote)) if remote.is_relative_to(home) else str(remote)


def _upgrade_no_scm(repo_root: Path) -> None:
    """A repository made with --no-scm (distillops before issue 17): make it a git repository whose
    first commit holds the config and every existing data version's handle."""
    from dvc.repo import Repo

    log.info("%s: making the DVC repository a git repository (its data versions are committed)", repo_root)
    _git(repo_root, "init", "-q")
    (repo_root / ".dvc" / ".gitignore").write_text("/config.local\n/tmp\n/cache\n")
    for dvc_file in sorted((repo_root / "versions").glob(f"*/{SNAPSHOT_NAME}.dvc")):
        dvc_file.with_name(".gitignore").write_text(f"/{SNAPSHOT_NAME}\n")
    repo = Repo(str(repo_root))
    with repo.config.edit() as conf:
        conf["core"]["no_scm"] = False


def _open_repo(repo_root: Path, remote_url: str):
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.repo import Repo

    if not (repo_root / ".dvc").is_dir():
        repo_root.mkdir(parents=True, exist_ok=True)
        _git(repo_root, "init", "-q")
        Repo.init(str(repo_root))
    elif not (repo_root / ".git").exists():
        _upgrade_no_scm(repo_root)
    repo = Repo(str(repo_root))
    with repo.config.edit() as conf:
        conf["core"]["analytics"] = False
        conf["core"]["remote"] = REMOTE_NAME
        conf["remote"][REMOTE_NAME] = {"url": remote_setting(repo_root, remote_url)}
    _commit(repo_root, "distillops: DVC repository and its remote", _META + _handles(repo_root))
    repo.scm_context.quiet = True  # no "to track the changes with git, run ..." hints: we commit them
    return repo


def _dvc_md5(dvc_file: Path) -> str:
    meta = yaml.safe_load(dvc_file.read_text())
    return meta["outs"][0]["md5"]


def _torn(dvc_file: Path) -> bool:
    """A .dvc file that exists but records no output md5 (DVC writes it in place: a kill -9 can leave
    it empty or cut)."""
    if not dvc_file.exists():
        return False
    try:
        return not isinstance(_dvc_md5(dvc_file), str)
    except (yaml.YAMLError, KeyError, IndexError, TypeError, UnicodeDecodeError):
        return True


class DataIntegrityError(RuntimeError):
    """A snapshot whose bytes do not hash to the data version DVC recorded for it."""


def _is_local(remote_url: str) -> bool:
    return not remote_url.startswith(("s3://", "gs://", "azure://", "http://", "https://", "ssh://"))


def _object_path(root: Path, md5: str) -> Path:
    """Where DVC 3 keeps the object of `md5` in a cache or a local remote."""
    return root / "files" / "md5" / md5[:2] / md5[2:]


def remote_object_url(remote_url: str, md5: str) -> str:
    """Where the remote keeps data version `md5` (a path or a URL): the dataset's source as MLflow logs it."""
    if _is_local(remote_url):
        return str(_object_path(Path(remote_url).resolve(), md5))
    return f"{remote_url.rstrip('/')}/files/md5/{md5[:2]}/{md5[2:]}"


def add_and_push(repo_root: str | Path, remote_url: str, snapshot_file: str | Path) -> str:
    """Version `snapshot_file`: dvc add + dvc push. Returns DVC's md5 (the data_version).

    Idempotent: a version already tracked is pushed again (a no-op when the remote has it). DVC's
    cache object is re-hashed first: one altered or lost in the cache (DVC may still call it up to
    date, #9641) is restored from the snapshot in hand, so what is pushed is what was versioned; a
    local remote's object is re-hashed after the push (and pushed again when it does not match).
    """
    repo_root = Path(repo_root)
    if _is_local(remote_url):
        Path(remote_url).mkdir(parents=True, exist_ok=True)
    md5 = md5_file(snapshot_file)
    with _locked(repo_root):
        repo = _open_repo(repo_root, remote_url)
        target = repo_root / "versions" / md5 / SNAPSHOT_NAME
        dvc_file = target.with_name(SNAPSHOT_NAME + ".dvc")
        cached = _object_path(repo_root / ".dvc" / "cache", md5)
        if _torn(dvc_file):
            log.warning("%s is empty or cut (an interrupted dvc add); versioning %s again", dvc_file, snapshot_file)
            target.unlink(missing_ok=True)
            dvc_file.unlink()
        if dvc_file.exists() and (not cached.is_file() or md5_file(cached) != md5):
            log.warning("DVC cache object %s of data version %s is missing or altered; restoring it from %s",
                        cached, md5, snapshot_file)
            cached.unlink(missing_ok=True)
            target.unlink(missing_ok=True)
            dvc_file.unlink()
        if not dvc_file.exists():
            atomic_copy(snapshot_file, target)
            repo.add(str(target))
        handle = [str(p.relative_to(repo_root)) for p in (dvc_file, dvc_file.with_name(".gitignore"))]
        _commit(repo_root, f"data version {md5}", handle)
        repo.push(targets=[str(dvc_file)])
        pushed = _object_path(Path(remote_url), md5)
        if _is_local(remote_url) and pushed.is_file() and md5_file(pushed) != md5:
            # DVC skips an object whose name is on the remote: a torn upload (a push killed on a remote
            # without atomic writes) or an altered object would stay. Replace it.
            log.warning("remote object %s of data version %s does not hash to it; pushing it again", pushed, md5)
            pushed.chmod(0o644)
            pushed.unlink()
            repo.push(targets=[str(dvc_file)])
        version = _dvc_md5(dvc_file)
    if version != md5:
        raise RuntimeError(f"DVC recorded md5 {version} for {snapshot_file}, expected {md5}")
    if _is_local(remote_url) and (not pushed.is_file() or md5_file(pushed) != md5):
        raise DataIntegrityError(f"data version {md5}: the remote object {pushed} is missing or does not hash to "
                                 f"it after dvc push; nothing downstream may use this version")
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
        pull_error = ""
        if not target.exists() or md5_file(target) != data_version:
            from dvc.exceptions import DvcException

            try:
                repo.pull(targets=[str(dvc_file)], force=True)
            except DvcException as exc:  # e.g. a cache object DVC itself found altered: reported below
                pull_error = f" (dvc pull: {exc})"
        # Our own re-hash of what DVC handed back: its cache or remote may hold altered bytes.
        found = md5_file(target) if target.is_file() else "nothing"
        if found != data_version:
            raise DataIntegrityError(f"data version {data_version}: {target} hashes to {found} after dvc pull from "
                                     f"{remote_url}; the DVC cache or remote object was altered or lost{pull_error}")
    return atomic_copy(target, dest)
