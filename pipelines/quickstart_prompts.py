"""The generation quickstart's prompts: customer-support instructions built from the classification
quickstart's synthetic messages (deterministic, no download). Each message becomes one prompt under
one of a few instructions (reply, summarise, classify in words), so the teacher's answers are short
and varied. No reference responses: the student learns from the teacher's generations.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from pipelines.quickstart import generate

INSTRUCTIONS = (
    "Reply to this customer in one or two sentences: {text}",
    "Summarise this support message in one short sentence: {text}",
    "Which team should handle this message (billing, shipping, account or technical)? Answer in a few words: {text}",
    "Write a short, polite first reply to: {text}",
)


def generate_prompts(rows: int = 400, seed: int = 11) -> list[dict[str, str]]:
    """`rows` prompts, deterministic for a seed."""
    rng = random.Random(seed)
    messages = generate(rows, seed)
    return [{"prompt": rng.choice(INSTRUCTIONS).format(text=m["text"])} for m in messages]


def write_quickstart_prompts(path: str | Path, rows: int = 400, seed: int = 11) -> Path:
    """Write the prompts as JSONL (once: an existing file is kept, so its data_version is stable)."""
    path = Path(path)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in generate_prompts(rows, seed)))
    tmp.replace(path)
    return path
