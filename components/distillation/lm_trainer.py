"""Training a generative student on cached teacher generations (through the shared training loop).

Each example is a rendered prompt followed by the teacher's generated tokens; the student's logits
at the positions that predict those tokens meet the cached top-k distributions (lm_losses). Rows
are right-padded per micro-batch; a prompt longer than `max_length` minus its generation is cut from
the left (the generation is never cut). Reference responses, where present, are a second
teacher-forced sequence per example for the ``ref_ce`` term.

Fine-tuning the teacher itself on prompt/response pairs uses the same examples with the reference
response in place of a generation and no teacher distribution (k = 0): :func:`build_reference_examples`
and :func:`finetune_on_references` (cross-entropy on the response tokens only, the ``seq_kd`` term).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from components.distillation.lm_losses import TokenBatch, combined_lm_loss
from components.distillation.trainer import TrainResult, TrainSettings, train_loop


@dataclass
class LMExample:
    input_ids: list[int]  # prompt + generated tokens
    start: int  # index of the first generated token in input_ids
    topk_ids: np.ndarray  # [T, k]
    topk_logprobs: np.ndarray  # [T, k]
    tail: np.ndarray  # [T]
    ref_ids: list[int] | None = None  # prompt + reference response (+ EOS)
    ref_start: int = 0


def _fit(prompt: list[int], tail_len: int, max_length: int) -> list[int]:
    keep = max(max_length - tail_len, 1)
    return prompt[-keep:]


def build_examples(tokenizer, rendered: Sequence[str], generations: Sequence, responses: Sequence[str | None] = (),
                   max_length: int = 512) -> list[LMExample]:
    """Examples of (rendered prompt, its cached Generation[, reference response])."""
    responses = list(responses) or [None] * len(rendered)
    out = []
    for text, g, ref in zip(rendered, generations, responses, strict=True):
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
        gen = [int(t) for t in g.tokens]
        p = _fit(prompt, len(gen), max_length)
        ex = LMExample(p + gen, len(p), g.topk_ids.astype(np.int64), g.topk_logprobs.astype(np.float32),
                       g.tail.astype(np.float32))
        if ref is not None:
            r = tokenizer(ref, add_special_tokens=False)["input_ids"] + (
                [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])
            rp = _fit(prompt, len(r), max_length)
            ex.ref_ids, ex.ref_start = rp + r, len(rp)
        out.append(ex)
    return out


def build_reference_examples(tokenizer, rendered: Sequence[str], responses: Sequence[str],
                             max_length: int = 512) -> list[LMExample]:
    """Examples of (rendered prompt, reference response + EOS) whose target tokens are the response's:
    supervised fine-tuning data, with empty top-k arrays (there is no teacher to imitate)."""
    out = []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for text, ref in zip(rendered, responses, strict=True):
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
        target = (tokenizer(ref, add_special_tokens=False)["input_ids"] + eos)[:max(max_length - 1, 1)]
        p = _fit(prompt, len(target), max_length)
        out.append(LMExample(p + target, len(p), np.zeros((len(target), 0), np.int64),
                             np.zeros((len(target), 0), np.float32), np.zeros(len(target), np.float32)))
    return out


def _padded(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.as_tensor(s)
        mask[i, :len(s)] = 1
    return ids, mask


def _positions(lengths: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) of the logits that predict each target token: column start-1 .. start+T-2."""
    rows, cols = [], []
    for i, (start, t) in enumerate(lengths):
        rows += [i] * t
        cols += list(range(start - 1, start - 1 + t))
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)


def token_batch(model, examples: Sequence[LMExample], pad_id: int, with_refs: bool = False) -> TokenBatch:
    """The student's logits at the generated positions of `examples`, with the cached targets."""
    ids, mask = _padded([e.input_ids for e in examples], pad_id)
    logits = model(input_ids=ids, attention_mask=mask).logits
    rows, cols = _positions([(e.start, len(e.input_ids) - e.start) for e in examples])
    batch = TokenBatch(
        student_logits=logits[rows, cols],
        tokens=torch.as_tensor(np.concatenate([e.input_ids[e.start:] for e in examples]).astype(np.int64)),
        topk_ids=torch.as_tensor(np.concatenate([e.topk_ids for e in examples])),
        topk_logprobs=torch.as_tensor(np.concatenate([e.topk_logprobs for e in examples])),
        tail=torch.as_tensor(np.concatenate([e.tail for e in examples])))
    refs = [e for e in examples if e.ref_ids is not None]
    if with_refs and refs:
        rids, rmask = _padded([e.ref_ids for e in refs], pad_id)
        rlogits = model(input_ids=rids, attention_mask=rmask).logits
        rrows, rcols = _positions([(e.ref_start, len(e.ref_ids) - e.ref_start) for e in refs])
        batch.ref_logits = rlogits[rrows, rcols]
        batch.ref_tokens = torch.as_tensor([t for e in refs for t in e.ref_ids[e.ref_start:]], dtype=torch.long)
    return batch


@torch.no_grad()
def teacher_nll(model, examples: Sequence[LMExample], pad_id: int, batch_size: int = 8) -> float:
    """Mean negative log-likelihood per token of the examples' targets under `model`: the teacher's
    generations (build_examples) or the reference responses (build_reference_examples)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        b = token_batch(model, examples[i:i + batch_size], pad_id)
        total += float(torch.nn.functional.cross_entropy(b.student_logits.float(), b.tokens, reduction="sum"))
        count += len(b.tokens)
    return total / max(count, 1)


def train_lm_student(model, examples: Sequence[LMExample], settings: TrainSettings, terms: Mapping[str, float],
                     pad_id: int, val_examples: Sequence[LMExample] = (),
                     on_metrics: Callable[[dict[str, float], int], None] | None = None,
                     desc: str = "distil generative student") -> TrainResult:
    """Distil `model` on `examples` with the weighted `terms`; validation score = -NLL of the teacher's
    validation generations (early stopping and the best epoch, as for classifiers)."""
    examples = list(examples)
    with_refs = "ref_ce" in terms

    def batch_loss(idx: list[int]):
        model.train()
        return combined_lm_loss(token_batch(model, [examples[i] for i in idx], pad_id, with_refs), terms)

    evaluate = (lambda: -teacher_nll(model, val_examples, pad_id)) if val_examples else None
    return train_loop({"model": model}, len(examples), settings, batch_loss, evaluate=evaluate,
                      on_metrics=on_metrics, desc=desc)


def finetune_on_references(model, examples: Sequence[LMExample], settings: TrainSettings, pad_id: int,
                           val_examples: Sequence[LMExample] = (),
                           on_metrics: Callable[[dict[str, float], int], None] | None = None,
                           desc: str = "fine-tune generation teacher") -> TrainResult:
    """Fine-tune `model` on build_reference_examples: cross-entropy on the response tokens only (the
    prompt's tokens are context, never targets). Validation score = -(mean NLL per response token)."""
    return train_lm_student(model, examples, settings, {"seq_kd": 1.0}, pad_id, val_examples, on_metrics, desc)
