"""Side effects of cache_teacher_outputs: run the teacher on rows the store lacks, write the artifact."""

from __future__ import annotations

import logging

import numpy as np

from components.cache_teacher_outputs.core import TeacherOutputStore, plan_rows, row_key
from components.common.config import config_from_json
from components.common.dataset import DatasetError, read_snapshot
from components.common.hashing import digest_dir
from components.common.home import Home
from components.common.modeling import label_names, load_classifier, predict_logits, set_threads
from components.common.steplog import record_step
from components.common.teacher import resolve_teacher
from components.common.teacher_outputs import TeacherOutputs, write_teacher_outputs

log = logging.getLogger(__name__)
KIND = "logits"


def check_labels(data_labels: list[str], teacher_labels: list[str], where: str) -> None:
    unknown = sorted(set(data_labels) - set(teacher_labels))
    if unknown:
        raise DatasetError(f"{where}: label(s) {unknown} are not among the teacher's labels {teacher_labels}; "
                           f"fine-tune a teacher on this label set (distillops teacher --data ...)")


def run(home: str, snapshot_path: str, teacher_ref: str, config_json: str, outputs_path: str) -> dict:
    h = Home.resolve(home).ensure()
    cfg = config_from_json(config_json).teacher
    set_threads()
    with record_step(h, "cache_teacher_outputs") as counters:
        snapshot = read_snapshot(snapshot_path)
        teacher = resolve_teacher(teacher_ref, h)
        model, tokenizer = load_classifier(teacher.path)
        names = label_names(model)
        check_labels(snapshot.label_names, names, snapshot_path)
        tokenizer_id = digest_dir(teacher.path, ("tokenizer.json", "tokenizer_config.json", "vocab.txt"))[:16]
        keys = [row_key(teacher.version, tokenizer_id, cfg.max_length, KIND, t) for t in snapshot.texts]
        store = TeacherOutputStore(h.teacher_cache)
        cached = store.get_many(keys)
        todo = plan_rows(snapshot.texts, keys, cached)
        log.info("teacher %s: %d rows, %d cached, %d to compute", teacher.version, len(keys),
                 len(keys) - len(todo), len(todo))
        if todo:
            fresh = predict_logits(model, tokenizer, [snapshot.texts[i] for i in todo], cfg.max_length,
                                   cfg.batch_size, desc="teacher forward")
            store.put_many([keys[i] for i in todo], fresh)
            cached.update({keys[i]: fresh[j] for j, i in enumerate(todo)})
        logits = np.stack([cached[k] for k in keys])
        write_teacher_outputs(TeacherOutputs(logits, teacher.version, names), outputs_path)
        counters.update(teacher_version=teacher.version, teacher_forward_passes=len(todo),
                        cache_hits=len(keys) - len(todo))
    return {"teacher_version": teacher.version, "teacher_ref": teacher_ref, "rows": len(keys),
            "teacher_forward_passes": len(todo), "cache_hits": len(keys) - len(todo), "label_names": names}
