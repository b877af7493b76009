"""Lineage: what a trained student was made from, stored beside its weights and read back by the
gate and promote (the only module that knows the file's name and shape).

A student directory holds ``distillops.json``: data version, teacher version(s) and reference,
config and its hash, the training run's MLflow id, what training did (rows, best epoch, resume).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.common.hashing import model_digest
from components.common.io import atomic_write_text

LINEAGE_FILE = "distillops.json"
REQUIRED = ("data_version", "teacher_version", "teacher_ref", "config_hash", "mlflow_run_id")
# What a gate verdict is bound to besides the model digest: the student's lineage that promote checks.
BOUND_LINEAGE = ("data_version", "teacher_version", "config_hash")


class LineageError(ValueError):
    """A model directory without usable lineage (not written by train_student, or damaged)."""


def write_lineage(model_dir: str | Path, lineage: dict[str, Any]) -> Path:
    missing = [k for k in REQUIRED if k not in lineage]
    if missing:
        raise LineageError(f"lineage for {model_dir} lacks {missing}")
    return atomic_write_text(Path(model_dir) / LINEAGE_FILE, json.dumps(lineage, indent=2, sort_keys=True))


def read_lineage(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / LINEAGE_FILE
    if not path.is_file():
        raise LineageError(f"{model_dir}: no {LINEAGE_FILE}; expected a student directory written by train_student")
    try:
        lineage = json.loads(path.read_text())
    except ValueError as exc:
        raise LineageError(f"{path}: not valid JSON ({exc})") from None
    missing = [k for k in REQUIRED if k not in lineage] if isinstance(lineage, dict) else list(REQUIRED)
    if missing:
        raise LineageError(f"{path}: lineage lacks {missing}")
    return lineage


def bound_context(model_dir: str | Path) -> dict[str, str]:
    """What a gate report binds its verdict to: the student's model digest (weights, config,
    tokenizer) and the lineage fields promote checks (data, teacher and config versions).
    The gate writes it into the report's context; promote recomputes it over what it registers."""
    lineage = read_lineage(model_dir)
    return {"model_digest": model_digest(model_dir), **{k: str(lineage[k]) for k in BOUND_LINEAGE}}
