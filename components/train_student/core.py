"""Pure logic of train_student: the logit-distillation loss and a small, deterministic trainer.

The same trainer fine-tunes the teacher (alpha = 0: labels only, no teacher logits).
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from components.common.modeling import encode, predict_logits


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


@dataclass
class TrainResult:
    best_validation_accuracy: float
    best_epoch: int
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def accuracy(logits: np.ndarray, label_ids: Sequence[int]) -> float:
    if len(label_ids) == 0:
        return float("nan")
    return float((logits.argmax(-1) == np.asarray(label_ids)).mean())


def _schedule(step: int, total: int, warmup: int) -> float:
    """Linear warmup, then linear decay to zero."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def train_classifier(model, tokenizer, texts: Sequence[str], label_ids: Sequence[int],
                     settings: TrainSettings, teacher_logits: np.ndarray | None = None,
                     val_texts: Sequence[str] = (), val_label_ids: Sequence[int] = (),
                     on_metrics: Callable[[dict[str, float], int], None] | None = None,
                     desc: str = "train") -> TrainResult:
    """Train in place; at the end the model holds the weights of the best validation epoch."""
    seed_everything(settings.seed)
    n = len(texts)
    if teacher_logits is not None and len(teacher_logits) != n:
        raise ValueError(f"{len(teacher_logits)} teacher logit rows for {n} training texts")
    steps_per_epoch = math.ceil(n / settings.batch_size)
    total = steps_per_epoch * settings.epochs
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups = [
        {"params": [p for k, p in model.named_parameters() if not k.endswith(no_decay)],
         "weight_decay": settings.weight_decay},
        {"params": [p for k, p in model.named_parameters() if k.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate)
    warmup = int(total * settings.warmup_fraction)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _schedule(s, total, warmup))
    labels_t = torch.as_tensor(list(label_ids), dtype=torch.long)
    teacher_t = None if teacher_logits is None else torch.as_tensor(teacher_logits, dtype=torch.float32)
    generator = torch.Generator().manual_seed(settings.seed)

    best = (-1.0, 0, None)
    history, step, t0 = [], 0, time.perf_counter()
    bar = tqdm(total=total, desc=desc, unit="step")
    for epoch in range(1, settings.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=generator).tolist()
        running = 0.0
        for start in range(0, n, settings.batch_size):
            idx = perm[start:start + settings.batch_size]
            enc = encode(tokenizer, [texts[i] for i in idx], settings.max_length)
            logits = model(**enc).logits
            loss = distillation_loss(logits, None if teacher_t is None else teacher_t[idx], labels_t[idx],
                                     settings.temperature, settings.alpha)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            running += loss.item()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        metrics = {"epoch": epoch, "train_loss": running / steps_per_epoch}
        if len(val_texts):
            val_logits = predict_logits(model, tokenizer, val_texts, settings.max_length)
            metrics["validation_accuracy"] = accuracy(val_logits, val_label_ids)
        score = metrics.get("validation_accuracy", -metrics["train_loss"])
        if score > best[0] or best[2] is None:
            best = (score, epoch, copy.deepcopy(model.state_dict()))
        history.append(metrics)
        if on_metrics:
            on_metrics(metrics, step)
    bar.close()
    model.load_state_dict(best[2])
    model.eval()
    return TrainResult(best_validation_accuracy=float(best[0]) if len(val_texts) else float("nan"),
                       best_epoch=best[1], steps=step, seconds=time.perf_counter() - t0, history=history)
