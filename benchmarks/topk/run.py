"""Top-k compression of large-vocabulary teacher outputs: bytes per token and KL error vs full logits.

    python benchmarks/topk/run.py [--train /work/shared/datasets/ag_news/train.jsonl]
                                  [--eval /work/shared/datasets/ag_news/test.jsonl] [--tokens 2000]

No pretrained causal LM can be loaded offline here (the shipped MiniLM is an encoder without an LM
head), so the large-vocabulary distributions come from a real, if simple, causal language model
built in this script from real text: a Witten-Bell interpolated bigram model over the MiniLM
WordPiece vocabulary (30,522 tokens), counted on --train and evaluated at every token position of
--eval texts (held out). Its next-token distributions are heavy-tailed (Zipfian unigram tail under a
sparse bigram head), the shape that makes top-k storage lossy. A neural LM's distributions are
usually sharper than a bigram's, so these KL figures should be read as pessimistic.

For k in 8, 32, 128 it reports the stored bytes per token (fp16 log-probs + int32 indices + fp32
residual mass) against fp32 / fp16 full logits, and KL(full || top-k) at temperature 1 and 2
(the distillation default), mean and p95 over the evaluated positions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from components.common.modeling import default_base_model  # noqa: E402
from components.common.topk import topk_compress, topk_log_probs  # noqa: E402


def read_texts(path: str) -> list[str]:
    return [json.loads(line)["text"] for line in Path(path).read_text().splitlines() if line.strip()]


def tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=True, truncation=True, max_length=128)["input_ids"]


def bigram_model(sequences: list[list[int]], vocab: int):
    """Counts for P(w | prev) = lam * c(prev, w) / c(prev) + (1 - lam) * P_uni(w), with
    Witten-Bell lam = c(prev) / (c(prev) + distinct followers of prev) and add-one unigram."""
    from collections import Counter, defaultdict

    follow: dict[int, Counter] = defaultdict(Counter)
    unigram = np.ones(vocab, dtype=np.float64)
    for seq in sequences:
        for a, b in zip(seq[:-1], seq[1:], strict=False):
            follow[a][b] += 1
            unigram[b] += 1
    return follow, unigram / unigram.sum()


def next_token_logits(follow, p_uni: np.ndarray, prev: int) -> np.ndarray:
    counts = follow.get(prev)
    if not counts:
        return np.log(p_uni)
    total, distinct = sum(counts.values()), len(counts)
    lam = total / (total + distinct)
    p = (1 - lam) * p_uni
    idx = np.fromiter(counts.keys(), dtype=np.int64)
    p[idx] += lam * np.fromiter(counts.values(), dtype=np.float64) / total
    return np.log(p)


def kl_at(logits: np.ndarray, q_log: np.ndarray, t: float) -> np.ndarray:
    def log_softmax(z):
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    p, q = log_softmax(logits / t), log_softmax(q_log / t)
    return (np.exp(p) * (p - q)).sum(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", default="/work/shared/datasets/ag_news/train.jsonl")
    ap.add_argument("--eval", default="/work/shared/datasets/ag_news/test.jsonl")
    ap.add_argument("--tokens", type=int, default=2000, help="evaluated next-token positions")
    args = ap.parse_args()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(default_base_model())
    vocab = tokenizer.vocab_size
    follow, p_uni = bigram_model(tokenize(tokenizer, read_texts(args.train)), vocab)
    prevs = [a for seq in tokenize(tokenizer, read_texts(args.eval)[:400]) for a in seq[:-1]][:args.tokens]
    logits = np.stack([next_token_logits(follow, p_uni, a) for a in prevs]).astype(np.float32)
    entropy = float(-(np.exp(logits.astype(np.float64)) * logits).sum(-1).mean())
    result = {"distributions": f"Witten-Bell bigram LM over the MiniLM WordPiece vocabulary, counted on {args.train}, "
                               f"evaluated on {args.eval}", "vocab": vocab, "positions": len(prevs),
              "mean_entropy_nats": round(entropy, 3),
              "full_bytes_per_token": {"fp32": vocab * 4, "fp16": vocab * 2}, "k": {}}
    for k in (8, 32, 128):
        compressed = topk_compress(logits, k)
        q_log = topk_log_probs(compressed, vocab)
        row = {"bytes_per_token": compressed.bytes_per_row(),
               "compression_vs_fp32": round(vocab * 4 / compressed.bytes_per_row(), 1),
               "mean_top_k_mass": round(float(1 - compressed.residual.mean()), 4)}
        for t in (1.0, 2.0):
            kl = kl_at(logits.astype(np.float64), q_log, t)
            row[f"kl_T{t:g}_mean_nats"] = round(float(kl.mean()), 5)
            row[f"kl_T{t:g}_p95_nats"] = round(float(np.quantile(kl, 0.95)), 5)
        result["k"][str(k)] = row
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
