"""Tiny, download-free fakes for tests: a word-level tokenizer, a 2-layer BERT teacher, toy data."""

from __future__ import annotations

import json
import random
from pathlib import Path

TOPICS = {
    "sports": ["match", "goal", "team", "coach", "score", "league", "player", "season"],
    "weather": ["rain", "sunny", "storm", "cloud", "wind", "snow", "forecast", "cold"],
    "money": ["bank", "loan", "price", "stock", "market", "budget", "tax", "cash"],
}
FILLER = ["the", "a", "today", "we", "saw", "about", "big", "new", "very", "is", "was", "and"]


def make_rows(n: int, seed: int = 0, topics: dict[str, list[str]] = TOPICS) -> list[dict[str, str]]:
    """`n` short labelled texts whose label is readable from their topic words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.choice(sorted(topics))
        words = rng.sample(topics[label], 2) + rng.sample(FILLER, 3)
        rng.shuffle(words)
        rows.append({"text": " ".join(words) + f" {i}", "label": label})
    return rows


def write_jsonl(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def vocabulary() -> list[str]:
    words = {w for ws in TOPICS.values() for w in ws} | set(FILLER)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    return specials + sorted(words) + [str(d) for d in range(10)] + [f"##{d}" for d in range(10)]


def make_tiny_teacher(path: str | Path, labels: tuple[str, ...] = tuple(sorted(TOPICS)), layers: int = 4, hidden: int = 32,
                      seed: int = 0) -> Path:
    """A randomly initialised BERT classifier saved with save_pretrained (safetensors + tokenizer)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(vocabulary()) + "\n")
    # From the dict: under transformers 5, BertTokenizerFast(vocab_file=...) loads only the 5
    # special tokens, and every word would become [UNK].
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocabulary())})
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocabulary()), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=hidden * 2, max_position_embeddings=64,
                        num_labels=len(labels), id2label=dict(enumerate(labels)),
                        label2id={n: i for i, n in enumerate(labels)})
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def factorizing_fraction(teacher_path: str | Path, texts: list[str], layers: list[int], positions: int,
                         rank: int = 32) -> float:
    """A student.max_parameter_fraction at which the teacher-layers student of `layers` (vocabulary
    trimmed to `texts`, `positions` position embeddings) fits with its embeddings factored at `rank`
    (student.factorize_embeddings) but not with its whole vocabulary at full width."""
    from components.common.modeling import load_classifier
    from components.distillation.measure import count_parameters
    from components.distillation.students import build_student_from_teacher_layers, trim_vocabulary

    teacher, tokenizer = load_classifier(teacher_path)
    used, _ = trim_vocabulary(build_student_from_teacher_layers(teacher, layers), tokenizer, texts,
                              max_positions=positions)
    width = used.config.hidden_size
    rows = used.config.vocab_size + positions + used.config.type_vocab_size
    budget = count_parameters(used) - rows * width - 2 * width + width + rank * (rows + 2 + width)
    return (budget + 0.5) / count_parameters(teacher)
