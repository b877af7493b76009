"""Side effects of train_student: build the student, distil it from the cached teacher outputs, save
safetensors with its lineage, log the run to MLflow.

Every teacher output the losses read comes from the TeacherOutputs artifact (the teacher's logits
and pooled features, the extra teachers' logits, the augmented transfer set and its outputs); the
teacher itself is loaded, pinned to the run's teacher_version, only to initialise the student from
its weights and for the token-level hint losses.

task: generation (``run_generation``, which ``run`` hands a generation config to): a generative
student (a layer subset or a narrower config of the causal-LM teacher, or any causal LM with its
tokenizer; all its weights trained, or LoRA adapters merged before saving) distilled from the cached
generations and top-k log-probs with the weighted LM losses (generation.losses), saved as a plain
Hugging Face causal-LM folder with the same lineage file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from components.common import dvc_store
from components.common.config import Config, config_to_dict, layer_pairs
from components.common.dataset import check_labels, read_prompt_snapshot, read_snapshot
from components.common.generation import render_prompts
from components.common.generation_outputs import check_generations_aligned, read_generation_outputs
from components.common.hashing import sha256_text
from components.common.home import Home
from components.common.io import atomic_write_text
from components.common.lineage import write_lineage
from components.common.modeling import ModelError, check_same_tokenizer
from components.common.paths import safe_name, within
from components.common.runtime import prepare_process
from components.common.steplog import record_step
from components.common.teacher_outputs import check_aligned, read_teacher_outputs
from components.common.teachers import TeacherMismatchError, load_pinned, load_teacher
from components.common.tracking import start_run
from components.distillation import distributed as ddp
from components.distillation.classifier import train_classifier
from components.distillation.lm_losses import default_lm_losses, resolve_lm_losses
from components.distillation.lm_students import build_lm_student, merged, parameter_count
from components.distillation.lm_trainer import build_examples, train_lm_student
from components.distillation.losses import needs, resolve_losses
from components.distillation.measure import count_parameters
from components.distillation.shaping import ShapeChoice, build_shaped, candidate_shapes, choose_shape
from components.distillation.students import (
    build_student,
    check_pretrained_fits,
    load_pretrained,
    pretrained_model_path,
    shrink_vocabulary,
)
from components.distillation.trainer import TrainSettings, device_for_training, seed_everything
from components.distillation.transfer import AUTO, MAX_AUTO_COPIES, augment_record, resolve_copies

log = logging.getLogger(__name__)
EXAMPLE_ROWS = 3


def checkpoint_dir(h: Home, config_hash: str, data_version: str, teacher_versions: list[str]) -> Path:
    """Where a run keeps its resume state: keyed by config, data and every teacher version, so a run
    against another teacher never resumes a student trained against the old one."""
    safe_version = "".join(c if c.isalnum() else "_" for c in data_version)[:40]
    teachers = sha256_text("\n".join(teacher_versions))[:12]
    name = safe_name(f"train_student-{config_hash}-{safe_version}-t{teachers}", "checkpoint name")
    return within(h.root, h.root / "checkpoints" / name)


def shaped_to_budget(student_cfg) -> bool:
    """Whether this student is shaped to the budget (shape: budget applies to teacher-layer students)."""
    return student_cfg.shape == "budget" and student_cfg.init == "teacher_layers"


def budget_parameters(teacher_model, student_cfg) -> int:
    return int(student_cfg.max_parameter_fraction * count_parameters(teacher_model))


PROBE_ROWS = 128  # four timed batches of 32 (measure_speeds: distinct batches)
# Fewer held-out rows than a timed batch: the probe times training texts instead (and says so).
MIN_HELD_OUT_PROBE_ROWS = 32


def probe_texts(train_texts: list[str], held_out: list[str]) -> tuple[list[str], str]:
    """The texts the probe times candidates on, and what they are. Held-out (validation) texts: a
    student's vocabulary is trimmed to the training texts, so a word it never saw splits into more,
    shorter pieces, and timed on the very texts it was trimmed to a student reads faster than on
    the test split the gate times it on, or on production (trec: held-out rows tokenize 10% longer,
    the longest of the gate's first batch 25 -> 33 pieces; the probe read 3.26-3.33x on training
    texts and 3.00-3.02x on held-out ones for a student the gate times at 2.9x; docs/benchmarks.md,
    "What the probe and the gate time on")."""
    if len(held_out) >= MIN_HELD_OUT_PROBE_ROWS:
        return held_out[:PROBE_ROWS], f"{min(len(held_out), PROBE_ROWS)} held-out validation texts"
    return train_texts[:PROBE_ROWS], (f"{min(len(train_texts), PROBE_ROWS)} training texts (only {len(held_out)} "
                                      f"validation rows; timed on the texts the vocabulary was trimmed to, it "
                                      f"can read faster than the gate)")


def probe_shape(h: Home, teacher_version: str, data_version: str, teacher_model, tokenizer, texts: list[str],
                student_cfg, max_length: int, held_out: list[str] = ()) -> ShapeChoice:
    """The budget's shape for this teacher and data: from the probe cache, or measured now (rank 0;
    the other ranks of a torchrun group wait and read the same choice, so they build the same student).
    Candidates are timed on `held_out` texts where there are enough (probe_texts)."""
    timed, what = probe_texts(texts, list(held_out))
    key = sha256_text(json.dumps({"teacher": teacher_version, "data": data_version, "max_length": max_length,
                                  "probe_texts": what, "candidates": [s.label() for s in candidate_shapes(
                                      teacher_model.config.num_hidden_layers, teacher_model.config.intermediate_size)],
                                  "fraction": student_cfg.max_parameter_fraction, "speedup": student_cfg.min_speedup,
                                  "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
                                  "cuda": torch.cuda.is_available(),
                                  **({"factorize": True} if student_cfg.factorize_embeddings else {})},
                                 sort_keys=True))[:24]
    path = h.root / "probes" / f"shape-{key}.json"
    if ddp.is_main() and not path.is_file():
        log.info("probing student shapes for the budget (%.2f of the teacher's parameters, %.1fx speed-up)",
                 student_cfg.max_parameter_fraction, student_cfg.min_speedup)
        choice = choose_shape(teacher_model, tokenizer, texts, timed, max_length,
                              student_cfg.max_parameter_fraction, student_cfg.min_speedup,
                              factorize=student_cfg.factorize_embeddings)
        choice.reason += f"; timed on {what}"
        atomic_write_text(path, json.dumps(choice.to_dict(), indent=2))
    ddp.barrier()
    choice = ShapeChoice.from_dict(json.loads(path.read_text()))
    log.info("student shape: %s (%s)", choice.shape.label(), choice.reason)
    return choice


def load_pretrained_checked(path: str, teacher_model, tokenizer, layers=()):
    """student.init_weights=pretrained: the pretrained encoder at `path`, refused (naming both values)
    unless its architecture, widths, layer count and tokenizer fit the teacher's student shape."""
    from transformers import AutoTokenizer

    pretrained = load_pretrained(path)
    check_pretrained_fits(teacher_model, pretrained, layers, path)
    tokenizer_files = ("tokenizer_config.json", "tokenizer.json", "vocab.txt")
    own = None  # weights only: the vocabulary size was checked; the teacher's tokenizer is used
    if not Path(path).is_dir() or any(Path(path, f).is_file() for f in tokenizer_files):
        with contextlib.suppress(OSError, ValueError):
            own = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    if own is not None:
        check_same_tokenizer(tokenizer, own, f"student.pretrained_model {path}")
    log.info("student weights: the pretrained %s (init_weights=pretrained), a fresh classification head", path)
    return pretrained


def check_transfer_set(outputs, d, where: str, train_rows: int) -> int:
    """The artifact must hold what this distill section trains on: the same extra teachers, and the
    augmented transfer set made with the same copies (distill.augment_copies, resolved for
    `train_rows` training rows) and seed (its texts matching their digest). Returns the copies."""
    refs = [e["ref"] for e in outputs.extra_teachers]
    if refs != list(d.extra_teachers):
        raise ValueError(f"{where}: holds the logits of extra teachers {refs}, but distill.extra_teachers is "
                         f"{list(d.extra_teachers)}; rerun cache_teacher_outputs with the same distill section")
    copies = resolve_copies(d.augment_copies, train_rows, d.augment_target_rows)
    if not copies:
        return 0
    meta = outputs.augment_meta
    if (meta.get("copies"), meta.get("seed")) != (copies, d.seed) or "logits" not in outputs.augment:
        raise ValueError(f"{where}: distill.augment_copies={d.augment_copies} ({copies} copies of {train_rows} "
                         f"training rows, seed {d.seed}) needs the teacher's "
                         f"outputs on that augmented transfer set, but the artifact holds {meta or 'none'}; rerun "
                         f"cache_teacher_outputs with the same distill section")
    if augment_record(outputs.augment_texts, copies, d.seed) != meta:
        raise ValueError(f"{where}: the augmented texts do not match their recorded digest; the artifact is damaged")
    return copies


def augment_reason(d, copies: int, train_rows: int) -> str:
    """Why the transfer set has `copies` augmented copies (recorded in the lineage)."""
    if d.augment_copies != AUTO:
        return f"distill.augment_copies: {d.augment_copies} (set)"
    return (f"distill.augment_copies: -1 (chosen from the data): {copies} copies of {train_rows} training rows "
            f"make {train_rows * (copies + 1)} transfer rows (target distill.augment_target_rows "
            f"{d.augment_target_rows}, at most {MAX_AUTO_COPIES} copies)")


def settings_from(d, checkpoint: Path) -> TrainSettings:
    return TrainSettings(epochs=d.epochs, batch_size=d.batch_size, learning_rate=d.learning_rate,
                         max_length=d.max_length, temperature=d.temperature, alpha=d.alpha,
                         weight_decay=d.weight_decay, warmup_fraction=d.warmup_fraction, seed=d.seed,
                         losses=dict(d.losses), layer_map=layer_pairs(d), projection=d.projection,
                         grad_accumulation=d.grad_accumulation, max_grad_norm=d.max_grad_norm,
                         schedule=d.schedule, early_stopping_patience=d.early_stopping_patience,
                         checkpoint_dir=str(checkpoint), checkpoint_every=d.checkpoint_every, log_every=d.log_every)


def log_snapshot(mlrun, h: Home, snapshot, data_version: str) -> None:
    """The run's training data on its MLflow page: the snapshot, identified by its DVC md5 (the
    data version) and sourced at the DVC remote's object of that version."""
    import pandas as pd

    frame = pd.DataFrame({"text": snapshot.texts, "label": snapshot.labels, "split": snapshot.splits})
    mlrun.log_dataset(frame, name=f"distillops-data-{data_version[:12]}", digest=data_version,
                      source=dvc_store.remote_object_url(h.dvc_remote, data_version), targets="label")


def run(home: str, snapshot_path: str, teacher_outputs_path: str, teacher_ref: str, cfg: Config,
        data_version: str, model_out: str, config_hash: str, teacher_version: str = "") -> dict:
    """`config_hash` is the hash of the whole resolved config (this step sees only its sections).

    Under torchrun (WORLD_SIZE > 1) every process runs this same function: it joins the process group
    (backend from DISTILLOPS_DDP_BACKEND), trains its shard under DDP, and only rank 0 logs to MLflow,
    records the step and writes the student; the other ranks return {"rank": r}.

    With cfg.task == "generation" the snapshot is a prompt snapshot, the outputs the generation
    artifact, and this is run_generation (one process).
    """
    if cfg.task == "generation":
        return run_generation(home, snapshot_path, teacher_outputs_path, teacher_ref, cfg, data_version, model_out,
                              config_hash, teacher_version)
    owns_group = ddp.init_from_env()
    try:
        return _run(home, snapshot_path, teacher_outputs_path, teacher_ref, cfg, data_version, model_out,
                    config_hash, teacher_version)
    finally:
        if owns_group:
            ddp.shutdown()


def _run(home: str, snapshot_path: str, teacher_outputs_path: str, teacher_ref: str, cfg: Config,
         data_version: str, model_out: str, config_hash: str, teacher_version: str) -> dict:
    main = ddp.is_main()
    h = Home.resolve(home).ensure()
    prepare_process()
    d = cfg.distill
    if ddp.active():
        ddp.per_rank_batch(d.batch_size, ddp.world_size())  # fail before any work
        ddp.share_cpu_threads()
    with record_step(h, "train_student") if main else contextlib.nullcontext({}) as counters:
        need = needs(resolve_losses(dict(d.losses), d.alpha))  # unknown keys fail before any work
        if shaped_to_budget(cfg.student) and need & {"hidden", "attention"}:
            raise ModelError("student.shape: budget trims the student's vocabulary, so it has its own token ids, but "
                             "the hidden/attention losses feed the student's tokens to the live teacher; use "
                             "pooled/embedding feature losses (cached per row) or set student.shape: manual")
        if cfg.student.trim_vocabulary and need & {"hidden", "attention"}:
            raise ModelError("student.trim_vocabulary gives the student its own token ids, but the hidden/attention "
                             "losses feed the student's tokens to the live teacher; use pooled/embedding feature "
                             "losses (cached per row) or set student.trim_vocabulary: false")
        snapshot = read_snapshot(snapshot_path)
        outputs = read_teacher_outputs(teacher_outputs_path)
        check_aligned(outputs, snapshot.texts, teacher_outputs_path)
        check_labels(snapshot.label_names, outputs.label_names, snapshot_path)
        train_rows = len(snapshot.indices("train"))
        copies = check_transfer_set(outputs, d, teacher_outputs_path, train_rows)
        teacher = load_pinned(teacher_ref, teacher_version or outputs.teacher_version, h)
        loaded = load_teacher(teacher)
        teacher_model, tokenizer = loaded.model, loaded.tokenizer
        if loaded.label_names != outputs.label_names:
            raise ValueError(f"{teacher_outputs_path}: label order {outputs.label_names} differs from teacher "
                             f"{teacher_ref}'s {loaded.label_names}")
        # seeded: a fresh student's random init is part of what distill.seed fixes, so two runs of one
        # config (one process or a torchrun group) start from the same weights
        seed_everything(d.seed)
        label_id = {name: i for i, name in enumerate(outputs.label_names)}
        train_idx, val_idx = snapshot.indices("train"), snapshot.indices("validation")
        # redistilled production rows (label_source: teacher) weigh distill.teacher_labelled_repeat times
        train_idx = snapshot.weighted(train_idx, d.teacher_labelled_repeat)
        ckpt = checkpoint_dir(h, config_hash, data_version, outputs.teacher_versions)
        settings = settings_from(d, ckpt)
        train_texts = [snapshot.texts[i] for i in train_idx]
        train_labels = [label_id[snapshot.labels[i]] for i in train_idx]
        input_example = train_texts[:EXAMPLE_ROWS]  # logged with the registered model
        pretrained, pretrained_path = None, ""
        if cfg.student.init_weights == "pretrained":  # before any probing or training: a mismatch fails here
            pretrained_path = pretrained_model_path(cfg)
            pretrained = load_pretrained_checked(pretrained_path, teacher_model, tokenizer,
                                                 () if shaped_to_budget(cfg.student) else cfg.student.layers)
        shape = None
        if shaped_to_budget(cfg.student):
            shape = probe_shape(h, outputs.teacher_version, data_version, teacher_model, tokenizer, train_texts,
                                cfg.student, d.max_length,
                                [snapshot.texts[i] for i in snapshot.indices("validation")])
            student, s_tokenizer = build_shaped(teacher_model, tokenizer, shape.shape, train_texts, d.max_length,
                                                budget_parameters(teacher_model, cfg.student), pretrained, d.seed,
                                                factorize=cfg.student.factorize_embeddings)
        else:
            student = build_student(teacher_model, cfg.student, tokenizer, pretrained, d.seed)
            student, s_tokenizer = shrink_vocabulary(student, teacher_model, tokenizer, cfg.student, train_texts,
                                                     d.max_length)
        logit_sets = [outputs.logits[train_idx]] + [x[train_idx] for x in outputs.extra_logits()]
        features = {k: v[train_idx] for k, v in outputs.features.items() if not k.startswith("logits@")}
        if copies:
            # the teacher's label ids are the student's (label_id follows outputs.label_names)
            train_texts = train_texts + outputs.augment_texts
            train_labels = train_labels + outputs.augment["logits"].argmax(-1).tolist()
            logit_sets = [np.concatenate([logit_sets[0], outputs.augment["logits"]])] + [
                np.concatenate([x, outputs.augment[f"logits@{k}"]]) for k, x in enumerate(logit_sets[1:], start=1)]
            features = {k: np.concatenate([v, outputs.augment[k]]) for k, v in features.items()}
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
        plain = config_to_dict(cfg)
        tags = {"distillops.step": "train_student", "data_version": data_version,
                "teacher_version": outputs.teacher_version, "config_hash": config_hash}
        if outputs.extra_teachers:
            tags["extra_teacher_versions"] = ",".join(e["teacher_version"] for e in outputs.extra_teachers)
        with start_run(h, f"train_student {config_hash}", tags=tags,
                       params={"student": plain["student"], "distill": plain["distill"]}) as mlrun:
            log_snapshot(mlrun, h, snapshot, data_version)
            result = fit(mlrun.metric_logger())
            student.to("cpu")
            if hasattr(student, "merge_and_unload"):  # LoRA: fold the adapters into plain weights
                student = student.merge_and_unload()
            params = count_parameters(student)
            mlrun.log_metrics({"student_parameters": params, "train_seconds": result.seconds,
                               "best_validation_accuracy": result.best_validation_accuracy})
        out = Path(model_out)
        out.mkdir(parents=True, exist_ok=True)
        student.save_pretrained(out)  # safetensors by default
        s_tokenizer.save_pretrained(out)
        shutil.rmtree(ckpt, ignore_errors=True)  # the run finished; nothing left to resume
        lineage = {"data_version": data_version, "teacher_version": outputs.teacher_version,
                   "extra_teachers": outputs.extra_teachers,
                   "resumed_from_step": result.resumed_from_step, "stopped_early": result.stopped_early,
                   "train_rows": len(train_texts), "teacher_labelled_repeat": d.teacher_labelled_repeat,
                   "teacher_labelled_train_rows": sum(not g for g in snapshot.is_gold(sorted(set(train_idx)))),
                   "augment": ({**outputs.augment_meta, "why": augment_reason(d, copies, train_rows)}
                               if copies else {"copies": 0, "why": augment_reason(d, 0, train_rows)}),
                   "teacher_ref": teacher_ref, "config_hash": config_hash, "mlflow_run_id": mlrun.run_id,
                   "input_example": input_example,
                   "config": plain, "parameters": params, "best_epoch": result.best_epoch,
                   "best_validation_accuracy": result.best_validation_accuracy, "train_seconds": result.seconds,
                   # per epoch: train_loss, validation_score (the run summary's training curve, a DVC plot)
                   "history": [{k: round(float(v), 6) for k, v in m.items()} for m in result.history],
                   "shape": shape.to_dict() if shape else {"mode": "manual", "init": cfg.student.init},
                   "init_weights": cfg.student.init_weights, "pretrained_model": pretrained_path,
                   "parameter_fraction": round(params / count_parameters(teacher_model), 4),
                   # student.factorize_embeddings engaged: every piece kept, the tables at this rank
                   "embedding_rank": getattr(student.config, "embedding_size", None)
                   if student.config.model_type == "albert" else None}
        write_lineage(out, lineage)
        counters.update(steps=result.steps, parameters=params)
    log.info("student: %d parameters, best validation accuracy %.4f (epoch %d)", params,
             result.best_validation_accuracy, result.best_epoch)
    return {**{k: v for k, v in lineage.items() if k != "config"}, "step_report": counters}


def lm_settings(cfg: Config, checkpoint: Path) -> TrainSettings:
    """The training loop's settings for a generative student: generation.epochs, train_batch_size,
    learning_rate and max_length; the distill section's other optimisation keys."""
    d, g = cfg.distill, cfg.generation
    return TrainSettings(epochs=g.epochs, batch_size=g.train_batch_size, learning_rate=g.learning_rate,
                         max_length=g.max_length, weight_decay=d.weight_decay,
                         warmup_fraction=d.warmup_fraction, seed=d.seed, grad_accumulation=d.grad_accumulation,
                         max_grad_norm=d.max_grad_norm, schedule=d.schedule,
                         early_stopping_patience=d.early_stopping_patience, checkpoint_dir=str(checkpoint),
                         checkpoint_every=d.checkpoint_every, log_every=d.log_every,
                         batch_size_key="generation.train_batch_size")


def log_prompt_snapshot(mlrun, h: Home, snapshot, data_version: str) -> None:
    """The prompt snapshot on the run's MLflow page, identified by its data version (as log_snapshot)."""
    import pandas as pd

    frame = pd.DataFrame({"prompt": snapshot.prompts, "response": snapshot.responses, "split": snapshot.splits})
    mlrun.log_dataset(frame, name=f"distillops-prompts-{data_version[:12]}", digest=data_version,
                      source=dvc_store.remote_object_url(h.dvc_remote, data_version))


def run_generation(home: str, snapshot_path: str, teacher_outputs_path: str, teacher_ref: str, cfg: Config,
                   data_version: str, model_out: str, config_hash: str, teacher_version: str = "") -> dict:
    """task: generation: distil a generative student from the cached generations at `teacher_outputs_path`
    (aligned with the prompt snapshot's rows) on the snapshot's train split, validated by the NLL of the
    teacher's validation generations; save it to `model_out` as a Hugging Face causal-LM folder
    (save_pretrained + tokenizer) with its lineage; log the run to MLflow."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ModelError("task generation trains in one process; torchrun (WORLD_SIZE > 1) is for classification "
                         "students only")
    h = Home.resolve(home).ensure()
    prepare_process()
    g, d = cfg.generation, cfg.distill
    with record_step(h, "train_student") as counters:
        snapshot = read_prompt_snapshot(snapshot_path)
        outputs = read_generation_outputs(teacher_outputs_path)
        check_generations_aligned(outputs, snapshot.prompts, teacher_outputs_path)
        train_idx, val_idx = snapshot.indices("train"), snapshot.indices("validation")
        responses = [snapshot.responses[i] for i in train_idx]
        terms = resolve_lm_losses(dict(g.losses) or default_lm_losses(any(r is not None for r in responses)))
        teacher = load_pinned(teacher_ref, teacher_version or outputs.teacher_version, h)
        if teacher.version != outputs.teacher_version:
            raise TeacherMismatchError(f"{teacher_outputs_path}: generations of teacher {outputs.teacher_version}, but "
                                       f"{teacher_ref} is {teacher.version}; rerun cache_teacher_outputs")
        loaded = load_teacher(teacher)
        if "generation" not in loaded.produces:
            raise ModelError(f"task generation needs a causal-LM teacher; {teacher_ref} is a {loaded.kind} teacher")
        tokenizer = loaded.tokenizer
        seed_everything(d.seed)  # a fresh student's random parts are part of what distill.seed fixes
        # a tokenizer mismatch or an impossible narrow shape fails here, before any training
        student, s_tokenizer, init = build_lm_student(loaded.model, tokenizer, g, d.seed)
        rendered = render_prompts(tokenizer, snapshot.prompts)
        train = build_examples(tokenizer, [rendered[i] for i in train_idx], outputs.generations(train_idx), responses,
                               g.max_length)
        val = build_examples(tokenizer, [rendered[i] for i in val_idx], outputs.generations(val_idx),
                             max_length=g.max_length)
        ckpt = checkpoint_dir(h, config_hash, data_version, [outputs.teacher_version])
        plain = config_to_dict(cfg)
        tags = {"distillops.step": "train_student", "distillops.task": "generation", "data_version": data_version,
                "teacher_version": outputs.teacher_version, "config_hash": config_hash}
        with start_run(h, f"train_student {config_hash}", tags=tags,
                       params={"generation": plain["generation"], "distill": plain["distill"]}) as mlrun:
            log_prompt_snapshot(mlrun, h, snapshot, data_version)
            result = train_lm_student(student, train, lm_settings(cfg, ckpt), terms, tokenizer.pad_token_id, val,
                                      on_metrics=mlrun.metric_logger())
            student = merged(student.to("cpu"))  # LoRA: the adapters folded in; a plain causal LM is saved
            params = parameter_count(student)
            val_nll = -result.best_validation_accuracy if val else None
            mlrun.log_metrics({"student_parameters": params, "train_seconds": result.seconds,
                               **({"best_validation_teacher_nll": val_nll} if val_nll is not None else {})})
        out = Path(model_out)
        out.mkdir(parents=True, exist_ok=True)
        student.save_pretrained(out)  # safetensors by default
        s_tokenizer.save_pretrained(out)
        shutil.rmtree(ckpt, ignore_errors=True)  # the run finished; nothing left to resume
        teacher_params = parameter_count(loaded.model)
        lineage = {"task": "generation", "data_version": data_version, "teacher_version": outputs.teacher_version,
                   "teacher_ref": teacher_ref, "config_hash": config_hash, "mlflow_run_id": mlrun.run_id,
                   "extra_teachers": [], "input_example": [snapshot.prompts[i] for i in train_idx[:EXAMPLE_ROWS]],
                   "config": plain, "student": init, "losses": terms, "k": outputs.k, "decoding": outputs.decoding,
                   "train_rows": len(train), "reference_rows": sum(r is not None for r in responses),
                   "validation_rows": len(val), "resumed_from_step": result.resumed_from_step,
                   "stopped_early": result.stopped_early, "best_epoch": result.best_epoch,
                   **({"best_validation_teacher_nll": val_nll} if val_nll is not None else {}),
                   "train_seconds": result.seconds,
                   "history": [{k: round(float(v), 6) for k, v in m.items()} for m in result.history],
                   "parameters": params, "teacher_parameters": teacher_params,
                   "parameter_fraction": round(params / teacher_params, 4)}
        write_lineage(out, lineage)
        counters.update(task="generation", steps=result.steps, parameters=params)
    log.info("generative student: %d parameters (%.3f of the teacher's), best validation teacher NLL %s (epoch %d)",
             params, params / teacher_params, val_nll, result.best_epoch)
    return {**{k: v for k, v in lineage.items() if k != "config"}, "step_report": counters}
