"""Fine-tune a base encoder into a sequence-classification teacher and register it in MLflow.

The teacher trains on the *train* split of the same hash split the DAG uses, so the student's
test rows are never seen by the teacher either.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from components.common import registry
from components.common.config import Config, config_hash
from components.common.dataset import build_snapshot
from components.common.home import Home
from components.common.modeling import default_base_model, predict_logits
from components.common.runtime import prepare_process
from components.common.steplog import record_step
from components.common.tracking import log_model, start_run
from components.distillation.classifier import train_classifier
from components.distillation.measure import accuracy
from components.distillation.trainer import TrainSettings, seed_everything

log = logging.getLogger(__name__)


def finetune(base: str, snapshot, label_names: list[str], cfg: Config, on_metrics=None):
    """(model, tokenizer, TrainResult, test_accuracy) of `base` fine-tuned on the train split."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    label_id = {n: i for i, n in enumerate(label_names)}
    seed_everything(cfg.teacher.seed)  # the new classification head is initialised randomly
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(label_names), id2label=dict(enumerate(label_names)), label2id=label_id)
    t = cfg.teacher
    settings = TrainSettings(epochs=t.epochs, batch_size=t.train_batch_size, learning_rate=t.learning_rate,
                             max_length=t.max_length, seed=t.seed)
    tr_x, tr_y = snapshot.split("train")
    va_x, va_y = snapshot.split("validation")
    result = train_classifier(model, tokenizer, tr_x, [label_id[y] for y in tr_y], settings,
                              val_texts=va_x, val_label_ids=[label_id[y] for y in va_y],
                              on_metrics=on_metrics, desc="fine-tune teacher")
    te_x, te_y = snapshot.split("test")
    test_acc = accuracy(predict_logits(model, tokenizer, te_x, t.max_length), [label_id[y] for y in te_y])
    return model, tokenizer, result, test_acc


def prepare_teacher(home: Home, data_path: str, cfg: Config, base: str | None = None,
                    alias: str = "champion") -> dict:
    """Fine-tune, log with the transformers flavor, register, and point `alias` at the new version."""
    prepare_process()
    base = base or cfg.teacher.base or default_base_model()
    d = cfg.data
    snapshot = build_snapshot(data_path, d.text_column, d.label_column, d.labels, d.validation_fraction,
                              d.test_fraction, d.split_salt)
    label_names = list(d.labels) or snapshot.label_names
    client = registry.connect(home)
    with record_step(home, "teacher") as counters, start_run(
            home, "teacher fine-tune", tags={"distillops.step": "teacher", "base_model": base,
                                             "data_source": str(data_path)},
            params={"teacher": dict(vars(cfg.teacher))}) as run_:
        model, tokenizer, result, test_acc = finetune(base, snapshot, label_names, cfg, run_.metric_logger())
        run_.log_metrics({"test_accuracy": test_acc, "train_seconds": result.seconds})
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            model_uri = log_model(home, Path(tmp), run_id=run_.run_id)
        mv = registry.register(client, model_uri, cfg.teacher.registered_name, {
            "base_model": base, "data_source": str(data_path), "config_hash": config_hash(cfg),
            "test_accuracy": f"{test_acc:.4f}", "mlflow_run_id": run_.run_id})
        registry.set_alias(client, cfg.teacher.registered_name, alias, mv.version)
        counters.update(version=mv.version, test_accuracy=test_acc)
    log.info("teacher %s v%s: test accuracy %.4f; alias %s", mv.name, mv.version, test_acc, alias)
    return {"name": mv.name, "version": str(mv.version), "alias": alias, "test_accuracy": test_acc,
            "ref": f"models:/{mv.name}@{alias}", "train_seconds": result.seconds}
