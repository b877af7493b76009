"""The TeacherOutputs artifact: the teacher's logits aligned with the snapshot's rows.

One safetensors file: tensor ``logits`` [rows, labels]; metadata ``teacher_version`` and
``label_names`` (JSON list, the teacher's id2label order).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


@dataclass(frozen=True)
class TeacherOutputs:
    logits: np.ndarray
    teacher_version: str
    label_names: list[str]


def write_teacher_outputs(outputs: TeacherOutputs, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({"logits": np.ascontiguousarray(outputs.logits, dtype=np.float32)}, str(tmp),
              metadata={"teacher_version": outputs.teacher_version, "label_names": json.dumps(outputs.label_names)})
    tmp.replace(path)


def read_teacher_outputs(path: str | Path) -> TeacherOutputs:
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
        logits = f.get_tensor("logits")
    return TeacherOutputs(logits, meta["teacher_version"], json.loads(meta["label_names"]))
