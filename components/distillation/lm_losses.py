"""Losses of a generative student, registered by key like the classification ones.

Every term reads the student's next-token logits at the positions of the teacher's generated tokens
(``[N, vocab]``, N = generated tokens in the batch) and what the cache stores there: the generated
token ids, the teacher's top-k token ids and log-probs, and the tail mass. The token-level terms
compare the two distributions over k + 1 buckets (the teacher's top-k tokens, and one bucket for
everything else: the teacher's tail against the student's mass outside those k tokens), so they need
no more than the cache holds and are exact up to how the tail is spread.

- ``seq_kd``: cross-entropy on the teacher's generated tokens (sequence-level KD).
- ``token_kl``: forward KL(teacher || student) over the buckets (mode-covering).
- ``token_reverse_kl``: reverse KL(student || teacher) (mode-seeking).
- ``token_js``: Jensen-Shannon divergence (symmetric, bounded by log 2).
- ``ref_ce``: cross-entropy on reference responses, where the data has them (batches passed as
  ``ref_logits`` / ``ref_tokens``; zero when a batch has none).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from components.common.keyed import KeyRegistry

LM_LOSSES: KeyRegistry = KeyRegistry("generation loss")
DEFAULT_LM_LOSSES = {"token_kl": 1.0, "seq_kd": 0.5}
_EPS = 1e-8


class LMLossConfigError(ValueError):
    """A generation loss key or weight that cannot be used."""


@dataclass
class TokenBatch:
    """What the losses read at the N generated positions of a batch."""

    student_logits: torch.Tensor  # [N, vocab]
    tokens: torch.Tensor  # [N] long: the teacher's generated tokens
    topk_ids: torch.Tensor  # [N, k] long
    topk_logprobs: torch.Tensor  # [N, k] float
    tail: torch.Tensor  # [N] float
    ref_logits: torch.Tensor | None = None  # [M, vocab] at reference-response positions
    ref_tokens: torch.Tensor | None = None  # [M]


def bucket_log_probs(batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(teacher, student) log-probabilities over the k + 1 buckets, each row normalised."""
    s_logp = F.log_softmax(batch.student_logits.float(), dim=-1)
    s_top = s_logp.gather(-1, batch.topk_ids)
    s_tail = torch.log1p(-s_top.exp().sum(-1).clamp(max=1 - 1e-6))
    t_top = batch.topk_logprobs.float()
    t_tail = torch.log(batch.tail.float().clamp(min=_EPS))
    teacher = torch.cat([t_top, t_tail[:, None]], dim=-1)
    teacher = teacher - torch.logsumexp(teacher, dim=-1, keepdim=True)  # fp16 log-probs: renormalise
    return teacher, torch.cat([s_top, s_tail[:, None]], dim=-1)


def _kl(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    return (p_log.exp() * (p_log - q_log)).sum(-1).mean()


@LM_LOSSES.register("seq_kd")
def seq_kd(batch: TokenBatch) -> torch.Tensor:
    return F.cross_entropy(batch.student_logits.float(), batch.tokens)


@LM_LOSSES.register("token_kl")
def token_kl(batch: TokenBatch) -> torch.Tensor:
    t, s = bucket_log_probs(batch)
    return _kl(t, s)


@LM_LOSSES.register("token_reverse_kl")
def token_reverse_kl(batch: TokenBatch) -> torch.Tensor:
    t, s = bucket_log_probs(batch)
    return _kl(s, t)


@LM_LOSSES.register("token_js")
def token_js(batch: TokenBatch) -> torch.Tensor:
    t, s = bucket_log_probs(batch)
    m = torch.logsumexp(torch.stack([t, s]), dim=0) - math.log(2)
    return 0.5 * _kl(t, m) + 0.5 * _kl(s, m)


@LM_LOSSES.register("ref_ce")
def ref_ce(batch: TokenBatch) -> torch.Tensor:
    if batch.ref_logits is None or batch.ref_tokens is None or len(batch.ref_tokens) == 0:
        return batch.student_logits.sum() * 0.0
    return F.cross_entropy(batch.ref_logits.float(), batch.ref_tokens)


def default_lm_losses(with_references: bool) -> dict[str, float]:
    """generation.losses when empty: DEFAULT_LM_LOSSES, plus ref_ce where the training prompts carry
    reference responses (half the weight of the token-level term, like seq_kd)."""
    return {**DEFAULT_LM_LOSSES, **({"ref_ce": 0.5} if with_references else {})}


def resolve_lm_losses(weights: Mapping[str, float]) -> dict[str, float]:
    """The weighted terms: `weights` if given, else DEFAULT_LM_LOSSES; unknown keys fail naming the key."""
    terms = dict(weights) if weights else dict(DEFAULT_LM_LOSSES)
    for key, w in terms.items():
        LM_LOSSES.get(key)
        if w < 0:
            raise LMLossConfigError(f"generation.losses.{key}: weight must be >= 0, got {w}")
    terms = {k: float(w) for k, w in terms.items() if w > 0}
    if not terms:
        raise LMLossConfigError("generation.losses: every weight is 0; nothing would be trained")
    return terms


def combined_lm_loss(batch: TokenBatch, terms: Mapping[str, float]) -> tuple[torch.Tensor, dict[str, float]]:
    """(weighted sum, each term's value) for a batch."""
    parts = {key: LM_LOSSES.get(key)(batch) for key in terms}
    total = sum(terms[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}
