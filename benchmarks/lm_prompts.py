"""Prompts for the generative-teacher benchmarks, made from the real texts in ../shared/datasets/.

Each task turns a labelled text into an instruction for the causal-LM teacher: banking77 customer
messages become "reply to this customer" prompts, ag_news texts "write a one-line headline" prompts.
A prompt set is a seeded sample of a split's distinct texts, so the same (task, split, n, seed) is
always the same prompts in the same order, and a larger n extends a smaller one (its first rows are
the smaller set): the cache benchmark's "+10% prompts" is the next rows of the same sample.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TEMPLATES = {
    "banking77": "Reply to this customer: {text}",
    "ag_news": "Write a one-line headline for this news text: {text}",
}
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def read_texts(path: str | Path) -> list[str]:
    """The distinct, non-blank "text" values of a JSONL file, in file order."""
    seen: dict[str, None] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            text = json.loads(line)["text"].strip()
            if text:
                seen.setdefault(text, None)
    return list(seen)


def sample_prompts(task: str, texts: list[str], n: int, seed: int = 0) -> list[str]:
    """`n` prompts of `task` from a seeded permutation of `texts` (all of them when fewer)."""
    if task not in TEMPLATES:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(sorted(TEMPLATES))}")
    if n < 1:
        raise ValueError(f"n={n}: expected at least one prompt")
    order = np.random.default_rng(seed).permutation(len(texts))
    return [TEMPLATES[task].format(text=texts[i]) for i in order[:n]]


def task_prompts(task: str, split: str, n: int, seed: int = 0, datasets: str | Path = DATASETS,
                 exclude_split: str = "") -> list[str]:
    """`n` prompts of `task` from `<datasets>/<task>/<split>.jsonl` (split: train or test), leaving out
    texts that also occur in `exclude_split` (held-out prompts never repeat a training text)."""
    texts = read_texts(Path(datasets) / task / f"{split}.jsonl")
    if exclude_split:
        seen = set(read_texts(Path(datasets) / task / f"{exclude_split}.jsonl"))
        texts = [t for t in texts if t not in seen]
    return sample_prompts(task, texts, n, seed)


def emit(report: dict, out: str | None) -> None:
    """Print the benchmark's JSON on stdout and, with --out, write it there too."""
    import json
    from pathlib import Path

    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
