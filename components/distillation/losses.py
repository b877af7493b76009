"""Distillation losses, registered by key and composed from config as a weighted sum of named terms.

Every term takes one :class:`LossInputs` (what the student produced on a batch, what the teacher
produced on the same rows, the labels and the settings) and returns a scalar tensor. The config
``distill.losses`` maps keys to weights, e.g. ``{ce: 0.5, kl: 0.5, hidden_mse: 1.0}``; an empty
mapping means the classic Hinton mix ``{kl: alpha, ce: 1 - alpha}``.

Layer indices follow Hugging Face's ``output_hidden_states``: 0 is the embedding output, i is the
output of encoder layer i (1..N). Attention maps are indexed 1..N too (layer i's self-attention).

Two granularities of teacher features exist because of what can be cached cheaply:
``pooled:{layer}`` (the attention-mask mean of a layer's hidden states, one vector per row, cached
by content like the logits) and ``hidden:{layer}`` / ``attention:{layer}`` (token-level, computed
by a live teacher forward pass on the batch, too large to cache for every row).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from components.common.keyed import KeyRegistry
from components.common.numerics import masked_mean

LOSSES: KeyRegistry[Callable[[LossInputs], torch.Tensor]] = KeyRegistry("loss")


class LossConfigError(ValueError):
    """A loss composition that cannot work with these models (found before training starts)."""


@dataclass
class LossInputs:
    student_logits: torch.Tensor | None
    labels: torch.Tensor | None
    # Teacher logits per teacher (multi-teacher) and each teacher's weight; one entry normally.
    teacher_logits: list[torch.Tensor] = field(default_factory=list)
    teacher_weights: list[float] = field(default_factory=list)
    temperature: float = 1.0
    attention_mask: torch.Tensor | None = None
    # student layer -> tensor; teacher layer -> tensor (token-level [B, L, H] or pooled [B, H])
    student_hidden: Mapping[int, torch.Tensor] = field(default_factory=dict)
    teacher_hidden: Mapping[int, torch.Tensor] = field(default_factory=dict)
    student_attention: Mapping[int, torch.Tensor] = field(default_factory=dict)
    teacher_attention: Mapping[int, torch.Tensor] = field(default_factory=dict)
    # (student layer, teacher layer) pairs of the feature losses
    layer_map: list[tuple[int, int]] = field(default_factory=list)
    # learned projections student width -> teacher width, keyed by str(student layer)
    projections: Mapping[str, torch.nn.Module] = field(default_factory=dict)
    # sentence embeddings for the embedding task and the relation losses
    student_embedding: torch.Tensor | None = None
    teacher_embedding: torch.Tensor | None = None


def teacher_distribution(inputs: LossInputs, temperature: float) -> torch.Tensor:
    """Multi-teacher soft targets: p = sum_k w_k softmax(z_k / T) with weights normalised to 1
    (as in "Efficient Knowledge Distillation from an Ensemble of Teachers", Fukuda et al. 2017)."""
    if not inputs.teacher_logits:
        raise LossConfigError("a response-based loss needs teacher logits, but none were given")
    weights = inputs.teacher_weights or [1.0] * len(inputs.teacher_logits)
    total = float(sum(weights))
    probs = [w / total * F.softmax(z.float() / temperature, dim=-1) for w, z in zip(weights, inputs.teacher_logits,
                                                                                    strict=True)]
    return torch.stack(probs).sum(0)


@LOSSES.register("ce", needs={"labels"})
def cross_entropy(inputs: LossInputs) -> torch.Tensor:
    """Cross-entropy on the hard labels: L = -log softmax(z_s)[y]."""
    return F.cross_entropy(inputs.student_logits, inputs.labels)


@LOSSES.register("kl", needs={"logits"})
def kl_divergence(inputs: LossInputs) -> torch.Tensor:
    """Forward KL at temperature T (Hinton, Vinyals & Dean 2015, arXiv:1503.02531):

        L = T^2 * KL(p_t || p_s),  p = softmax(z / T)

    The T^2 factor keeps the gradient scale independent of T.
    """
    t = inputs.temperature
    p_t = teacher_distribution(inputs, t)
    log_p_s = F.log_softmax(inputs.student_logits / t, dim=-1)
    return F.kl_div(log_p_s, p_t, reduction="batchmean") * t * t


@LOSSES.register("reverse_kl", needs={"logits"})
def reverse_kl(inputs: LossInputs) -> torch.Tensor:
    """Reverse KL at temperature T, mode-seeking (as studied in MiniLLM, Gu et al. 2023, arXiv:2306.08543):

        L = T^2 * KL(p_s || p_t)
    """
    t = inputs.temperature
    p_t = teacher_distribution(inputs, t).clamp_min(1e-12)
    log_p_s = F.log_softmax(inputs.student_logits / t, dim=-1)
    return (log_p_s.exp() * (log_p_s - p_t.log())).sum(-1).mean() * t * t


@LOSSES.register("js", needs={"logits"})
def jensen_shannon(inputs: LossInputs) -> torch.Tensor:
    """Jensen-Shannon divergence at temperature T (symmetric, bounded by log 2; see e.g.
    Agarwal et al. 2024, "On-Policy Distillation", arXiv:2306.13649, for JS in distillation):

        m = (p_t + p_s) / 2,  L = T^2 * (KL(p_t || m) + KL(p_s || m)) / 2
    """
    t = inputs.temperature
    p_t = teacher_distribution(inputs, t).clamp_min(1e-12)
    p_s = F.softmax(inputs.student_logits / t, dim=-1).clamp_min(1e-12)
    m = (p_t + p_s) / 2
    js = 0.5 * (p_t * (p_t.log() - m.log())).sum(-1) + 0.5 * (p_s * (p_s.log() - m.log())).sum(-1)
    return js.mean() * t * t


def _project(inputs: LossInputs, s_layer: int, h: torch.Tensor, t_width: int) -> torch.Tensor:
    proj = inputs.projections.get(str(s_layer))
    if proj is not None:
        return proj(h)
    if h.shape[-1] != t_width:
        raise LossConfigError(f"student layer {s_layer} has width {h.shape[-1]} but its teacher layer has {t_width} "
                              f"and no projection was given (set distill.projection: true)")
    return h


@LOSSES.register("hidden_mse", needs={"hidden"})
def hidden_mse(inputs: LossInputs) -> torch.Tensor:
    """Token-level hidden-state matching over the layer map, with a learned linear projection W when
    the widths differ (FitNets, Romero et al. 2015, arXiv:1412.6550; TinyBERT, Jiao et al. 2020):

        L = mean over mapped (i, j) of MSE(H_s^i W_i, H_t^j), over non-padding tokens
    """
    terms = []
    mask = inputs.attention_mask
    for s_layer, t_layer in inputs.layer_map:
        t_h = inputs.teacher_hidden[t_layer]
        s_h = _project(inputs, s_layer, inputs.student_hidden[s_layer], t_h.shape[-1])
        err = (s_h.float() - t_h.float()).pow(2).mean(-1)
        if mask is not None and err.dim() == 2:
            err = (err * mask).sum() / mask.sum().clamp(min=1)
        terms.append(err.mean())
    return torch.stack(terms).mean()


@LOSSES.register("pooled_mse", needs={"pooled"})
def pooled_mse(inputs: LossInputs) -> torch.Tensor:
    """Sentence-level hidden-state matching (the cacheable form of FitNets hints): the mask-mean of
    each mapped student layer, projected, against the teacher's cached mask-mean of its layer:

        L = mean over mapped (i, j) of MSE(mean_tok(H_s^i) W_i, mean_tok(H_t^j))
    """
    terms = []
    for s_layer, t_layer in inputs.layer_map:
        t_p = inputs.teacher_hidden[t_layer]
        if t_p.dim() == 3:
            t_p = masked_mean(t_p, inputs.attention_mask)
        s_p = masked_mean(inputs.student_hidden[s_layer], inputs.attention_mask)
        s_p = _project(inputs, s_layer, s_p, t_p.shape[-1])
        terms.append(F.mse_loss(s_p.float(), t_p.float()))
    return torch.stack(terms).mean()


@LOSSES.register("attention_mse", needs={"attention"})
def attention_mse(inputs: LossInputs) -> torch.Tensor:
    """Attention-map transfer (TinyBERT, Jiao et al. 2020, arXiv:1909.10351): MSE between the
    student's and teacher's attention probabilities of mapped layers. Head counts may differ, so
    maps are averaged over heads first (as in MiniLM's relation view, Wang et al. 2020):

        L = mean over mapped (i, j) of MSE(mean_h A_s^i, mean_h A_t^j)
    """
    terms = []
    for s_layer, t_layer in inputs.layer_map:
        a_s = inputs.student_attention[s_layer].float().mean(1)
        a_t = inputs.teacher_attention[t_layer].float().mean(1)
        if a_s.shape != a_t.shape:
            raise LossConfigError(f"attention maps of student layer {s_layer} {tuple(a_s.shape)} and teacher layer "
                                  f"{t_layer} {tuple(a_t.shape)} differ in shape (tokenizers must match)")
        terms.append(F.mse_loss(a_s, a_t))
    return torch.stack(terms).mean()


def _embeddings(inputs: LossInputs) -> tuple[torch.Tensor, torch.Tensor]:
    if inputs.student_embedding is None or inputs.teacher_embedding is None:
        raise LossConfigError("a relation/embedding loss needs student and teacher sentence embeddings")
    return inputs.student_embedding.float(), inputs.teacher_embedding.float()


def _pairwise_distance(x: torch.Tensor) -> torch.Tensor:
    d = torch.cdist(x, x)
    off = ~torch.eye(len(x), dtype=torch.bool, device=x.device)
    mean = d[off].mean().clamp(min=1e-12)
    return d / mean


@LOSSES.register("rkd_distance", needs={"embedding"})
def rkd_distance(inputs: LossInputs) -> torch.Tensor:
    """Distance-wise relational KD (Park et al. 2019, "Relational Knowledge Distillation", arXiv:1904.05068):
    pairwise distances within the batch, each normalised by its mean, matched with Huber loss:

        L = mean_{i != j} huber(d_s(i, j) / mu_s, d_t(i, j) / mu_t)

    Widths may differ: only distances are compared.
    """
    s, t = _embeddings(inputs)
    if len(s) < 2:
        return s.sum() * 0
    off = ~torch.eye(len(s), dtype=torch.bool, device=s.device)
    return F.smooth_l1_loss(_pairwise_distance(s)[off], _pairwise_distance(t)[off])


def _angles(x: torch.Tensor) -> torch.Tensor:
    diff = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=2)  # e_ij = (x_j - x_i) / |x_j - x_i|
    return torch.bmm(diff, diff.transpose(1, 2))  # [i, j, k] = <e_ij, e_ik>


@LOSSES.register("rkd_angle", needs={"embedding"})
def rkd_angle(inputs: LossInputs) -> torch.Tensor:
    """Angle-wise relational KD (Park et al. 2019): cosines of the angles formed by every triplet
    of batch examples, matched with Huber loss:

        L = mean_{i,j,k} huber(<e_s(i,j), e_s(i,k)>, <e_t(i,j), e_t(i,k)>),  e(i,j) = (x_j - x_i)/|x_j - x_i|
    """
    s, t = _embeddings(inputs)
    return F.smooth_l1_loss(_angles(s), _angles(t))


@LOSSES.register("sp", needs={"embedding"})
def similarity_preserving(inputs: LossInputs) -> torch.Tensor:
    """Similarity-preserving KD (Tung & Mori 2019, arXiv:1907.09682): row-normalised batch Gram matrices:

        G = row_l2_normalise(F F^T),  L = ||G_s - G_t||_F^2 / b^2
    """
    s, t = _embeddings(inputs)
    g_s = F.normalize(s @ s.T, p=2, dim=1)
    g_t = F.normalize(t @ t.T, p=2, dim=1)
    return (g_s - g_t).pow(2).sum() / (len(s) ** 2)


@LOSSES.register("embedding_mse", needs={"embedding"})
def embedding_mse(inputs: LossInputs) -> torch.Tensor:
    """Sentence-embedding distillation (Reimers & Gurevych 2020, "Making Monolingual Sentence
    Embeddings Multilingual", arXiv:2004.09813): L = MSE(W e_s, e_t), W a learned projection when
    widths differ (stored under the key "embedding")."""
    s, t = _embeddings(inputs)
    proj = inputs.projections.get("embedding")
    if proj is not None:
        s = proj(s)
    if s.shape[-1] != t.shape[-1]:
        raise LossConfigError(f"student embedding width {s.shape[-1]} != teacher's {t.shape[-1]} and no projection")
    return F.mse_loss(s, t)


@LOSSES.register("embedding_cosine", needs={"embedding"})
def embedding_cosine(inputs: LossInputs) -> torch.Tensor:
    """L = mean(1 - cos(W e_s, e_t)): the direction-only variant of embedding_mse."""
    s, t = _embeddings(inputs)
    proj = inputs.projections.get("embedding")
    if proj is not None:
        s = proj(s)
    return (1 - F.cosine_similarity(s, t, dim=-1)).mean()


def resolve_losses(weights: Mapping[str, float], alpha: float) -> dict[str, float]:
    """The weighted terms to use: `weights` if given, else Hinton's {kl: alpha, ce: 1 - alpha}.
    Unknown keys fail here, naming the key, before any training."""
    terms = dict(weights) if weights else {"kl": alpha, "ce": 1 - alpha}
    for key, w in terms.items():
        LOSSES.get(key)
        if w < 0:
            raise LossConfigError(f"distill.losses.{key}: weight must be >= 0, got {w}")
    return {k: float(w) for k, w in terms.items() if w > 0}


def needs(terms: Mapping[str, float]) -> set[str]:
    """What the terms need, as declared where each loss is registered: "labels", "logits", "pooled",
    "hidden", "attention", "embedding". The trainer computes, and the cache stores, only that."""
    out: set[str] = set()
    for key in terms:
        out |= set(LOSSES.info(key).get("needs", ()))
    return out


def combined_loss(terms: Mapping[str, float], inputs: LossInputs) -> tuple[torch.Tensor, dict[str, float]]:
    """sum_k w_k L_k(inputs), and each term's value for logging."""
    total = None
    parts = {}
    for key, w in terms.items():
        value = LOSSES.get(key)(inputs)
        parts[key] = float(value.detach())
        total = w * value if total is None else total + w * value
    return total, parts
