"""Lineage: what a trained student was made from, stored beside its weights and read back by the
gate and promote (the only module that knows the file's name and shape).

A student directory holds ``distillops.json``: data version, teacher version(s) and reference,
config and its hash, the training run's MLflow id, what training did (rows, best epoch, resume).
:func:`student_task` tells what kind of student a directory holds (a classifier or a causal LM).
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


# What a student's config.json architectures end with, per task.
TASK_ARCHITECTURES = {"classification": "ForSequenceClassification", "generation": "ForCausalLM"}


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


def student_task(model_dir: str | Path) -> str:
    """The task of the student in `model_dir`: "classification" or "generation".

    The model's own config.json decides (its ``architectures``: what is loaded and served, and part
    of the model digest the gate binds its verdict to). What the lineage declares (``task``, and the
    resolved config's ``task``, absent in students from before tasks: classification) must agree
    with it; any disagreement is a LineageError naming both."""
    d = Path(model_dir)
    lineage = read_lineage(d)
    config_path = d / "config.json"
    try:
        architectures = json.loads(config_path.read_text()).get("architectures") or []
    except (OSError, ValueError) as exc:
        raise LineageError(f"{config_path}: cannot be read as a model config ({exc})") from None
    found = sorted({task for task, suffix in TASK_ARCHITECTURES.items()
                    if any(str(a).endswith(suffix) for a in architectures)})
    if len(found) != 1:
        raise LineageError(f"{config_path}: architectures {architectures} name no single task; expected one ending in "
                           + " or ".join(f"{s} ({t})" for t, s in TASK_ARCHITECTURES.items()))
    task = found[0]
    config = lineage.get("config")
    declared = {"the lineage's task": lineage.get("task"),
                "the lineage's resolved config task": config.get("task") if isinstance(config, dict) else None}
    for where, value in declared.items():
        if value is not None and value != task:
            raise LineageError(f"{d / LINEAGE_FILE}: {where} is {value!r}, but {config_path} is a {task} model "
                               f"(architectures {architectures}); the student and its lineage do not belong together")
    return task
