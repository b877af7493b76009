"""Side effects of cache_teacher_outputs: run the teacher on rows the store lacks, write the artifact."""

from __future__ import annotations

import logging

import numpy as np

from components.cache_teacher_outputs.core import TeacherOutputStore, plan_rows, row_key
from components.common.config import config_from_json, layer_pairs
from components.common.dataset import DatasetError, read_snapshot
from components.common.hashing import digest_dir
from components.common.home import Home
from components.common.modeling import label_names, load_classifier, set_threads, teacher_features
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


def pooled_layers(distill_cfg, teacher_layers: int) -> list[int]:
    """Teacher layers whose pooled hidden states the configured losses read from the cache."""
    from components.train_student.losses import needs, resolve_losses

    need = needs(resolve_losses(distill_cfg.losses, distill_cfg.alpha))
    layers = set()
    if "pooled" in need:
        layers |= {t for _, t in layer_pairs(distill_cfg)}
    if "embedding" in need:
        layers.add(teacher_layers)
    bad = sorted(t for t in layers if not 0 <= t <= teacher_layers)
    if bad:
        raise ValueError(f"distill.layer_map: teacher layer {bad[0]} out of range; the teacher has {teacher_layers} "
                         f"layers (valid: 0..{teacher_layers}, 0 = embeddings)")
    return sorted(layers)


def run(home: str, snapshot_path: str, teacher_ref: str, config_json: str, outputs_path: str) -> dict:
    h = Home.resolve(home).ensure()
    full_cfg = config_from_json(config_json)
    cfg = full_cfg.teacher
    set_threads()
    with record_step(h, "cache_teacher_outputs") as counters:
        snapshot = read_snapshot(snapshot_path)
        teacher = resolve_teacher(teacher_ref, h)
        model, tokenizer = load_classifier(teacher.path)
        names = label_names(model)
        check_labels(snapshot.label_names, names, snapshot_path)
        tokenizer_id = digest_dir(teacher.path, ("tokenizer.json", "tokenizer_config.json", "vocab.txt"))[:16]
        layers = pooled_layers(full_cfg.distill, model.config.num_hidden_layers)
        # Each output kind (logits, pooled:<layer>) is its own content-keyed row in the store.
        kinds = [KIND] + [f"pooled:{layer}" for layer in layers]
        kind_keys = {kind: [row_key(teacher.version, tokenizer_id, cfg.max_length, kind, t) for t in snapshot.texts]
                     for kind in kinds}
        keys = kind_keys[KIND]
        store = TeacherOutputStore(h.teacher_cache)
        cached = store.get_many([k for ks in kind_keys.values() for k in ks])
        todo = sorted({i for ks in kind_keys.values() for i in plan_rows(snapshot.texts, ks, cached)})
        log.info("teacher %s: %d rows x %d kinds, %d rows to compute", teacher.version, len(keys), len(kinds),
                 len(todo))
        if todo:
            fresh = teacher_features(model, tokenizer, [snapshot.texts[i] for i in todo], cfg.max_length,
                                     layers, cfg.batch_size, desc="teacher forward")
            # put_many is atomic per shard: logits last, so a row counts as cached only when complete
            for kind in [*kinds[1:], KIND]:
                store.put_many([kind_keys[kind][i] for i in todo], fresh[kind])
                cached.update({kind_keys[kind][i]: fresh[kind][j] for j, i in enumerate(todo)})
        logits = np.stack([cached[k] for k in keys])
        features = {kind: np.stack([cached[k] for k in kind_keys[kind]]) for kind in kinds[1:]}
        write_teacher_outputs(TeacherOutputs(logits, teacher.version, names, features), outputs_path)
        counters.update(teacher_version=teacher.version, teacher_forward_passes=len(todo),
                        cache_hits=len(keys) - len(todo))
    return {"teacher_version": teacher.version, "teacher_ref": teacher_ref, "rows": len(keys),
            "teacher_forward_passes": len(todo), "cache_hits": len(keys) - len(todo), "label_names": names}
