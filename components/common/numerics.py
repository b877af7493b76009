"""Small numerical helpers several places need, written once: log-softmax and masked-mean pooling."""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, in float64 (stable: the row maximum is subtracted first)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def masked_mean(hidden, mask=None):
    """Mean of token vectors [B, L, H] over the positions where mask [B, L] is 1 (torch tensors);
    the sentence pooling of MiniLM / sentence-transformers, and what the teacher cache stores as
    ``pooled:<layer>``."""
    if mask is None:
        return hidden.mean(1)
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
