"""Distil (or fine-tune) a sequence classifier with the trainer: composed losses over cached teacher
logits and features, or a live teacher for token-level hints. Also the teacher's own fine-tune
(losses {ce: 1}: labels only)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from components.common.modeling import encode_for, predict_logits
from components.common.numerics import masked_mean
from components.distillation.losses import LossConfigError, LossInputs, combined_loss, needs, resolve_losses
from components.distillation.measure import accuracy
from components.distillation.trainer import TrainResult, TrainSettings, seed_everything, train_loop


def _num_layers(model) -> int:
    return int(model.config.num_hidden_layers)


def _width(model) -> int:
    return int(model.config.hidden_size)


def check_setup(settings: TrainSettings, student, teacher_layers: int | None, teacher_width: int | None,
                available: set[str]) -> dict[str, float]:
    """Everything that would fail mid-training, checked before it starts. Returns the loss terms.

    `available` is what teacher outputs exist: "logits", "pooled", "hidden", "attention", "embedding".
    """
    terms = resolve_losses(settings.losses, settings.alpha)
    need = needs(terms)
    missing = sorted((need - {"labels"}) - available)
    if missing:
        raise LossConfigError(f"distill.losses {sorted(terms)} need teacher {missing}, which this run does not have")
    if need & {"hidden", "pooled", "attention"}:
        if not settings.layer_map:
            raise LossConfigError(f"distill.losses {sorted(terms)} need distill.layer_map (student layer -> teacher "
                                  f"layer), which is empty")
        n_s = _num_layers(student)
        for s_layer, t_layer in settings.layer_map:
            low = 1 if "attention" in need else 0
            if not low <= s_layer <= n_s:
                raise LossConfigError(f"distill.layer_map: student layer {s_layer} out of range; the student has "
                                      f"{n_s} layers (valid: {low}..{n_s}, 0 = embeddings)")
            if teacher_layers is not None and not low <= t_layer <= teacher_layers:
                raise LossConfigError(f"distill.layer_map: teacher layer {t_layer} out of range; the teacher has "
                                      f"{teacher_layers} layers (valid: {low}..{teacher_layers}, 0 = embeddings)")
        if (need & {"hidden", "pooled"} and teacher_width is not None and teacher_width != _width(student)
                and not settings.projection):
            raise LossConfigError(f"student width {_width(student)} differs from the teacher's {teacher_width} and "
                                  f"distill.projection is false; enable it to learn a projection")
    return terms


def _projections(settings: TrainSettings, student_width: int, teacher_width: int | None,
                 extra: Sequence[str] = ()) -> dict[str, torch.nn.Module]:
    """Learned linear maps student width -> teacher width (FitNets regressors), one per mapped layer."""
    if not settings.projection or teacher_width is None or teacher_width == student_width:
        return {}
    keys = [str(s) for s, _ in settings.layer_map] + list(extra)
    return {k: torch.nn.Linear(student_width, teacher_width) for k in dict.fromkeys(keys)}


def train_classifier(model, tokenizer, texts: Sequence[str], label_ids: Sequence[int],
                     settings: TrainSettings, teacher_logits: np.ndarray | Sequence[np.ndarray] | None = None,
                     val_texts: Sequence[str] = (), val_label_ids: Sequence[int] = (),
                     on_metrics: Callable[[dict[str, float], int], None] | None = None,
                     desc: str = "train", teacher_weights: Sequence[float] = (),
                     teacher_features: Mapping[str, np.ndarray] | None = None, teacher_model=None,
                     teacher_num_layers: int | None = None) -> TrainResult:
    """Train in place; at the end the model holds the weights of the best validation epoch.

    teacher_logits: one [n, C] array, or one per teacher (multi-teacher, weighted by teacher_weights).
    teacher_features: cached per-row features, "pooled:{layer}" -> [n, H_t] (see losses.py).
    teacher_model: a live teacher for token-level "hidden"/"attention" losses (run without grad).
    """
    n = len(texts)
    logit_sets = [] if teacher_logits is None else (
        [teacher_logits] if isinstance(teacher_logits, np.ndarray) else list(teacher_logits))
    for k, arr in enumerate(logit_sets):
        if len(arr) != n:
            raise ValueError(f"{len(arr)} teacher logit rows (teacher {k}) for {n} training texts")
        if arr.shape[1] != model.config.num_labels:
            raise LossConfigError(f"teacher {k} has {arr.shape[1]} labels but the student has "
                                  f"{model.config.num_labels}; the label sets differ")
    features = dict(teacher_features or {})
    for key, arr in features.items():
        if len(arr) != n:
            raise ValueError(f"{len(arr)} teacher feature rows ({key}) for {n} training texts")
    available = set()
    if logit_sets:
        available.add("logits")
    if any(k.startswith("pooled:") for k in features):
        available |= {"pooled"}
    if teacher_model is not None:
        available |= {"hidden", "attention", "pooled", "embedding"}
        teacher_num_layers = _num_layers(teacher_model)
    if teacher_num_layers is not None and f"pooled:{teacher_num_layers}" in features:
        available.add("embedding")
    teacher_width = None
    if teacher_model is not None:
        teacher_width = _width(teacher_model)
    elif features:
        teacher_width = next(iter(features.values())).shape[1]
    terms = check_setup(settings, model, teacher_num_layers, teacher_width, available)
    need = needs(terms)
    for s_layer, t_layer in settings.layer_map:
        if "pooled" in need and teacher_model is None and f"pooled:{t_layer}" not in features:
            raise LossConfigError(f"no cached teacher features pooled:{t_layer} for distill.layer_map {s_layer}->"
                                  f"{t_layer}; cache them (cache_teacher_outputs stores the mapped layers)")
    if "attention" in need:
        for m in (model, teacher_model):
            if m is not None and hasattr(m, "set_attn_implementation"):
                m.set_attn_implementation("eager")  # sdpa kernels return no attention probabilities

    seed_everything(settings.seed)  # projections are initialised from the seed too
    projections = _projections(settings, _width(model), teacher_width)
    device = next(model.parameters()).device
    labels_t = torch.as_tensor(list(label_ids), dtype=torch.long)
    logits_t = [torch.as_tensor(a, dtype=torch.float32) for a in logit_sets]
    feats_t = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in features.items()}
    need_hidden = bool(need & {"hidden", "pooled", "embedding"})
    need_attn = "attention" in need
    t_layers = teacher_num_layers

    def batch_loss(idx: list[int]):
        enc = encode_for(model, tokenizer, [texts[i] for i in idx], settings.max_length)
        out = model(**enc, output_hidden_states=need_hidden, output_attentions=need_attn)
        mask = enc["attention_mask"]
        inputs = LossInputs(student_logits=out.logits, labels=labels_t[idx].to(device),
                            teacher_logits=[z[idx].to(device) for z in logits_t],
                            teacher_weights=list(teacher_weights), temperature=settings.temperature,
                            attention_mask=mask, layer_map=list(settings.layer_map), projections=projections)
        if need_hidden:
            inputs.student_hidden = {s: out.hidden_states[s] for s, _ in settings.layer_map}
            inputs.student_embedding = masked_mean(out.hidden_states[-1], mask)
        if need_attn:
            inputs.student_attention = {s: out.attentions[s - 1] for s, _ in settings.layer_map}
        if teacher_model is not None and need & {"hidden", "attention", "pooled", "embedding"}:
            with torch.no_grad():
                t_out = teacher_model(**enc, output_hidden_states=True, output_attentions=need_attn)
            inputs.teacher_hidden = {t: t_out.hidden_states[t] for _, t in settings.layer_map}
            inputs.teacher_embedding = masked_mean(t_out.hidden_states[-1], mask)
            if need_attn:
                inputs.teacher_attention = {t: t_out.attentions[t - 1] for _, t in settings.layer_map}
        else:
            inputs.teacher_hidden = {t: feats_t[f"pooled:{t}"][idx].to(device) for _, t in settings.layer_map
                                     if f"pooled:{t}" in feats_t}
            if t_layers is not None and f"pooled:{t_layers}" in feats_t:
                inputs.teacher_embedding = feats_t[f"pooled:{t_layers}"][idx].to(device)
        return combined_loss(terms, inputs)

    def evaluate() -> float:
        return accuracy(predict_logits(model, tokenizer, val_texts, settings.max_length), val_label_ids)

    modules = {"model": model, **{f"proj_{k}": p.to(device) for k, p in projections.items()}}
    result = train_loop(modules, n, settings, batch_loss, evaluate if len(val_texts) else None, on_metrics,
                        desc=desc)
    for h in result.history:
        if "validation_score" in h:
            h["validation_accuracy"] = h["validation_score"]
    return result
