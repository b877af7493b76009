"""The TeacherOutputs artifact: the teacher's logits aligned with the snapshot's rows.

One safetensors file: tensor ``logits`` [rows, labels]; metadata ``teacher_version`` and
``label_names`` (JSON list, the teacher's id2label order). Feature tensors the configured losses
need ride along under their output kind, e.g. ``pooled:4`` [rows, hidden] (the attention-mask mean
of encoder layer 4's hidden states), and extra teachers' logits (multi-teacher) under ``logits@<k>``.

With transfer-set augmentation (distill.augment_copies), the teacher's outputs on the augmented
rows ride along under ``augment/<kind>`` (rows in augment_texts order) and metadata ``augment``
records how those rows were made ({copies, seed, rows, texts_sha256}), so train_student can
regenerate the same texts and prove they line up.
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
    # Outputs on the augmented transfer rows: kind -> [augmented rows, ...]; empty = no augmentation.
    augment: dict[str, np.ndarray] = field(default_factory=dict)
    augment_meta: dict = field(default_factory=dict)


AUGMENT_PREFIX = "augment/"


def write_teacher_outputs(outputs: TeacherOutputs, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tensors = {"logits": np.ascontiguousarray(outputs.logits, dtype=np.float32)}
    for kind, value in outputs.features.items():
        if len(value) != len(outputs.logits):
            raise ValueError(f"teacher feature {kind}: {len(value)} rows for {len(outputs.logits)} logit rows")
        tensors[kind] = np.ascontiguousarray(value, dtype=np.float32)
    rows = outputs.augment_meta.get("rows", 0)
    for kind, value in outputs.augment.items():
        if len(value) != rows:
            raise ValueError(f"augmented teacher output {kind}: {len(value)} rows for {rows} augmented rows")
        tensors[AUGMENT_PREFIX + kind] = np.ascontiguousarray(value, dtype=np.float32)
    metadata = {"teacher_version": outputs.teacher_version, "label_names": json.dumps(outputs.label_names)}
    if outputs.augment_meta:
        metadata["augment"] = json.dumps(outputs.augment_meta, sort_keys=True)
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)


def read_teacher_outputs(path: str | Path) -> TeacherOutputs:
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
        logits = f.get_tensor("logits")
        features = {k: f.get_tensor(k) for k in f.keys() if k != "logits" and not k.startswith(AUGMENT_PREFIX)}
        augment = {k[len(AUGMENT_PREFIX):]: f.get_tensor(k) for k in f.keys() if k.startswith(AUGMENT_PREFIX)}
    return TeacherOutputs(logits, meta["teacher_version"], json.loads(meta["label_names"]), features, augment,
                          json.loads(meta.get("augment", "{}")))
