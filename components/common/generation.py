"""A causal-LM teacher's generations and their per-token top-k log-probabilities, keyed by content.

What a generative student learns from is, per prompt, the teacher's generated token ids and, at
each generated position, the teacher's k most likely next tokens with their log-probabilities and
the probability mass of everything else (the *tail*). :func:`generate_topk` computes that with
batched, left-padded ``generate`` calls; :func:`generation_key` addresses it in the teacher store
by everything that decides it: the teacher version, the tokenizer and chat template, the rendered
prompt, the decoding parameters and k. The distributions stored are the model's own (temperature
1, before any sampling processors), whatever the decoding that chose the tokens.

Determinism: greedy decoding is batched; its rows are grouped by prompt length and then by key,
so the same set of prompts always forms the same batches. Sampled decoding runs one prompt at a
time with a generator seeded from (seed, prompt key), so a row's sample never depends on the rows
beside it or on the order they came in.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

UINT16_VOCAB = 1 << 16
CHAT_TEMPLATE_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json",
                       "special_tokens_map.json", "vocab.json", "merges.txt", "tokenizer.model")


class GenerationError(ValueError):
    """Decoding settings or a model that cannot produce cacheable generations."""


@dataclass(frozen=True)
class Decoding:
    """How the teacher decodes: greedy when temperature is 0, else sampled with `seed`."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.max_new_tokens <= 4096:
            raise GenerationError(f"max_new_tokens={self.max_new_tokens}: expected 1..4096")
        if self.temperature < 0:
            raise GenerationError(f"temperature={self.temperature}: expected 0 (greedy) or more")
        if not 0 < self.top_p <= 1:
            raise GenerationError(f"top_p={self.top_p}: expected a value in (0, 1]")

    @property
    def sampled(self) -> bool:
        return self.temperature > 0

    def key_text(self) -> str:
        """Canonical text of the parameters that change a generation (part of every row key)."""
        params = asdict(self)
        if not self.sampled:  # greedy ignores these: changing them must not miss the cache
            params.update(temperature=0.0, top_p=1.0, seed=0)
        return json.dumps(params, sort_keys=True)


@dataclass(frozen=True)
class Generation:
    """One prompt's generation: T generated token ids (EOS included when the model stopped) and, at
    each of those positions, the top-k next-token log-probs (fp16, sorted), their ids and the tail mass."""

    tokens: np.ndarray  # [T] uint16
    topk_logprobs: np.ndarray  # [T, k] float16
    topk_ids: np.ndarray  # [T, k] uint16
    tail: np.ndarray  # [T] float32: 1 - sum(exp(topk_logprobs)), clipped to [0, 1]

    def __post_init__(self):
        t = len(self.tokens)
        if self.topk_logprobs.shape[0] != t or self.topk_ids.shape != self.topk_logprobs.shape or len(self.tail) != t:
            raise GenerationError(f"inconsistent generation: {t} tokens, top-k {self.topk_logprobs.shape}, "
                                  f"ids {self.topk_ids.shape}, tail {self.tail.shape}")

    @property
    def k(self) -> int:
        return int(self.topk_logprobs.shape[1])

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.tokens, self.topk_logprobs, self.topk_ids, self.tail))


def tokenizer_digest(model_dir: str | Path) -> str:
    """Identity of a model directory's tokenizer *and* chat template (files that exist, by content)."""
    h = hashlib.sha256()
    for name in CHAT_TEMPLATE_FILES:
        p = Path(model_dir, name)
        if p.is_file():
            h.update(name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16]


def render_prompts(tokenizer, prompts: Sequence[str]) -> list[str]:
    """Each prompt as the model sees it: a one-turn user message in the tokenizer's chat template
    (with the assistant turn opened), or the prompt itself when the tokenizer has no template."""
    if not getattr(tokenizer, "chat_template", None):
        return list(prompts)
    return [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                          add_generation_prompt=True) for p in prompts]


def generation_key(teacher_version: str, tokenizer_id: str, rendered_prompt: str, decoding: Decoding,
                   k: int) -> bytes:
    """The store key of one prompt's generation (32 bytes)."""
    h = hashlib.sha256()
    for part in ("generation", teacher_version, tokenizer_id, decoding.key_text(), str(k), rendered_prompt):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.digest()


def check_vocabulary(model, k: int) -> int:
    vocab = int(model.config.vocab_size)
    if vocab > UINT16_VOCAB:
        raise GenerationError(f"the teacher's vocabulary has {vocab} tokens; cached token ids are uint16 "
                              f"(at most {UINT16_VOCAB})")
    if not 1 <= k <= vocab:
        raise GenerationError(f"top-k k={k}: expected 1..{vocab} (the teacher's vocabulary)")
    return vocab


def _topk_of(logits, k: int):
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    top, ids = torch.topk(logp, k, dim=-1)  # sorted, most likely first
    tail = (1.0 - top.exp().sum(-1)).clamp(0.0, 1.0)
    return top, ids, tail


def _stop_ids(model, tokenizer) -> set[int]:
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    ids = ids if isinstance(ids, list) else [ids]
    ids = [i for i in ids if i is not None]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return set(int(i) for i in ids)


def _cut(tokens: np.ndarray, stops: set[int]) -> int:
    """Length of a generated row up to and including its first stop token."""
    for i, t in enumerate(tokens):
        if int(t) in stops:
            return i + 1
    return len(tokens)


def _generate_batch(model, tokenizer, texts: list[str], decoding: Decoding, k: int, generator_seed: int | None):
    import torch

    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    kwargs = dict(max_new_tokens=decoding.max_new_tokens, return_dict_in_generate=True, output_logits=True,
                  pad_token_id=tokenizer.pad_token_id)
    if decoding.sampled:
        kwargs.update(do_sample=True, temperature=decoding.temperature, top_p=decoding.top_p, top_k=0)
        torch.manual_seed(generator_seed)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    with torch.inference_mode():
        out = model.generate(**enc, **kwargs)
    new = out.sequences[:, enc["input_ids"].shape[1]:]
    logits = torch.stack(out.logits, dim=1)  # [B, steps, vocab], the model's raw next-token logits
    top, ids, tail = _topk_of(logits, k)
    return new.numpy(), top.numpy(), ids.numpy(), tail.numpy()


def batch_order(tokenizer, rendered: Sequence[str], keys: Sequence[bytes]) -> list[int]:
    """The order generate_topk batches rows in: by prompt length in tokens, then by key. A caller that
    splits rows along this order into runs of whole batches gets the very batches of one call."""
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in rendered]
    return sorted(range(len(rendered)), key=lambda i: (lengths[i], keys[i]))


def generate_topk(model, tokenizer, rendered: Sequence[str], keys: Sequence[bytes], decoding: Decoding, k: int,
                  batch_size: int = 8, progress: Callable[[int, int], None] | None = None) -> list[Generation]:
    """The teacher's generation for each rendered prompt, in input order.

    `keys` (the rows' store keys) order the batches deterministically and seed sampled rows.
    `progress(rows_done, tokens_generated)` is called after each batch.
    """
    if len(keys) != len(rendered):
        raise GenerationError(f"{len(keys)} keys for {len(rendered)} prompts")
    check_vocabulary(model, k)
    if tokenizer.pad_token_id is None:
        raise GenerationError("the teacher's tokenizer has no pad token; batched generation needs one "
                              "(set pad_token, e.g. to the EOS token, and save the tokenizer)")
    tokenizer.padding_side = "left"
    model.eval()
    stops = _stop_ids(model, tokenizer)
    order = batch_order(tokenizer, rendered, keys)
    step = 1 if decoding.sampled else max(1, batch_size)
    out: list[Generation | None] = [None] * len(rendered)
    done = tokens = 0
    for start in range(0, len(order), step):
        idx = order[start:start + step]
        seed = (int.from_bytes(hashlib.sha256(keys[idx[0]] + str(decoding.seed).encode()).digest()[:4], "big")
                if decoding.sampled else None)
        new, top, ids, tail = _generate_batch(model, tokenizer, [rendered[i] for i in idx], decoding, k, seed)
        for row, i in enumerate(idx):
            n = _cut(new[row], stops)
            out[i] = Generation(new[row, :n].astype(np.uint16), top[row, :n].astype(np.float16),
                                ids[row, :n].astype(np.uint16), tail[row, :n].astype(np.float32))
            tokens += n
        done += len(idx)
        if progress is not None:
            progress(done, tokens)
    return out  # type: ignore[return-value]


class TokenRate:
    """A progress callback that drives a tqdm bar with rows and generated tokens per second."""

    def __init__(self, total: int, desc: str = "teacher generations", disable: bool | None = None):
        import sys

        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="prompt",
                        disable=(not sys.stderr.isatty()) if disable is None else disable)
        self.start = time.perf_counter()
        self.done = 0

    def __call__(self, rows_done: int, tokens: int) -> None:
        self.bar.update(rows_done - self.done)
        self.done = rows_done
        self.bar.set_postfix(tokens_per_s=f"{tokens / max(time.perf_counter() - self.start, 1e-9):.1f}")

    def close(self) -> None:
        self.bar.close()
