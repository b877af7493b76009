"""What the generative gate measures: fidelity to the teacher and generation speed, side by side.

Fidelity, on held-out prompts: ROUGE-L F1 and exact match of the student's greedy answer against
the teacher's; on the teacher's own (teacher-forced) generations, the share of positions where the
student's most likely token is the teacher's, the bucketed KL(teacher || student), and the NLL of the
teacher's tokens under the student. Quality against reference responses where the data has them
(ROUGE-L). Speed: time to first token and generated tokens/s at a batch size, the two models timed
in alternation (this machine is shared: interleaving keeps the ratio honest).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch

from components.distillation.lm_losses import bucket_log_probs
from components.distillation.lm_trainer import LMExample, token_batch


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 over lower-cased whitespace words (1.0 for two empty texts)."""
    a, b = candidate.lower().split(), reference.lower().split()
    if not a and not b:
        return 1.0
    lcs = _lcs(a, b)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(a), lcs / len(b)
    return 2 * p * r / (p + r)


def text_fidelity(candidates: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-L F1 and exact-match rate (after trimming) of candidates against references."""
    pairs = list(zip(candidates, references, strict=True))
    if not pairs:
        return {"rouge_l": 0.0, "exact_match": 0.0}
    return {"rouge_l": sum(rouge_l(c, r) for c, r in pairs) / len(pairs),
            "exact_match": sum(c.strip() == r.strip() for c, r in pairs) / len(pairs)}


@torch.no_grad()
def forced_fidelity(model, examples: Sequence[LMExample], pad_id: int, batch_size: int = 8) -> dict[str, float]:
    """On the teacher's generations, teacher-forced: token agreement (student argmax == teacher token),
    mean bucketed KL(teacher || student), and mean NLL of the teacher's tokens, per token."""
    model.eval()
    agree = kl = nll = 0.0
    count = 0
    for i in range(0, len(examples), batch_size):
        b = token_batch(model, examples[i:i + batch_size], pad_id)
        logits = b.student_logits.float()
        agree += float((logits.argmax(-1) == b.tokens).sum())
        t, s = bucket_log_probs(b)
        kl += float((t.exp() * (t - s)).sum(-1).sum())
        nll += float(torch.nn.functional.cross_entropy(logits, b.tokens, reduction="sum"))
        count += len(b.tokens)
    n = max(count, 1)
    return {"token_agreement": agree / n, "token_kl": kl / n, "teacher_nll": nll / n, "tokens": count}


@torch.no_grad()
def greedy_answers(model, tokenizer, rendered: Sequence[str], max_new_tokens: int, batch_size: int = 8) -> list[str]:
    """The model's greedy answers to rendered prompts (left padding), decoded without special tokens."""
    tokenizer.padding_side = "left"
    model.eval()
    out = []
    for i in range(0, len(rendered), batch_size):
        enc = tokenizer(list(rendered[i:i + batch_size]), return_tensors="pt", padding=True, add_special_tokens=False)
        seq = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None,
                             top_k=None, pad_token_id=tokenizer.pad_token_id)
        out += tokenizer.batch_decode(seq[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


@torch.no_grad()
def _timed_generate(model, enc, new_tokens: int, pad_id: int) -> float:
    start = time.perf_counter()
    model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, temperature=None,
                   top_p=None, top_k=None, pad_token_id=pad_id)
    return time.perf_counter() - start


def generation_speed(models: dict[str, torch.nn.Module], tokenizer, rendered: Sequence[str], batch_size: int,
                     new_tokens: int = 32, repeats: int = 3) -> dict[str, dict[str, float]]:
    """{name: {ttft_ms, tokens_per_s}} at `batch_size`, each model timed in alternation with the
    others on the same batches (median of `repeats`): time to first token = a 1-token generate (the
    prefill), tokens/s = batch x new_tokens over a generate of exactly new_tokens tokens."""
    tokenizer.padding_side = "left"
    batch = list(rendered[:batch_size])
    while len(batch) < batch_size:
        batch += batch[:batch_size - len(batch)]
    enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False)
    pad = tokenizer.pad_token_id
    for m in models.values():  # warm-up: allocations, kernels
        m.eval()
        _timed_generate(m, enc, 2, pad)
    first: dict[str, list[float]] = {n: [] for n in models}
    full: dict[str, list[float]] = {n: [] for n in models}
    for _ in range(repeats):
        for name, m in models.items():
            first[name].append(_timed_generate(m, enc, 1, pad))
            full[name].append(_timed_generate(m, enc, new_tokens, pad))
    return {name: {"ttft_ms": round(1000 * statistics.median(first[name]), 2),
                   "tokens_per_s": round(batch_size * new_tokens / statistics.median(full[name]), 2)}
            for name in models}
