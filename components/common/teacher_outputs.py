"""The TeacherOutputs artifact: the teacher's logits aligned with the snapshot's rows.

One safetensors file: tensor ``logits`` [rows, labels]; metadata ``teacher_version`` and
``label_names`` (JSON list, the teacher's id2label order). Feature tensors the configured losses
need ride along under their output kind, e.g. ``pooled:4`` [rows, hidden] (the attention-mask mean
of encoder layer 4's hidden states), and extra teachers' logits (multi-teacher) under ``logits@<k>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


@dataclass(frozen=True)
class TeacherOutputs:
    logits: np.ndarray
    teacher_version: str
    label_names: list[str]
    features: dict[str, np.ndarray] = field(default_factory=dict)


def write_teacher_outputs(outputs: TeacherOutputs, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tensors = {"logits": np.ascontiguousarray(outputs.logits, dtype=np.float32)}
    for kind, value in outputs.features.items():
        if len(value) != len(outputs.logits):
            raise ValueError(f"teacher feature {kind}: {len(value)} rows for {len(outputs.logits)} logit rows")
        tensors[kind] = np.ascontiguousarray(value, dtype=np.float32)
    save_file(tensors, str(tmp),
              metadata={"teacher_version": outputs.teacher_version, "label_names": json.dumps(outputs.label_names)})
    tmp.replace(path)


def read_teacher_outputs(path: str | Path) -> TeacherOutputs:
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
        logits = f.get_tensor("logits")
        features = {k: f.get_tensor(k) for k in f.keys() if k != "logits"}
    return TeacherOutputs(logits, meta["teacher_version"], json.loads(meta["label_names"]), features)
