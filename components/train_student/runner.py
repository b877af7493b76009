"""Side effects of train_student: build the student, distil, save safetensors, log to MLflow."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from components.cache_teacher_outputs.runner import check_labels
from components.common import registry
from components.common.config import config_from_json, config_to_dict
from components.common.dataset import read_snapshot
from components.common.home import Home
from components.common.modeling import (
    build_student_from_config,
    build_student_from_teacher_layers,
    count_parameters,
    load_classifier,
    set_threads,
)
from components.common.steplog import record_step
from components.common.teacher import resolve_teacher
from components.common.teacher_outputs import read_teacher_outputs
from components.common.tracking import flatten, metric_logger
from components.train_student.core import TrainSettings, train_classifier

log = logging.getLogger(__name__)
LINEAGE_FILE = "distillops.json"


def build_student(teacher_model, student_cfg):
    if student_cfg.init == "teacher_layers":
        return build_student_from_teacher_layers(teacher_model, student_cfg.layers)
    return build_student_from_config(teacher_model, student_cfg.config_overrides)


def run(home: str, snapshot_path: str, teacher_outputs_path: str, teacher_ref: str, config_json: str,
        data_version: str, model_out: str, config_hash: str) -> dict:
    """`config_hash` is the hash of the whole resolved config (this step sees only its sections)."""
    h = Home.resolve(home).ensure()
    cfg = config_from_json(config_json)
    set_threads()
    with record_step(h, "train_student") as counters:
        snapshot = read_snapshot(snapshot_path)
        outputs = read_teacher_outputs(teacher_outputs_path)
        if len(outputs.logits) != len(snapshot):
            raise ValueError(f"{teacher_outputs_path}: {len(outputs.logits)} teacher rows for {len(snapshot)} "
                             f"dataset rows; the teacher outputs belong to another snapshot")
        check_labels(snapshot.label_names, outputs.label_names, snapshot_path)
        teacher = resolve_teacher(teacher_ref, h)
        teacher_model, tokenizer = load_classifier(teacher.path)
        student = build_student(teacher_model, cfg.student)
        label_id = {name: i for i, name in enumerate(outputs.label_names)}
        train_idx, val_idx = snapshot.indices("train"), snapshot.indices("validation")
        d = cfg.distill
        settings = TrainSettings(epochs=d.epochs, batch_size=d.batch_size, learning_rate=d.learning_rate,
                                 max_length=d.max_length, temperature=d.temperature, alpha=d.alpha,
                                 weight_decay=d.weight_decay, warmup_fraction=d.warmup_fraction, seed=d.seed)
        chash = config_hash
        registry.connect(h)
        import mlflow

        with mlflow.start_run(run_name=f"train_student {chash}") as run_:
            mlflow.set_tags({"distillops.step": "train_student", "data_version": data_version,
                             "teacher_version": outputs.teacher_version, "config_hash": chash})
            mlflow.log_params(flatten({"student": config_to_dict(cfg)["student"],
                                       "distill": config_to_dict(cfg)["distill"]}))
            result = train_classifier(
                student, tokenizer, [snapshot.texts[i] for i in train_idx],
                [label_id[snapshot.labels[i]] for i in train_idx], settings,
                teacher_logits=outputs.logits[train_idx],
                val_texts=[snapshot.texts[i] for i in val_idx],
                val_label_ids=[label_id[snapshot.labels[i]] for i in val_idx],
                on_metrics=metric_logger(run_.info.run_id), desc="distil student")
            params = count_parameters(student)
            mlflow.log_metrics({"student_parameters": params, "train_seconds": result.seconds,
                                "best_validation_accuracy": result.best_validation_accuracy})
        out = Path(model_out)
        out.mkdir(parents=True, exist_ok=True)
        student.save_pretrained(out)  # safetensors by default
        tokenizer.save_pretrained(out)
        lineage = {"data_version": data_version, "teacher_version": outputs.teacher_version,
                   "teacher_ref": teacher_ref, "config_hash": chash, "mlflow_run_id": run_.info.run_id,
                   "config": config_to_dict(cfg), "parameters": params, "best_epoch": result.best_epoch,
                   "best_validation_accuracy": result.best_validation_accuracy, "train_seconds": result.seconds}
        (out / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2, sort_keys=True))
        counters.update(steps=result.steps, parameters=params)
    log.info("student: %d parameters, best validation accuracy %.4f (epoch %d)", params,
             result.best_validation_accuracy, result.best_epoch)
    return {k: v for k, v in lineage.items() if k != "config"}
