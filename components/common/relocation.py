"""A home that was moved (`mv home home2`) or copied keeps working: the one place that knows which
absolute paths a home's stores recorded, and rewrites them.

What records absolute paths, and what happens to each:

- MLflow's sqlite store (``<home>/mlflow.db``) records ``file://`` URIs: the experiment's artifact
  location, each run's artifact URI, each logged model's artifact location, each model version's
  source and storage location. The experiment's artifact location (``file://<home>/mlartifacts``,
  set by ``registry.connect``) is the marker: when it is not the current home's, the home moved,
  and every URI under the old home is rewritten to the new one in one sqlite transaction (one log
  line). Nothing else changes: tags, params, ledger records and the audit log's hash chain are not
  paths of the store and stay byte for byte, so ``distillops audit verify`` still passes.
- The DVC repository records its remote relative to itself (``dvc_store``), so it needs nothing.
- The kfp.local task cache is keyed by the home's path (a DAG parameter): the first run after a move
  recomputes its steps instead of reusing outputs under the old path (the teacher-output store is
  content-addressed, so no row reaches the teacher again).
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from pathlib import Path

from components.common.io import file_lock

log = logging.getLogger(__name__)

# (table, column) pairs that hold artifact URIs in MLflow's sqlite schema (MLflow 2 and 3)
URI_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
               ("logged_models", "artifact_location"), ("model_versions", "source"),
               ("model_versions", "storage_location"))
ARTIFACTS_DIR = "mlartifacts"


def _recorded_root(db: sqlite3.Connection, experiment: str) -> str | None:
    """The home's root URI as the store recorded it (``file:///old/home``), or None."""
    row = db.execute("SELECT artifact_location FROM experiments WHERE name = ?", (experiment,)).fetchone()
    suffix = "/" + ARTIFACTS_DIR
    if not row or not isinstance(row[0], str) or not row[0].startswith("file://") or not row[0].endswith(suffix):
        return None
    return row[0][: -len(suffix)]


def _columns(db: sqlite3.Connection) -> list[tuple[str, str]]:
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    present = []
    for table, column in URI_COLUMNS:
        if table in tables and column in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
            present.append((table, column))
    return present


def _rewrite(db: sqlite3.Connection, old: str, new: str) -> int:
    """Replace the prefix `old` by `new` in every URI column where it is a whole path prefix."""
    changed = 0
    for table, column in _columns(db):
        cur = db.execute(
            f"UPDATE {table} SET {column} = ? || substr({column}, ?) "  # noqa: S608 (names from URI_COLUMNS)
            f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
            (new, len(old) + 1, old, len(old) + 1, old + "/"))
        changed += cur.rowcount
    return changed


def relocate_mlflow_store(root: Path, experiment: str) -> int:
    """If the sqlite store at ``<root>/mlflow.db`` was written at another path, rewrite its artifact
    URIs to `root`; return how many values changed (0: not moved, or no store yet)."""
    db_path = root / "mlflow.db"
    if not db_path.is_file():
        return 0
    new = root.as_uri()
    with closing(sqlite3.connect(db_path, timeout=60)) as db:
        old = _recorded_root(db, experiment)
    if old is None or old == new:
        return 0
    with file_lock(root / ".relocate.lock"):
        db = sqlite3.connect(db_path, timeout=60, isolation_level=None)  # waits for a writer
        try:
            db.execute("BEGIN IMMEDIATE")  # one transaction: all URIs move, or none
            old = _recorded_root(db, experiment)
            if old is None or old == new:  # another process relocated it meanwhile
                db.execute("ROLLBACK")
                return 0
            changed = _rewrite(db, old, new)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()
    log.warning("the home moved from %s to %s: rewrote %d artifact locations in %s", old, new, changed, db_path)
    return changed
