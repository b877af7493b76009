"""Distil a sentence-embedding student: its pooled embedding, through a learned projection when
widths differ, matches the teacher's; evaluated by cosine fidelity and nearest-neighbour agreement."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from components.common.modeling import encode
from components.common.numerics import masked_mean
from components.distillation.classifier import _width
from components.distillation.losses import LossConfigError, LossInputs, combined_loss, resolve_losses
from components.distillation.trainer import TrainResult, TrainSettings, seed_everything, train_loop


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
