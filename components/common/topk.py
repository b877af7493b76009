"""Top-k compression of large output distributions (a causal LM's per-token vocabulary): the k
most likely entries' log-probs (fp16) + indices (int32) + the residual mass (fp32), ``6k + 4``
bytes per row instead of ``4 * vocab``. Pure numpy; the teacher store persists it (``put_topk_many``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.common.numerics import log_softmax


@dataclass(frozen=True)
class TopK:
    """The k most likely classes/tokens of each row: log-probs (fp16), their indices, and the
    probability mass of everything else (the residual), which keeps the distribution normalised."""

    logprobs: np.ndarray  # [n, k] float16, log-softmax at temperature 1
    indices: np.ndarray  # [n, k] int32
    residual: np.ndarray  # [n] float32, 1 - sum(exp(logprobs)), clipped at 0

    @property
    def k(self) -> int:
        return self.logprobs.shape[1]

    def bytes_per_row(self) -> int:
        return self.k * (2 + 4) + 4


def topk_compress(logits: np.ndarray, k: int) -> TopK:
    """Top-k log-probabilities + indices of `logits` [n, vocab] (rows sorted by probability)."""
    if logits.ndim != 2:
        raise ValueError(f"expected logits [rows, vocab], got shape {logits.shape}")
    if not 0 < k <= logits.shape[1]:
        raise ValueError(f"k={k} must be in 1..{logits.shape[1]} (the output size)")
    logp = log_softmax(logits)
    idx = np.argpartition(-logp, k - 1, axis=-1)[:, :k]
    top = np.take_along_axis(logp, idx, axis=-1)
    order = np.argsort(-top, axis=-1)
    idx, top = np.take_along_axis(idx, order, axis=-1), np.take_along_axis(top, order, axis=-1)
    residual = np.clip(1.0 - np.exp(top).sum(axis=-1), 0.0, 1.0)
    return TopK(top.astype(np.float16), idx.astype(np.int32), residual.astype(np.float32))


def topk_log_probs(topk: TopK, vocab_size: int) -> np.ndarray:
    """The full log-distribution a TopK stands for: the k stored log-probs, and the residual mass
    spread evenly over the other vocab_size - k entries (the maximum-entropy completion)."""
    n, k = topk.logprobs.shape
    top = topk.logprobs.astype(np.float64)
    # fp16 rounding can leave the stored mass a hair off 1: renormalise top-k + residual together.
    rest = np.maximum(topk.residual.astype(np.float64), 1e-12)
    total = np.exp(top).sum(axis=-1) + rest
    top = top - np.log(total)[:, None]
    rest = rest / total
    others = max(vocab_size - k, 1)
    out = np.broadcast_to((np.log(rest) - np.log(others))[:, None], (n, vocab_size)).copy()
    np.put_along_axis(out, topk.indices.astype(np.int64), top, axis=-1)
    return out


def kl_full_vs_topk(logits: np.ndarray, topk: TopK) -> np.ndarray:
    """KL(p_full || p_topk) per row, in nats: what the compression loses of the teacher's distribution."""
    p_log = log_softmax(logits)
    q_log = topk_log_probs(topk, logits.shape[1])
    return (np.exp(p_log) * (p_log - q_log)).sum(axis=-1)
