"""The TeacherOutputs artifact: the teacher's outputs aligned with the snapshot's rows.

One safetensors file: tensor ``logits`` [rows, labels]; metadata ``teacher_version`` and
``label_names`` (JSON list, the teacher's id2label order). Feature tensors the configured losses
need ride along under their output kind, e.g. ``pooled:4`` [rows, hidden] (the attention-mask mean
of encoder layer 4's hidden states), and the extra teachers' logits (multi-teacher,
``distill.extra_teachers``) under ``logits@1``, ``logits@2``, ... with metadata ``extra_teachers``
(JSON list of {ref, teacher_version}, in that order).

With transfer-set augmentation (distill.augment_copies), the teachers' outputs on the augmented
rows ride along under ``augment/<kind>`` (rows in the order of ``augment_texts``), the augmented
texts themselves under metadata ``augment_texts`` (JSON list), and metadata ``augment`` records
how they were made ({copies, seed, rows, texts_sha256}): the cache step makes the transfer set
once and every later step reads it from here.

Metadata ``texts_sha256`` is the digest of the snapshot's texts in row order: the outputs are
aligned by position, so :func:`check_aligned` refuses outputs of another snapshot (or of the same
rows in another order), a logits width that is not the label count, and non-finite values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save

from components.common.io import atomic_write_bytes

AUGMENT_PREFIX = "augment/"


@dataclass(frozen=True)
class TeacherOutputs:
    logits: np.ndarray
    teacher_version: str
    label_names: list[str]
    features: dict[str, np.ndarray] = field(default_factory=dict)
    # Outputs on the augmented transfer rows: kind -> [augmented rows, ...]; empty = no augmentation.
    augment: dict[str, np.ndarray] = field(default_factory=dict)
    augment_meta: dict = field(default_factory=dict)
    augment_texts: list[str] = field(default_factory=list)
    # Multi-teacher: [{ref, teacher_version}] of features logits@1, logits@2, ...
    extra_teachers: list[dict] = field(default_factory=list)
    # texts_digest of the snapshot rows these outputs are aligned with ("" in files written before it)
    texts_sha256: str = ""

    def extra_logits(self) -> list[np.ndarray]:
        return [self.features[f"logits@{k}"] for k in range(1, len(self.extra_teachers) + 1)]

    @property
    def teacher_versions(self) -> list[str]:
        """Every teacher version these outputs came from: the teacher's, then the extra teachers'."""
        return [self.teacher_version] + [e["teacher_version"] for e in self.extra_teachers]


def write_teacher_outputs(outputs: TeacherOutputs, path: str | Path) -> None:
    tensors = {"logits": np.ascontiguousarray(outputs.logits, dtype=np.float32)}
    for kind, value in outputs.features.items():
        if len(value) != len(outputs.logits):
            raise ValueError(f"teacher feature {kind}: {len(value)} rows for {len(outputs.logits)} logit rows")
        tensors[kind] = np.ascontiguousarray(value, dtype=np.float32)
    rows = outputs.augment_meta.get("rows", 0)
    if outputs.augment and len(outputs.augment_texts) != rows:
        raise ValueError(f"augmented transfer set: {len(outputs.augment_texts)} texts for {rows} augmented rows")
    for kind, value in outputs.augment.items():
        if len(value) != rows:
            raise ValueError(f"augmented teacher output {kind}: {len(value)} rows for {rows} augmented rows")
        tensors[AUGMENT_PREFIX + kind] = np.ascontiguousarray(value, dtype=np.float32)
    missing = [f"logits@{k}" for k in range(1, len(outputs.extra_teachers) + 1) if f"logits@{k}" not in outputs.features]
    if missing:
        raise ValueError(f"extra teachers listed without their logits: {missing}")
    metadata = {"teacher_version": outputs.teacher_version, "label_names": json.dumps(outputs.label_names)}
    if outputs.augment_meta:
        metadata["augment"] = json.dumps(outputs.augment_meta, sort_keys=True)
        metadata["augment_texts"] = json.dumps(outputs.augment_texts, ensure_ascii=False)
    if outputs.extra_teachers:
        metadata["extra_teachers"] = json.dumps(outputs.extra_teachers, sort_keys=True)
    if outputs.texts_sha256:
        metadata["texts_sha256"] = outputs.texts_sha256
    atomic_write_bytes(path, canonical_safetensors(save(tensors, metadata=metadata)))


def canonical_safetensors(payload: bytes) -> bytes:
    """safetensors bytes with the header's keys sorted. The library writes its metadata map in an
    arbitrary (hashed, per-process) order, so equal contents were unequal bytes and digests; the data
    offsets are relative to the header's end, so the header can be rewritten (space-padded to 8 bytes,
    as the format allows) without touching the tensors."""
    size = int.from_bytes(payload[:8], "little")
    header = json.dumps(json.loads(payload[8:8 + size]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + payload[8 + size:]


def read_teacher_outputs(path: str | Path) -> TeacherOutputs:
    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
        logits = f.get_tensor("logits")
        features = {k: f.get_tensor(k) for k in f.keys() if k != "logits" and not k.startswith(AUGMENT_PREFIX)}
        augment = {k[len(AUGMENT_PREFIX):]: f.get_tensor(k) for k in f.keys() if k.startswith(AUGMENT_PREFIX)}
    return TeacherOutputs(logits, meta["teacher_version"], json.loads(meta["label_names"]), features, augment,
                          json.loads(meta.get("augment", "{}")), json.loads(meta.get("augment_texts", "[]")),
                          json.loads(meta.get("extra_teachers", "[]")), meta.get("texts_sha256", ""))


class TeacherOutputsError(ValueError):
    """Teacher outputs that do not line up with the snapshot they are used with."""


def texts_digest(texts: Sequence[str]) -> str:
    """sha256 of the texts in order (what the outputs' rows are aligned with)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def check_aligned(outputs: TeacherOutputs, texts: Sequence[str], where: str | Path) -> None:
    """Raise TeacherOutputsError listing every way `outputs` fail to line up with the snapshot `texts`."""
    problems = []
    logits = outputs.logits
    if logits.ndim != 2 or len(logits) != len(texts):
        problems.append(f"{len(logits)} teacher rows (shape {list(logits.shape)}) for {len(texts)} dataset rows")
    elif logits.shape[1] != len(outputs.label_names):
        problems.append(f"logits have {logits.shape[1]} columns for {len(outputs.label_names)} labels")
    if outputs.texts_sha256 and outputs.texts_sha256 != texts_digest(texts):
        problems.append("the rows were computed for other texts or another row order (texts_sha256 differs)")
    for kind, value in {"logits": logits, **outputs.features}.items():
        if len(value) != len(logits):
            problems.append(f"{kind}: {len(value)} rows for {len(logits)} logit rows")
        bad = int((~np.isfinite(value.reshape(len(value), -1))).any(axis=1).sum()) if value.size else 0
        if bad:
            problems.append(f"{kind}: {bad} rows hold NaN or Inf")
    if problems:
        raise TeacherOutputsError(f"{where}: teacher outputs do not match the snapshot: {'; '.join(problems)}. "
                                  f"The teacher outputs belong to another snapshot or were altered; rerun "
                                  f"cache_teacher_outputs on this snapshot.")
