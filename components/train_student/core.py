"""Pure logic of train_student: a deterministic, resumable trainer over composed distillation losses.

The same trainer fine-tunes the teacher (losses {ce: 1}: labels only, no teacher outputs), distils
classifiers (:func:`train_classifier`) and sentence-embedding students (:func:`train_embedder`).

The loop (:func:`train_loop`) owns what every run needs: warmup + linear/cosine decay, gradient
accumulation, clipping, early stopping on validation, seeds, checkpoint/resume, a progress bar,
per-step metrics and bf16 autocast on CUDA. It sees the data only through ``batch_loss(indices)``
and the order of rows through ``order(epoch)``, so a distributed run can swap in a sharded order
(a DistributedSampler's indices) and a DDP-wrapped model without touching it.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from components.common.modeling import encode, predict_logits
from components.train_student import distributed as ddp
from components.train_student.losses import (
    LossConfigError,
    LossInputs,
    combined_loss,
    masked_mean,
    needs,
    resolve_losses,
)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                      labels: torch.Tensor, temperature: float, alpha: float) -> torch.Tensor:
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network" (arXiv:1503.02531).

        L = alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) + (1 - alpha) * CE(z_s, y)

    The T^2 factor keeps the soft term's gradient scale independent of T.
    """
    hard = F.cross_entropy(student_logits, labels)
    if teacher_logits is None or alpha == 0:
        return hard
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.log_softmax(teacher_logits / t, dim=-1),
                    reduction="batchmean", log_target=True) * (t * t)
    return alpha * soft + (1 - alpha) * hard


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    learning_rate: float
    max_length: int
    temperature: float = 1.0
    alpha: float = 0.0
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    seed: int = 0
    # key -> weight; empty = {kl: alpha, ce: 1 - alpha} (alpha 0: plain fine-tuning)
    losses: Mapping[str, float] = field(default_factory=dict)
    # (student layer, teacher layer) pairs for hidden/pooled/attention losses
    layer_map: tuple[tuple[int, int], ...] = ()
    projection: bool = True
    grad_accumulation: int = 1
    max_grad_norm: float = 1.0
    schedule: str = "linear"
    # epochs without validation improvement before stopping; 0 = never stop early
    early_stopping_patience: int = 0
    checkpoint_dir: str = ""
    checkpoint_every: int = 0
    log_every: int = 10


@dataclass
class TrainResult:
    best_validation_accuracy: float
    best_epoch: int
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_step: int = 0
    stopped_early: bool = False
    projections: dict[str, torch.nn.Module] = field(default_factory=dict)


def accuracy(logits: np.ndarray, label_ids: Sequence[int]) -> float:
    if len(label_ids) == 0:
        return float("nan")
    return float((logits.argmax(-1) == np.asarray(label_ids)).mean())


def _schedule(step: int, total: int, warmup: int, kind: str = "linear") -> float:
    """Linear warmup, then linear (or cosine) decay to zero."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return max(0.0, (total - step) / max(1, total - warmup))


def device_for_training() -> torch.device:
    if torch.cuda.is_available() and ddp.requested_world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))  # one GPU per torchrun process
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _StepModule(torch.nn.Module):
    """The trainable modules with batch_loss as forward, so one DistributedDataParallel wrapper
    sees every parameter (the model and any projections) and its forward runs the whole loss."""

    def __init__(self, modules: Mapping[str, torch.nn.Module], batch_loss):
        super().__init__()
        self.parts = torch.nn.ModuleDict(dict(modules))
        self._batch_loss = batch_loss

    def forward(self, idx: list[int]):
        return self._batch_loss(idx)


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train_loop(modules: Mapping[str, torch.nn.Module], n: int, settings: TrainSettings,
               batch_loss: Callable[[list[int]], tuple[torch.Tensor, dict[str, float]]],
               evaluate: Callable[[], float] | None = None,
               on_metrics: Callable[[dict[str, float], int], None] | None = None,
               order: Callable[[int, torch.Generator], list[int]] | None = None,
               desc: str = "train") -> TrainResult:
    """Optimise every parameter of `modules` ("model" is the one whose best-epoch weights are kept).

    `batch_loss(indices)` returns (loss, parts) for a micro-batch; `evaluate()` a validation score
    (higher is better) after each epoch. With `settings.checkpoint_dir`, state is saved every
    `checkpoint_every` optimizer steps and at each epoch end; a run that finds a checkpoint there
    continues from it and reaches the same weights as an uninterrupted run with the same seed.

    Inside a torch.distributed process group (torchrun, see distributed.py) each rank trains on its
    shard of every epoch's order with batch_size / world_size rows per micro-batch under
    DistributedDataParallel; only rank 0 reports metrics and writes checkpoints, and rank 0's
    validation score decides the best epoch and early stopping on every rank.
    """
    seed_everything(settings.seed)
    if settings.grad_accumulation < 1:
        raise ValueError(f"grad_accumulation must be >= 1, got {settings.grad_accumulation}")
    distributed, rank, world = ddp.active(), ddp.rank(), ddp.world_size()
    batch_size = ddp.per_rank_batch(settings.batch_size, world) if distributed else settings.batch_size
    main = rank == 0
    if not main:
        on_metrics = None
    micro = math.ceil(n / settings.batch_size)
    steps_per_epoch = math.ceil(micro / settings.grad_accumulation)
    total = steps_per_epoch * settings.epochs
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    named = [(f"{m}.{k}", p) for m, mod in modules.items() for k, p in mod.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for k, p in named if not k.endswith(no_decay)], "weight_decay": settings.weight_decay},
        {"params": [p for k, p in named if k.endswith(no_decay)], "weight_decay": 0.0},
    ]
    params = [p for _, p in named]
    optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate)
    warmup = int(total * settings.warmup_fraction)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _schedule(s, total, warmup, settings.schedule))
    generator = torch.Generator().manual_seed(settings.seed)
    order = order or (lambda epoch, g: torch.randperm(n, generator=g).tolist())
    device = next(modules["model"].parameters()).device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    state = {"epoch": 1, "micro": 0, "step": 0, "perm": None, "running": 0.0, "best": (-math.inf, 0, None),
             "history": [], "bad_epochs": 0, "stopped_early": False}
    ckpt = Path(settings.checkpoint_dir, "checkpoint.pt") if settings.checkpoint_dir else None
    # every rank resumes from the same checkpoint (a shared volume); only rank 0 writes it
    resumed_from = 0
    if ckpt is not None and ckpt.is_file():
        saved = torch.load(ckpt, weights_only=False)
        for name, mod in modules.items():
            mod.load_state_dict(saved["modules"][name])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        random.setstate(saved["python_rng"])
        np.random.set_state(saved["numpy_rng"])
        state = saved["state"]
        resumed_from = state["step"]

    def save_checkpoint() -> None:
        if ckpt is None or not main:
            return
        _atomic_save({"modules": {k: m.state_dict() for k, m in modules.items()},
                      "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                      "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                      "python_rng": random.getstate(), "numpy_rng": np.random.get_state(), "state": state}, ckpt)

    step_fn, step_module = batch_loss, None
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        # built after any resume: DDP broadcasts rank 0's parameters, so all ranks start equal.
        # find_unused_parameters: a loss may leave parameters without gradients (e.g. a pooler).
        step_module = DistributedDataParallel(
            _StepModule(modules, batch_loss), device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True)
        step_fn = step_module

    t0 = time.perf_counter()
    bar = tqdm(total=total, initial=state["step"], desc=desc, unit="step",
               disable=os.environ.get("DISTILLOPS_PROGRESS", "1") == "0" or not main)
    while state["epoch"] <= settings.epochs and not state["stopped_early"]:
        for mod in modules.values():
            mod.train()
        if state["perm"] is None:
            state["perm"] = order(state["epoch"], generator)
            state["micro"], state["running"] = 0, 0.0
        perm = ddp.shard(state["perm"], rank, world) if distributed else state["perm"]
        while state["micro"] < micro:
            first = state["micro"]
            chunk = range(first, min(first + settings.grad_accumulation, micro))
            optimizer.zero_grad(set_to_none=True)
            step_loss, parts = 0.0, {}
            for j in chunk:
                idx = perm[j * batch_size:(j + 1) * batch_size]
                # DDP: all-reduce gradients only on the last micro-batch of an accumulation chunk
                sync = step_module.no_sync() if step_module is not None and j != chunk[-1] else \
                    contextlib.nullcontext()
                with sync:
                    with autocast:
                        loss, parts = step_fn(idx)
                    (loss / len(chunk)).backward()
                step_loss += loss.item() / len(chunk)
            step_loss = ddp.all_mean(step_loss, device)  # the global batch's loss, the same on every rank
            if settings.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            state["micro"] = chunk.stop
            state["running"] += step_loss
            state["step"] += 1
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}")
            if on_metrics and settings.log_every and state["step"] % settings.log_every == 0:
                on_metrics({"step_loss": step_loss, "learning_rate": scheduler.get_last_lr()[0],
                            **{f"loss_{k}": v for k, v in parts.items()}}, state["step"])
            if settings.checkpoint_every and state["step"] % settings.checkpoint_every == 0:
                save_checkpoint()
        epoch = state["epoch"]
        metrics = {"epoch": epoch, "train_loss": state["running"] / steps_per_epoch}
        if evaluate is not None:
            # evaluated on rank 0 only and broadcast, so every rank takes the same best/stop decision
            metrics["validation_score"] = ddp.from_main(evaluate() if main else 0.0, device)
        score = metrics.get("validation_score", -metrics["train_loss"])
        best = state["best"]
        if score > best[0] or best[2] is None:
            state["best"] = (score, epoch, copy.deepcopy({k: m.state_dict() for k, m in modules.items()}))
            state["bad_epochs"] = 0
        else:
            state["bad_epochs"] += 1
            if settings.early_stopping_patience and state["bad_epochs"] >= settings.early_stopping_patience:
                state["stopped_early"] = True
        state["history"].append(metrics)
        state["epoch"] += 1
        state["perm"] = None
        if on_metrics:
            on_metrics(metrics, state["step"])
        save_checkpoint()
    bar.close()
    best_score, best_epoch, best_state = state["best"]
    for name, mod in modules.items():
        mod.load_state_dict(best_state[name])
    for mod in modules.values():
        mod.eval()
    return TrainResult(best_validation_accuracy=float(best_score) if evaluate is not None else float("nan"),
                       best_epoch=best_epoch, steps=state["step"], seconds=time.perf_counter() - t0,
                       history=state["history"], resumed_from_step=resumed_from,
                       stopped_early=state["stopped_early"],
                       projections={k: v for k, v in modules.items() if k != "model"})


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
        enc = {k: v.to(device) for k, v in encode(tokenizer, [texts[i] for i in idx], settings.max_length).items()}
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


# --- sentence embeddings -------------------------------------------------------------------------


@torch.inference_mode()
def embed(model, tokenizer, texts: Sequence[str], max_length: int, batch_size: int = 64,
          normalize: bool = False, projection: torch.nn.Module | None = None) -> np.ndarray:
    """Mask-mean pooled last hidden states (the sentence-transformers pooling of MiniLM) [n, H]."""
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    rows: dict[int, np.ndarray] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = {k: v.to(device) for k, v in encode(tokenizer, [texts[i] for i in idx], max_length).items()}
        out = model(**enc, output_hidden_states=True)
        e = masked_mean(out.hidden_states[-1], enc["attention_mask"])
        if projection is not None:
            e = projection(e)
        if normalize:
            e = F.normalize(e, dim=-1)
        for j, i in enumerate(idx):
            rows[i] = e[j].float().cpu().numpy()
    return np.stack([rows[i] for i in range(len(texts))]) if rows else np.zeros((0, 0), np.float32)


def embedding_fidelity(student: np.ndarray, teacher: np.ndarray, k: int = 1) -> dict[str, float]:
    """Cosine fidelity (mean cos(student_i, teacher_i), same width needed) and nearest-neighbour
    agreement: the share of rows whose k nearest other rows (by cosine) are the same under both."""
    def unit(x):
        return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)

    s, t = unit(student), unit(teacher)
    out = {}
    if s.shape[1] == t.shape[1]:
        out["cosine_fidelity"] = float((s * t).sum(1).mean())
    sim_s, sim_t = s @ s.T, t @ t.T
    np.fill_diagonal(sim_s, -np.inf)
    np.fill_diagonal(sim_t, -np.inf)
    nn_s = np.argsort(-sim_s, axis=1)[:, :k]
    nn_t = np.argsort(-sim_t, axis=1)[:, :k]
    out[f"nn{k}_agreement"] = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(nn_s, nn_t, strict=True)]))
    return out


def train_embedder(model, tokenizer, texts: Sequence[str], teacher_embeddings: np.ndarray, settings: TrainSettings,
                   val_texts: Sequence[str] = (), val_teacher_embeddings: np.ndarray | None = None,
                   on_metrics: Callable[[dict[str, float], int], None] | None = None,
                   desc: str = "distil embeddings") -> TrainResult:
    """Train a bare encoder (AutoModel) so its pooled embedding, through a learned projection when
    widths differ (result.projections["embedding"]), matches the teacher's. Losses default to
    {embedding_mse: 1}; relation losses (rkd_*, sp) may be added. Validation: cosine fidelity."""
    n = len(texts)
    if len(teacher_embeddings) != n:
        raise ValueError(f"{len(teacher_embeddings)} teacher embedding rows for {n} training texts")
    losses = dict(settings.losses) or {"embedding_mse": 1.0}
    bad = sorted(k for k in losses if k not in ("embedding_mse", "embedding_cosine", "rkd_distance", "rkd_angle",
                                                "sp"))
    if bad:
        resolve_losses(losses, 0.0)  # unknown keys fail with the registry's message first
        raise LossConfigError(f"distill.losses {bad} do not apply to the embedding task")
    terms = resolve_losses(losses, 0.0)
    t_width = teacher_embeddings.shape[1]
    seed_everything(settings.seed)
    projections = {}
    if _width(model) != t_width:
        if not settings.projection:
            raise LossConfigError(f"student width {_width(model)} differs from the teacher embedding width "
                                  f"{t_width} and distill.projection is false")
        projections["embedding"] = torch.nn.Linear(_width(model), t_width)
    device = next(model.parameters()).device
    target = torch.as_tensor(teacher_embeddings, dtype=torch.float32)

    def batch_loss(idx: list[int]):
        enc = {k: v.to(device) for k, v in encode(tokenizer, [texts[i] for i in idx], settings.max_length).items()}
        out = model(**enc, output_hidden_states=True)
        inputs = LossInputs(student_logits=None, labels=None, projections=projections,
                            student_embedding=masked_mean(out.hidden_states[-1], enc["attention_mask"]),
                            teacher_embedding=target[idx].to(device))
        return combined_loss(terms, inputs)

    def evaluate() -> float:
        s = embed(model, tokenizer, val_texts, settings.max_length, projection=projections.get("embedding"))
        return embedding_fidelity(s, val_teacher_embeddings)["cosine_fidelity"]

    modules = {"model": model, **{f"proj_{k}": p.to(device) for k, p in projections.items()}}
    has_val = len(val_texts) and val_teacher_embeddings is not None
    result = train_loop(modules, n, settings, batch_loss, evaluate if has_val else None, on_metrics, desc=desc)
    result.projections = dict(projections)
    return result
