"""Side effects of cache_teacher_outputs: run the teacher on rows the store lacks, check a sample of
the cached rows against the live teacher (fidelity), write the artifact, record the snapshot's keys."""

from __future__ import annotations

import logging

import numpy as np

from components.cache_teacher_outputs.core import (
    TeacherOutputStore,
    compare_outputs,
    fidelity_sample,
    plan_rows,
    row_key,
)
from components.common.config import config_from_json, layer_pairs
from components.common.dataset import DatasetError, read_snapshot
from components.common.hashing import digest_dir, md5_file
from components.common.home import Home
from components.common.modeling import (
    label_names,
    load_classifier,
    predict_logits,
    set_threads,
    teacher_features,
)
from components.common.steplog import record_step
from components.common.teacher import resolve_teacher
from components.common.teacher_outputs import TeacherOutputs, write_teacher_outputs
from components.train_student.augment import augment_record, augment_texts

log = logging.getLogger(__name__)
KIND = "logits"


class CacheFidelityError(RuntimeError):
    """Cached teacher outputs differ from what the live teacher computes: a stale or tampered cache."""


def open_store(home: Home, cache_url: str = "") -> TeacherOutputStore:
    """The configured store: cache.url (any fsspec URL), else the home's teacher-cache directory."""
    return TeacherOutputStore(cache_url or home.teacher_cache)


def cache_hit_rate(home: Home) -> dict:
    """Hit rate of the teacher cache over every executed cache_teacher_outputs step (from the step log)."""
    from components.common.steplog import steps_since

    runs = [s for s in steps_since(home, 0) if s["step"] == "cache_teacher_outputs"]
    hits = sum(s.get("cache_hits", 0) for s in runs)
    misses = sum(s.get("teacher_forward_passes", 0) for s in runs)
    last = runs[-1] if runs else {}
    return {"lookups": hits + misses, "hits": hits, "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
            "last_run": {"hits": last.get("cache_hits"), "teacher_forward_passes": last.get("teacher_forward_passes"),
                         "integrity_problems": last.get("integrity_problems")} if last else None,
            "runs": len(runs)}


def check_fidelity(model, tokenizer, texts: list[str], keys: list[bytes], cached: dict, cfg, max_length: int,
                   teacher_version: str, store_url: str) -> int:
    """Recompute a deterministic sample of cached rows with the live teacher; raise on any mismatch.

    Returns the number of rows recomputed (teacher forward passes spent on checking, not on outputs).
    """
    candidates = [i for i, k in enumerate(keys) if k in cached]
    if cfg.fidelity_sample == 0 or not candidates:
        return 0
    picked = [candidates[j] for j in fidelity_sample([keys[i] for i in candidates], cfg.fidelity_sample,
                                                     teacher_version)]
    fresh = predict_logits(model, tokenizer, [texts[i] for i in picked], max_length, batch_size=len(picked))
    stored = np.stack([cached[keys[i]] for i in picked])
    bad = compare_outputs(stored, fresh, cfg.fidelity_atol, cfg.fidelity_rtol)
    if bad:
        rows = "; ".join(f"row {picked[j]} ({texts[picked[j]][:40]!r}): max |stored - live| = {d:.4g}"
                         for j, d in bad[:5])
        raise CacheFidelityError(
            f"teacher cache {store_url}: {len(bad)} of {len(picked)} sampled cached rows differ from what the live "
            f"teacher {teacher_version} computes (tolerance atol={cfg.fidelity_atol}, rtol={cfg.fidelity_rtol}): "
            f"{rows}. The cache is stale or has been tampered with; nothing was trained. Delete the store (or point "
            f"cache.url elsewhere) and rerun to recompute every row.")
    return len(picked)


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
    full = config_from_json(config_json)
    cfg, cache_cfg = full.teacher, full.cache
    set_threads()
    with record_step(h, "cache_teacher_outputs") as counters:
        snapshot = read_snapshot(snapshot_path)
        teacher = resolve_teacher(teacher_ref, h)
        model, tokenizer = load_classifier(teacher.path)
        names = label_names(model)
        check_labels(snapshot.label_names, names, snapshot_path)
        tokenizer_id = digest_dir(teacher.path, ("tokenizer.json", "tokenizer_config.json", "vocab.txt"))[:16]
        layers = pooled_layers(full.distill, model.config.num_hidden_layers)
        # Each output kind (logits, pooled:<layer>) is its own content-keyed row in the store.
        kinds = [KIND] + [f"pooled:{layer}" for layer in layers]
        store = open_store(h, cache_cfg.url)

        def lookup(texts: list[str]):
            kind_keys = {kind: [row_key(teacher.version, tokenizer_id, cfg.max_length, kind, t) for t in texts]
                         for kind in kinds}
            return kind_keys, store.get_many([k for ks in kind_keys.values() for k in ks])

        def fill(texts: list[str], kind_keys, cached, desc: str):
            """({kind: [rows, ...]}, rows computed): the teacher runs only on rows the store lacks."""
            todo = sorted({i for ks in kind_keys.values() for i in plan_rows(texts, ks, cached)})
            log.info("teacher %s: %d rows x %d kinds, %d rows to compute (%s)", teacher.version, len(texts),
                     len(kinds), len(todo), desc)
            if todo:
                fresh = teacher_features(model, tokenizer, [texts[i] for i in todo], cfg.max_length,
                                         layers, cfg.batch_size, desc=desc)
                # put_many is atomic per shard: logits last, so a row counts as cached only when complete
                for kind in [*kinds[1:], KIND]:
                    store.put_many([kind_keys[kind][i] for i in todo], fresh[kind])
                    cached.update({kind_keys[kind][i]: fresh[kind][j] for j, i in enumerate(todo)})
            return {kind: np.stack([cached[k] for k in ks]) for kind, ks in kind_keys.items()}, todo

        kind_keys, cached = lookup(snapshot.texts)
        problems = [str(p) for p in store.last_problems]
        keys = kind_keys[KIND]
        all_keys = [k for ks in kind_keys.values() for k in ks]
        # Before anything is trained on cached rows, a sample of them must match the live teacher.
        fidelity_passes = check_fidelity(model, tokenizer, snapshot.texts, keys, cached, cache_cfg, cfg.max_length,
                                         teacher.version, store.url)
        out, todo = fill(snapshot.texts, kind_keys, cached, "teacher forward")
        augment, augment_meta, augment_forward = {}, {}, 0
        if full.distill.augment_copies and snapshot.indices("train"):
            # The transfer set's extra rows: perturbed training texts, labelled by the teacher (by content,
            # so a rerun with the same snapshot, copies and seed computes nothing).
            aug_texts = augment_texts([snapshot.texts[i] for i in snapshot.indices("train")],
                                      full.distill.augment_copies, seed=full.distill.seed)
            aug_keys, aug_cached = lookup(aug_texts)
            problems += [str(p) for p in store.last_problems]
            augment, aug_todo = fill(aug_texts, aug_keys, aug_cached, "teacher forward (augmented)")
            augment_forward = len(aug_todo)
            all_keys += [k for ks in aug_keys.values() for k in ks]
            augment_meta = augment_record(aug_texts, full.distill.augment_copies, full.distill.seed)
        logits = out[KIND]
        # gc keeps what some snapshot references: this snapshot (by its content digest) under this teacher.
        store.record_ref(f"{md5_file(snapshot_path)}--{teacher.version}--{KIND}{cfg.max_length}"
                         + (f"--augment{full.distill.augment_copies}s{full.distill.seed}" if augment else ""), all_keys)
        features = {kind: out[kind] for kind in kinds[1:]}
        write_teacher_outputs(TeacherOutputs(logits, teacher.version, names, features, augment, augment_meta),
                              outputs_path)
        counters.update(teacher_version=teacher.version, teacher_forward_passes=len(todo),
                        cache_hits=len(keys) - len(todo), fidelity_passes=fidelity_passes,
                        integrity_problems=len(problems), cache_store=store.url,
                        augmented_forward_passes=augment_forward)
    return {"teacher_version": teacher.version, "teacher_ref": teacher_ref, "rows": len(keys),
            "teacher_forward_passes": len(todo), "cache_hits": len(keys) - len(todo),
            "fidelity_passes": fidelity_passes, "integrity_problems": problems, "label_names": names,
            "augmented_rows": augment_meta.get("rows", 0), "augmented_forward_passes": augment_forward}
