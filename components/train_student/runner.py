"""Side effects of train_student: build the student, distil, save safetensors, log to MLflow."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np

from components.cache_teacher_outputs.runner import check_labels
from components.common import registry
from components.common.config import config_from_json, config_to_dict, layer_pairs
from components.common.dataset import read_snapshot
from components.common.home import Home
from components.common.modeling import (
    build_student_from_config,
    build_student_from_model,
    build_student_from_teacher_layers,
    check_same_tokenizer,
    count_parameters,
    label_names,
    load_classifier,
    predict_logits,
    prune_intermediate,
    set_threads,
    trim_vocabulary_to_budget,
)
from components.common.steplog import record_step
from components.common.teacher import resolve_teacher
from components.common.teacher_outputs import read_teacher_outputs
from components.common.tracking import flatten, metric_logger
from components.train_student import distributed as ddp
from components.train_student.augment import augment_record, augment_texts
from components.train_student.core import (
    TrainSettings,
    device_for_training,
    seed_everything,
    train_classifier,
)
from components.train_student.losses import needs, resolve_losses

log = logging.getLogger(__name__)
LINEAGE_FILE = "distillops.json"


def build_student(teacher_model, student_cfg, teacher_tokenizer=None):
    if student_cfg.init == "teacher_layers":
        student = build_student_from_teacher_layers(teacher_model, student_cfg.layers)
    elif student_cfg.init == "model":
        from transformers import AutoTokenizer

        if teacher_tokenizer is not None:
            check_same_tokenizer(teacher_tokenizer, AutoTokenizer.from_pretrained(student_cfg.model),
                                 f"student.model {student_cfg.model}")
        student = build_student_from_model(student_cfg.model, label_names(teacher_model), student_cfg.lora_r,
                                           student_cfg.lora_alpha)
    else:
        student = build_student_from_config(teacher_model, student_cfg.config_overrides)
    if student_cfg.prune_intermediate:
        student = prune_intermediate(student, student_cfg.prune_intermediate)
    return student


def shrink_vocabulary(student, teacher_model, tokenizer, student_cfg, texts, max_length: int):
    """(student, its tokenizer) after student.trim_vocabulary (and max_parameter_fraction), or unchanged."""
    if not student_cfg.trim_vocabulary:
        return student, tokenizer
    student, s_tok = trim_vocabulary_to_budget(
        student, tokenizer, texts, max_positions=max_length,
        max_parameters=int(student_cfg.max_parameter_fraction * count_parameters(teacher_model)))
    log.info("student vocabulary trimmed to %d pieces, %d positions", student.config.vocab_size,
             student.config.max_position_embeddings)
    return student, s_tok


def augmented_rows(outputs, train_texts: list[str], copies: int, seed: int, where: str) -> list[str]:
    """The augmented transfer texts that `outputs` holds teacher outputs for, regenerated and checked."""
    texts = augment_texts(train_texts, copies, seed=seed)
    expected = augment_record(texts, copies, seed)
    if outputs.augment_meta != expected or "logits" not in outputs.augment:
        raise ValueError(f"{where}: distill.augment_copies={copies} (seed {seed}) needs the teacher's outputs on "
                         f"{expected['rows']} augmented rows, but the artifact holds {outputs.augment_meta or 'none'}; "
                         f"rerun cache_teacher_outputs with the same distill section")
    return texts


def extra_teacher_logits(h: Home, refs, texts, names: list[str], tokenizer, max_length: int):
    """Logits of the multi-teacher extras on `texts`, through the content-keyed teacher cache.
    Each must share the main teacher's label order and tokenizer. Returns (arrays, versions)."""
    from components.cache_teacher_outputs.core import TeacherOutputStore, plan_rows, row_key
    from components.common.hashing import digest_dir

    arrays, versions = [], []
    store = TeacherOutputStore(h.teacher_cache)
    for ref in refs:
        extra = resolve_teacher(ref, h)
        model, tok = load_classifier(extra.path)
        if label_names(model) != names:
            raise ValueError(f"distill.extra_teachers {ref}: labels {label_names(model)} differ from the teacher's "
                             f"{names}")
        check_same_tokenizer(tokenizer, tok, f"distill.extra_teachers {ref}")
        tokenizer_id = digest_dir(extra.path, ("tokenizer.json", "tokenizer_config.json", "vocab.txt"))[:16]
        keys = [row_key(extra.version, tokenizer_id, max_length, "logits", t) for t in texts]
        cached = store.get_many(keys)
        todo = plan_rows(texts, keys, cached)
        if todo:
            fresh = predict_logits(model, tok, [texts[i] for i in todo], max_length, desc=f"teacher {ref}")
            store.put_many([keys[i] for i in todo], fresh)
            cached.update({keys[i]: fresh[j] for j, i in enumerate(todo)})
        arrays.append(np.stack([cached[k] for k in keys]))
        versions.append(extra.version)
    return arrays, versions


def run(home: str, snapshot_path: str, teacher_outputs_path: str, teacher_ref: str, config_json: str,
        data_version: str, model_out: str, config_hash: str) -> dict:
    """`config_hash` is the hash of the whole resolved config (this step sees only its sections).

    Under torchrun (WORLD_SIZE > 1) every process runs this same function: it joins the process group
    (backend from DISTILLOPS_DDP_BACKEND), trains its shard under DDP, and only rank 0 logs to MLflow,
    records the step and writes the student; the other ranks return {"rank": r}.
    """
    owns_group = ddp.init_from_env()
    try:
        return _run(home, snapshot_path, teacher_outputs_path, teacher_ref, config_json, data_version, model_out,
                    config_hash)
    finally:
        if owns_group:
            ddp.shutdown()


def _run(home: str, snapshot_path: str, teacher_outputs_path: str, teacher_ref: str, config_json: str,
         data_version: str, model_out: str, config_hash: str) -> dict:
    main = ddp.is_main()
    h = Home.resolve(home).ensure()
    cfg = config_from_json(config_json)
    set_threads()
    if ddp.active():
        ddp.per_rank_batch(cfg.distill.batch_size, ddp.world_size())  # fail before any work
        ddp.share_cpu_threads()
    with record_step(h, "train_student") if main else contextlib.nullcontext({}) as counters:
        need = needs(resolve_losses(dict(cfg.distill.losses), cfg.distill.alpha))  # unknown keys fail before any work
        if cfg.student.trim_vocabulary and need & {"hidden", "attention"}:
            raise ValueError("student.trim_vocabulary gives the student its own token ids, but the hidden/attention "
                             "losses feed the student's tokens to the live teacher; use pooled/embedding feature "
                             "losses (cached per row) or set student.trim_vocabulary: false")
        snapshot = read_snapshot(snapshot_path)
        outputs = read_teacher_outputs(teacher_outputs_path)
        if len(outputs.logits) != len(snapshot):
            raise ValueError(f"{teacher_outputs_path}: {len(outputs.logits)} teacher rows for {len(snapshot)} "
                             f"dataset rows; the teacher outputs belong to another snapshot")
        check_labels(snapshot.label_names, outputs.label_names, snapshot_path)
        teacher = resolve_teacher(teacher_ref, h)
        teacher_model, tokenizer = load_classifier(teacher.path)
        if label_names(teacher_model) != outputs.label_names:
            raise ValueError(f"{teacher_outputs_path}: label order {outputs.label_names} differs from teacher "
                             f"{teacher_ref}'s {label_names(teacher_model)}")
        # seeded: a fresh student's random init is part of what distill.seed fixes, so two runs of one
        # config (one process or a torchrun group) start from the same weights
        seed_everything(cfg.distill.seed)
        student = build_student(teacher_model, cfg.student, tokenizer)
        label_id = {name: i for i, name in enumerate(outputs.label_names)}
        train_idx, val_idx = snapshot.indices("train"), snapshot.indices("validation")
        d = cfg.distill
        chash = config_hash
        safe_version = "".join(c if c.isalnum() else "_" for c in data_version)[:40]
        checkpoint_dir = h.root / "checkpoints" / f"train_student-{chash}-{safe_version}"
        settings = TrainSettings(epochs=d.epochs, batch_size=d.batch_size, learning_rate=d.learning_rate,
                                 max_length=d.max_length, temperature=d.temperature, alpha=d.alpha,
                                 weight_decay=d.weight_decay, warmup_fraction=d.warmup_fraction, seed=d.seed,
                                 losses=dict(d.losses), layer_map=layer_pairs(d), projection=d.projection,
                                 grad_accumulation=d.grad_accumulation, max_grad_norm=d.max_grad_norm,
                                 schedule=d.schedule, early_stopping_patience=d.early_stopping_patience,
                                 checkpoint_dir=str(checkpoint_dir), checkpoint_every=d.checkpoint_every,
                                 log_every=d.log_every)
        train_texts = [snapshot.texts[i] for i in train_idx]
        train_labels = [label_id[snapshot.labels[i]] for i in train_idx]
        student, s_tokenizer = shrink_vocabulary(student, teacher_model, tokenizer, cfg.student, train_texts,
                                                 d.max_length)
        logit_sets = [outputs.logits[train_idx]]
        features = {k: v[train_idx] for k, v in outputs.features.items()}
        if d.augment_copies:
            aug_texts = augmented_rows(outputs, train_texts, d.augment_copies, d.seed, teacher_outputs_path)
            # the teacher's label ids are the student's (label_id follows outputs.label_names)
            train_texts = train_texts + aug_texts
            train_labels = train_labels + outputs.augment["logits"].argmax(-1).tolist()
            logit_sets = [np.concatenate([logit_sets[0], outputs.augment["logits"]])]
            features = {k: np.concatenate([v, outputs.augment[k]]) for k, v in features.items()}
        if not main:
            ddp.barrier()  # rank 0 fills the teacher cache first; the others then only read it
        extra_arrays, extra_versions = extra_teacher_logits(h, d.extra_teachers, train_texts, outputs.label_names,
                                                            tokenizer, cfg.distill.max_length)
        if main:
            ddp.barrier()
        logit_sets += extra_arrays
        live_teacher = teacher_model if need & {"hidden", "attention"} else None
        device = device_for_training()
        student.to(device)
        if live_teacher is not None:
            live_teacher.to(device)

        def fit(on_metrics):
            return train_classifier(
                student, s_tokenizer, train_texts, train_labels, settings,
                teacher_logits=logit_sets, teacher_weights=list(d.teacher_weights), teacher_features=features,
                teacher_model=live_teacher, teacher_num_layers=teacher_model.config.num_hidden_layers,
                val_texts=[snapshot.texts[i] for i in val_idx],
                val_label_ids=[label_id[snapshot.labels[i]] for i in val_idx],
                on_metrics=on_metrics, desc="distil student")

        if not main:  # a worker rank: train its shard; no MLflow, no files
            fit(None)
            return {"rank": ddp.rank()}
        registry.connect(h)
        import mlflow

        with mlflow.start_run(run_name=f"train_student {chash}") as run_:
            mlflow.set_tags({"distillops.step": "train_student", "data_version": data_version,
                             "teacher_version": outputs.teacher_version, "config_hash": chash})
            mlflow.log_params(flatten({"student": config_to_dict(cfg)["student"],
                                       "distill": config_to_dict(cfg)["distill"]}))
            if extra_versions:
                mlflow.set_tag("extra_teacher_versions", json.dumps(extra_versions))
            result = fit(metric_logger(run_.info.run_id))
            student.to("cpu")
            if hasattr(student, "merge_and_unload"):  # LoRA: fold the adapters into plain weights
                student = student.merge_and_unload()
            params = count_parameters(student)
            mlflow.log_metrics({"student_parameters": params, "train_seconds": result.seconds,
                                "best_validation_accuracy": result.best_validation_accuracy})
        out = Path(model_out)
        out.mkdir(parents=True, exist_ok=True)
        student.save_pretrained(out)  # safetensors by default
        s_tokenizer.save_pretrained(out)
        shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the run finished; nothing left to resume
        lineage = {"data_version": data_version, "teacher_version": outputs.teacher_version,
                   "extra_teachers": [{"ref": r, "teacher_version": v}
                                      for r, v in zip(d.extra_teachers, extra_versions, strict=True)],
                   "resumed_from_step": result.resumed_from_step, "stopped_early": result.stopped_early,
                   "train_rows": len(train_texts), "augment": outputs.augment_meta if d.augment_copies else {},
                   "teacher_ref": teacher_ref, "config_hash": chash, "mlflow_run_id": run_.info.run_id,
                   "config": config_to_dict(cfg), "parameters": params, "best_epoch": result.best_epoch,
                   "best_validation_accuracy": result.best_validation_accuracy, "train_seconds": result.seconds}
        (out / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2, sort_keys=True))
        counters.update(steps=result.steps, parameters=params)
    log.info("student: %d parameters, best validation accuracy %.4f (epoch %d)", params,
             result.best_validation_accuracy, result.best_epoch)
    return {k: v for k, v in lineage.items() if k != "config"}
