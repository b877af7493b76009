"""Transfer-set augmentation: more inputs for the teacher to label than the training set has.

A student learns the teacher's function only where it sees the teacher's outputs. Small task
datasets leave most of the input space unseen, so distillation works better on an enlarged
transfer set whose rows are labelled by the teacher, not by people (the data augmentation of
TinyBERT, Jiao et al. 2020, and of Tang et al. 2019, "Distilling Task-Specific Knowledge from
BERT into Simple Neural Networks", whose rules are the ones used here):

- masking: a word is replaced by ``[UNK]`` (the tokenizer's unknown token), with probability p;
- swapping: a word is replaced by another word of the corpus (drawn by frequency), with p;
- dropping: a word is deleted, with p;
- windowing: with probability `window_p` the text is cut to a random window of at least half
  its words (Tang et al. sample n-grams of 1-5 words; short questions need more of their words).

Pure functions, seeded; the same (texts, copies, seed) always gives the same list.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Sequence

AUTO = -1  # distill.augment_copies: chosen from the data
MAX_AUTO_COPIES = 4


def resolve_copies(setting: int, train_rows: int, target_rows: int) -> int:
    """The number of augmented copies per training text: `setting` itself when >= 0; for AUTO, as
    many as bring the transfer set (rows and copies) to `target_rows`, at most MAX_AUTO_COPIES, and
    none for a training split already that large. Small data gains most from more transfer rows;
    large data gains little and pays the most in training time (docs/benchmarks.md)."""
    if setting != AUTO:
        return setting
    if train_rows <= 0 or train_rows >= target_rows:
        return 0
    return min(MAX_AUTO_COPIES, -(-target_rows // train_rows) - 1)


def augment_texts(texts: Sequence[str], copies: int, seed: int = 0, p: float = 0.1, window_p: float = 0.25,
                  unk: str = "[UNK]") -> list[str]:
    """`copies` perturbed variants of each text, in order: all copies of text 0, then of text 1, ...

    Variants equal to their source text are kept (they are cheap and rare at p=0.1); empty results
    fall back to the source text.
    """
    if copies < 0:
        raise ValueError(f"augment copies must be >= 0, got {copies}")
    if not 0 <= p <= 1 or not 0 <= window_p <= 1:
        raise ValueError(f"augment probabilities must be within [0, 1], got p={p}, window_p={window_p}")
    rng = random.Random(seed)
    counts = Counter(w for t in texts for w in t.split())
    vocab, weights = list(counts), list(counts.values())
    out = []
    for text in texts:
        words = text.split()
        for _ in range(copies):
            new = []
            for w in words:
                r = rng.random()
                if r < p:
                    new.append(unk)
                elif r < 2 * p and vocab:
                    new.append(rng.choices(vocab, weights)[0])
                elif r < 3 * p:
                    continue
                else:
                    new.append(w)
            if len(new) > 3 and rng.random() < window_p:
                size = rng.randint((len(new) + 1) // 2, len(new))
                start = rng.randint(0, len(new) - size)
                new = new[start:start + size]
            out.append(" ".join(new) if new else text)
    return out


def augment_record(augmented: Sequence[str], copies: int, seed: int) -> dict:
    """How an augmented transfer set was made, with a digest of its texts (in order), so a consumer
    that regenerates it can prove its rows line up with stored teacher outputs."""
    digest = hashlib.sha256("\n".join(augmented).encode("utf-8")).hexdigest()
    return {"copies": copies, "seed": seed, "rows": len(augmented), "texts_sha256": digest}
